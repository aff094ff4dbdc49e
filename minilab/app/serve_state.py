"""What the browser lab's server knows: the two folders it may read, and the models loaded so far.

Every name in a request is resolved here (symlinks followed) and refused with 403 if it leads
outside those folders; serve.py turns an ``HTTPError`` into a 4xx answer holding its one line.
"""

import csv
import math
import threading
from pathlib import Path

from minilab.errors import LabError
from minilab.files import read_json

MAX_PROMPT_CHARS = 2000  # longer prompts are refused: the page is for trying a model, not for bulk work
MAX_CACHED_MODELS = 4  # models kept in memory; loading a fifth drops the least recently used


class HTTPError(Exception):
    """An answer other than 200, with a one-line message for the page."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class Lab:
    """What the server knows: the two folders it may read, and the models loaded so far."""

    def __init__(self, experiments: str | Path, checkpoints: str | Path, device: str = "cpu", dtype: str = "fp32"):
        self.experiments = Path(experiments).resolve()
        self.checkpoints = Path(checkpoints).resolve()
        self.device = device
        self.dtype = dtype  # 'auto', 'fp32' or 'bf16': what generation computes in (minilab/precision.py)
        self.loads = 0  # how many times a model was read from disk (the cache makes repeats free)
        self._models: dict[tuple[str, int], tuple] = {}
        self._lock = threading.Lock()

    # ---- names from a request -> paths inside our folders
    @staticmethod
    def inside(base: Path, name: str) -> Path:
        """``base / name`` resolved; 403 if that leaves ``base`` (``..``, absolute path, symlink), 404 if absent."""
        if not name or "\0" in name:
            raise HTTPError(400, "give a name")
        try:
            path = (base / name).resolve()
            if path != base and base not in path.parents:
                raise HTTPError(403, f"{name!r} is outside the folder this server shows")
            if path.exists():
                return path
        except OSError:  # a name too long for the file system, a loop of symlinks: nothing to show either
            pass
        raise HTTPError(404, f"{name[:200]!r} not found")

    # ---- runs
    def runs(self) -> list[dict]:
        """Every run folder (one holding config.json) directly under the experiments folder."""
        out = []
        folders = sorted(p for p in self.experiments.iterdir() if p.is_dir()) if self.experiments.is_dir() else []
        for d in folders:
            path = d.resolve()
            if self.experiments not in path.parents or not (path / "config.json").is_file():
                continue  # a symlink to somewhere else, or not a run
            config, summary = _read_json(path / "config.json"), _read_json(path / "summary.json")
            if isinstance(config, dict) and isinstance(config.get("tokenizer"), dict):
                config["tokenizer"] = {"type": config["tokenizer"].get("type")}  # not 50,000 BPE merges per poll
            out.append({"name": d.name, "config": config, "summary": summary})
        return out

    def metrics(self, name: str) -> list[dict]:
        """The rows of a run's metrics.csv, numbers as numbers and blanks as null."""
        run = self.inside(self.experiments, name)
        if run.parent != self.experiments or not (run / "config.json").is_file():
            raise HTTPError(404, f"{name!r} is not a run")
        path = run / "metrics.csv"
        if not path.is_file():
            return []
        with open(path, newline="", encoding="utf-8") as f:
            return [{k: _number(v) for k, v in row.items() if k} for row in csv.DictReader(f)]

    # ---- checkpoints and models
    def checkpoint_list(self) -> list[dict]:
        """The .pt files and export folders under the checkpoints folder, by name relative to it."""
        from minilab.checkpoint import is_export_dir

        out = []
        for p in sorted(self.checkpoints.rglob("*")) if self.checkpoints.is_dir() else []:
            kind = "checkpoint" if p.is_file() and p.suffix == ".pt" else "export" if is_export_dir(p) else None
            if kind and self.checkpoints in p.resolve().parents:
                stat = p.stat()
                name = p.relative_to(self.checkpoints).as_posix()
                out.append({"name": name, "kind": kind, "bytes": stat.st_size, "modified": stat.st_mtime})
        return out

    def model(self, name: str):
        """(model, tokenizer, ckpt) for a checkpoint name, loaded once per file version (path + mtime)."""
        from minilab.checkpoint import WEIGHTS, is_export_dir, load_model

        path = self.inside(self.checkpoints, name)
        stamp = (path / WEIGHTS if is_export_dir(path) else path).stat().st_mtime_ns
        key = (str(path), stamp)
        with self._lock:  # one load at a time; a second request for the same file waits and reuses it
            if key in self._models:
                self._models[key] = self._models.pop(key)  # to the end: the most recently used
            else:
                self._models = {k: v for k, v in self._models.items() if k[0] != key[0]}  # drop older versions
                while len(self._models) >= MAX_CACHED_MODELS:
                    del self._models[next(iter(self._models))]  # the least recently used comes first
                model, tokenizer, ckpt = load_model(path, self.device)
                if ckpt is not None:  # keep the history, not the optimizer state and the weights a second time
                    ckpt = {k: v for k, v in ckpt.items() if k not in ("model_state", "optimizer_state", "muon_state")}
                self._models[key] = (model, tokenizer, ckpt)
                self.loads += 1
            return self._models[key]

    def model_info(self, name: str) -> dict:
        from minilab.app.info import architecture, describe, parameters_by_component

        model, tokenizer, ckpt = self.model(name)
        history = None
        if ckpt is not None:
            best = ckpt.get("best_val_loss")
            history = {
                "epoch": ckpt.get("epoch"),
                "step": ckpt.get("step"),
                "best_val_loss": best if isinstance(best, float) and math.isfinite(best) else None,
                "run": (ckpt.get("run") or {}).get("name"),
                "val_prefix_tokens": (ckpt.get("run") or {}).get("val_prefix_tokens", 0),  # best_val_loss's scope
            }
        return {
            "checkpoint": name,
            "config": model.cfg.to_dict(),
            "architecture": architecture(model.cfg),
            "parameters": model.num_params(),
            "components": [{"name": label, "parameters": n} for label, n in parameters_by_component(model)],
            "vocab_size": tokenizer.vocab_size,
            "history": history,
            "describe": describe(model, tokenizer, ckpt),
        }

    def attention(self, name: str, prompt: str) -> dict:
        """Attention weights of every layer and head on ``prompt``, through the model's explicit path."""
        import torch

        from minilab.plots import bytes_label

        check_prompt(prompt)
        if not prompt:
            raise HTTPError(400, "prompt needs at least one character")
        model, tokenizer, _ = self.model(name)
        ids = tokenizer.encode(prompt)
        if len(ids) > model.cfg.context_length:
            raise HTTPError(
                400, f"the prompt is {len(ids)} tokens; this model attends over at most {model.cfg.context_length}"
            )
        device = next(model.parameters()).device
        maps = model.attention_maps(torch.tensor([ids], device=device))  # n_layers x (1, nh, T, T)
        return {
            "tokens": [bytes_label(tokenizer.decode_bytes([i])) for i in ids],
            "maps": [[[[round(w, 4) for w in row] for row in head] for head in m[0].tolist()] for m in maps],
        }


def check_prompt(prompt: str) -> None:
    if len(prompt) > MAX_PROMPT_CHARS:
        raise HTTPError(400, f"the prompt is {len(prompt)} characters; the limit is {MAX_PROMPT_CHARS}")


def _read_json(path: Path):
    try:
        return read_json(path)
    except LabError:
        return None  # a run still starting (no summary yet) or a damaged file: shown as missing


def _number(v: str):
    """A metrics.csv cell as a number (None for empty or non-finite), or the text as it is."""
    if v == "":
        return None
    try:
        return int(v)
    except ValueError:
        try:
            f = float(v)
            return f if math.isfinite(f) else None
        except ValueError:
            return v
