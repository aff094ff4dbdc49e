"""The lab in a browser: a small local web server over the experiment and checkpoint folders.

``make_server(lab, host, port)`` returns a standard-library ``ThreadingHTTPServer``. The page
(minilab/app/web/) asks a JSON API for runs, metrics, checkpoints, model info, attention maps, and
streams generated text as server-sent events. The server reads only what lies under the two
folders it was given: every name in a request is resolved (symlinks followed) and refused with 403
if it leads outside them. Bad input is a 4xx answer holding {"error": "one line"}, never a traceback.
"""

import csv
import json
import math
import socket
import threading
import time
from dataclasses import asdict
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from minilab.errors import LabError
from minilab.files import read_json

MAX_PROMPT_CHARS = 2000  # longer prompts are refused: the page is for trying a model, not for bulk work
MAX_NEW_TOKENS = 2000  # per generate request, so one click cannot keep the CPU busy for an hour
# A chat's history, sent in the URL with each message: its oldest turns beyond this are left out by the
# page (a small model sees far less anyway), so that the URL stays under http.server's 64 KiB request line.
MAX_CHAT_CHARS = 4000
MAX_CACHED_MODELS = 4  # models kept in memory; loading a fifth drops the least recently used
WEB_DIR = Path(__file__).parent / "web"
STATIC = {  # URL -> (file in WEB_DIR, content type): the only files the server hands out as they are
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/inside.js": ("inside.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
}


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
        self.dtype = dtype  # 'fp32' or 'bf16': what generation computes in (minilab/precision.py)
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

        _check_prompt(prompt)
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


def sampling_settings(q: dict) -> dict:
    """Generation settings from query parameters; a bad value is a 400 with a one-line message."""
    from minilab.generation.sampling import SamplingConfig

    d = SamplingConfig  # the defaults, as the command line's
    settings = dict(
        prompt=q.get("prompt", ""),
        max_new_tokens=_param(q, "max_new_tokens", int, d.max_new_tokens),
        temperature=_param(q, "temperature", float, d.temperature),
        top_k=_param(q, "top_k", int, d.top_k),
        top_p=_param(q, "top_p", float, d.top_p),
        seed=_param(q, "seed", int, d.seed),
    )
    _check_prompt(settings["prompt"])
    if settings["seed"] is not None and not 0 <= settings["seed"] < 2**63:
        raise HTTPError(400, f"seed must be between 0 and 2**63 - 1, got {settings['seed']}")
    if not 1 <= settings["max_new_tokens"] <= MAX_NEW_TOKENS:
        raise HTTPError(400, f"max_new_tokens must be between 1 and {MAX_NEW_TOKENS}, got {settings['max_new_tokens']}")
    sampling = SamplingConfig(**{k: v for k, v in settings.items() if k != "prompt"})  # checked here
    return {"prompt": settings["prompt"], **asdict(sampling)}


def _chat_messages(raw: str) -> list[dict]:
    """The conversation a chat request carries (a JSON list of messages); a 400 if it is not one."""
    from minilab.tokenizers.template import check_messages

    try:
        messages = json.loads(raw)
    except json.JSONDecodeError:
        raise HTTPError(400, "messages must be a JSON list of {role, content}") from None
    messages = check_messages(messages, "messages")
    if messages[-1]["role"] != "user":
        raise HTTPError(400, "the last message must be the user's")
    _check_prompt("".join(m["content"] for m in messages[-1:]))
    if sum(len(m["content"]) for m in messages) > MAX_CHAT_CHARS:
        raise HTTPError(400, f"the conversation is longer than {MAX_CHAT_CHARS} characters; start a new one")
    return messages


def _check_prompt(prompt: str) -> None:
    if len(prompt) > MAX_PROMPT_CHARS:
        raise HTTPError(400, f"the prompt is {len(prompt)} characters; the limit is {MAX_PROMPT_CHARS}")


