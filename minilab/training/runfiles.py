"""What a training run writes: checkpoints and the experiment folder (metrics, plot, samples, summary).

The Trainer (minilab/training/trainer.py) hands every value in: this class knows the run's folders
and nothing of its model or loop. Only rank 0 of a multi-process run writes (``writes``); a failed
write stops training with a clear message, and earlier files stay intact.
"""

import math
from pathlib import Path

import torch

from minilab.checkpoint import save_checkpoint
from minilab.errors import LabError
from minilab.generation.decode import generate
from minilab.generation.sampling import SamplingConfig
from minilab.tokenizers.char import start_ids
from minilab.tokenizers.utf8 import generated_text
from minilab.training.runlog import RunLog
from minilab.training.tblog import TensorBoardLog, open_tensorboard

SAMPLE_QUESTIONS = 3  # samples.txt of a run on conversations: greedy answers to the first validation questions


class RunFiles:
    """The checkpoint folder ``out_dir`` and the experiment folder ``run_dir`` of one run."""

    def __init__(self, out_dir: Path, run_dir: Path, writes: bool = True):
        self.out_dir, self.run_dir, self.writes = out_dir, run_dir, writes
        self.runlog: RunLog | None = None
        self.tb = TensorBoardLog()  # does nothing unless open(tensorboard=True) finds the package

    def open(self, resume_step: int | None, config: dict, tensorboard: bool, log=print) -> None:
        """Create both folders (continuing the run's log after ``resume_step``) and write config.json."""
        if not self.writes:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        for stale in self.out_dir.glob(".*.pt.*.tmp"):  # left by a process killed mid-write
            stale.unlink(missing_ok=True)
        self.runlog = RunLog(self.run_dir, resume_step=resume_step)
        if tensorboard:
            self.tb = open_tensorboard(self.run_dir, log)
        self.runlog.write_json("config.json", config)

    def close(self) -> None:
        self.tb.close()

    def write(self, fn, step: int) -> None:
        """Run a file write (rank 0 only); a failure (disk full, permissions) stops training with a clear message."""
        if not self.writes:
            return
        try:
            fn()
        except OSError as e:
            where = f" {e.filename}" if e.filename else ""
            raise LabError(
                f"could not write{where}: {e.strerror or e}; training stopped at step {step}. "
                f"Files already on disk are intact (every write is atomic)"
            ) from None

    def save(self, names: list[str], payload, step: int) -> None:
        """Write ``payload()`` (built only where it is written) to each of ``names`` in out_dir, atomically."""
        self.write(lambda: save_checkpoint([self.out_dir / name for name in names], payload()), step)

    def log_step(self, row: dict) -> None:
        """One optimizer step's metrics row (runlog.METRIC_FIELDS) to metrics.csv and TensorBoard."""
        self.write(lambda: self.runlog.log_step(row), row["step"])
        self.tb.step(row)

    def log_val(self, step: int, val_loss: float, wall_time: float) -> None:
        self.write(lambda: self.runlog.set_val(val_loss, wall_time), step)
        self.tb.val(step, val_loss)

    def prune(self, epoch: int, keep_last: int) -> None:
        """With --keep_last K, delete per-epoch checkpoints older than the newest K (best and latest stay)."""
        if keep_last and self.writes:
            for old in range(1, epoch - keep_last + 1):
                (self.out_dir / f"checkpoint_epoch_{old}.pt").unlink(missing_ok=True)

    def end_epoch(self, summary: dict, sample, title: str) -> None:
        """After an epoch: a sample (``sample()`` is None when off) into samples.txt, loss.png, summary.json."""

        def write():
            text = sample()
            if text is not None:
                self.runlog.add_sample(summary["epochs"], summary["steps"], text)
            self.runlog.plot(title)
            self.runlog.write_json("summary.json", _finite(summary))

        self.write(write, summary["steps"])

    def write_summary(self, summary: dict) -> None:
        """summary.json alone: after the run's final evaluation."""
        self.write(lambda: self.runlog.write_json("summary.json", _finite(summary)), summary["steps"])


def _finite(summary: dict) -> dict:
    """JSON has no inf/nan: those values become null."""
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in summary.items()}


def sample_text(model, tokenizer, device: torch.device, length: int, seed: int, temperature: float) -> str:
    """A short generation from a newline, with its own generator so training randomness is untouched."""
    idx = torch.tensor([start_ids(tokenizer)], device=device)
    gen = torch.Generator(device=device).manual_seed(seed)
    ids = [int(t) for t in generate(model, idx, length, temperature=temperature, generator=gen)]
    model.train()
    return generated_text(tokenizer, ids)  # valid text, whatever bytes an early model emits


def epoch_sample(model, tokenizer, device: torch.device, cfg, epoch: int, conversations=None) -> str | None:
    """samples.txt after an epoch: text from a newline, or on conversations greedy answers to the first
    validation questions; None with --sample_length 0."""
    if not cfg.sample_length:
        return None
    if conversations is not None and conversations.val_conversations:
        from minilab.training.score import sample_answers

        text = sample_answers(model, tokenizer, conversations.val_conversations[:SAMPLE_QUESTIONS], cfg.sample_length)
        model.train()
        return text
    return sample_text(model, tokenizer, device, cfg.sample_length, cfg.seed + epoch, SamplingConfig.temperature)


def run_config(model, model_cfg, cfg, tokenizer, device, precision, conversations=None) -> dict:
    """config.json of a run: the settings that made it, its vocabulary, size, device and resolved dtype."""
    config = {
        "model": model_cfg.to_dict(),
        "train": cfg.to_dict(),
        "tokenizer": tokenizer.to_dict(),
        "parameters": model.num_params(),
        "device": str(device),
        "dtype": precision.name,  # what --dtype resolved to on this machine
    }
    if conversations is not None:
        config["conversations"] = conversations.summary()
    return config


def checkpoint_payload(
    model, model_cfg, tokenizer, optimizers, batch_gen: torch.Generator, device: torch.device, cfg, state, run: dict
) -> dict:
    """What a checkpoint holds: weights, configs, vocabulary, optimizer and random states, counters (``state``)."""
    return {
        "model_state": model.state_dict(),
        "model_config": model_cfg.to_dict(),
        "tokenizer": tokenizer.to_dict(),
        "optimizer_state": optimizers[0].state_dict(),  # AdamW's, as in checkpoints before Muon
        **({"muon_state": optimizers[1].state_dict()} if len(optimizers) > 1 else {}),
        "scheduler": {
            "kind": f"warmup_{cfg.schedule}",
            "step": state.step,
            "total_steps": cfg.epochs * cfg.steps_per_epoch,
            "warmup_steps": cfg.warmup_steps,
            "lr": cfg.lr,
            "min_lr": cfg.lr * cfg.min_lr_ratio,
        },
        "epoch": state.epoch,
        "step": state.step,
        "epoch_loss_sum": state.epoch_loss_sum,
        "epoch_steps": state.epoch_steps,
        "best_val_loss": state.best_val,
        "train_args": cfg.to_dict(),
        "rng": {
            "torch": torch.get_rng_state(),
            "batch": batch_gen.get_state(),
            "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        },
        "run": run,  # name, wall_time (all sessions), tokens_seen
    }
