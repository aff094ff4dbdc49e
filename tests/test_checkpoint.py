import os
import pickle
import zipfile

import pytest
import torch

from minilab.checkpoint import (
    atomic_write,
    load_checkpoint,
    load_model,
    model_from_checkpoint,
    resolve_checkpoint,
    save_checkpoint,
)
from minilab.errors import LabError
from minilab.model.gpt import GPT
from minilab.tokenizers.char import CharTokenizer
from tests.conftest import tiny_model_config


def _payload(pos="sinusoidal"):
    torch.manual_seed(0)
    tok = CharTokenizer.from_text("hello world, hello lab\n")
    cfg = tiny_model_config(vocab_size=tok.vocab_size, pos_encoding=pos)
    model = GPT(cfg).eval()
    return model, {"model_state": model.state_dict(), "model_config": cfg.to_dict(), "tokenizer": tok.to_dict()}


@pytest.mark.parametrize("pos", ["sinusoidal", "learned"])
def test_round_trip_gives_identical_logits(tmp_path, pos):
    model, payload = _payload(pos)
    path = tmp_path / "m.pt"
    save_checkpoint(path, payload)
    again, tok, _ = load_model(path)
    idx = torch.tensor([tok.encode("hello lab")])
    assert torch.equal(model(idx)[0], again(idx)[0])


def test_write_is_atomic_and_leaves_no_temp_files(tmp_path):
    _, payload = _payload()
    path = tmp_path / "m.pt"
    save_checkpoint(path, payload)
    old = path.read_bytes()

    def crash_half_way(f):
        f.write(b"half a checkpoint")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        atomic_write(path, crash_half_way)
    assert path.read_bytes() == old  # the complete old file is still there
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]
    load_checkpoint(path)


def test_bare_name_is_found_in_checkpoints_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "best_model.pt").write_bytes(b"x")
    assert resolve_checkpoint("best_model.pt") == tmp_path.joinpath("checkpoints", "best_model.pt").relative_to(
        tmp_path
    )
    with pytest.raises(LabError, match="looked for nope.pt and checkpoints/nope.pt"):
        resolve_checkpoint("nope.pt")


def test_code_in_a_pickle_is_not_run(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "evil.pt"
    torch.save({"format": "minilab-checkpoint", "format_version": 1, "x": Evil()}, path)
    with pytest.raises(LabError, match="refused by the safe loader"):
        load_checkpoint(path)
    assert not marker.exists()


def test_bad_files_get_their_own_messages(tmp_path):
    _, payload = _payload()
    good = tmp_path / "good.pt"
    save_checkpoint(good, payload)
    cases = {}
    (tmp_path / "empty.pt").write_bytes(b"")
    cases["empty.pt"] = "is empty"
    (tmp_path / "text.pt").write_text("just some text")
    cases["text.pt"] = "not a checkpoint file"
    (tmp_path / "trunc.pt").write_bytes(good.read_bytes()[:5000])
    cases["trunc.pt"] = "not a checkpoint file"
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    cases["other.pt"] = "not a mini-transformer-lab checkpoint"
    torch.save({**payload, "format": "minilab-checkpoint", "format_version": 99}, tmp_path / "future.pt")
    cases["future.pt"] = "format version 99"
    for name, message in cases.items():
        with pytest.raises(LabError, match=message):
            load_checkpoint(tmp_path / name)
    with pytest.raises(LabError, match="directory"):
        load_checkpoint(tmp_path)
    assert zipfile.is_zipfile(good) and pickle  # the good one is a torch zip archive


def test_weights_that_do_not_match_config(tmp_path):
    _, payload = _payload()
    cfg = dict(payload["model_config"], d_model=64, n_heads=4)
    ckpt = {**payload, "model_config": cfg}
    with pytest.raises(LabError, match="do not match its model config"):
        model_from_checkpoint(ckpt)


@pytest.mark.skipif(not hasattr(os, "fchmod"), reason="POSIX permissions only")
def test_written_files_get_the_usual_permissions(tmp_path):
    """A checkpoint is as readable as any file the user makes (mkstemp alone would make it owner-only)."""
    old = os.umask(0o022)
    try:
        atomic_write(tmp_path / "a.bin", lambda f: f.write(b"x"))
        os.umask(0o077)
        atomic_write(tmp_path / "b.bin", lambda f: f.write(b"x"))
    finally:
        os.umask(old)
    assert (tmp_path / "a.bin").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "b.bin").stat().st_mode & 0o777 == 0o600
