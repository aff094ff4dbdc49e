"""The web server: its JSON API, the event stream, the model cache, and what it refuses to read."""

import http.client
import json
import os
import shutil
import threading

import pytest

from minilab.app.serve import MAX_CHAT_CHARS, MAX_NEW_TOKENS, MAX_PROMPT_CHARS, Lab, make_server
from minilab.model.config import ModelConfig
from minilab.training.trainer import Trainer
from tests.conftest import tiny_train_config


@pytest.fixture(scope="module")
def lab_dir(tmp_path_factory):
    """A folder with experiments/run (one tiny epoch), checkpoints/*.pt, an export, and a secret outside."""
    from minilab.app.export import export_model
    from minilab.checkpoint import load_model

    d = tmp_path_factory.mktemp("served")
    cfg = tiny_train_config(d, epochs=1, steps_per_epoch=3)
    model_cfg = ModelConfig(context_length=32, d_model=32, n_heads=4, n_layers=2, d_ff=64, dropout=0.0)
    Trainer(cfg, model_cfg).fit()
    model, tokenizer, _ = load_model(d / "checkpoints" / "best_model.pt")
    export_model(model, tokenizer, d / "checkpoints" / "shared")
    (d / "secret.txt").write_text("not for the web")
    os.symlink(d / "secret.txt", d / "checkpoints" / "link.pt")  # a name inside that leads outside
    os.symlink(d / "experiments" / "run", d / "experiments" / "alias")  # inside: fine
    shutil.copytree(d / "experiments" / "run", d / "elsewhere")
    os.symlink(d / "elsewhere", d / "experiments" / "escape")  # a run folder that leads outside
    return d


@pytest.fixture(scope="module")
def server(lab_dir):
    lab = Lab(lab_dir / "experiments", lab_dir / "checkpoints")
    srv = make_server(lab, "127.0.0.1", 0)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def get(server, path, method="GET", body=None, headers=None):
    """(status, content type, body bytes) of one request, the path sent exactly as given."""
    conn = http.client.HTTPConnection(*server.server_address, timeout=60)
    conn.request(method, path, body=body, headers=headers or {})
    r = conn.getresponse()
    data = r.read()
    conn.close()
    return r.status, r.getheader("Content-Type"), data


def get_json(server, path, **kw):
    status, ctype, data = get(server, path, **kw)
    assert ctype.startswith("application/json"), (path, ctype)
    return status, json.loads(data)


def events(data: bytes) -> list[tuple[str, dict]]:
    """(event name, data) of each server-sent event."""
    out = []
    for block in data.decode().split("\n\n"):
        if block.strip():
            lines = dict(line.split(": ", 1) for line in block.split("\n"))
            out.append((lines.get("event", "message"), json.loads(lines["data"])))
    return out


def test_runs_and_metrics(server):
    status, body = get_json(server, "/api/runs")
    assert status == 200
    runs = {r["name"]: r for r in body["runs"]}
    assert set(runs) == {"run", "alias"}  # not "escape", which leads outside
    assert runs["run"]["config"]["model"]["d_model"] == 32
    assert runs["run"]["config"]["tokenizer"] == {"type": "char"}  # the kind, not the whole vocabulary
    assert runs["run"]["summary"]["steps"] == 3
    status, body = get_json(server, "/api/runs/run/metrics")
    assert status == 200
    rows = body["rows"]
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert isinstance(rows[-1]["val_loss"], float) and rows[0]["val_loss"] is None
    assert isinstance(rows[-1]["wall_time"], float)


def test_checkpoints_and_model_info(server):
    status, body = get_json(server, "/api/checkpoints")
    assert status == 200
    kinds = {c["name"]: c["kind"] for c in body["checkpoints"]}
    assert kinds["best_model.pt"] == "checkpoint" and kinds["shared"] == "export"
    assert "link.pt" not in kinds  # points outside the folder
    status, info = get_json(server, "/api/model?checkpoint=best_model.pt")
    assert status == 200
    assert info["config"]["n_layers"] == 2
    assert sum(c["parameters"] for c in info["components"]) == info["parameters"]
    assert info["history"]["epoch"] == 1 and "parameters:" in info["describe"]
    status, info = get_json(server, "/api/model?checkpoint=shared")
    assert status == 200 and info["history"] is None


def test_a_model_is_loaded_once(server, lab_dir):
    lab = server.RequestHandlerClass.lab
    get_json(server, "/api/model?checkpoint=checkpoint_epoch_1.pt")
    loads = lab.loads
    for _ in range(3):
        assert get_json(server, "/api/model?checkpoint=checkpoint_epoch_1.pt")[0] == 200
    assert lab.loads == loads
    path = lab_dir / "checkpoints" / "checkpoint_epoch_1.pt"
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # a newer file: read again
    assert get_json(server, "/api/model?checkpoint=checkpoint_epoch_1.pt")[0] == 200
    assert lab.loads == loads + 1


