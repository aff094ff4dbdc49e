"""The optimizers and the learning-rate schedule.

Optimizers: AdamW for everything (the seed's), or Muon for the blocks' weight matrices with AdamW
for the rest. Schedules: every one starts with a linear warmup, then the lr follows one of three
shapes over the rest of the run ('progress' goes from 0 to 1): cosine decay, warmup-stable-decay,
or constant.
"""

import math
from dataclasses import dataclass

import torch

from minilab.precision import fused_adamw
from minilab.training.config import TrainConfig
from minilab.training.muon import StackedMuon

WSD_DECAY_FRACTION = 0.2  # wsd decays linearly over the last 20% of the run
# Why warm up at all: at step 0 AdamW's second-moment estimates rest on a single gradient, so its
# first updates are as large as the lr allows in whatever direction that noisy gradient points; a
# short ramp lets the estimates settle before the steps get large (Liu et al. 2020, "On the
# Variance of the Adaptive Learning Rate and Beyond"). Auto warmup (warmup_steps = -1): the first
# 10% of the run, at most 100 steps. A run with a time budget does not know its step count in
# advance, so there it is 10% of the budget's time or 100 steps, whichever ends first.
AUTO_WARMUP_SHARE = 0.1
AUTO_WARMUP_MAX_STEPS = 100


def schedule_factor(schedule: str, progress: float) -> float:
    """Where the lr sits between its peak (1) and its floor (0), at ``progress`` in [0, 1] after warmup.

    - 'cosine': half a cosine from the peak down to the floor (the seed's, GPT-2/3's).
    - 'wsd' (warmup-stable-decay, MiniCPM 2024): hold the peak, then fall linearly to the floor over
      the last 20%. The run does not need to know its length until the decay starts, and most of it
      is spent at a high lr, which often ends a little lower than cosine.
    - 'constant': stay at the peak (a baseline; no annealing at the end).
    """
    progress = min(1.0, max(0.0, progress))
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    if schedule == "wsd":
        return min(1.0, (1.0 - progress) / WSD_DECAY_FRACTION)
    if schedule == "constant":
        return 1.0
    raise ValueError(f"unknown schedule {schedule!r}")


@dataclass(frozen=True)
class Schedule:
    """A run's finished lr schedule: every value decided (``make_schedule``), no 'auto' left."""

    lr: float  # the peak
    min_lr: float  # the floor the decay ends at
    kind: str  # 'cosine', 'wsd' or 'constant' (schedule_factor)
    total_steps: int  # the run's planned steps (unused when a time budget passes progress)
    warmup_steps: int
    warmup_share: float = 0.0  # > 0: warmup also ends once this share of the time budget is spent

    def lr_at(self, step: int, progress: float | None = None) -> float:
        """The lr of optimizer step ``step`` (0-based): a linear warmup from lr/warmup_steps, then the schedule.

        ``progress`` (0..1) replaces the step count after warmup: a run with a time budget passes the
        share of the budget spent, so the schedule is laid out over wall-clock time.
        """
        if step < self.warmup_steps:
            warm = (step + 1) / self.warmup_steps
            if self.warmup_share and progress is not None:
                warm = max(warm, progress / self.warmup_share)  # whichever ends first: the steps or the time
            if warm < 1 or not self.warmup_share:
                return self.lr * warm
        if progress is None:
            progress = (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps)
        return self.min_lr + schedule_factor(self.kind, progress) * (self.lr - self.min_lr)


def make_schedule(
    lr: float, min_lr: float, kind: str, total_steps: int, warmup_steps: int, budgeted: bool = False
) -> Schedule:
    """The schedule of a run of ``total_steps`` (or of a time budget): the one place auto warmup (-1) is decided."""
    if warmup_steps >= 0:
        return Schedule(lr, min_lr, kind, total_steps, warmup_steps)
    if budgeted:
        return Schedule(lr, min_lr, kind, total_steps, AUTO_WARMUP_MAX_STEPS, AUTO_WARMUP_SHARE)
    return Schedule(
        lr, min_lr, kind, total_steps, min(AUTO_WARMUP_MAX_STEPS, total_steps // round(1 / AUTO_WARMUP_SHARE))
    )


def lr_at(
    step: int,
    total_steps: int,
    warmup_steps: int,
    lr: float,
    min_lr: float,
    schedule: str = "cosine",
    progress: float | None = None,
) -> float:
    """``Schedule.lr_at`` in one call; ``warmup_steps`` -1 is the auto warmup (``make_schedule``)."""
    made = make_schedule(lr, min_lr, schedule, total_steps, warmup_steps, budgeted=progress is not None)
    return made.lr_at(step, progress)


def run_schedule(cfg: TrainConfig) -> Schedule:
    """The schedule of a run whose batch size and steps per epoch are settled (training/setup.py)."""
    total = cfg.epochs * cfg.steps_per_epoch
    return make_schedule(cfg.lr, cfg.lr * cfg.min_lr_ratio, cfg.schedule, total, cfg.warmup_steps, cfg.time_budget > 0)


def is_hidden_matrix(name: str, p: torch.Tensor) -> bool:
    """The weight matrices inside the blocks (q/k/v, attention output, MLP in and out): Muon's share."""
    return name.startswith("blocks.") and p.dim() == 2


def make_optimizers(model: torch.nn.Module, cfg: TrainConfig, device: torch.device) -> list[torch.optim.Optimizer]:
    """[AdamW] or, with ``cfg.optimizer == 'muon'``, [AdamW, Muon]; the trainer steps each of them.

    AdamW decays the weight matrices (embeddings, head) but not biases or norm gains. Muon (Jordan
    et al. 2024) replaces each hidden matrix's update by the nearest orthogonal matrix (a few
    Newton-Schulz iterations on the momentum), so every direction of the matrix learns at the same
    rate; it needs 2D weights, which is why embeddings, the head, norms and biases stay with AdamW.
    Its update is rescaled to AdamW's size ('match_rms_adamw'), so the same --lr and
    --weight_decay serve both.
    """
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    muon = [p for n, p in named if cfg.optimizer == "muon" and is_hidden_matrix(n, p)]
    taken = {id(p) for p in muon}
    rest = [p for _, p in named if id(p) not in taken]
    decay = [p for p in rest if p.dim() >= 2]
    no_decay = [p for p in rest if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    adamw = torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=fused_adamw(device.type))
    if not muon:
        return [adamw]
    return [
        adamw,
        # torch.optim.Muon's update, with same-shaped matrices orthogonalised together (training/muon.py)
        StackedMuon(muon, lr=cfg.lr, weight_decay=cfg.weight_decay, adjust_lr_fn="match_rms_adamw"),
    ]
