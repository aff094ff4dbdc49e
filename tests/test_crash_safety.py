"""Nothing lost: signals, kills, failed writes and pruning never leave a broken or missing checkpoint."""

import csv
import errno
import importlib
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch

from minilab.app.settings import resume_configs
from minilab.checkpoint import load_checkpoint
from minilab.errors import LabError
from minilab.training.signals import StopSignals, TrainingInterrupted
from minilab.training.trainer import Trainer
from tests.conftest import EXAMPLE, ROOT, TINY_MODEL_FLAGS, tiny_model_config, tiny_train_config

QUIET = dict(log=lambda *_: None, progress=False)
files_module = importlib.import_module("minilab.training.runfiles")  # where checkpoints are written


def _model_cfg():
    return tiny_model_config(context_length=32, dropout=0.1)


@pytest.mark.parametrize("optimizer", ["adamw", "muon"])
def test_sigint_mid_epoch_saves_and_resume_is_bitwise_exact(tmp_path, optimizer):
    Trainer(tiny_train_config(tmp_path / "a", optimizer=optimizer), _model_cfg(), **QUIET).fit()
    straight = load_checkpoint(tmp_path / "a" / "checkpoints" / "checkpoint.pt")

    trainer = Trainer(tiny_train_config(tmp_path / "b", optimizer=optimizer), _model_cfg(), **QUIET)
    real_step = trainer.train_step

    def step_then_interrupt(lr):
        loss = real_step(lr)
        if trainer.step == 6:  # after 7 steps: epoch 2, 2 of 5 steps in
            os.kill(os.getpid(), signal.SIGINT)
        return loss

    trainer.train_step = step_then_interrupt
    with pytest.raises(TrainingInterrupted) as e:
        trainer.fit()
    assert e.value.exit_code == 130 and "Resume with: mini-transformer-lab train" in str(e.value)
    mid = load_checkpoint(tmp_path / "b" / "checkpoints" / "checkpoint.pt")  # weights_only=True
    assert mid["step"] == 7 and mid["epoch"] == 1
    assert ("muon_state" in mid) == (optimizer == "muon")
    cfg, _ = resume_configs(mid, {}, {})
    Trainer(cfg, resume=mid, **QUIET).fit()
    resumed = load_checkpoint(tmp_path / "b" / "checkpoints" / "checkpoint.pt")
    for name, tensor in straight["model_state"].items():
        assert torch.equal(tensor, resumed["model_state"][name]), name
    if optimizer == "muon":  # the momentum buffers continued too
        for a, b in zip(straight["muon_state"]["state"].values(), resumed["muon_state"]["state"].values()):
            assert torch.equal(a["momentum_buffer"], b["momentum_buffer"])
    assert resumed["best_val_loss"] == straight["best_val_loss"]
    rows = list(csv.DictReader(open(tmp_path / "b" / "experiments" / "run" / "metrics.csv")))
    assert [int(r["step"]) for r in rows] == list(range(1, 11))  # no duplicated or missing rows


def test_second_signal_stops_at_once():
    with StopSignals() as signals:
        os.kill(os.getpid(), signal.SIGINT)
        assert signals.requested == signal.SIGINT
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler given back


@pytest.mark.parametrize(
    ("code", "text"),
    [
        (errno.ENOSPC, "No space left on device"),
        (errno.EROFS, "Read-only file system"),
        (errno.EACCES, "Permission denied"),
    ],
)
def test_failed_write_stops_cleanly_and_keeps_earlier_checkpoints(tmp_path, monkeypatch, code, text):
    real_save = files_module.save_checkpoint
    calls = []

    def save_until_disk_full(paths, payload):
        calls.append(paths)
        if len(calls) > 1:
            raise OSError(code, text, str(paths[0]))
        real_save(paths, payload)

    monkeypatch.setattr(files_module, "save_checkpoint", save_until_disk_full)
    ck = tmp_path / "checkpoints"
    with pytest.raises(LabError, match=f"could not write .*{text}; training stopped at step 10"):
        Trainer(tiny_train_config(tmp_path), _model_cfg(), **QUIET).fit()
    for name in ("checkpoint_epoch_1.pt", "checkpoint.pt", "best_model.pt"):
        assert load_checkpoint(ck / name)["epoch"] == 1