def test_generate_streams_pieces_then_a_summary(server):
    settings = "temperature=0.8&top_k=5&top_p=0.9&max_new_tokens=12&seed=3"
    path = f"/api/generate?checkpoint=best_model.pt&prompt=The&{settings}"
    status, ctype, data = get(server, path)
    assert status == 200 and ctype.startswith("text/event-stream")
    evs = events(data)
    assert evs[-1][0] == "done" and evs[-1][1]["tokens"] == 12 and evs[-1][1]["tokens_per_sec"] > 0
    text = "".join(d["text"] for name, d in evs[:-1])
    assert len(text) == 12  # a character model: one character per token
    assert events(get(server, path)[2])[:-1] == evs[:-1]  # same seed, same text


def test_attention_maps_get_and_post(server):
    status, body = get_json(server, "/api/attention?checkpoint=best_model.pt&prompt=The%20AI")
    assert status == 200
    assert body["tokens"] == ["T", "h", "e", "␣", "A", "I"]  # viz.bytes_label: a space shows as ␣
    maps = body["maps"]
    assert len(maps) == 2 and len(maps[0]) == 4 and len(maps[0][0]) == 6 and len(maps[0][0][0]) == 6
    row = maps[1][2][3]
    assert sum(row) == pytest.approx(1, abs=1e-3) and row[4:] == [0, 0]  # causal: no weight on later tokens
    payload = json.dumps({"checkpoint": "best_model.pt", "prompt": "The AI"})
    status, posted = get_json(
        server, "/api/attention", method="POST", body=payload, headers={"Content-Type": "application/json"}
    )
    assert status == 200 and posted == body


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        ("/api/generate?checkpoint=best_model.pt&temperature=-1", 400, "temperature must be"),
        ("/api/generate?checkpoint=best_model.pt&temperature=abc", 400, "temperature must be a number"),
        ("/api/generate?checkpoint=best_model.pt&top_k=2.5", 400, "top_k must be a whole number"),
        ("/api/generate?checkpoint=best_model.pt&top_p=0", 400, "top_p must be in"),
        ("/api/generate?checkpoint=best_model.pt&temperature=nan", 400, "finite"),
        ("/api/generate?checkpoint=best_model.pt&seed=-1", 400, "seed must be between 0"),
        ("/api/generate?checkpoint=best_model.pt&seed=99999999999999999999999", 400, "seed must be between 0"),
        ("/api/generate?checkpoint=best_model.pt&max_new_tokens=100000", 400, f"between 1 and {MAX_NEW_TOKENS}"),
        ("/api/generate?checkpoint=best_model.pt&prompt=" + "e" * (MAX_PROMPT_CHARS + 1), 400, "the limit is"),
        ("/api/generate?checkpoint=best_model.pt&prompt=Zebra", 400, "not in the model's vocabulary"),
        ("/api/generate?checkpoint=nothere.pt", 404, "not found"),
        ("/api/generate", 400, "give a name"),
        ("/api/model?checkpoint=../secret.txt", 403, "outside"),
        ("/api/model?checkpoint=%2e%2e/secret.txt", 403, "outside"),
        ("/api/model?checkpoint=/etc/passwd", 403, "outside"),
        ("/api/model?checkpoint=link.pt", 403, "outside"),
        ("/api/model?checkpoint=../experiments/run/config.json", 403, "outside"),
        ("/api/runs/%2e%2e/metrics", 403, "outside"),
        ("/api/runs/..%2f..%2fetc/metrics", 403, "outside"),
        ("/api/runs/nothere/metrics", 404, "not found"),
        ("/api/runs/escape/metrics", 403, "outside"),
        ("/api/model?checkpoint=" + "x" * 5000, 404, "not found"),
        ("/api/attention?checkpoint=best_model.pt&prompt=", 400, "at least one character"),
        ("/api/attention?checkpoint=best_model.pt&prompt=" + "e" * 40, 400, "attends over at most 32"),
        ("/api/attention?checkpoint=run/../../secret.txt&prompt=T", 403, "outside"),
        ("/api/nothing", 404, "no API endpoint"),
        ("/etc/passwd", 404, "no page"),
        ("/../minilab/app/serve.py", 404, "no page"),
        ("/web/app.js", 404, "no page"),
    ],
)
def test_bad_requests_are_one_line_errors(server, path, status, message):
    got, body = get_json(server, path)
    assert got == status, body
    assert message in body["error"] and "\n" not in body["error"] and not body["error"].startswith("--")


def test_a_bad_post_body_is_a_400(server):
    got, body = get_json(
        server, "/api/attention", method="POST", body="{not json", headers={"Content-Type": "application/json"}
    )
    assert got == 400 and "not valid JSON" in body["error"]
    got, body = get_json(server, "/api/attention", method="POST", body="", headers={"Content-Length": "lots"})
    assert got == 400 and "Content-Length" in body["error"]


