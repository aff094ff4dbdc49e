"""export --format hf: transformers itself loads the folder and computes what the lab computes."""

import json

import pytest
import torch

from minilab.app.hf_export import export_hf
from minilab.app.hf_families import FAMILIES, choose_family
from minilab.errors import LabError
from minilab.tokenizers.bpe import BPETokenizer
from minilab.tokenizers.char import CharTokenizer
from tests.conftest import tiny_model_config
from tests.support.hf import EXPORTABLE, TEXT, VARIED, jittered_model, lab_greedy

transformers = pytest.importorskip("transformers", reason="the hf extra is not installed (pip install -e '.[hf]')")

ARCHITECTURE = {"gpt2": "GPT2LMHeadModel", "llama": "LlamaForCausalLM", "qwen3": "Qwen3ForCausalLM"}


@pytest.fixture(scope="module")
def tokenizers():
    return {"char": CharTokenizer.from_text(TEXT), "bpe": BPETokenizer.train(TEXT, 400)}


def load_hf(folder):
    model = transformers.AutoModelForCausalLM.from_pretrained(folder).eval()
    return model, transformers.AutoTokenizer.from_pretrained(folder)


@pytest.mark.parametrize("arch", EXPORTABLE)
@pytest.mark.parametrize("kind", ["char", "bpe"])
def test_transformers_computes_what_the_lab_computes(tmp_path, tokenizers, arch, kind):
    tok = tokenizers[kind]
    model = jittered_model(tok.vocab_size, seed=len(arch), **EXPORTABLE[arch])
    export_hf(model, tok, tmp_path / "hf")
    hf_model, hf_tok = load_hf(tmp_path / "hf")
    assert type(hf_model).__name__ == ARCHITECTURE[choose_family(model.cfg, tuple(ARCHITECTURE), "hf")]
    ids = tok.encode(TEXT[:80])
    with torch.no_grad():
        ours = model(torch.tensor([ids]))[0]
        theirs = hf_model(torch.tensor([ids])).logits
    assert (ours - theirs).abs().max().item() < 1e-4
    prompt = ids[:12]
    out = hf_model.generate(torch.tensor([prompt]), max_new_tokens=50, do_sample=False, pad_token_id=0)
    assert out[0, len(prompt) :].tolist() == lab_greedy(model, prompt, 50)
    assert hf_tok(TEXT)["input_ids"] == tok.encode(TEXT)
    assert hf_tok.decode(tok.encode(TEXT)) == TEXT


def test_the_embedding_scale_is_folded_in_and_the_head_untied(tmp_path, tokenizers):
    tok = tokenizers["char"]
    model = jittered_model(tok.vocab_size)  # sinusoidal: the lab multiplies embeddings by sqrt(d_model)
    export_hf(model, tok, tmp_path / "hf")
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert config["model_type"] == "gpt2" and config["tie_word_embeddings"] is False
    hf_model, _ = load_hf(tmp_path / "hf")
    emb = hf_model.transformer.wte.weight
    assert torch.allclose(emb, model.tok_emb.weight * model.cfg.d_model**0.5)
    assert torch.equal(hf_model.lm_head.weight, model.lm_head.weight)


def test_byte_level_bpe_cuts_every_kind_of_text_as_the_lab_does(tmp_path, tokenizers):
    tok = tokenizers["bpe"]
    export_hf(jittered_model(tok.vocab_size, **EXPORTABLE["llama"]), tok, tmp_path / "hf")
    hf_tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    for text in (VARIED, TEXT[:2000] + VARIED, "", " ", "\n", "  \n \n", "a'sb 's'S"):
        assert hf_tok(text)["input_ids"] == tok.encode(text), repr(text)
        assert hf_tok.decode(tok.encode(text)) == text


def test_a_char_vocabulary_drops_what_the_lab_refuses(tmp_path, tokenizers):
    tok = CharTokenizer.from_text("abc \n")
    export_hf(jittered_model(tok.vocab_size), tok, tmp_path / "hf")
    hf_tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    assert hf_tok("ab c\nxyz a")["input_ids"] == tok.encode("ab c\n a")  # x, y, z: unseen, no id to give
    with pytest.raises(LabError, match="not in the model's vocabulary"):
        tok.encode("xyz")


REFUSED = [  # (switches, the switch the error must name)
    ({"mlp": "relu2"}, "mlp='relu2'"),
    ({"logit_softcap": 30.0}, "logit_softcap=30.0"),
    ({"qk_norm": True}, "qk_norm=True"),  # layernorm qk-norm: no family normalises q, k that way
    ({"pos_encoding": "rope"}, "pos_encoding='rope'"),  # rope with layernorm and GELU
    ({"norm": "rmsnorm"}, "norm='rmsnorm'"),  # rmsnorm + GELU + sinusoidal
    ({"pos_encoding": "rope", "norm": "rmsnorm", "mlp": "swiglu", "qk_norm": True}, "bias=True"),  # Qwen3 MLP
    ({"pos_encoding": "rope", "norm": "rmsnorm", "mlp": "swiglu", "logit_softcap": 15.0}, "logit_softcap=15.0"),
]


