"""Characters or BPE? Train both for the same training time and compare validation loss per byte.

    python benchmarks/char_vs_bpe.py --data ../shared/data/tinyshakespeare.txt [--seconds 150] [--vocab_size 1024]

The text is split once by characters: the first 90% trains both models, the last 10% scores both.
Loss per token cannot compare them (a BPE token carries about 2.4 bytes of text, a character 1), so
the table also gives the loss per byte: all the nats over the validation text divided by its UTF-8
bytes.

Equal time on a shared machine: the trainer has no time budget, and other jobs on the CPU change a
step's time by 2x or more from minute to minute. So the two runs are interleaved, one training step
(Trainer.train_step: batch, forward, backward, AdamW) of each in turn, and each run stops when its
own steps add up to ``--seconds``: outside load slows both alike. The learning rate follows the
lab's schedule (linear warmup over the first 5%, cosine decay to lr/10) over each run's training
time instead of its steps, since the step count is not known in advance.
"""

import argparse
import math
import tempfile
import time
from pathlib import Path

import torch
from machine import describe

from minilab.model.config import ModelConfig
from minilab.training.config import TrainConfig
from minilab.training.evaluate import score_text
from minilab.training.optim import lr_at
from minilab.training.trainer import Trainer

SCHEDULE_POINTS = 1000  # the schedule's resolution: lr_at(progress x 1000, 1000, ...)


def make_trainer(train_file: Path, work: Path, name: str, args, **tok) -> Trainer:
    """A run on ``train_file``, built but not started: ``train_for`` drives its steps."""
    cfg = TrainConfig(
        data=str(train_file),
        dtype="fp32",  # the figures in docs/experiments.md are fp32
        epochs=1,
        steps_per_epoch=1,  # unused: fit() is not called
        batch_size=args.batch_size,
        lr=args.lr,
        val_fraction=0.0,  # the held-out text is scored separately, the same for both models
        sample_length=0,
        device="cpu",
        seed=args.seed,
        out_dir=str(work / name / "ckpt"),
        experiments_dir=str(work / name / "exp"),
        run_name=name,
        **tok,
    )
    model = ModelConfig(
        context_length=args.context_length,
        d_model=args.d_model,
        n_heads=args.n_heads,
        n_layers=args.n_layers,
        d_ff=args.d_ff,
        dropout=0.0,
    )
    return Trainer(cfg, model, log=lambda *_: None, progress=False)


def train_for(trainers: list[Trainer], seconds: float) -> list[tuple[int, float]]:
    """Step the trainers in turn until each has spent ``seconds`` in its own steps: [(steps, seconds)]."""
    spent, steps = [0.0] * len(trainers), [0] * len(trainers)
    while any(t < seconds for t in spent):
        for i, trainer in enumerate(trainers):
            if spent[i] >= seconds:
                continue
            cfg = trainer.cfg
            point = int(SCHEDULE_POINTS * spent[i] / seconds)
            lr = lr_at(point, SCHEDULE_POINTS, SCHEDULE_POINTS // 20, cfg.lr, cfg.lr * cfg.min_lr_ratio)
            t = time.perf_counter()
            trainer.train_step(lr)
            spent[i] += time.perf_counter() - t
            steps[i] += 1
    return list(zip(steps, spent))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--seconds", type=float, default=150.0, help="training time per model")
    p.add_argument("--vocab_size", type=int, default=1024)
    p.add_argument("--context_length", type=int, default=128)
    p.add_argument("--d_model", type=int, default=128)
    p.add_argument("--n_heads", type=int, default=4)
    p.add_argument("--n_layers", type=int, default=4)
    p.add_argument("--d_ff", type=int, default=512)
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    text = Path(args.data).read_text(encoding="utf-8")
    cut = int(len(text) * 0.9)
    val_text = text[cut:]
    print(describe("cpu", "fp32"))
    print(
        f"{args.threads} threads; "
        f"d_model {args.d_model}, {args.n_layers} layers, {args.n_heads} heads, d_ff {args.d_ff}, "
        f"context {args.context_length} tokens, batch {args.batch_size}, lr {args.lr}, dropout 0; "
        f"{args.seconds:.0f} s of training each, interleaved",
        flush=True,
    )
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        train_file = work / "train.txt"
        train_file.write_text(text[:cut], encoding="utf-8")
        kinds = [("char", {}), (f"bpe {args.vocab_size}", {"tokenizer": "bpe", "vocab_size": args.vocab_size})]
        trainers = [make_trainer(train_file, work, name.replace(" ", ""), args, **tok) for name, tok in kinds]
        for trainer in trainers:
            trainer.model.train()
        for (name, _), trainer, (steps, secs) in zip(kinds, trainers, train_for(trainers, args.seconds)):
            model, tokenizer = trainer.model.eval(), trainer.tokenizer
            loss, positions, n_bytes = score_text(model, tokenizer, val_text, fraction=1.0)
            per_byte = loss * positions / n_bytes
            rows.append(
                (name, tokenizer.vocab_size, model.num_params(), 1000 * secs / steps, steps, secs,
                 loss, per_byte, len(val_text.encode()) / (positions + 1))
            )  # fmt: skip
            print(f"{name}: {steps} steps in {secs:.0f} s of training", flush=True)
    print()
    print(
        "| tokenizer | vocab | parameters | ms/step | steps | training s | val loss / token | val loss / byte "
        "| bits / byte | bytes / token |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, vocab, params, ms, steps, secs, loss, per_byte, bpt in rows:
        print(
            f"| {name} | {vocab:,} | {params / 1e6:.2f} M | {ms:.0f} | {steps:,} | {secs:.0f} | {loss:.4f} "
            f"| {per_byte:.4f} | {per_byte / math.log(2):.4f} | {bpt:.2f} |"
        )


if __name__ == "__main__":
    main()