def _param(q: dict, name: str, kind, default):
    raw = q.get(name, "")
    if raw == "":
        return default
    try:
        value = kind(raw)
    except ValueError:
        kind_name = "whole number" if kind is int else "number"
        raise HTTPError(400, f"{name} must be a {kind_name}, got {raw[:40]!r}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise HTTPError(400, f"{name} must be a finite number, got {raw[:40]!r}")
    return value


def _number(v: str):
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


def _read_json(path: Path):
    try:
        return read_json(path)
    except LabError:
        return None  # a run still starting (no summary yet) or a damaged file: shown as missing


class Handler(BaseHTTPRequestHandler):
    """One request: route it, answer JSON, a static file or an event stream."""

    server_version = "minilab"
    lab: Lab  # set on the subclass made by make_server

    def log_message(self, format, *args):  # quiet: the terminal shows the URL, not every poll
        pass

    def do_GET(self):
        self._answer(parse_qs(urlsplit(self.path).query, keep_blank_values=True))

    def do_POST(self):
        length = self.headers.get("Content-Length") or "0"
        if not length.isdigit() or int(length) > 1 << 20:
            return self._json({"error": "give a Content-Length of at most 1 MiB"}, 400)
        body = self.rfile.read(int(length)).decode("utf-8", "replace")
        if (self.headers.get("Content-Type") or "").startswith("application/json"):
            try:
                params = json.loads(body or "{}")
            except json.JSONDecodeError:
                return self._json({"error": "the request body is not valid JSON"}, 400)
            if not isinstance(params, dict):
                return self._json({"error": "the request body must be a JSON object"}, 400)
            query = {k: [str(v)] for k, v in params.items()}
        else:
            query = parse_qs(body, keep_blank_values=True)
        self._answer(query)

    def _answer(self, query: dict) -> None:
        q = {k: v[-1] for k, v in query.items()}
        try:
            self._route(urlsplit(self.path).path, q)
        except HTTPError as e:
            self._json({"error": str(e)}, e.status)
        except LabError as e:  # the library's messages name CLI flags ('--temperature'); here they are fields
            message = str(e).splitlines()[0].removeprefix("--")
            self._json({"error": message}, 404 if "not found" in message else 400)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the page went away mid-answer (a new prompt, a closed tab)
        except Exception as e:  # a bug of ours: say so in one line; the server keeps serving
            self._json({"error": f"internal error ({type(e).__name__})"}, 500)

    def _route(self, path: str, q: dict) -> None:
        lab = self.lab
        parts = [unquote(p) for p in path.split("/")[1:]]  # '%2e%2e' arrives as '..' here and is refused
        if self.command == "GET" and path in STATIC:
            return self._static(*STATIC[path])
        if parts[0] != "api":
            raise HTTPError(404, f"no page {path}")
        route = parts[1:]
        if route == ["runs"]:
            return self._json({"runs": lab.runs()})
        if len(route) == 3 and route[0] == "runs" and route[2] == "metrics":
            return self._json({"run": route[1], "rows": lab.metrics(route[1])})
        if route == ["checkpoints"]:
            return self._json({"checkpoints": lab.checkpoint_list()})
        if route == ["model"]:
            return self._json(lab.model_info(q.get("checkpoint", "")))
        if route == ["limits"]:
            limits = {"max_prompt_chars": MAX_PROMPT_CHARS, "max_new_tokens": MAX_NEW_TOKENS}
            return self._json({**limits, "max_chat_chars": MAX_CHAT_CHARS})
        if route == ["sampling"]:  # the generate form's start values: the library's defaults
            from minilab.generation.sampling import SamplingConfig

            return self._json({k: v for k, v in asdict(SamplingConfig()).items() if v is not None})
        if route == ["attention"]:
            return self._json(lab.attention(q.get("checkpoint", ""), q.get("prompt", "")))
        if len(route) == 2 and route[0] == "inside":  # the Inside tab: minilab/app/inside_web.py
            from minilab.app.inside_web import answer

            return self._json(answer(lab, route[1], q))
        if route == ["generate"] and self.command == "GET":
            return self._generate(q)
        if route == ["chat"] and self.command == "GET":
            return self._chat(q)
        raise HTTPError(404, f"no API endpoint {path}")

    def _generate(self, q: dict) -> None:
        """Server-sent events: {"text": piece} per piece, then event 'done' with tokens and tokens/s."""
        from minilab.generation.textgen import stream_text

        settings = sampling_settings(q)
        model, tokenizer, _ = self.lab.model(q.get("checkpoint", ""))
        prompt = settings.pop("prompt")
        tokenizer.encode(prompt)  # unseen characters: a 400 before the stream starts
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        t0 = time.perf_counter()
        try:
            for piece in stream_text(model, tokenizer, prompt, dtype=self.lab.dtype, **settings):
                self._event({"text": piece})
        except LabError as e:  # too late for a status code: tell the page in the stream
            return self._event({"error": str(e).splitlines()[0]}, "error")
        took = time.perf_counter() - t0
        n = settings["max_new_tokens"]  # no stop strings here, so every requested token was generated
        self._event({"tokens": n, "seconds": round(took, 3), "tokens_per_sec": round(n / max(took, 1e-9), 1)}, "done")

    def _chat(self, q: dict) -> None:
        """Chat mode: the answer to ``messages`` (a JSON list, the page keeps the history) as events, then 'done'."""
        from minilab.generation.chat import chat_answer

        settings = sampling_settings({**q, "prompt": ""})
        messages = _chat_messages(q.get("messages", ""))
        model, tokenizer, _ = self.lab.model(q.get("checkpoint", ""))
        settings.pop("prompt")
        pieces, dropped = chat_answer(model, tokenizer, messages, **settings)  # bad input: a 400 before streaming
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        try:
            for piece in pieces:
                self._event({"text": piece})
        except LabError as e:
            return self._event({"error": str(e).splitlines()[0]}, "error")
        self._event({"dropped": dropped}, "done")

    def _event(self, data: dict, event: str | None = None) -> None:
        head = f"event: {event}\n" if event else ""
        self.wfile.write(f"{head}data: {json.dumps(data)}\n\n".encode())
        self.wfile.flush()

    def _json(self, obj, status: int = 200) -> None:
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _static(self, filename: str, content_type: str) -> None:
        body = (WEB_DIR / filename).read_bytes()
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def make_server(lab: Lab, host: str = "127.0.0.1", port: int = 8000) -> ThreadingHTTPServer:
    """A server for ``lab`` bound to host:port (port 0: any free port, see ``server.server_address``)."""
    handler = type("LabHandler", (Handler,), {"lab": lab})
    server_class = ThreadingHTTPServer
    if ":" in host:  # an IPv6 address such as ::1
        server_class = type("IPv6Server", (ThreadingHTTPServer,), {"address_family": socket.AF_INET6})
    server = server_class((host, port), handler)
    server.daemon_threads = True  # an open event stream does not keep the process alive on Ctrl-C
    return server
