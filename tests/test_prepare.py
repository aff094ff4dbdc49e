"""prepare: streaming a text into a token file, and training from it through np.memmap."""

import importlib

import numpy as np
import pytest
import torch

from minilab.errors import LabError
from minilab.tokenizers.char import CharTokenizer
from minilab.training.prepare import open_prepared, prepare_dataset
from minilab.training.trainer import Trainer
from tests.conftest import EXAMPLE, tiny_model_config, tiny_train_config

prepare_module = importlib.import_module("minilab.training.prepare")


def test_tokens_match_the_tokenizer_across_chunk_boundaries(tmp_path, monkeypatch):
    monkeypatch.setattr(prepare_module, "CHUNK_BYTES", 7)  # tiny chunks split multi-byte characters
    text = "héllo wörld — 東京 🙂\n" * 20
    (tmp_path / "t.txt").write_text(text, encoding="utf-8")
    meta = prepare_dataset(tmp_path / "t.txt", tmp_path / "p", val_fraction=0.1, progress=False)
    data = open_prepared(tmp_path / "p")
    tok = CharTokenizer.from_text(text)
    assert data.tokenizer.chars == tok.chars and meta["dtype"] == "uint16"
    ids = np.concatenate([data.train, data.val])
    assert ids.tolist() == tok.encode(text)
    assert len(data.val) == int(len(text) * 0.1)


def test_uint32_when_the_vocabulary_is_large(tmp_path):
    text = "".join(chr(0x10000 + i) for i in range(70_000))
    (tmp_path / "big.txt").write_text(text, encoding="utf-8")
    meta = prepare_dataset(tmp_path / "big.txt", tmp_path / "p", progress=False)
    data = open_prepared(tmp_path / "p")
    assert meta["dtype"] == "uint32" and data.train.dtype == np.uint32
    assert int(data.train[-1]) == len(data.train) - 1


def test_training_from_prepared_equals_training_from_text(tmp_path):
    prepare_dataset(EXAMPLE, tmp_path / "prep", progress=False)
    quiet = dict(log=lambda *_: None, progress=False)
    cfg = tiny_model_config(context_length=32, dropout=0.1)
    a = Trainer(tiny_train_config(tmp_path / "a", epochs=1), cfg, **quiet)
    a.fit()
    b = Trainer(tiny_train_config(tmp_path / "b", epochs=1, data=str(tmp_path / "prep")), cfg, **quiet)
    b.fit()
    assert isinstance(b.splits.train, np.ndarray)  # memory-mapped, not loaded
    for name, tensor in a.model.state_dict().items():
        assert torch.equal(tensor, b.model.state_dict()[name]), name
    assert a.last_val == b.last_val


def test_bad_inputs_and_no_overwrite(tmp_path):
    (tmp_path / "bad.txt").write_bytes(b"ok then \xff\xfe")
    with pytest.raises(LabError, match="not UTF-8 text \\(bad byte at offset 8\\)"):
        prepare_dataset(tmp_path / "bad.txt", tmp_path / "p1", progress=False)
    (tmp_path / "bin.txt").write_bytes(b"\x00\x01")
    with pytest.raises(LabError, match="looks binary"):
        prepare_dataset(tmp_path / "bin.txt", tmp_path / "p2", progress=False)
    with pytest.raises(LabError, match="does not exist"):
        prepare_dataset(tmp_path / "nope.txt", tmp_path / "p3", progress=False)
    prepare_dataset(EXAMPLE, tmp_path / "p4", progress=False)
    before = (tmp_path / "p4" / "tokens.bin").read_bytes()
    with pytest.raises(LabError, match="already holds a prepared dataset"):
        prepare_dataset(EXAMPLE, tmp_path / "p4", progress=False)
    assert (tmp_path / "p4" / "tokens.bin").read_bytes() == before
    (tmp_path / "p4" / "tokens.bin").write_bytes(before[:-2])
    with pytest.raises(LabError, match="not the size"):
        open_prepared(tmp_path / "p4")
