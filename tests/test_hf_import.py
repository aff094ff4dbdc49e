"""import: a GPT-2 built and saved by transformers itself becomes a lab checkpoint that computes the same."""

import json
import shutil

import pytest
import torch

from minilab.app.cli import main
from minilab.app.hf_export import export_hf
from minilab.app.hf_import import import_gpt2
from minilab.checkpoint import load_model
from minilab.errors import LabError
from tests.conftest import snapshot
from tests.support.hf import TEXT, VARIED

transformers = pytest.importorskip("transformers", reason="the hf extra is not installed (pip install -e '.[hf]')")
hf_tokenizers = pytest.importorskip("tokenizers", reason="the hf extra is not installed (pip install -e '.[hf]')")


def save_gpt2(folder, tokenizer_files: str = "tokenizer.json", **config) -> "transformers.GPT2LMHeadModel":
    """A random 2-layer, 64-wide GPT-2 and a byte-level BPE trained by `tokenizers`, saved as the Hub has them."""
    bpe = hf_tokenizers.ByteLevelBPETokenizer()
    bpe.train_from_iterator([TEXT], vocab_size=420, special_tokens=["<|endoftext|>"], show_progress=False)
    if tokenizer_files == "tokenizer.json":
        bpe.save(str(folder / "tokenizer.json"))
    else:
        bpe.save_model(str(folder))  # vocab.json + merges.txt
    torch.manual_seed(0)
    settings = dict(vocab_size=bpe.get_vocab_size(), n_positions=128, n_embd=64, n_layer=2, n_head=4)
    settings |= dict(bos_token_id=0, eos_token_id=0) | config  # <|endoftext|> is id 0 here
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(**settings)).eval()
    model.save_pretrained(folder)
    return model


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("gpt2")
    return d, save_gpt2(d)


def hf_ids(folder, text: str) -> list[int]:
    return hf_tokenizers.Tokenizer.from_file(str(folder / "tokenizer.json")).encode(text).ids


@pytest.mark.parametrize("files", ["tokenizer.json", "vocab.json+merges.txt"])
@pytest.mark.parametrize("activation", ["gelu_new", "gelu"])
def test_imported_gpt2_computes_and_tokenizes_as_transformers_does(tmp_path, files, activation):
    d = tmp_path / "gpt2"
    d.mkdir()
    hf_model = save_gpt2(d, files, activation_function=activation, tie_word_embeddings=activation == "gelu")
    model, tok = import_gpt2(d, tmp_path / "gpt2.pt")
    model, tok, ckpt = load_model(tmp_path / "gpt2.pt")  # what generate, eval, serve ... will see
    assert ckpt["imported_from"]["model_type"] == "gpt2"
    assert (model.lm_head.weight is model.tok_emb.weight) == (activation == "gelu")  # tied as the config says
    reference = transformers.AutoTokenizer.from_pretrained(d)  # what a transformers user gets from the folder
    for text in (TEXT[:3000], VARIED, "a<|endoftext|>b <|endoftext|>\n"):
        ids = tok.encode(text)
        assert ids == reference(text)["input_ids"]
        if files == "tokenizer.json":
            assert ids == hf_ids(d, text)  # and the tokenizers library on its own
        assert tok.decode(ids) == text
    ids = tok.encode(TEXT[:300])[:100]
    with torch.no_grad():
        ours, theirs = model(torch.tensor([ids]))[0], hf_model(torch.tensor([ids])).logits
    assert (ours - theirs).abs().max().item() < 1e-4


def test_the_ids_follow_gpt2s_numbering_not_the_labs(gpt2_dir, tmp_path):
    d, _ = gpt2_dir
    _, tok = import_gpt2(d, tmp_path / "g.pt")
    vocab = json.loads((d / "tokenizer.json").read_text())["model"]["vocab"]
    assert tok.encode("<|endoftext|>") == [vocab["<|endoftext|>"]] == [0]
    assert tok.encode("!") == [vocab["!"]] != [ord("!")]  # GPT-2 numbers the bytes in its own order


def test_an_imported_model_exports_back_to_the_same_ids(gpt2_dir, tmp_path):
    d, hf_model = gpt2_dir
    model, tok = import_gpt2(d, tmp_path / "g.pt")
    export_hf(model, tok, tmp_path / "back")
    again = transformers.AutoTokenizer.from_pretrained(tmp_path / "back")
    text = TEXT[:500] + VARIED + "<|endoftext|>"
    assert again(text)["input_ids"] == hf_ids(d, text)
    back = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "back").eval()
    ids = torch.tensor([hf_ids(d, TEXT[:200])[:60]])
    with torch.no_grad():
        assert (back(ids).logits - hf_model(ids).logits).abs().max().item() < 1e-4


