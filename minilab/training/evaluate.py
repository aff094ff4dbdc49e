"""Scoring a model on held-out text: mean cross-entropy over every position, deterministically."""

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

from minilab.errors import LabError


@torch.no_grad()
def evaluate_loss(model, tokens: torch.Tensor, window: int, batch_size: int = 32, device=None) -> float:
    """Mean next-token cross-entropy over all of ``tokens``, in consecutive windows of ``window`` tokens.

    Every token after the first is predicted exactly once, so the result does not depend on any
    random draw. Returns nan if there is nothing to score.
    """
    device = device or next(model.parameters()).device
    n = len(tokens) - 1  # positions that have a target
    window = min(window, n)
    if window < 1:
        return math.nan
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    n_full = n // window
    # Full windows in batches: inputs tokens[i*W : (i+1)*W], targets shifted by one.
    full = tokens[: n_full * window + 1]
    xs = full[:-1].view(n_full, window)  # (N, W)
    ys = full[1:].view(n_full, window)  # (N, W)
    for i in range(0, n_full, batch_size):
        x, y = xs[i : i + batch_size].to(device), ys[i : i + batch_size].to(device)
        logits, _ = model(x)
        total += F.cross_entropy(logits.flatten(0, 1).float(), y.flatten(), reduction="sum").item()
        count += y.numel()
    rest = n - n_full * window
    if rest:  # the tail shorter than a window
        x = tokens[n_full * window : n].view(1, -1).to(device)
        y = tokens[n_full * window + 1 : n + 1].view(1, -1).to(device)
        logits, _ = model(x)
        total += F.cross_entropy(logits.flatten(0, 1).float(), y.flatten(), reduction="sum").item()
        count += y.numel()
    model.train(was_training)
    return total / count


class Score(NamedTuple):
    """What ``score_text`` measures."""

    loss: float  # mean cross-entropy, nats per predicted token
    positions: int  # tokens predicted
    n_bytes: int  # UTF-8 bytes of the predicted tokens: per byte, tokenizers of any kind compare

    @property
    def bits_per_byte(self) -> float:
        return self.loss * self.positions / math.log(2) / self.n_bytes


def score_text(model, tokenizer, text: str, fraction: float = 0.1, batch_size: int = 32) -> Score:
    """Loss over the last ``fraction`` of ``text``'s tokens (the validation split; 1 = all), in context windows."""
    ids = tokenizer.encode(text)
    if len(ids) < 2:
        raise LabError(f"the text has {len(ids)} token(s); at least 2 are needed to score a prediction")
    scored = ids[len(ids) - max(2, int(len(ids) * fraction)) :]
    loss = evaluate_loss(model, torch.tensor(scored, dtype=torch.long), model.cfg.context_length, batch_size)
    return Score(loss, len(scored) - 1, len(tokenizer.decode_bytes(scored[1:])))
