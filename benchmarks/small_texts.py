"""Does the seed's quick start write words? Trains on a small text as the seed does, generates, counts.

Each run is the seed's two commands, in a fresh directory, on a copy of the text named my_data.txt:

    python3 mini-transformer-lab.py train --data my_data.txt --epochs 10 [--seed S] [extra flags]
    python3 mini-transformer-lab.py generate --checkpoint checkpoint.pt --prompt "The future of AI is" --seed G

and prints, per training seed, the wall clock of `train`, its last line, and for each generation
seed the share of the written words of three or more letters that are words of the training text
(minilab/training/smalltext.py: known_word_fraction). Default sampling settings throughout.

    .venv/bin/python benchmarks/small_texts.py                            # 3 training x 3 generation seeds
    .venv/bin/python benchmarks/small_texts.py --seeds 1337 -- --threads 1 --dropout 0.2   # try a change
"""

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from minilab.training.smalltext import known_word_fraction  # noqa: E402

LAB = ROOT / "mini-transformer-lab.py"
PROMPT = "The future of AI is"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run(data: Path, seed: int, gen_seeds: list[int], extra: list[str], work: Path, show: bool) -> dict:
    """One training run and its generations; returns the figures."""
    d = work / f"seed{seed}"
    d.mkdir()
    shutil.copy(data, d / "my_data.txt")
    train = [sys.executable, str(LAB), "train", "--data", "my_data.txt", "--epochs", "10", "--seed", str(seed), *extra]
    t = time.perf_counter()
    done = subprocess.run(train, cwd=d, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if done.returncode != 0:
        sys.exit(f"train failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
    lines = [x for x in done.stdout.splitlines() if x.startswith("epoch ")]
    reference = data.read_text(encoding="utf-8")
    fractions = []
    for g in gen_seeds:
        gen = [sys.executable, str(LAB), "generate", "--checkpoint", "checkpoint.pt", "--prompt", PROMPT]
        out = subprocess.run([*gen, "--seed", str(g)], cwd=d, capture_output=True, text=True, check=True).stdout
        fractions.append(known_word_fraction(out, reference, PROMPT))
        if show:
            print(f"--- train seed {seed}, generate seed {g}: {fractions[-1]:.0%}\n{out.strip()}\n")
    return {"seed": seed, "wall": wall, "last": lines[-1] if lines else "", "fractions": fractions}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=ROOT / "example_data" / "ai_intro.txt")
    p.add_argument("--seeds", type=int, nargs="+", default=[1337, 1338, 1339], help="training seeds")
    p.add_argument("--gen_seeds", type=int, nargs="+", default=[0, 1, 2], help="generation seeds")
    p.add_argument("--show", action="store_true", help="print every generated text")
    p.add_argument("extra", nargs="*", help="extra train flags, after --")
    args = p.parse_args()
    print(f"CPU: {cpu_name()}, {os.cpu_count()} cores; data {args.data} ({args.data.stat().st_size:,} bytes)")
    print(f"extra train flags: {' '.join(args.extra) or '(none)'}\n")
    print("| train seed | train wall s | last epoch | known words per generation seed | mean |")
    print("| --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory(prefix="small_texts_") as tmp:
        for seed in args.seeds:
            r = run(args.data, seed, args.gen_seeds, args.extra, Path(tmp), args.show)
            per = ", ".join(f"{f:.0%}" for f in r["fractions"])
            mean = statistics.mean(r["fractions"])
            print(f"| {seed} | {r['wall']:.1f} | {r['last']} | {per} | {mean:.0%} |", flush=True)


if __name__ == "__main__":
    main()
