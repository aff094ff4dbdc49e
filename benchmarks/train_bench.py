"""Training throughput: ms/step, tokens/s and MFU against this machine's measured peak, per --dtype side by side.

    python benchmarks/train_bench.py [--device cpu] [--steps 10] [--dtype fp32,auto] [--dropout 0.1,0.0]
    python benchmarks/train_bench.py --preset shakespeare-cpu --dtype fp32,auto,bf16 --dropout 0.0
    python benchmarks/train_bench.py --device cuda --preset gpt2 --compile     # on a GPU

Each row runs the lab's own training step (Trainer.train_step: batch drawing, forward, backward,
clipping, the optimizer) on random text. The dtypes of one dropout are stepped in turn, one step
each round (so that a busy machine slows them alike), and each reports the median of --steps
steps after 3 warm-up steps, its speed against the fp32 row, and its MFU against the measured
peak of the format its products run in (benchmarks/machine.py prints the machine and the peaks).
"""

import argparse
import random
import statistics
import string
import tempfile
import time
from pathlib import Path

import torch
from machine import header, peak

from minilab.app.settings import PRESETS as LAB_PRESETS
from minilab.app.settings import resolve_settings
from minilab.model.config import ModelConfig
from minilab.model.flops import flops_per_token
from minilab.training.config import TrainConfig
from minilab.training.trainer import Trainer

SHAPES = {
    "seed": dict(context_length=256, d_model=256, n_heads=8, n_layers=4, d_ff=1024),
    "gpt2": dict(context_length=1024, d_model=768, n_heads=12, n_layers=12, d_ff=3072),
}


def configs(args, data: Path, tmp: Path, dropout: float, dtype: str, compile_: bool):
    """The model and training settings of one row: a shape above, or one of the lab's --preset recipes."""
    train, model = resolve_settings({}, preset=args.preset if args.preset in LAB_PRESETS else None)
    if args.preset in SHAPES:
        model = SHAPES[args.preset]
    cfg = TrainConfig(
        **{
            **train,
            "batch_size": args.batch_size or train.get("batch_size") or 32,
            "data": str(data),
            "steps_per_epoch": 1000,
            "device": args.device,
            "out_dir": str(tmp / "ck"),
            "experiments_dir": str(tmp / "exp"),
            "run_name": f"b{dropout}{dtype}{compile_}",
            "compile": compile_,
            "sample_length": 0,
            "dtype": dtype,
        }
    )
    return cfg, ModelConfig(**{**model, "dropout": dropout})


def measure(data: Path, tmp: Path, args, dropout: float, compile_: bool) -> dict:
    """{dtype: (resolved dtype, ms/step, tokens/s, achieved FLOP/s, first step ms)} for one dropout."""
    trainers = {}
    for dtype in args.dtype.split(","):
        cfg, model_cfg = configs(args, data, tmp, dropout, dtype, compile_)
        trainers[dtype] = Trainer(cfg, model_cfg, log=lambda *_: None, progress=False)
        trainers[dtype].model.train()
    times = {d: [] for d in trainers}
    for _ in range(3 + args.steps):
        for dtype, trainer in trainers.items():
            sync(trainer.device)
            t = time.perf_counter()
            trainer.train_step(trainer.cfg.lr)
            sync(trainer.device)
            times[dtype].append(time.perf_counter() - t)
    rows = {}
    for dtype, trainer in trainers.items():
        ms = statistics.median(times[dtype][3:])
        tokens = trainer.cfg.batch_size * trainer.model_cfg.context_length
        achieved = flops_per_token(trainer.model) * tokens / ms
        rows[dtype] = (trainer.precision.name, ms * 1e3, tokens / ms, achieved, times[dtype][0] * 1e3)
    if args.profile:
        from torch.profiler import profile

        trainer = next(iter(trainers.values()))
        with profile() as prof:
            trainer.train_step(trainer.cfg.lr)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))
    return rows


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--preset", choices=sorted(SHAPES) + [n for n in LAB_PRESETS if n != "seed"], default="seed")
    p.add_argument("--batch_size", type=int, default=0, help="0 = the preset's (32 for seed and gpt2)")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--dtype", default="fp32,auto", help="comma-separated --dtype values, stepped side by side")
    p.add_argument("--dropout", default="0.1,0.0", help="comma-separated dropout rates, one table block each")
    p.add_argument("--threads", type=int, default=0, help="intra-op threads (default: PyTorch's choice)")
    p.add_argument("--compile", action="store_true", help="also measure with torch.compile")
    p.add_argument("--profile", action="store_true", help="print where the first dtype's step spends its time")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    peaks = header(args.device, ("fp32", "bf16") if args.device == "cpu" else ("bf16",))
    shape = SHAPES.get(args.preset) or {k: v for k, v in LAB_PRESETS[args.preset].items()}
    print(f"preset {args.preset} {shape}; vocab 65; median of {args.steps} steps after 3 warm-up")
    print(
        "| dropout | compile | --dtype | runs in | ms/step | tokens/s | vs fp32 | achieved GFLOP/s | MFU | first ms |"
    )
    print("| ---: | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        rng = random.Random(0)
        alphabet = string.ascii_letters + string.digits + " .,;:!?'\n-"  # 65 characters
        data = tmp / "random.txt"
        data.write_text("".join(rng.choice(alphabet[:65]) for _ in range(400_000)))
        for compile_ in [False, True] if args.compile else [False]:
            for dropout in (float(d) for d in args.dropout.split(",")):
                rows = measure(data, tmp, args, dropout, compile_)
                base = next((r[2] for r in rows.values() if r[0] == "fp32"), None)
                for dtype, (name, ms, tok_s, achieved, first) in rows.items():
                    top = peaks.get(name) or peak(args.device, name)
                    ratio = f"{tok_s / base:.2f}x" if base else "n/a"
                    print(
                        f"| {dropout} | {'yes' if compile_ else 'no'} | {dtype} | {name} | {ms:,.0f} | {tok_s:,.0f} | "
                        f"{ratio} | {achieved / 1e9:,.1f} | {100 * achieved / top:.0f}% | {first:,.0f} |",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
