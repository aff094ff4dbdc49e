"""What a training run writes: checkpoints (and what they hold) and the experiment log of each epoch.

A mixin of ``Trainer`` (minilab/training/trainer.py), kept apart so that train.py reads as the loop alone.
Only rank 0 of a multi-process run writes; a failed write stops training with a clear message.
"""

import math

import torch

from minilab.checkpoint import save_checkpoint
from minilab.errors import LabError
from minilab.generation.decode import generate
from minilab.tokenizers.char import start_ids
from minilab.tokenizers.utf8 import generated_text


class RunFiles:
    """Checkpoint and log writing for ``Trainer``; uses its model, optimizer, config and counters."""

    def checkpoint_payload(self) -> dict:
        """Everything needed to rebuild the model and continue training exactly where it stopped."""
        return {
            "model_state": self.model.state_dict(),
            "model_config": self.model_cfg.to_dict(),
            "tokenizer": self.tokenizer.to_dict(),
            "optimizer_state": self.optimizers[0].state_dict(),  # AdamW's, as in checkpoints before Muon
            **({"muon_state": self.optimizers[1].state_dict()} if len(self.optimizers) > 1 else {}),
            "scheduler": {
                "kind": f"warmup_{self.cfg.schedule}",
                "step": self.step,
                "total_steps": self.cfg.epochs * self.cfg.steps_per_epoch,
                "warmup_steps": self.cfg.warmup_steps,
                "lr": self.cfg.lr,
                "min_lr": self.cfg.lr * self.cfg.min_lr_ratio,
            },
            "epoch": self.epoch,
            "step": self.step,
            "epoch_loss_sum": self.epoch_loss_sum,
            "epoch_steps": self.epoch_steps,
            "best_val_loss": self.best_val,
            "train_args": self.cfg.to_dict(),
            "rng": {
                "torch": torch.get_rng_state(),
                "batch": self.batch_gen.get_state(),
                "cuda": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None,
            },
            "run": {
                "name": self.run_name,
                "wall_time": self.clock.wall(),
                "tokens_seen": self.tokens_seen,
                "val_prefix_tokens": getattr(
                    self, "val_prefix", 0
                ),  # best_val_loss is of this many val tokens (0: all)
            },
        }

    def _save(self, names: list[str]) -> None:
        """Write the current state to each of ``names`` in the checkpoint directory (atomically)."""
        self._write(lambda: save_checkpoint([self.out_dir / name for name in names], self.checkpoint_payload()))

    def _write(self, fn) -> None:
        """Run a file write (rank 0 only); a failure (disk full, permissions) stops training with a clear message."""
        if not self.dist.is_main:
            return
        try:
            fn()
        except OSError as e:
            where = f" {e.filename}" if e.filename else ""
            raise LabError(
                f"could not write{where}: {e.strerror or e}; training stopped at step {self.step}. "
                f"Files already on disk are intact (every write is atomic)"
            ) from None

    def _prune_epoch_checkpoints(self) -> None:
        """With --keep_last K, delete per-epoch checkpoints older than the newest K (best and latest stay)."""
        if self.cfg.keep_last:
            for old in range(1, self.epoch - self.cfg.keep_last + 1):
                (self.out_dir / f"checkpoint_epoch_{old}.pt").unlink(missing_ok=True)

    def _write_epoch_logs(self) -> None:
        cfg, log = self.cfg, self.runlog
        if cfg.sample_length:
            log.add_sample(self.epoch, self.step, self.sample(cfg.sample_length, seed=cfg.seed + self.epoch))
        log.plot(f"{self.run_name}: {self.model.num_params() / 1e6:.2f}M parameters")
        self._write_summary()

    def _write_summary(self) -> None:
        """summary.json: the run's figures so far. With --eval_tokens below the validation split, the
        in-training figures are of its first tokens and say so in their keys (``..._prefix``); the
        whole split's ``final_val_loss`` is filled once the final evaluation has run."""
        finite = lambda v: None if not math.isfinite(v) else v  # noqa: E731  (JSON has no inf/nan)
        if self.val_prefix:
            val = {
                "final_val_loss": finite(getattr(self, "final_val", math.nan)),
                "best_val_loss_prefix": finite(self.best_val),
                "final_val_loss_prefix": finite(self.last_val),
                "val_prefix_tokens": self.val_prefix,
            }
        else:
            val = {"best_val_loss": finite(self.best_val), "final_val_loss": finite(self.last_val)}
        self.runlog.write_json(
            "summary.json",
            {
                "run": self.run_name,
                "epochs": self.epoch,
                "steps": self.step,
                "parameters": self.model.num_params(),
                **val,
                "val_split_tokens": len(self.splits.val),
                "final_train_loss": finite(self.last_train),
                "tokens_seen": self.tokens_seen,
                "wall_time_sec": round(self.clock.wall(), 3),
                "tokens_per_sec": round(self._tokens_per_sec(), 1),
                "device": str(self.device),
                "checkpoint_dir": str(self.out_dir),
            },
        )

    def sample(self, length: int, seed: int, temperature: float = 0.8) -> str:
        """A short generation from a newline, with its own generator so training randomness is untouched."""
        idx = torch.tensor([start_ids(self.tokenizer)], device=self.device)
        gen = torch.Generator(device=self.device).manual_seed(seed)
        ids = [int(t) for t in generate(self.model, idx, length, temperature=temperature, generator=gen)]
        self.model.train()
        return generated_text(self.tokenizer, ids)  # valid text, whatever bytes an early model emits
