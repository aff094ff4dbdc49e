"""The experiment folder of a training run: experiments/<run>/ with config, metrics, plot, samples.

Files: config.json (every setting), metrics.csv (one row per optimizer step; val columns filled
at the end of each epoch), loss.png (redrawn each epoch), samples.txt (a short generation after each
epoch) and summary.json (best and final losses, parameters, wall time, throughput).
"""

import csv
import json
import math
import time
from pathlib import Path

from minilab.files import atomic_write
from minilab.plots import plot_losses

# wall_time: seconds since the run started (earlier sessions included); on an evaluation row, when the
# validation loss was known.
METRIC_FIELDS = ["step", "epoch", "train_loss", "val_loss", "val_ppl", "lr", "tokens_per_sec", "mfu", "wall_time"]


def new_run_name(data_path: str) -> str:
    """A readable, sortable run name: date-time plus the data file's stem."""
    stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in Path(data_path).stem) or "run"
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{stem}"


class RunLog:
    """Writes one run's experiment folder; continues it (rows after ``step`` dropped) on resume."""

    def __init__(self, run_dir: str | Path, resume_step: int | None = None):
        self.dir = Path(run_dir)
        if self.dir.exists() and not self.dir.is_dir():
            raise FileExistsError(f"{self.dir} exists and is not a directory")
        self.dir.mkdir(parents=True, exist_ok=True)
        self.metrics_path = self.dir / "metrics.csv"
        self.rows: list[dict] = []
        if resume_step is not None and self.metrics_path.exists():
            # Keep what was logged up to the checkpoint; rows after it were never saved as weights.
            with open(self.metrics_path, newline="") as f:
                self.rows = [_parse(r) for r in csv.DictReader(f) if int(r["step"]) <= resume_step]
        self._rewrite_metrics()

    def write_json(self, name: str, obj: dict) -> None:
        text = json.dumps(obj, indent=2, default=_json_default) + "\n"
        atomic_write(self.dir / name, lambda f: f.write(text.encode()))

    def log_step(self, row: dict) -> None:
        """Append one metrics row (a dict with the METRIC_FIELDS keys, missing ones left blank)."""
        self.rows.append(row)
        with open(self.metrics_path, "a", newline="") as f:
            csv.DictWriter(f, METRIC_FIELDS, lineterminator="\n").writerow({k: _fmt(row.get(k)) for k in METRIC_FIELDS})

    def set_val(self, val_loss: float, wall_time: float | None = None) -> None:
        """Fill the validation columns of the latest row (the epoch's last step) and rewrite the file."""
        self.rows[-1]["val_loss"] = val_loss
        self.rows[-1]["val_ppl"] = math.exp(min(val_loss, 50.0))
        if wall_time is not None:
            self.rows[-1]["wall_time"] = wall_time
        self._rewrite_metrics()

    def add_sample(self, epoch: int, step: int, text: str) -> None:
        with open(self.dir / "samples.txt", "a", encoding="utf-8") as f:
            f.write(f"=== epoch {epoch} (step {step}) ===\n{text}\n\n")

    def plot(self, title: str) -> None:
        plot_losses(self.rows, self.dir / "loss.png", title)

    def _rewrite_metrics(self) -> None:
        def write(f):
            text = _csv_text(self.rows)
            f.write(text.encode())

        atomic_write(self.metrics_path, write)


def _csv_text(rows: list[dict]) -> str:
    import io

    buf = io.StringIO()
    w = csv.DictWriter(buf, METRIC_FIELDS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: _fmt(r.get(k)) for k in METRIC_FIELDS})
    return buf.getvalue()


def _fmt(v):
    if v is None or v == "":
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    return v


def _parse(r: dict) -> dict:
    out = {}
    for k in METRIC_FIELDS:
        v = r.get(k, "")
        out[k] = "" if v in ("", None) else (int(v) if k in ("step", "epoch") else float(v))
    return out


def _json_default(o):
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
