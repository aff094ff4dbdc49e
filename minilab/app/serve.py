"""The lab in a browser: a small local web server over the experiment and checkpoint folders.

``make_server(lab, host, port)`` returns a standard-library ``ThreadingHTTPServer``. The page
(minilab/app/web/) asks a JSON API for runs, metrics, checkpoints, model info, attention maps, and
streams generated text as server-sent events. The server reads only what lies under the two
folders it was given: every name in a request is resolved (symlinks followed) and refused with 403
if it leads outside them. Bad input is a 4xx answer holding {"error": "one line"}, never a traceback.
"""

import json
import math
import socket
import time
from dataclasses import asdict
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from minilab.app.serve_state import MAX_PROMPT_CHARS, HTTPError, Lab, check_prompt
from minilab.errors import LabError

MAX_NEW_TOKENS = 2000  # per generate request, so one click cannot keep the CPU busy for an hour
# A chat's history, sent in the URL with each message: its oldest turns beyond this are left out by the
# page (a small model sees far less anyway), so that the URL stays under http.server's 64 KiB request line.
MAX_CHAT_CHARS = 4000
WEB_DIR = Path(__file__).parent / "web"
STATIC = {  # URL -> (file in WEB_DIR, content type): the only files the server hands out as they are
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/inside.js": ("inside.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
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
    check_prompt(settings["prompt"])
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
    check_prompt("".join(m["content"] for m in messages[-1:]))
    if sum(len(m["content"]) for m in messages) > MAX_CHAT_CHARS:
        raise HTTPError(400, f"the conversation is longer than {MAX_CHAT_CHARS} characters; start a new one")
    return messages


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
