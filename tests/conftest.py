"""Shared helpers: tiny models and tiny runs that take a fraction of a second on a CPU."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from minilab.model.config import ModelConfig
from minilab.training.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "example_data" / "ai_intro.txt"


def tiny_model_config(**overrides) -> ModelConfig:
    base = dict(vocab_size=20, context_length=16, d_model=32, n_heads=4, n_layers=2, d_ff=64, dropout=0.0)
    return ModelConfig(**{**base, **overrides})


def tiny_eval_model(seed: int = 0, **overrides):
    """A tiny GPT in eval mode whose norms are not all ones and zeros, so a decoder can get them wrong."""
    from minilab.model.gpt import GPT

    torch.manual_seed(seed)
    model = GPT(tiny_model_config(**overrides)).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 1:
                p.add_(0.1 * torch.randn_like(p))
    return model


TINY_MODEL_FLAGS = ["--context_length", "32", "--d_model", "32", "--n_heads", "4", "--n_layers", "2", "--d_ff", "64"]


def tiny_train_config(tmp_path: Path, **overrides) -> TrainConfig:
    base = dict(
        data=str(EXAMPLE),
        epochs=2,
        batch_size=4,
        steps_per_epoch=5,
        device="cpu",
        out_dir=str(tmp_path / "checkpoints"),
        experiments_dir=str(tmp_path / "experiments"),
        run_name="run",
        sample_length=20,
        lr=3e-3,
    )
    return TrainConfig(**{**base, **overrides})


def run_cli(*args, cwd=None, timeout=300) -> subprocess.CompletedProcess:
    """Run the seed's entry point in a subprocess, as a user would."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, str(ROOT / "mini-transformer-lab.py"), *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def snapshot(directory: Path) -> dict:
    """Path -> bytes of every file under ``directory``: to prove that nothing changed."""
    return {p: p.read_bytes() for p in sorted(Path(directory).rglob("*")) if p.is_file()}


def make_bad_inputs(d: Path) -> None:
    """One file of every kind of bad input (and one good text), for the CLI tests and docs/errors.md."""
    import shutil

    shutil.copy(EXAMPLE, d / "ok.txt")
    (d / "empty.txt").write_bytes(b"")
    (d / "adir").mkdir()
    (d / "binary.txt").write_bytes(b"\x00\x01\x02binary\x00")
    (d / "latin1.txt").write_bytes("caf\xe9 au lait".encode("latin-1"))
    (d / "blank.txt").write_text("  \n\t\n")
    (d / "afile").write_text("I am a file")
    (d / "unseen.txt").write_text("Zzz QQQ XX")
    (d / "typo.toml").write_text("lr = 0.001\nn_layer = 2\n")
    (d / "wrongtype.toml").write_text('epochs = "ten"\n')
    (d / "broken.toml").write_text("lr = \n")
    (d / "badjson.jsonl").write_text('{"messages": [{"role": "user", "content": "The"}]\n')
    (d / "noanswer.jsonl").write_text('{"messages": [{"role": "user", "content": "The"}]}\n')
    (d / "role.jsonl").write_text('{"messages": [{"role": "bot", "content": "The"}]}\n')


@pytest.fixture(autouse=True)
def _fixed_threads():
    # One thread: the test models are tiny, and on a shared 2-core machine a second thread spends
    # its time waiting for the first (measured: a 48-token decode loop took 7 s with 2 threads, 0.03 s with 1).
    torch.set_num_threads(1)


@pytest.fixture(scope="session", autouse=True)
def _cpp_decode_step_built():
    """Build the C++ decode step (if this machine can) before any test, so no test's output carries the notice."""
    from minilab.generation import nativedecode

    nativedecode.load(lambda message: print(f"\n{message}", file=sys.stderr))
