"""The optimizers and the learning-rate schedule.

Optimizers: AdamW for everything (the seed's), or Muon for the blocks' weight matrices with AdamW
for the rest. Schedules: every one starts with a linear warmup, then the lr follows one of three
shapes over the rest of the run ('progress' goes from 0 to 1): cosine decay, warmup-stable-decay,
or constant.
"""

import math

import torch

from minilab.training.config import TrainConfig

WSD_DECAY_FRACTION = 0.2  # wsd decays linearly over the last 20% of the run
# Auto warmup (warmup_steps = -1): the first 10% of the run, at most 100 steps. A run with a time
# budget does not know its step count in advance, so there the 10% is of the budget's time.
AUTO_WARMUP_SHARE = 0.1
AUTO_WARMUP_MAX_STEPS = 100


def auto_warmup_steps(total_steps: int) -> int:
    """The auto warmup of a run of known length: 10% of its steps, at most 100."""
    return min(AUTO_WARMUP_MAX_STEPS, total_steps // 10)


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


def lr_at(
    step: int,
    total_steps: int,
    warmup_steps: int,
    lr: float,
    min_lr: float,
    schedule: str = "cosine",
    progress: float | None = None,
) -> float:
    """The lr of optimizer step ``step`` (0-based): linear warmup from lr/warmup to lr, then the schedule.

    ``progress`` (0..1) overrides the step count after warmup: a run with a time budget passes the
    share of the budget already spent, so the schedule is laid out over wall-clock time.
    ``warmup_steps`` -1 is the auto warmup: 10% of the run (of ``progress`` when given, else of
    ``total_steps``) or 100 steps, whichever ends first.
    """
    if warmup_steps < 0:
        if progress is None:
            warmup_steps = auto_warmup_steps(total_steps)
        else:
            warm = max((step + 1) / AUTO_WARMUP_MAX_STEPS, progress / AUTO_WARMUP_SHARE)
            if warm < 1:
                return lr * warm
            warmup_steps = 0
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    if progress is None:
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return min_lr + schedule_factor(schedule, progress) * (lr - min_lr)


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
    adamw = torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=device.type == "cuda")
    if not muon:
        return [adamw]
    return [
        adamw,
        torch.optim.Muon(muon, lr=cfg.lr, weight_decay=cfg.weight_decay, adjust_lr_fn="match_rms_adamw"),
    ]