@pytest.mark.parametrize(("switches", "named"), REFUSED)
def test_a_switch_without_counterpart_is_refused_and_nothing_written(tmp_path, switches, named):
    tok = CharTokenizer.from_text("abc \n")
    model = jittered_model(tok.vocab_size, **switches)
    with pytest.raises(LabError) as err:
        export_hf(model, tok, tmp_path / "hf")
    message = str(err.value)
    assert named in message and "\n" not in message
    assert all(family in message for family in FAMILIES)
    assert not (tmp_path / "hf").exists()


def test_the_lab_points_to_import_when_given_a_hugging_face_folder(tmp_path):
    from minilab.checkpoint import load_model

    tok = CharTokenizer.from_text("abc \n")
    export_hf(jittered_model(tok.vocab_size), tok, tmp_path / "hf")
    with pytest.raises(LabError, match="is a Hugging Face 'gpt2' folder, not a lab export; `import --from`"):
        load_model(tmp_path / "hf")


def test_an_existing_export_is_not_overwritten(tmp_path):
    tok = CharTokenizer.from_text("abc \n")
    model = jittered_model(tok.vocab_size)
    export_hf(model, tok, tmp_path / "hf")
    before = (tmp_path / "hf" / "model.safetensors").read_bytes()
    with pytest.raises(LabError, match="already holds"):
        export_hf(jittered_model(tok.vocab_size, seed=5), tok, tmp_path / "hf")
    assert (tmp_path / "hf" / "model.safetensors").read_bytes() == before


def test_every_switch_is_covered_by_the_family_table():
    # A new ModelConfig switch must be decided here (exported or refused), never passed through unnoticed.
    decided = {name for family in FAMILIES.values() for name in family} | {"bias", "tie_embeddings"}
    shape = {"vocab_size", "context_length", "d_model", "n_heads", "n_layers", "d_ff", "dropout"}
    assert set(tiny_model_config().to_dict()) - shape <= decided


@pytest.mark.slow
@pytest.mark.parametrize(
    "flags",
    [
        ["--tokenizer", "bpe", "--vocab_size", "300", "--pos_encoding", "rope", "--norm", "rmsnorm", "--mlp", "swiglu"],
        ["--no_bias", "--pos_encoding", "learned"],  # char vocabulary, GPT-2 without biases
    ],
)
def test_a_trained_model_goes_out_through_the_command_line(tmp_path, monkeypatch, capsys, flags):
    from minilab.app.cli import main
    from minilab.checkpoint import load_model
    from tests.conftest import EXAMPLE, TINY_MODEL_FLAGS, run_cli

    r = run_cli(
        "train", "--data", EXAMPLE, "--epochs", "1", "--steps_per_epoch", "20", "--batch_size", "4",
        "--device", "cpu", "--threads", "1", "--dropout", "0", *TINY_MODEL_FLAGS, *flags, cwd=tmp_path,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    monkeypatch.chdir(tmp_path)
    assert main(["export", "--checkpoint", "checkpoints/checkpoint.pt", "--format", "hf", "--out", "hf"]) == 0
    model, tok, _ = load_model("checkpoints/checkpoint.pt")
    hf_model, hf_tok = load_hf(tmp_path / "hf")
    ids = hf_tok(TEXT[:200])["input_ids"][:32]
    assert ids == tok.encode(TEXT[:200])[:32]
    with torch.no_grad():
        assert (model(torch.tensor([ids]))[0] - hf_model(torch.tensor([ids])).logits).abs().max().item() < 1e-4
    out = hf_model.generate(torch.tensor([ids[:8]]), max_new_tokens=20, do_sample=False, pad_token_id=0)
    assert out[0, 8:].tolist() == lab_greedy(model, ids[:8], 20)
    code = main(["export", "--checkpoint", "checkpoints/checkpoint.pt", "--format", "gguf", "--out", "m.gguf"])
    assert code == (0 if "rope" in flags else 2)  # the char GPT-2 uses exact GELU: refused for llama.cpp
    assert (tmp_path / "m.gguf").exists() == (code == 0)


def test_two_bpe_tokens_with_one_spelling_are_refused(tmp_path):
    a, b, c = ord("a"), ord("b"), ord("c")
    tok = BPETokenizer([(a, b), (b, c), (256, c), (a, 257)])  # 'ab'+'c' and 'a'+'bc' are both 'abc'
    with pytest.raises(LabError, match="spell the same bytes"):
        export_hf(jittered_model(tok.vocab_size), tok, tmp_path / "hf")
    assert not (tmp_path / "hf").exists()