def test_keep_last_prunes_only_old_epoch_files(tmp_path):
    Trainer(tiny_train_config(tmp_path, epochs=4, steps_per_epoch=2, keep_last=2), _model_cfg(), **QUIET).fit()
    names = {p.name for p in (tmp_path / "checkpoints").iterdir()}
    assert names == {"checkpoint_epoch_3.pt", "checkpoint_epoch_4.pt", "checkpoint.pt", "best_model.pt"}


def test_save_every_steps_writes_latest_mid_epoch(tmp_path, monkeypatch):
    saved = []
    real_save = files_module.save_checkpoint
    monkeypatch.setattr(
        files_module, "save_checkpoint", lambda p, d: (saved.append((d["step"], len(p))), real_save(p, d))
    )
    Trainer(tiny_train_config(tmp_path, epochs=1, save_every_steps=2), _model_cfg(), **QUIET).fit()
    assert saved == [(2, 1), (4, 1), (5, 3)]  # mid-epoch: checkpoint.pt alone; epoch end: all three


def _start(cwd, *extra, steps_per_epoch=40):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = [
        sys.executable,
        str(ROOT / "mini-transformer-lab.py"),
        "train",
        "--data",
        str(EXAMPLE),
        *TINY_MODEL_FLAGS,
        "--batch_size",
        "4",
        "--steps_per_epoch",
        str(steps_per_epoch),
        "--sample_length",
        "0",
        "--device",
        "cpu",
        "--run_name",
        "r",
        # One thread: on a loaded 2-core machine a second one makes this tiny model's steps 16x slower.
        "--threads",
        "1",
        *extra,
    ]
    return subprocess.Popen(args, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_steps(cwd, n, timeout=60):
    metrics = cwd / "experiments" / "r" / "metrics.csv"
    end = time.time() + timeout
    while time.time() < end:
        if metrics.exists() and len(metrics.read_text().splitlines()) > n:
            return
        time.sleep(0.05)
    raise AssertionError("training did not start")


@pytest.mark.slow
def test_sigterm_saves_says_how_to_resume_and_exits_143(tmp_path):
    proc = _start(tmp_path, "--epochs", "3")
    _wait_for_steps(tmp_path, 5)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "Resume with: mini-transformer-lab train" in err and "Traceback" not in err
    ckpt = load_checkpoint(tmp_path / "checkpoints" / "checkpoint.pt")
    rows = list(csv.DictReader(open(tmp_path / "experiments" / "r" / "metrics.csv")))
    assert 5 <= ckpt["step"] == int(rows[-1]["step"]) < 3 * 40  # saved where it stood, mid-run


@pytest.mark.slow
def test_sigkill_at_random_moments_never_breaks_the_newest_checkpoint(tmp_path):
    rng = random.Random(0)
    ck = tmp_path / "checkpoints"
    for _attempt in range(10):
        resume = ["--resume", str(ck / "checkpoint.pt")] if (ck / "checkpoint.pt").exists() else []
        proc = _start(tmp_path, "--epochs", "3", "--save_every_steps", "1", *resume, steps_per_epoch=300)
        # On a quiet machine the earlier attempts may have trained all 900 steps: no next step to wait for.
        finished = bool(resume) and load_checkpoint(ck / "checkpoint.pt")["step"] >= 3 * 300
        if _attempt % 2 and not finished:  # after the run's next step, so that it gets somewhere however loaded
            metrics = tmp_path / "experiments" / "r" / "metrics.csv"
            _wait_for_steps(tmp_path, len(metrics.read_text().splitlines()) if metrics.exists() else 1)
            time.sleep(rng.uniform(0.0, 0.5))  # in a step or a checkpoint write
        else:
            time.sleep(rng.uniform(2.0, 4.0))  # somewhere in start-up, a step, or a checkpoint write
        proc.kill()
        proc.communicate()
        for path in ck.glob("*.pt"):  # every visible checkpoint is complete
            load_checkpoint(path)
    reached = load_checkpoint(ck / "checkpoint.pt")["step"]
    assert reached > 0
    proc = _start(tmp_path, "--epochs", "4", "--resume", str(ck / "checkpoint.pt"), steps_per_epoch=300)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert load_checkpoint(ck / "checkpoint.pt")["epoch"] == 4
    assert not list(ck.glob(".*.tmp"))  # a resumed run clears what a killed write left behind
