"""Run under torchrun by tests/test_distributed.py: train a tiny model, then dump what this rank holds and reports."""

import json
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from minilab.model.config import ModelConfig  # noqa: E402
from minilab.training.config import TrainConfig  # noqa: E402
from minilab.training.trainer import Trainer  # noqa: E402

out = Path(sys.argv[1])
fail_rank = int(sys.argv[2]) if len(sys.argv) > 2 else -1
rank = int(os.environ.get("RANK", 0))
cfg = TrainConfig(
    data=str(Path(__file__).resolve().parents[2] / "example_data" / "ai_intro.txt"),
    epochs=2,
    batch_size=2,
    steps_per_epoch=3,
    device="cpu",
    out_dir=str(out / "checkpoints"),
    experiments_dir=str(out / "experiments"),
    run_name="ddp",
    sample_length=0,
    lr=3e-3,
)
model_cfg = ModelConfig(context_length=32, d_model=32, n_heads=4, n_layers=2, d_ff=64, dropout=0.0)
trainer = Trainer(cfg, model_cfg, log=lambda *_: None, progress=False)
if rank == fail_rank:
    real = trainer.train_step

    def failing(lr):
        if trainer.step == 2:
            raise RuntimeError(f"rank {rank} fails on purpose")
        return real(lr)

    trainer.train_step = failing
result = trainer.fit()
torch.save(trainer.model.state_dict(), out / f"rank{rank}.pt")
report = {"best_val_loss": result.best_val_loss, "final_val_loss": result.final_val_loss}
(out / f"rank{rank}.json").write_text(json.dumps(report))
