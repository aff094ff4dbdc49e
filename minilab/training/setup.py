"""What a training run settles before its first step: finished settings, devices, wrapped model, resumed state.

``finish_config`` is the one place where the automatic settings are decided (batch size, steps per
epoch, warmup), with ``fit_context`` just before it (a tiny text's context): after them the Trainer
sees only numbers, and the checkpoint stores them so a resumed run continues with exactly these.
The rest builds what the loop calls: the devices and processes, the compiled and/or DDP-wrapped
model with its mixed precision, and the counters of a resumed run.
"""

import contextlib
import math
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from minilab.device import resolve_device
from minilab.errors import LabError
from minilab.model.config import ModelConfig
from minilab.training import distributed
from minilab.training.config import TrainConfig
from minilab.training.data import Splits
from minilab.training.optim import run_schedule
from minilab.training.smalltext import small_text_context

MIN_STEPS_PER_EPOCH = 50
DEFAULT_BATCH_SIZE = 32
MIN_AUTO_BATCH_SIZE = 8


def auto_batch_size(n_train: int, window: int) -> int:
    """32 sequences, or as many windows as the training text holds (at least 8) if that is fewer."""
    return max(MIN_AUTO_BATCH_SIZE, min(DEFAULT_BATCH_SIZE, math.ceil(n_train / window)))


def finish_config(cfg: TrainConfig, tokenizer, splits: Splits) -> TrainConfig:
    """``cfg`` with its automatic settings decided for this data; notes for the user go to ``splits.notes``.

    An epoch's steps come from ``batch_size`` alone: with --grad_accum N (or N processes) a step
    draws N times as many windows, so an auto-sized epoch covers the text about N times.
    """
    # Record the tokenizer used (a prepared dataset brings its own): the size asked for, else the size made.
    size = (cfg.vocab_size or tokenizer.vocab_size) if tokenizer.kind == "bpe" else None
    n_train, window = splits.train_tokens, splits.window
    batch_size = cfg.batch_size or auto_batch_size(n_train, window)
    if batch_size != (cfg.batch_size or DEFAULT_BATCH_SIZE):
        splits.notes.append(
            f"the training text holds only {n_train / window:.1f} windows of {window} tokens; "
            f"using batches of {batch_size}"
        )
    steps_per_epoch = cfg.steps_per_epoch or max(MIN_STEPS_PER_EPOCH, math.ceil(n_train / (batch_size * window)))
    cfg = replace(
        cfg, tokenizer=tokenizer.kind, vocab_size=size, batch_size=batch_size, steps_per_epoch=steps_per_epoch
    )
    # A run of known length stores its warmup; a budgeted one keeps -1, so that a resume with a
    # larger budget lays the warmup's share out over the new budget (optim.make_schedule).
    if not cfg.time_budget:
        cfg = replace(cfg, warmup_steps=run_schedule(cfg).warmup_steps)
    return cfg


def fit_context(model_cfg: ModelConfig, splits: Splits) -> ModelConfig:
    """A shorter context for a text that holds few windows of the default one, when nobody chose one.

    Decided with the other automatic settings, before the batch size (which follows the window);
    why and how much: minilab/training/smalltext.py and docs/small-texts.md.
    """
    n_train, asked = len(splits.train), model_cfg.context_length
    context = small_text_context(n_train, asked)
    if context == asked:
        return model_cfg
    splits.window = min(context, n_train - 1)
    splits.notes.append(
        f"the training text holds only {n_train / asked:.1f} windows of {asked} tokens; using a context of "
        f"{context} (--context_length chooses another)"
    )
    return replace(model_cfg, context_length=context)


def check_output_dirs(cfg: TrainConfig) -> tuple[Path, Path]:
    """--out_dir and --experiments_dir as paths, each either missing or a directory."""
    out_dir, exp_dir = Path(cfg.out_dir), Path(cfg.experiments_dir)
    for d, flag in ((out_dir, "--out_dir"), (exp_dir, "--experiments_dir")):
        if d.exists() and not d.is_dir():
            raise LabError(f"{flag} {str(d)!r} is a file, not a directory")
    return out_dir, exp_dir


def check_run_dir(run_dir: Path, resumed: bool) -> Path:
    """The run's experiment folder: new (or empty) for a new run; a resumed run continues its own."""
    if run_dir.exists() and not run_dir.is_dir():
        raise LabError(f"experiment path {str(run_dir)!r} is a file, not a directory")
    if not resumed and run_dir.exists() and any(run_dir.iterdir()):
        raise LabError(f"experiment folder {str(run_dir)!r} already holds a run; choose another --run_name")
    return run_dir


def setup_devices(name: str) -> tuple[torch.device, distributed.DistInfo]:
    """This process's device and its place among the processes torchrun started (rank 0 of 1 without it)."""
    device = resolve_device(name)
    dist = distributed.setup(device)
    return distributed.local_device(device, dist), dist


