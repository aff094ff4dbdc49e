"""Training throughput at the seed configuration: ms/step, tokens/s and MFU against this machine's peak.

    python benchmarks/train_bench.py [--device cpu] [--steps 10] [--compile] [--profile]
    python benchmarks/train_bench.py --device cuda --preset gpt2 --compile     # on a GPU

The peak is measured here (a large matmul: fp32 on CPU, bf16 on CUDA) and printed beside the result.
Each row runs the lab's own training step (Trainer.train_step: batch drawing, forward, backward,
clipping, AdamW) on random text, and reports the median of --steps steps after 3 warm-up steps.
"""

import argparse
import platform
import random
import statistics
import string
import tempfile
import time
from pathlib import Path

import torch

from minilab.model.config import ModelConfig
from minilab.model.flops import flops_per_token, measured_peak_flops
from minilab.training.config import TrainConfig
from minilab.training.trainer import Trainer

PRESETS = {
    "seed": dict(context_length=256, d_model=256, n_heads=8, n_layers=4, d_ff=1024),
    "gpt2": dict(context_length=1024, d_model=768, n_heads=12, n_layers=12, d_ff=3072),
}


def measure(data: Path, tmp: Path, args, dropout: float, compile_: bool):
    model_cfg = ModelConfig(dropout=dropout, **PRESETS[args.preset])
    cfg = TrainConfig(
        data=str(data),
        batch_size=args.batch_size,
        steps_per_epoch=1000,
        device=args.device,
        out_dir=str(tmp / "ck"),
        experiments_dir=str(tmp / "exp"),
        run_name=f"b{dropout}{compile_}",
        compile=compile_,
        sample_length=0,
    )
    trainer = Trainer(cfg, model_cfg, log=lambda *_: None, progress=False)
    trainer.model.train()
    times = []
    for _ in range(3 + args.steps):
        sync(trainer.device)
        t = time.perf_counter()
        trainer.train_step(cfg.lr)
        sync(trainer.device)
        times.append(time.perf_counter() - t)
    ms = statistics.median(times[3:])
    tokens = cfg.batch_size * model_cfg.context_length
    achieved = flops_per_token(trainer.model) * tokens / ms
    if args.profile and dropout == 0.1 and not compile_:
        from torch.profiler import profile

        with profile() as prof:
            trainer.train_step(cfg.lr)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))
    return ms * 1e3, tokens / ms, achieved, times[0] * 1e3


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--preset", choices=sorted(PRESETS), default="seed")
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--compile", action="store_true", help="also measure with torch.compile")
    p.add_argument("--profile", action="store_true", help="print where a dropout-0.1 step spends its time")
    args = p.parse_args()
    peak = measured_peak_flops(torch.device(args.device).type)
    print(
        f"device {args.device} ({platform.processor() or platform.machine()}), torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; preset {args.preset} {PRESETS[args.preset]}, batch {args.batch_size}, "
        f"vocab 65; measured peak {peak / 1e9:,.0f} GFLOP/s; median of {args.steps} steps after 3 warm-up"
    )
    print("| dropout | compile | ms/step | tokens/s | achieved GFLOP/s | MFU | first step ms |")
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        rng = random.Random(0)
        alphabet = string.ascii_letters + string.digits + " .,;:!?'\n-"  # 65 characters
        data = tmp / "random.txt"
        data.write_text("".join(rng.choice(alphabet[:65]) for _ in range(400_000)))
        for compile_ in [False, True] if args.compile else [False]:
            for dropout in (0.1, 0.0):
                ms, tok_s, achieved, first = measure(data, tmp, args, dropout, compile_)
                print(
                    f"| {dropout} | {'yes' if compile_ else 'no'} | {ms:,.0f} | {tok_s:,.0f} | {achieved / 1e9:,.1f} | "
                    f"{100 * achieved / peak:.0f}% | {first:,.0f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
