"""Data-parallel training with torchrun and gloo on the CPU: 2 processes behave like 1 with the same global batch."""

import csv
import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from minilab.model.config import ModelConfig
from minilab.training import distributed
from minilab.training.config import TrainConfig
from minilab.training.trainer import Trainer
from tests.conftest import EXAMPLE, ROOT

TORCHRUN = Path(sys.executable).with_name("torchrun")
pytestmark = pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun is not installed beside this python")


def _torchrun(*args, timeout=240):
    cmd = [str(TORCHRUN), "--standalone", "--nproc_per_node=2", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def _losses(path):
    return [float(r["train_loss"]) for r in csv.DictReader(open(path))]


def _late_release(hold_s):
    """A stand-in for a gloo collective: doubles the tensor, then keeps it for ``hold_s`` on another thread."""
    released = []

    def collective(t):
        t.mul_(2)
        owner = [t.view(1)]  # a second owner of t, as gloo's work holds one

        def hold():
            time.sleep(hold_s)
            released.append(time.monotonic())
            owner.clear()

        threading.Thread(target=hold, daemon=True).start()

    return collective, released


def test_a_collective_returns_only_when_its_tensor_is_free():
    # gloo lets go of a collective's tensor after the call returns; a rank that went on to exit
    # before that aborted at interpreter shutdown. The helper must wait for the release.
    collective, released = _late_release(0.2)
    assert distributed._one_number(1.5, torch.device("cpu"), collective) == 3.0
    returned = time.monotonic()
    assert released and released[0] <= returned


def test_waiting_for_a_collective_tensor_is_bounded():
    collective, released = _late_release(5.0)
    assert distributed._one_number(2.0, torch.device("cpu"), collective, wait_s=0.1) == 4.0
    assert not released  # it returned before the 5 s hold ended: the wait gave up (no timed window)


@pytest.mark.slow
def test_two_ranks_agree_and_match_one_process_with_the_same_global_batch(tmp_path):
    r = _torchrun(ROOT / "tests" / "support" / "ddp_worker.py", tmp_path / "ddp")
    assert r.returncode == 0, r.stderr[-3000:]
    rank0, rank1 = (torch.load(tmp_path / "ddp" / f"rank{i}.pt", weights_only=True) for i in (0, 1))
    for name in rank0:
        assert torch.equal(rank0[name], rank1[name]), name  # identical weights on every rank
    assert not (tmp_path / "ddp" / "checkpoints" / "rank1").exists()

    single = TrainConfig(
        data=str(EXAMPLE),
        epochs=2,
        batch_size=4,
        steps_per_epoch=3,
        device="cpu",
        out_dir=str(tmp_path / "one" / "ck"),
        experiments_dir=str(tmp_path / "one" / "exp"),
        run_name="one",
        sample_length=0,
        lr=3e-3,
    )
    model_cfg = ModelConfig(context_length=32, d_model=32, n_heads=4, n_layers=2, d_ff=64, dropout=0.0)
    trainer = Trainer(single, model_cfg, log=lambda *_: None, progress=False)
    result = trainer.fit()
    reports = [json.loads((tmp_path / "ddp" / f"rank{i}.json").read_text()) for i in (0, 1)]
    for report in reports:  # rank 0 evaluates; rank 1 reports its numbers, not its own train loss
        assert report["final_val_loss"] == pytest.approx(result.final_val_loss, abs=1e-4)
        assert report["best_val_loss"] == pytest.approx(result.best_val_loss, abs=1e-4)
    ddp_losses = _losses(tmp_path / "ddp" / "experiments" / "ddp" / "metrics.csv")
    one_losses = _losses(tmp_path / "one" / "exp" / "one" / "metrics.csv")
    assert ddp_losses == pytest.approx(one_losses, abs=1e-4)
    for name, tensor in trainer.model.state_dict().items():
        assert torch.allclose(tensor, rank0[name], atol=1e-5), name


@pytest.mark.slow
def test_a_failing_rank_ends_the_run_instead_of_hanging(tmp_path):
    r = _torchrun(ROOT / "tests" / "support" / "ddp_worker.py", tmp_path / "ddp", 1, timeout=200)
    assert r.returncode != 0
    assert "rank 1 fails on purpose" in r.stderr


@pytest.mark.slow
def test_torchrun_with_the_cli_writes_one_set_of_files(tmp_path):
    shutil.copy(EXAMPLE, tmp_path / "my_data.txt")
    r = subprocess.run(
        [
            str(TORCHRUN),
            "--standalone",
            "--nproc_per_node=2",
            str(ROOT / "mini-transformer-lab.py"),
            "train",
            "--data",
            "my_data.txt",
            "--epochs",
            "1",
            "--steps_per_epoch",
            "2",
            "--batch_size",
            "2",
            "--context_length",
            "32",
            "--d_model",
            "32",
            "--n_heads",
            "4",
            "--n_layers",
            "2",
            "--d_ff",
            "64",
            "--device",
            "cpu",
            "--run_name",
            "cli",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("epoch 1/1") == 1  # one rank reports
    assert r.stdout.count("done: val loss") == 1
    assert "x 2 processes" in r.stdout
    assert {p.name for p in (tmp_path / "checkpoints").iterdir()} == {
        "checkpoint.pt",
        "best_model.pt",
        "checkpoint_epoch_1.pt",
    }
