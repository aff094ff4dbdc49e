"""export / info / eval: sharing a model safely, and looking at it."""

import json

import pytest
import torch

from minilab.app.export import export_model
from minilab.app.info import describe, parameters_by_component
from minilab.checkpoint import load_export, load_model
from minilab.errors import LabError
from minilab.model.gpt import GPT
from minilab.tokenizers.char import CharTokenizer
from minilab.training.evaluate import evaluate_loss, score_text
from tests.conftest import tiny_model_config


@pytest.fixture
def model_and_tok():
    torch.manual_seed(0)
    tok = CharTokenizer.from_text("the quick brown fox\n")
    return GPT(tiny_model_config(vocab_size=tok.vocab_size, pos_encoding="learned")).eval(), tok


def test_export_round_trip_gives_identical_logits(tmp_path, model_and_tok):
    model, tok = model_and_tok
    files = export_model(model, tok, tmp_path / "shared")
    assert sorted(p.name for p in files) == ["config.json", "model.safetensors", "tokenizer.json"]
    assert json.loads((tmp_path / "shared" / "config.json").read_text())["pos_encoding"] == "learned"
    again, tok2, ckpt = load_model(tmp_path / "shared")
    assert ckpt is None and tok2.chars == tok.chars
    assert again.lm_head.weight is again.tok_emb.weight  # tying restored
    idx = torch.tensor([tok.encode("the fox")])
    assert torch.equal(model(idx)[0], again(idx)[0])


def test_export_round_trip_of_an_untied_modern_model(tmp_path):
    torch.manual_seed(1)
    tok = CharTokenizer.from_text("the quick brown fox\n")
    cfg = tiny_model_config(vocab_size=tok.vocab_size, tie_embeddings=False, pos_encoding="rope", norm="rmsnorm")
    model = GPT(cfg).eval()
    export_model(model, tok, tmp_path / "m")
    again, _, _ = load_model(tmp_path / "m")
    assert again.lm_head.weight is not again.tok_emb.weight
    assert torch.equal(again.lm_head.weight, model.lm_head.weight)
    idx = torch.tensor([tok.encode("the fox")])
    assert torch.equal(model(idx)[0], again(idx)[0])


def test_export_refuses_to_overwrite_and_bad_dirs_are_named(tmp_path, model_and_tok):
    model, tok = model_and_tok
    export_model(model, tok, tmp_path / "e")
    before = (tmp_path / "e" / "model.safetensors").read_bytes()
    with pytest.raises(LabError, match="already holds"):
        export_model(model, tok, tmp_path / "e")
    assert (tmp_path / "e" / "model.safetensors").read_bytes() == before
    (tmp_path / "afile").write_text("x")
    with pytest.raises(LabError, match="is a file"):
        export_model(model, tok, tmp_path / "afile")
    (tmp_path / "e" / "tokenizer.json").unlink()
    with pytest.raises(LabError, match="has no tokenizer.json"):
        load_export(tmp_path / "e")
    export_model(model, tok, tmp_path / "f")
    (tmp_path / "f" / "config.json").write_text("{not json")
    with pytest.raises(LabError, match="not valid JSON"):
        load_export(tmp_path / "f")
    export_model(model, tok, tmp_path / "g")
    (tmp_path / "g" / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(LabError, match="not a readable safetensors file"):
        load_export(tmp_path / "g")
    export_model(model, tok, tmp_path / "h")
    cfg = json.loads((tmp_path / "h" / "config.json").read_text())
    (tmp_path / "h" / "config.json").write_text(json.dumps({**cfg, "d_ff": 128}))
    with pytest.raises(LabError, match="do not match"):
        load_export(tmp_path / "h")


def test_parameter_breakdown_adds_up(model_and_tok):
    model, tok = model_and_tok
    parts = dict(parameters_by_component(model))
    assert sum(parts.values()) == model.num_params()
    assert parts["position embedding"] == 16 * 32
    report = describe(model, tok, None)
    assert "vocabulary: 17 char tokens" in report and "training history: none" in report


@pytest.mark.parametrize("tied", [True, False])
def test_parameter_breakdown_by_component_counted_by_hand(tied):
    """d=32, 4 heads, 2 layers, d_ff=64, vocab 20, rmsnorm + qk-norm, no biases: every count from the shapes."""
    cfg = tiny_model_config(norm="rmsnorm", qk_norm=True, bias=False, tie_embeddings=tied, pos_encoding="rope")
    model = GPT(cfg)
    parts = dict(parameters_by_component(model))
    d, ff, V, L, hs = 32, 64, 20, 2, 8
    expected = {
        "token embedding (shared with the output head)" if tied else "token embedding": V * d,
        "norms": L * (2 * d + 2 * hs) + d,  # two block norms and q/k norms per layer, the final norm
        "attention (q, k, v and output projections)": L * (3 * d * d + d * d),
        "feed-forward": L * (2 * d * ff),
        **({} if tied else {"output head": V * d}),
    }
    assert parts == expected and sum(parts.values()) == model.num_params()
    report = describe(model, CharTokenizer([chr(97 + i) for i in range(20)]), None)
    assert "architecture: rope positions, rmsnorm, qk-norm, gelu MLP, " in report
    assert ("tied head" if tied else "untied head, no biases") in report
    assert ("output head: 640" in report) != tied


def test_score_text_is_the_last_fraction_every_position(model_and_tok):
    model, tok = model_and_tok
    text = "the quick brown fox\n" * 10
    loss, n, n_bytes = score_text(model, tok, text, fraction=0.5)
    assert n == 99 and n_bytes == 99  # one byte per ASCII character
    ids = torch.tensor(tok.encode(text)[100:])
    assert loss == pytest.approx(evaluate_loss(model, ids, 16))
    # every position counted once: windows of 16 over 99 positions, computed by hand
    total = 0.0
    for start in range(0, 99, 16):
        x, y = ids[start : min(start + 16, 99)], ids[start + 1 : min(start + 17, 100)]
        total += torch.nn.functional.cross_entropy(model(x.view(1, -1))[0][0], y, reduction="sum").item()
    assert loss == pytest.approx(total / 99, rel=1e-5)
    with pytest.raises(LabError, match="at least 2"):
        score_text(model, tok, "t", fraction=1.0)


@pytest.mark.parametrize("length", [207, 1000, 1009])
def test_eval_scores_exactly_the_validation_split_that_training_held_out(model_and_tok, length):
    """`eval --data FILE` on the whole training file scores the split training validated on, the same way."""
    from minilab.training.data import split_tokens

    model, tok = model_and_tok
    text = ("the quick brown fox\n" * 60)[:length]
    val = split_tokens(tok.encode(text), 0.1, 16).val
    score = score_text(model, tok, text, fraction=0.1)
    assert score.positions == len(val) - 1 == int(length * 0.1) - 1
    assert score.loss == evaluate_loss(model, val, 16)  # the trainer's own scoring: windows of the context
    assert score_text(model, tok, text, fraction=0.1).loss == score.loss  # deterministic
