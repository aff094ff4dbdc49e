"""Time to quality on tinyshakespeare: the speedrun recipe at fixed wall-clock budgets (issue 7).

Each run is a real `mini-transformer-lab train --preset ... --time_budget B` subprocess, timed from
start to exit, then scored with `mini-transformer-lab eval` on the whole validation split (the last
10% of the file). Prints a Markdown table (budget, measured wall clock, val loss, steps, tokens,
parameters; mean and spread over --repeats seeds) and draws val loss against wall clock (--out).

    .venv/bin/python benchmarks/speedrun.py                       # this CPU family's budgets, one run each
    .venv/bin/python benchmarks/speedrun.py --budget 111 --repeats 3 --out curve.png
    .venv/bin/python benchmarks/speedrun.py --budget 55 -- --lr 0.004   # extra train flags after --

Runs go to a fresh temporary directory (or --work DIR, which must not exist yet); nothing of the
user's is overwritten. The targets, by CPU family (TARGETS): without bf16 units (AMD EPYC, AVX2)
1.886 at 55 s, 1.70 at 111 s, 1.55 at 600 s; with them (Intel Xeon, AMX) 1.55 at 64 s, 1.47 at 600 s.
"""

import argparse
import csv
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import describe

from minilab.device import cpu_bf16_features

ROOT = Path(__file__).resolve().parents[1]
LAB = ROOT / "mini-transformer-lab.py"
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "tinyshakespeare.txt"
# Budgets and targets per CPU family: nanoGPT's CPU recipe takes 111 s on the AMD EPYC (AVX2) and
# 64 s on the Intel Xeon with bf16 units (AMX), where the targets are issue 14's.
BUDGETS = {"fp32 CPU": (55, 111, 600), "bf16 CPU": (64, 600)}
TARGETS = {"fp32 CPU": {55: 1.886, 111: 1.70, 600: 1.55}, "bf16 CPU": {64: 1.55, 600: 1.47}}
FAMILY = "bf16 CPU" if cpu_bf16_features() else "fp32 CPU"


def preset_for(budget: float) -> str:
    """The short-run preset up to two minutes, the long one beyond; on a CPU with bf16 units, the compiled bf16 pair."""
    if FAMILY == "bf16 CPU":
        return "shakespeare-bf16-long" if budget > 120 else "shakespeare-bf16"
    return "shakespeare-cpu-long" if budget > 120 else "shakespeare-cpu"


