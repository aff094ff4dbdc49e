"""Comparing runs: read several experiment folders, say how their settings differ and how they did.

A run folder (``experiments/<run>/``, see ``runlog.py``) holds config.json (every setting),
summary.json (the final model's loss on the whole validation split, the best in-training
evaluation, parameters, wall time, tokens/s) and metrics.csv (one row per
step, the validation loss on the rows that end an epoch). ``compare_table`` prints them side by
side; ``viz.plot_comparison`` draws the validation loss against the step and the wall clock.
"""

import csv
import glob
import json
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from minilab.errors import LabError
from minilab.files import read_json

IGNORED = {"train.run_name", "train.out_dir", "train.experiments_dir"}  # differ by construction


@dataclass
class Run:
    """One experiment folder, read."""

    name: str
    path: Path
    settings: dict  # flattened config: 'model.d_model', 'train.lr', ...
    summary: dict
    val: list[tuple[int, float, float | None]]  # (step, val loss, wall-clock seconds or None)


def expand(patterns: list[str]) -> list[Path]:
    """Run folders from the command line: paths as given, or glob patterns the shell did not expand."""
    paths = []
    for pattern in patterns:
        if not Path(pattern).exists() and glob.has_magic(pattern):
            matches = sorted(glob.glob(pattern))
            if not matches:
                raise LabError(f"{pattern!r} matches no run directory")
            paths += [Path(m) for m in matches]
        else:
            paths.append(Path(pattern))
    return list(dict.fromkeys(paths))  # each run once, in order


def load_run(path: Path) -> Run:
    """Read one run folder; a missing folder, a folder that is not a run or a run without metrics is a LabError."""
    if not path.exists():
        raise LabError(f"run directory {str(path)!r} does not exist")
    if not path.is_dir():
        raise LabError(f"{str(path)!r} is not a directory (give the run's experiment folder)")
    config, summary = _json(path / "config.json", path), _json(path / "summary.json", path)
    settings = {f"{part}.{k}": v for part in ("model", "train") for k, v in (config.get(part) or {}).items()}
    metrics = path / "metrics.csv"
    val = []
    if metrics.is_file():
        with open(metrics, newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                if row.get("val_loss"):
                    wall = row.get("wall_time") or None
                    val.append((int(row["step"]), float(row["val_loss"]), float(wall) if wall else None))
    if not val:
        raise LabError(f"run {str(path)!r} has no metrics yet (no evaluated epoch in metrics.csv)")
    return Run(summary.get("run") or path.name, path, settings, summary, val)


def _json(file: Path, run: Path) -> dict:
    if not file.is_file():
        raise LabError(f"{str(run)!r} is not a run directory (it has no {file.name})")
    return read_json(file)


def differences(runs: list[Run]) -> tuple[list[str], list[dict]]:
    """The settings that differ between runs, and per run those of its values that are not the most common one."""
    keys = sorted({k for r in runs for k in r.settings} - IGNORED)
    varying = [k for k in keys if len({json.dumps(r.settings.get(k)) for r in runs}) > 1]
    per_run = [{} for _ in runs]
    for k in varying:
        common = Counter(json.dumps(r.settings.get(k)) for r in runs).most_common(1)[0][0]
        for i, r in enumerate(runs):
            if json.dumps(r.settings.get(k)) != common:
                per_run[i][short_name(k, keys)] = r.settings.get(k)
    return varying, per_run


def short_name(key: str, keys) -> str:
    """'model.lr' -> 'lr', unless both configs have that name (``vocab_size``): then the full key."""
    name = key.split(".", 1)[1]
    return name if sum(k.split(".", 1)[1] == name for k in keys) == 1 else key


def compare_table(runs: list[Run]) -> str:
    """A Markdown table: what differs, parameters, val loss, best in-training val loss, steps, wall time, tokens/s.

    "val loss" is the final model on the whole validation split. A run that scored only the first
    tokens of its split during training (--eval_tokens) shows its best such figure with a '*'.
    """
    varying, per_run = differences(runs)
    head = ["run", "differs", "params", "val loss", "best val", "steps", "wall s", "tok/s"]
    rows, prefixes = [], set()
    for r, diff in zip(runs, per_run):
        s = r.summary
        best, prefix = s.get("best_val_loss"), s.get("val_prefix_tokens")
        if prefix:  # summaries from before the final whole-split evaluation have no prefix keys
            best = s.get("best_val_loss_prefix")
            prefixes.add(prefix)
        rows.append(
            [
                r.name,
                ", ".join(f"{k}={v}" for k, v in diff.items()) or "-",
                f"{s.get('parameters', 0):,}",
                _loss(s.get("final_val_loss")),
                _loss(best) + ("*" if prefix and best is not None else ""),
                str(s.get("steps", "")),
                f"{s.get('wall_time_sec', math.nan):.1f}",
                f"{s.get('tokens_per_sec', math.nan):,.0f}",
            ]
        )
    widths = [max(len(x) for x in col) for col in zip(head, *rows)]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    out = [line(head), "| " + " | ".join("-" * w for w in widths) + " |", *map(line, rows)]
    keys = {k for r in runs for k in r.settings}
    shown = ", ".join(short_name(k, keys) for k in varying) or "none"
    out += ["", f"settings that differ: {shown} (each run lists its values that are not the most common)"]
    out.append("val loss: the final model on the whole validation split; best val: the best in-training evaluation")
    if prefixes:
        sizes = " or ".join(f"{n:,}" for n in sorted(prefixes))
        out.append(f"* scored during training on the first {sizes} validation tokens only (--eval_tokens)")
    return "\n".join(out)


def _loss(v) -> str:
    return "" if v is None else f"{v:.4f}"
