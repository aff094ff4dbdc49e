"""Big-corpus path: prepare speed on a ~1 GB text, and peak memory while training from it.

    python benchmarks/prepare_bench.py --source ../shared/data/tinyshakespeare.txt [--size_mb 1024] [--steps 20]

The big file is made by repeating --source until it reaches --size_mb (in a temporary directory,
deleted afterwards). Prints the prepare rate in MB/s and the peak resident memory of a separate
`train` process on the prepared dataset.
"""

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import describe

from minilab.training.prepare import prepare_dataset

ROOT = Path(__file__).resolve().parents[1]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--source", required=True, help="text to repeat")
    p.add_argument("--size_mb", type=int, default=1024)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--workdir", default=None, help="where the big file goes (default: a temporary directory)")
    args = p.parse_args()
    piece = Path(args.source).read_bytes()
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        big = Path(tmp) / "big.txt"
        with open(big, "wb") as f:
            while f.tell() < args.size_mb << 20:
                f.write(piece)
        size = big.stat().st_size
        t = time.perf_counter()
        meta = prepare_dataset(big, Path(tmp) / "prepared", progress=False)
        took = time.perf_counter() - t
        print(describe("cpu", "n/a (no tensors)"))
        print("| text | tokens | vocabulary | dtype | prepare time | rate |")
        print("| ---: | ---: | ---: | --- | ---: | ---: |")
        print(
            f"| {size / 1e6:,.0f} MB | {meta['n_tokens']:,} | {len(meta['tokenizer']['chars'])} | {meta['dtype']} | "
            f"{took:.1f} s | {size / 1e6 / took:,.0f} MB/s |",
            flush=True,
        )
        cmd = [
            sys.executable,
            str(ROOT / "mini-transformer-lab.py"),
            "train",
            "--data",
            str(Path(tmp) / "prepared"),
            "--epochs",
            "1",
            "--steps_per_epoch",
            str(args.steps),
            "--device",
            "cpu",
            "--sample_length",
            "0",
            "--out_dir",
            str(Path(tmp) / "ck"),
            "--experiments_dir",
            str(Path(tmp) / "exp"),
        ]
        t = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode:
            sys.exit(r.stderr)
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(
            f"\ntraining on it (seed config, batch 32 x 256, {args.steps} steps + validation on the first 1M val "
            f"tokens): {time.perf_counter() - t:.0f} s, peak resident memory {peak_mb:,.0f} MB"
        )


if __name__ == "__main__":
    main()