def run_once(data: Path, budget: float, preset: str, seed: int, work: Path, extra: list[str]) -> dict:
    """One timed `train` subprocess and one `eval`; returns what the table needs."""
    name = f"b{budget:g}_s{seed}"
    ckpt_dir, runs = work / "checkpoints" / name, work / "runs"
    train = [sys.executable, str(LAB), "train", "--data", str(data), "--preset", preset]
    train += ["--time_budget", f"{budget:g}", "--seed", str(seed), "--device", "cpu"]
    train += ["--out_dir", str(ckpt_dir), "--experiments_dir", str(runs), "--run_name", name, *extra]
    log = work / f"{name}.log"
    t = time.perf_counter()
    with open(log, "w") as f:
        done = subprocess.run(train, stdout=f, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - t
    if done.returncode != 0:
        sys.exit(f"train failed (exit {done.returncode}); see {log}")
    evaluated = subprocess.run(
        # fp32 scoring whatever the training ran in: a score must not depend on the machine.
        [sys.executable, str(LAB), "eval", "--checkpoint", str(ckpt_dir / "checkpoint.pt"), "--data", str(data)]
        + ["--dtype", "fp32"],
        capture_output=True,
        text=True,
    )
    if evaluated.returncode != 0:
        sys.exit(f"eval failed: {evaluated.stderr.strip()}")
    loss = float(re.search(r"loss ([0-9.]+) nats/token", evaluated.stdout).group(1))
    summary = json.loads((runs / name / "summary.json").read_text())
    dtype = json.loads((runs / name / "config.json").read_text()).get("dtype", "fp32")
    return {
        "budget": budget,
        "seed": seed,
        "preset": preset,
        "dtype": dtype,
        "wall": wall,
        "loss": loss,
        "steps": summary["steps"],
        "tokens": summary["tokens_seen"],
        "params": summary["parameters"],
        "curve": val_curve(runs / name / "metrics.csv"),
        "first_step": first_step(runs / name / "metrics.csv", summary["tokens_seen"] / summary["steps"]),
    }


def first_step(metrics: Path, tokens_per_step: float) -> float:
    """Seconds the first step took: with --compile, mostly compiling (long with an empty compile cache)."""
    with open(metrics) as f:
        row = next(csv.DictReader(f))
    return tokens_per_step / float(row["tokens_per_sec"])


def val_curve(metrics: Path) -> list[tuple[float, float]]:
    """(wall_time, val_loss) at each in-training evaluation (on the preset's --eval_tokens of the split)."""
    with open(metrics) as f:
        return [(float(r["wall_time"]), float(r["val_loss"])) for r in csv.DictReader(f) if r["val_loss"]]


def spread(values: list[float], fmt: str) -> str:
    """Mean, and with several runs their range and standard deviation."""
    mean = statistics.fmean(values)
    if len(values) == 1:
        return format(mean, fmt)
    lo, hi, sd = min(values), max(values), statistics.stdev(values)
    return f"{mean:{fmt}} ({lo:{fmt}}–{hi:{fmt}}, sd {sd:{fmt}})"


def table(results: list[dict]) -> str:
    head = "| budget s | preset | dtype | runs | wall clock s | val loss | target | steps | tokens seen | parameters |"
    lines = [head, "| --- " * 10 + "|"]
    for budget in sorted({r["budget"] for r in results}):
        rs = [r for r in results if r["budget"] == budget]
        target = TARGETS[FAMILY].get(int(budget))
        cells = [
            f"{budget:g}",
            rs[0]["preset"],
            rs[0]["dtype"],
            str(len(rs)),
            spread([r["wall"] for r in rs], ".1f"),
            spread([r["loss"] for r in rs], ".4f"),
            f"{target:g}" if target else "",
            spread([r["steps"] for r in rs], ".0f"),
            f"{statistics.fmean(r['tokens'] for r in rs):,.0f}",
            f"{rs[0]['params']:,}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    per_run = ["", "| budget s | seed | wall clock s | val loss | steps | first step s |", "| --- " * 6 + "|"]
    for r in results:
        cells = [f"{r['budget']:g}", str(r["seed"]), f"{r['wall']:.1f}", f"{r['loss']:.4f}", str(r["steps"])]
        per_run.append("| " + " | ".join([*cells, f"{r['first_step']:.1f}"]) + " |")
    return "\n".join(lines + per_run)


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=90)
    kinds = sorted({(r["budget"], r["preset"]) for r in results})  # one colour per budget and recipe
    colors = {k: f"C{i}" for i, k in enumerate(kinds)}
    labelled = set()
    for r in results:
        kind = (r["budget"], r["preset"])
        c = colors[kind]
        label = None if kind in labelled else f"{r['budget']:g} s, {r['preset']}"
        labelled.add(kind)
        if r["curve"]:
            ax.plot(*zip(*r["curve"]), "-", color=c, alpha=0.6, linewidth=1, label=label)
        ax.plot([r["wall"]], [r["loss"]], "o", color=c, markersize=5)
    for budget, target in TARGETS[FAMILY].items():
        if any(b == budget for b, _ in kinds):
            ax.plot([budget], [target], "x", color="k", markersize=8)
    ax.plot([111], [1.886], "*", color="grey", markersize=10, label="nanoGPT CPU recipe (111 s)")
    ax.set_xscale("log")
    ax.set_xlabel("wall clock since the train process started (s, log scale)")
    ax.set_ylabel("validation loss (nats per character)")
    title = "lines: in-training evals (first 16k val chars); dots: eval, whole val split; x: target"
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    sys.stdout.reconfigure(line_buffering=True)  # progress lines appear as runs finish
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="tinyshakespeare.txt")
    parser.add_argument("--budget", type=float, action="append", help="seconds; repeatable (default 55 111 600)")
    parser.add_argument("--repeats", type=int, default=1, help="runs per budget, seeds 1337, 1338, ...")
    parser.add_argument("--preset", default=None, help="override the recipe (default: by budget)")
    parser.add_argument("--out", type=Path, default=None, help="PNG of val loss against wall clock")
    parser.add_argument("--work", type=Path, default=None, help="directory for the runs (must not exist)")
    parser.add_argument("extra", nargs="*", help="extra train flags, after --")
    args = parser.parse_args()
    if not args.data.is_file():
        sys.exit(f"no data file {args.data}; pass --data tinyshakespeare.txt")
    if args.out is not None and (args.out.suffix != ".png" or args.out.exists()):
        sys.exit(f"--out {args.out}: give a .png path that does not exist yet")
    if args.work is not None and args.work.exists():
        sys.exit(f"--work {args.work} exists; give a new directory")
    work = args.work or Path(tempfile.mkdtemp(prefix="speedrun-"))
    work.mkdir(parents=True, exist_ok=True)
    budgets = args.budget or list(BUDGETS[FAMILY])
    print(
        f"# {describe('cpu', 'per run: see the table')}; OMP_NUM_THREADS {os.environ.get('OMP_NUM_THREADS', 'unset')}"
    )
    print(f"# {FAMILY} targets {TARGETS[FAMILY]}; runs in {work}", flush=True)
    results = []
    for budget in budgets:
        for i in range(args.repeats):
            r = run_once(args.data, budget, args.preset or preset_for(budget), 1337 + i, work, args.extra)
            print(
                f"# {budget:g} s seed {r['seed']}: {r['wall']:.1f} s, val {r['loss']:.4f}, {r['steps']} steps, "
                f"first step {r['first_step']:.1f} s"
            )
            results.append(r)
    flags = " ".join(args.extra)
    print(f"\ncommand per run: mini-transformer-lab train --data DATA --preset P --time_budget B --seed S {flags}\n")
    print(table(results))
    (work / "results.json").write_text(json.dumps(results, indent=1))
    if args.out is not None:
        plot(results, args.out)
        print(f"\ncurve -> {args.out}")


if __name__ == "__main__":
    main()