def test_the_labs_tools_work_on_an_imported_model(gpt2_dir, tmp_path, monkeypatch, capsys):
    d, _ = gpt2_dir
    monkeypatch.chdir(tmp_path)
    (tmp_path / "text.txt").write_text(TEXT[:4000])
    assert main(["import", "--from", str(d), "--out", "gpt2.pt"]) == 0
    assert "GPT-2 with" in capsys.readouterr().out
    for args in (
        ["generate", "--checkpoint", "gpt2.pt", "--prompt", "The ", "--max_new_tokens", "8", "--seed", "1"],
        ["eval", "--checkpoint", "gpt2.pt", "--data", "text.txt", "--device", "cpu"],
        ["attention", "--checkpoint", "gpt2.pt", "--prompt", "The model", "--out", "a.png"],
        ["info", "--checkpoint", "gpt2.pt"],
    ):
        assert main(args) == 0, args
    out = capsys.readouterr().out
    assert "imported from gpt2" in out and "gelu_tanh" in out and "perplexity" in out
    assert (tmp_path / "a.png").stat().st_size > 0
    from minilab.app.serve import Lab  # what the web page's Model and Attention tabs ask for

    (tmp_path / "runs").mkdir()
    lab = Lab(tmp_path / "runs", tmp_path)
    assert "gpt2.pt" in [c["name"] for c in lab.checkpoint_list()]
    assert "imported from gpt2" in lab.model_info("gpt2.pt")["describe"]
    assert lab.attention("gpt2.pt", "The model")["tokens"]


def _bert(d):
    (d / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 64}))


def _no_weights(d):
    (d / "model.safetensors").unlink()


def _no_tokenizer(d):
    (d / "tokenizer.json").unlink()


def _missing_tensor(d):
    from safetensors.torch import load_file, save_file

    t = load_file(d / "model.safetensors")
    del t["transformer.h.1.mlp.c_fc.weight"]
    save_file(t, d / "model.safetensors")


def _misshaped_tensor(d):
    from safetensors.torch import load_file, save_file

    t = load_file(d / "model.safetensors")
    t["transformer.h.0.attn.c_attn.weight"] = t["transformer.h.0.attn.c_attn.weight"][:, :-1].contiguous()
    save_file(t, d / "model.safetensors")


def _truncated_weights(d):
    data = (d / "model.safetensors").read_bytes()
    (d / "model.safetensors").write_bytes(data[: len(data) // 2])


def _bigger_vocabulary(d):  # e.g. an embedding padded past the tokenizer (50304 for 50257)
    cfg = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps(cfg | {"vocab_size": 448}))


def _malformed_tokenizer(d):
    (d / "tokenizer.json").write_text(json.dumps({"model": {"type": "BPE"}, "pre_tokenizer": ["not", "a dict"]}))


def _word_level_tokenizer(d):
    (d / "tokenizer.json").write_text(json.dumps({"model": {"type": "WordLevel", "vocab": {"a": 0}}}))


def _wrong_epsilon(d):
    cfg = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps(cfg | {"layer_norm_epsilon": 1e-6}))


@pytest.mark.parametrize(
    ("spoil", "message"),
    [
        (_bert, "is a 'bert' model; import reads GPT-2-family folders"),
        (_no_weights, "has no model.safetensors"),
        (_no_tokenizer, "has no tokenizer"),
        (_missing_tensor, "has no tensor 'h.1.mlp.c_fc.weight'"),
        (_misshaped_tensor, "has shape (64, 191), config.json implies (64, 192)"),
        (_truncated_weights, "is not a readable safetensors file"),
        (_wrong_epsilon, "layer_norm_epsilon 1e-06"),
        (_malformed_tokenizer, "are malformed (AttributeError"),
        (_word_level_tokenizer, "is a 'WordLevel' model, not byte-level BPE"),
        (_bigger_vocabulary, "the tokenizer has 420 tokens but config.json says 448"),
    ],
)
def test_a_folder_the_lab_cannot_read_exactly_is_refused(gpt2_dir, tmp_path, monkeypatch, capsys, spoil, message):
    d = tmp_path / "folder"
    shutil.copytree(gpt2_dir[0], d)
    spoil(d)
    before = snapshot(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert main(["import", "--from", "folder", "--out", "out/gpt2.pt"]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert snapshot(tmp_path) == before and not (tmp_path / "out").exists()


def test_import_never_overwrites(gpt2_dir, tmp_path):
    (tmp_path / "taken.pt").write_bytes(b"mine")
    with pytest.raises(LabError, match="already exists"):
        import_gpt2(gpt2_dir[0], tmp_path / "taken.pt")
    assert (tmp_path / "taken.pt").read_bytes() == b"mine"