def test_metrics_grow_while_a_run_trains(server, lab_dir):
    """The page polls this endpoint; a row appended to metrics.csv is in the next answer."""
    path = lab_dir / "experiments" / "run" / "metrics.csv"
    before = path.read_text()
    try:
        with open(path, "a") as f:
            f.write("4,2,2.5,,,0.001,1000,0.1,9.5\n")
        rows = get_json(server, "/api/runs/run/metrics")[1]["rows"]
        assert rows[-1]["step"] == 4 and rows[-1]["train_loss"] == 2.5 and rows[-1]["val_loss"] is None
    finally:
        path.write_text(before)


def test_the_model_cache_is_bounded(lab_dir, monkeypatch):
    monkeypatch.setattr("minilab.app.serve_state.MAX_CACHED_MODELS", 2)
    lab = Lab(lab_dir / "experiments", lab_dir / "checkpoints")
    for name in ["best_model.pt", "checkpoint.pt", "best_model.pt", "shared"]:
        lab.model(name)
    assert lab.loads == 3 and len(lab._models) == 2  # checkpoint.pt, the least recently used, made room
    lab.model("checkpoint.pt")
    assert lab.loads == 4
    assert "optimizer_state" not in lab.model("checkpoint.pt")[2]  # only the history is kept


def test_static_files_come_from_the_package(server):
    for path, kind in [("/", "text/html"), ("/app.js", "text/javascript"), ("/style.css", "text/css")]:
        status, ctype, data = get(server, path)
        assert status == 200 and ctype.startswith(kind) and data
    html = get(server, "/")[2].decode()
    assert "app.js" in html and "http://" not in html and "https://" not in html  # nothing from the internet


@pytest.mark.slow
def test_serve_command_prints_the_url_warns_off_loopback_and_stops_on_ctrl_c(lab_dir):
    import signal
    import subprocess
    import sys

    from tests.conftest import ROOT

    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "mini-transformer-lab.py"), "serve", "--port", "0", "--host", "0.0.0.0"],
        cwd=lab_dir,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        line = proc.stdout.readline()
        assert line.startswith("serving experiments and checkpoints at http://127.0.0.1:"), line
        port = int(line.split("http://127.0.0.1:")[1].split("/")[0])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", "/api/runs")
        assert conn.getresponse().status == 200
        conn.close()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill() if proc.poll() is None else None
    assert proc.returncode == 130
    assert "warning: --host 0.0.0.0 lets other machines reach the lab" in err
    assert "Traceback" not in err and err.strip().splitlines()[-1] == "mini-transformer-lab serve: interrupted"


def test_the_limits_the_page_shows_are_the_servers(server):
    status, body = get_json(server, "/api/limits")
    limits = {"max_prompt_chars": MAX_PROMPT_CHARS, "max_new_tokens": MAX_NEW_TOKENS, "max_chat_chars": MAX_CHAT_CHARS}
    assert status == 200 and body == limits


def test_the_pages_generation_defaults_are_the_librarys(server):
    from dataclasses import asdict

    from minilab.generation.sampling import SamplingConfig

    status, body = get_json(server, "/api/sampling")
    assert status == 200 and body == {k: v for k, v in asdict(SamplingConfig()).items() if v is not None}
    assert body["temperature"] == 0.8  # generate's documented default (README: --temperature 0.8)


def test_inside_answers_and_their_limits(server):
    from minilab.app.inside_web import MAX_TEXT_CHARS
    from tests.conftest import EXAMPLE

    ckpt = "best_model.pt"

    def post(path, body):
        return get_json(
            server, path, method="POST", body=json.dumps(body), headers={"Content-Type": "application/json"}
        )

    status, lens = get_json(server, f"/api/inside/lens?checkpoint={ckpt}&prompt=The%20cat")
    assert status == 200 and lens["layers"] == ["embed", "layer 0", "layer 1"]
    assert len(lens["target_prob"][0]) == len("The cat") - 1
    text = EXAMPLE.read_text()[:2000]
    status, ablate = post("/api/inside/ablate", {"checkpoint": ckpt, "text": text})
    assert status == 200 and len(ablate["zero"]) == 2 and len(ablate["zero"][0]) == 4 and ablate["tokens"] > 0
    status, emb = get_json(server, f"/api/inside/embeddings?checkpoint={ckpt}")
    assert status == 200 and len(emb["coords"]) == len(emb["labels"])
    status, neurons = post("/api/inside/neurons", {"checkpoint": ckpt, "text": text, "layer": 1})
    assert status == 200 and len(neurons["neurons"]) == 5
    for path, body, message in (
        ("/api/inside/neurons", {"checkpoint": ckpt, "text": text, "layer": 5}, "layers 0..1"),
        ("/api/inside/ablate", {"checkpoint": ckpt, "text": " "}, "paste some text"),
        ("/api/inside/ablate", {"checkpoint": ckpt, "text": "e" * (MAX_TEXT_CHARS + 1)}, "the limit is"),
        ("/api/inside/lens", {"checkpoint": ckpt, "prompt": "Zzz"}, "not in the model's vocabulary"),
        ("/api/inside/frobnicate", {"checkpoint": ckpt}, "no inside tool"),
    ):
        status, answer = post(path, body)
        assert status == 400 and message in answer["error"], (path, answer)
