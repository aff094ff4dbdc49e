"""StackedMuon: torch.optim.Muon's update, same-shaped matrices orthogonalised together, checkpoints interchangeable."""

import copy

import pytest
import torch

from minilab.training.muon import StackedMuon

# q/k/v, attention output, MLP in and out (tall, square, tall, wide), two layers each, and one odd shape
SHAPES = [(48, 16), (16, 16), (64, 16), (16, 64)] * 2 + [(24, 40)]


def _params(seed: int) -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(0.02 * torch.randn(*s, generator=g)) for s in SHAPES]


def _step(opt: torch.optim.Optimizer, params, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for p in params:
        p.grad = torch.randn(p.shape, generator=g)
    opt.step()


def _same_updates(ref, ours, start) -> None:
    """Each matrix moved the same way: within 1% of its largest move (bf16 iteration, rounded per kernel)."""
    for p, q, p0 in zip(ref, ours, start):
        moved = (p - p0).abs().max()
        assert moved > 1e-4  # it did move
        assert (q - p).abs().max() <= 0.01 * moved, (p.shape, (q - p).abs().max().item(), moved.item())


@pytest.mark.parametrize("kwargs", [dict(adjust_lr_fn="match_rms_adamw"), dict(nesterov=False, weight_decay=0.0)])
def test_stacked_muon_updates_as_torch_muon_does(kwargs):
    ref, ours = _params(0), _params(0)
    a = torch.optim.Muon(ref, lr=3e-3, **kwargs)
    b = StackedMuon(ours, lr=3e-3, **kwargs)
    for step in range(4):
        _step(a, ref, step)
        _step(b, ours, step)
    _same_updates(ref, ours, _params(0))


def test_stacked_muon_resumes_from_torch_muons_state():
    ref, ours = _params(1), _params(1)
    a = torch.optim.Muon(ref, lr=1e-2, adjust_lr_fn="match_rms_adamw")
    _step(a, ref, 0)
    with torch.no_grad():
        for p, q in zip(ref, ours):
            q.copy_(p)
    b = StackedMuon(ours, lr=1e-2, adjust_lr_fn="match_rms_adamw")
    b.load_state_dict(copy.deepcopy(a.state_dict()))  # as from a checkpoint written before StackedMuon
    _step(a, ref, 1)
    _step(b, ours, 1)
    _same_updates(ref, ours, _params(1))
    assert set(b.state_dict()["state"][0]) == {"momentum_buffer"}
