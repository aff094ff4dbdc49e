"""Hooks: read or replace any named intermediate of a GPT's forward pass.

The model marks its hook points (``HookPoint`` in model/layers.py); their names, for layer n:

    embed                  (B, T, C)      token + position embedding: the residual stream entering block 0
    blocks.n.attn.pattern  (B, nh, T, T)  attention weights; row = query (the token looking), column = key
    blocks.n.attn.heads    (B, nh, T, hs) each head's output, before the output projection mixes them
    blocks.n.attn.out      (B, T, C)      what attention adds to the residual stream
    blocks.n.resid_mid     (B, T, C)      the residual stream after attention
    blocks.n.mlp.hidden    (B, T, d_ff)   the MLP's neurons, after the non-linearity (no MLP: absent)
    blocks.n.mlp.out       (B, T, C)      what the MLP adds to the residual stream
    blocks.n.resid_post    (B, T, C)      the residual stream after the block
    final_norm             (B, T, C)      the last residual stream, normalised for the output head
    logits                 (B, T, V)

``model.run_with_cache(idx)`` returns (logits, {name: tensor}); ``hooks(model, {name: fn})`` runs
``fn`` on that tensor during every forward pass inside the ``with`` block and uses what it returns.
"""

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch

from minilab.errors import LabError


@contextmanager
def hooks(model, fns: dict[str, Callable[[torch.Tensor], torch.Tensor]], edits: bool = True) -> Iterator[None]:
    """Inside the block, each named hook point's tensor x is replaced by fns[name](x).

    ``edits=False`` promises that the functions only look (they return x itself): the attention
    pattern is then computed on the side and the fused kernel still makes the output.
    """
    points = model.hook_points()
    for name in fns:
        if name not in points:
            raise LabError(f"no hook point named {name!r}; this model has {', '.join(points)}")
    saved = {name: (points[name].fn, points[name].edits) for name in fns}
    for name, fn in fns.items():
        point, before = points[name], points[name].fn
        # Hooks nest: an outer hook runs first, then ours on what it returned.
        point.fn = fn if before is None else (lambda x, fn=fn, before=before: fn(before(x)))
        point.edits = point.edits or edits
    try:
        yield
    finally:
        for name, (fn, was_editing) in saved.items():
            points[name].fn, points[name].edits = fn, was_editing


def zero_head(head: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """For ``blocks.n.attn.heads``: that head's output set to zero, as if it were removed."""

    def fn(z: torch.Tensor) -> torch.Tensor:  # (B, nh, T, hs)
        z = z.clone()
        z[:, head] = 0.0
        return z

    return fn


def replace_head(head: int, value: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """For ``blocks.n.attn.heads``: that head's output replaced by ``value`` (hs,), e.g. its mean."""

    def fn(z: torch.Tensor) -> torch.Tensor:  # (B, nh, T, hs)
        z = z.clone()
        z[:, head] = value.to(z.dtype)
        return z

    return fn


def replace_all(value: torch.Tensor | float) -> Callable[[torch.Tensor], torch.Tensor]:
    """Any hook point's tensor replaced by ``value`` at every position (0.0 removes it, a mean keeps its average)."""
    return lambda x: torch.zeros_like(x) + value
