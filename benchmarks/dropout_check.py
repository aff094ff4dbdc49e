"""Does leaving attention-weight dropout out cost regularisation? Equal-step comparison on a real text.

    python benchmarks/dropout_check.py --data ../shared/data/tinyshakespeare.txt [--steps 400]

The lab applies dropout to the embeddings and to each residual branch (plain nn.Dropout), but not to
the attention weights, so PyTorch keeps its fused attention kernel. This trains the seed model twice
from the same seed and batches: once as the lab does, once with dropout on the attention weights as
well (scaled_dot_product_attention's dropout_p, which forces the slower math path), and prints
ms/step and the validation loss of each after the same number of steps.
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from machine import describe

import minilab.model.gpt as model_module
from minilab.model.config import ModelConfig
from minilab.training.config import TrainConfig
from minilab.training.evaluate import evaluate_loss
from minilab.training.trainer import Trainer


def run(data: str, steps: int, batch: int, attn_dropout: float, tmp: Path):
    fused = F.scaled_dot_product_attention

    def sdpa(q, k, v, *a, **kw):  # dropout on the attention weights while training, as nanoGPT does
        return fused(q, k, v, *a, dropout_p=attn_dropout if torch.is_grad_enabled() else 0.0, **kw)

    model_module.F.scaled_dot_product_attention = sdpa
    try:
        cfg = TrainConfig(
            data=data,
            dtype="fp32",  # the figures in docs/experiments.md are fp32
            batch_size=batch,
            steps_per_epoch=steps,
            epochs=1,
            device="cpu",
            out_dir=str(tmp / "ck"),
            experiments_dir=str(tmp / "exp"),
            run_name=f"a{attn_dropout}",
            sample_length=0,
        )
        trainer = Trainer(cfg, ModelConfig(dropout=0.1), log=lambda *_: None, progress=False)
        trainer.model.train()
        times = []
        for step in range(steps):
            t = time.perf_counter()
            trainer.train_step(
                trainer.cfg.lr
                if step >= trainer.cfg.warmup_steps
                else trainer.cfg.lr * (step + 1) / trainer.cfg.warmup_steps
            )
            times.append(time.perf_counter() - t)
        val = evaluate_loss(trainer.model, trainer.splits.val[:100_000], 256, 32)
    finally:
        model_module.F.scaled_dot_product_attention = fused
    return statistics.median(times) * 1e3, val


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--batch_size", type=int, default=16)
    args = p.parse_args()
    print(describe("cpu", "fp32"))
    print(
        f"seed config, dropout 0.1, batch {args.batch_size} x 256, {args.steps} steps, lr 1e-3 after warmup, "
        f"val loss on the first 100k validation tokens"
    )
    print("| dropout on | ms/step | val loss |")
    print("| --- | ---: | ---: |")
    with tempfile.TemporaryDirectory() as tmp:
        for label, attn in (("embeddings + residual branches (the lab)", 0.0), ("the same + attention weights", 0.1)):
            ms, val = run(args.data, args.steps, args.batch_size, attn, Path(tmp) / str(attn))
            print(f"| {label} | {ms:,.0f} | {val:.4f} |", flush=True)


if __name__ == "__main__":
    main()