@dataclass
class Wrapped:
    """The module the training step calls, and how it runs: DDP, mixed precision and its gradient scaler."""

    module: torch.nn.Module  # the model itself, or compiled and/or DistributedDataParallel around it
    ddp: torch.nn.Module | None  # the DDP wrapper (for no_sync), if several processes train
    amp_dtype: torch.dtype | None  # autocast's dtype; None = full precision
    scaler: torch.amp.GradScaler  # enabled only for fp16, whose small gradients would underflow
    compiled: bool = False  # the blocks run through torch.compile in training (see compile_blocks)
    note: str | None = None  # for the user: why --compile was not honoured

    def eager(self):
        """Evaluation and sampling run the blocks uncompiled: other shapes, no_grad and caches would recompile."""
        return torch.compiler.set_stance("force_eager") if self.compiled else contextlib.nullcontext()

    def no_sync(self, last: bool):
        """DDP averages gradients across ranks on backward; only the last micro-batch of a step needs to."""
        return contextlib.nullcontext() if last or self.ddp is None else self.ddp.no_sync()

    def autocast(self, device: torch.device):
        return torch.autocast(device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None)


def wrap_for_training(model: torch.nn.Module, device: torch.device, dist, compile_: bool, precision) -> Wrapped:
    """Compile and/or DDP-wrap ``model``; autocast as ``precision`` (a ``minilab.precision.Precision``) says."""
    ddp = None
    if device.type == "cpu" and precision.autocast_dtype is not None:
        # PyTorch's fused attention runs its CPU forward pass faster in bf16 and its backward pass
        # faster in fp32: take each (the seed-config step on an AMX Xeon: 2.2x fp32's speed, against
        # 2.0x with the whole attention in fp32 and 1.7x with all of it in bf16).
        model.set_attention_fp32_backward(True)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # TF32 tensor cores for any fp32 matmul left
        torch.backends.cudnn.allow_tf32 = True
    missing = compiler_missing(device) if compile_ else None
    if compile_ and not missing:
        compile_blocks(model)
    if dist.enabled:
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.index] if device.type == "cuda" else None
        model = ddp = DistributedDataParallel(model, device_ids=ids)
    amp_dtype = precision.autocast_dtype
    # Only fp16 needs loss scaling, and precision.py gives fp16 to CUDA only: never a scaler elsewhere.
    scaler = torch.amp.GradScaler("cuda", enabled=precision.grad_scaler and device.type == "cuda")
    note = f"--compile needs {missing}; training uncompiled" if missing else None
    return Wrapped(model, ddp, amp_dtype, scaler, compiled=compile_ and not missing, note=note)


def compile_blocks(model: torch.nn.Module) -> None:
    """torch.compile each transformer block in place (its weights keep their names in checkpoints).

    The blocks share one compiled graph, so compiling costs about what one block does: measured on
    a 4-layer model (Intel Xeon, 1 thread), 17 s with an empty compile cache and 3 s with a warm one,
    against 30 s and 5 s for the whole model, and the step is as fast.
    """
    for block in model.blocks:
        block.compile()


def compiler_missing(device: torch.device) -> str | None:
    """What torch.compile lacks to build kernels for ``device`` (a C++ compiler, on a CPU), or None if nothing."""
    if device.type != "cpu":
        return None
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler

        get_cpp_compiler()  # inductor's own search: $CXX, else g++ on the PATH
    except Exception:  # InvalidCxxCompiler, or an inductor too old or too new to have this function
        return "a C++ compiler (none found: install g++ or set CXX)"
    return None


@dataclass
class Progress:
    """Where a run stands: the counters a checkpoint saves and a resume restores."""

    epoch: int = 0  # completed epochs
    step: int = 0  # optimizer steps taken
    epoch_loss_sum: float = 0.0  # training losses of the epoch in progress, for its mean
    epoch_steps: int = 0  # steps done in the epoch in progress
    best_val: float = math.inf
    tokens_seen: int = 0


def restore(ckpt: dict, model, optimizers, batch_gen: torch.Generator, device, steps_per_epoch: int) -> Progress:
    """Load a checkpoint's weights, optimizer states and random states; returns its counters."""
    try:
        model.load_state_dict(ckpt["model_state"])
        optimizers[0].load_state_dict(ckpt["optimizer_state"])
        if len(optimizers) > 1:
            optimizers[1].load_state_dict(ckpt["muon_state"])
    except (RuntimeError, KeyError, ValueError) as e:
        raise LabError(
            f"cannot resume: the checkpoint's state does not fit its config ({str(e).splitlines()[0][:160]})"
        ) from None
    epoch, step = int(ckpt["epoch"]), int(ckpt["step"])
    rng = ckpt["rng"]
    torch.set_rng_state(rng["torch"])
    batch_gen.set_state(rng["batch"])
    if device.type == "cuda" and rng.get("cuda") is not None:
        torch.cuda.set_rng_state(rng["cuda"], device)
    return Progress(
        epoch=epoch,
        step=step,
        epoch_loss_sum=float(ckpt.get("epoch_loss_sum", 0.0)),
        # Checkpoints from before time budgets: every epoch was full, so this is where the step stands.
        epoch_steps=int(ckpt.get("epoch_steps", step - epoch * steps_per_epoch)),
        best_val=float(ckpt.get("best_val_loss", math.inf)),
        tokens_seen=int((ckpt.get("run") or {}).get("tokens_seen", 0)),
    )
