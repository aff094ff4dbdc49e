"""Attention maps: proper distributions over the past only, for every architecture, drawn as a valid PNG."""

import pytest
import torch

from minilab.app.cli import main
from minilab.checkpoint import save_checkpoint
from minilab.model.gpt import GPT
from minilab.plots import token_label
from minilab.tokenizers.char import CharTokenizer
from tests.conftest import tiny_model_config
from tests.test_kvcache import ARCHS, _model

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("arch", ARCHS)
def test_each_head_is_a_distribution_over_the_past(arch):
    model = _model(arch, seed=3)
    T = 12
    maps = model.attention_maps(torch.randint(0, 20, (2, T), generator=torch.Generator().manual_seed(0)))
    assert len(maps) == model.cfg.n_layers
    future = torch.ones(T, T, dtype=torch.bool).triu(1)
    for weights in maps:
        assert weights.shape == (2, model.cfg.n_heads, T, T)
        assert torch.allclose(weights.sum(-1), torch.ones(2, model.cfg.n_heads, T), atol=1e-6)
        assert torch.all(weights[..., future] == 0)  # exactly zero, not merely small
        assert torch.all(weights[..., ~future] > 0)  # every allowed position gets some weight
    # The first token can only look at itself.
    assert torch.all(maps[0][:, :, 0, 0] == 1)


def test_token_labels_are_readable():
    assert [token_label(c) for c in ["a", " ", "\n", "\t", "\\"]] == ["a", "␣", "\\n", "\\t", "\\\\"]


@pytest.fixture
def checkpoint(tmp_path):
    torch.manual_seed(0)
    tok = CharTokenizer.from_text("hello world\n")
    model = GPT(tiny_model_config(vocab_size=tok.vocab_size, pos_encoding="rope", norm="rmsnorm", qk_norm=True))
    path = tmp_path / "m.pt"
    payload = {"model_state": model.state_dict(), "model_config": model.cfg.to_dict(), "tokenizer": tok.to_dict()}
    save_checkpoint(path, payload)
    return path


def _read_png(path):
    import matplotlib.image

    assert path.read_bytes()[:8] == PNG
    return matplotlib.image.imread(path)  # decodes the whole image: a truncated file would fail here


def test_attention_command_writes_a_grid_and_a_single_map(checkpoint, tmp_path, capsys):
    grid, one = tmp_path / "grid.png", tmp_path / "one.png"
    base = ["attention", "--checkpoint", str(checkpoint), "--prompt", "hello\nworld"]
    assert main([*base, "--out", str(grid)]) == 0
    assert main([*base, "--out", str(one), "--layer", "1", "--head", "3"]) == 0
    out = capsys.readouterr().out
    assert "11 tokens, 2 layers x 4 heads" in out and "layer 1 head 3" in out
    assert _read_png(grid).shape[1] > _read_png(one).shape[1]  # 4 heads side by side are wider than one map


def test_attention_refuses_to_overwrite_what_is_not_a_png(checkpoint, tmp_path, capsys):
    precious = tmp_path / "notes.png"
    precious.write_text("my notes")
    code = main(["attention", "--checkpoint", str(checkpoint), "--prompt", "hello", "--out", str(precious)])
    assert code == 2 and "is not a PNG; it is left alone" in capsys.readouterr().err
    assert precious.read_text() == "my notes"


def test_token_labels_show_text_and_mark_partial_characters():
    from minilab.plots import bytes_label

    assert bytes_label(b"a b\n") == "a␣b\\n"
    assert bytes_label("é".encode()) == "é"
    assert bytes_label("é".encode()[:1]) == "\\xc3" and bytes_label("é".encode()[1:]) == "\\xa9"
