"""export --format gguf: read back with gguf's own reader, every key and tensor, and run in llama.cpp's layout.

llama.cpp itself comes from llama-cpp-python, which PyPI ships only as source (a build of llama.cpp): where
it is installed, the greedy test runs; elsewhere it skips and says so.
"""

import numpy as np
import pytest
import torch

from minilab.app.gguf_export import export_gguf
from minilab.errors import LabError
from minilab.model.layers import swiglu_hidden
from minilab.tokenizers.bpe import BPETokenizer
from minilab.tokenizers.char import CharTokenizer
from minilab.tokenizers.hf import bytes_to_unicode
from tests.support.hf import EXPORTABLE, TEXT, jittered_model, lab_greedy

gguf = pytest.importorskip("gguf", reason="the hf extra is not installed (pip install -e '.[hf]')")

LLAMA_SHAPED = {name: EXPORTABLE[name] for name in ("llama", "llama-bias-untied", "qwen3")}
GPT2_SHAPED = {"imported-gpt2": {"pos_encoding": "learned", "mlp": "gelu_tanh"}}


@pytest.fixture(scope="module")
def tokenizers():
    return {"char": CharTokenizer.from_text(TEXT + "é日"), "bpe": BPETokenizer.train(TEXT, 400)}


def read(path) -> tuple[dict, dict]:
    """(key -> value, tensor name -> float32 array in PyTorch's (out, in) order) of a gguf file."""
    reader = gguf.GGUFReader(path)
    keys = {name: field.contents() for name, field in reader.fields.items()}
    tensors = {}
    for t in reader.tensors:
        shape = tuple(int(n) for n in reversed(t.shape))  # gguf lists dimensions fastest first
        tensors[t.name] = np.asarray(t.data, dtype=np.float32).reshape(shape)
    return keys, tensors


@pytest.mark.parametrize("arch", [*LLAMA_SHAPED, *GPT2_SHAPED])
@pytest.mark.parametrize("kind", ["char", "bpe"])
def test_every_key_and_tensor_reads_back(tmp_path, tokenizers, arch, kind):
    tok = tokenizers[kind]
    model = jittered_model(tok.vocab_size, **(LLAMA_SHAPED | GPT2_SHAPED)[arch])
    cfg = model.cfg
    export_gguf(model, tok, tmp_path / "m.gguf")
    keys, tensors = read(tmp_path / "m.gguf")
    family = keys["general.architecture"]
    assert family == {"llama": "llama", "llama-bias-untied": "llama", "qwen3": "qwen3"}.get(arch, "gpt2")
    expected = {
        f"{family}.context_length": cfg.context_length,
        f"{family}.embedding_length": cfg.d_model,
        f"{family}.block_count": cfg.n_layers,
        f"{family}.attention.head_count": cfg.n_heads,
        f"{family}.vocab_size": cfg.vocab_size,
        "tokenizer.ggml.model": "gpt2",
        "general.file_type": 0,
        "tokenizer.ggml.add_bos_token": False,
    }
    if family == "gpt2":
        expected |= {"gpt2.feed_forward_length": cfg.d_ff, "gpt2.attention.layer_norm_epsilon": 1e-5}
    else:
        expected |= {
            f"{family}.feed_forward_length": swiglu_hidden(cfg.d_ff),
            f"{family}.attention.head_count_kv": cfg.n_heads,
            f"{family}.attention.key_length": cfg.head_dim,
            f"{family}.attention.value_length": cfg.head_dim,
            f"{family}.rope.dimension_count": cfg.head_dim,
            f"{family}.rope.freq_base": 10000.0,
            f"{family}.attention.layer_norm_rms_epsilon": 1e-5,
        }
    for key, value in expected.items():
        assert keys[key] == pytest.approx(value), key
    # The vocabulary: token i is the byte-level spelling of the lab's token i.
    show = bytes_to_unicode()
    assert keys["tokenizer.ggml.tokens"] == [
        "".join(show[b] for b in tok.decode_bytes([i])) for i in range(cfg.vocab_size)
    ]
    assert keys["tokenizer.ggml.token_type"] == [1] * cfg.vocab_size  # NORMAL: no special tokens in the lab's
    if kind == "bpe":
        assert keys["tokenizer.ggml.merges"] == [
            f"{spell(tok.decode_bytes([a]))} {spell(tok.decode_bytes([b]))}" for a, b in tok.merges
        ]
    listed = {"tokenizer.ggml.tokens", "tokenizer.ggml.token_type", "tokenizer.ggml.merges", "tokenizer.ggml.pre"}
    header = {"GGUF.version", "GGUF.tensor_count", "GGUF.kv_count", "general.architecture", "general.name"}
    assert set(keys) == set(expected) | listed | header  # every key is checked, none unexpected
    # Every tensor, against the lab's weights named and laid out by hand here.
    want = expected_tensors(model, family)
    assert sorted(tensors) == sorted(want)
    for name, array in want.items():
        assert np.array_equal(tensors[name], array), name


def spell(data: bytes) -> str:
    show = bytes_to_unicode()
    return "".join(show[b] for b in data)


def expected_tensors(model, family: str) -> dict[str, np.ndarray]:
    """llama.cpp's tensors for the lab model, written independently of the exporter."""
    cfg, sd = model.cfg, {k: v.detach().numpy() for k, v in model.state_dict().items()}
    C, nh, hs = cfg.d_model, cfg.n_heads, cfg.head_dim
    out = {"token_embd.weight": sd["tok_emb.weight"], "output_norm.weight": sd["ln_f.weight"]}
    if not cfg.tie_embeddings:
        out["output.weight"] = sd["lm_head.weight"]

    def pairs(w):  # rows (first half, second half) of each head -> (0, hs/2), (1, hs/2 + 1), ...
        order = [h * hs + j // 2 + (j % 2) * hs // 2 for h in range(nh) for j in range(hs)]
        return w[order]

    for i in range(cfg.n_layers):
        p, b = f"blocks.{i}.", f"blk.{i}."
        names = {"ln1": "attn_norm", "ln2": "ffn_norm", "attn.proj": "attn_output", "mlp.proj": "ffn_down"}
        for lab, cpp in names.items():
            for part in ("weight", "bias"):
                if p + lab + "." + part in sd:
                    out[b + cpp + "." + part] = sd[p + lab + "." + part]
        for part in ("weight", "bias") if cfg.bias else ("weight",):
            qkv, fc = sd[p + "attn.qkv." + part], sd[p + "mlp.fc." + part]
            if family == "gpt2":
                out[b + "attn_qkv." + part], out[b + "ffn_up." + part] = qkv, fc
                continue
            q, k, v = qkv[:C], qkv[C : 2 * C], qkv[2 * C :]
            if family == "llama":  # llama.cpp's llama rotates adjacent channels
                q, k = pairs(q), pairs(k)
            out[b + "attn_q." + part], out[b + "attn_k." + part], out[b + "attn_v." + part] = q, k, v
            half = fc.shape[0] // 2
            out[b + "ffn_gate." + part], out[b + "ffn_up." + part] = fc[:half], fc[half:]
        if cfg.qk_norm:
            out[b + "attn_q_norm.weight"] = sd[p + "attn.q_norm.weight"]
            out[b + "attn_k_norm.weight"] = sd[p + "attn.k_norm.weight"]
    if family == "gpt2":
        out["position_embd.weight"] = sd["pos_emb.weight"]
        out["output_norm.bias"] = sd["ln_f.bias"]
    return out


def rope_adjacent(x: np.ndarray, base: float = 10000.0) -> np.ndarray:
    """llama.cpp's 'normal' RoPE: channels (2i, 2i+1) of each head rotate together. x: (nh, T, hs)"""
    hs, T = x.shape[-1], x.shape[-2]
    freq = base ** (-np.arange(0, hs, 2) / hs)  # (hs/2,)
    angle = np.arange(T)[:, None] * freq  # (T, hs/2)
    cos, sin = np.cos(angle), np.sin(angle)
    even, odd = x[..., 0::2], x[..., 1::2]
    out = np.empty_like(x)
    out[..., 0::2], out[..., 1::2] = even * cos - odd * sin, even * sin + odd * cos
    return out


def llama_cpp_forward(t: dict, keys: dict, ids: list[int]) -> np.ndarray:
    """The logits llama.cpp's llama graph computes from the file's tensors, written out in NumPy. (T, V)"""
    nh, eps = keys["llama.attention.head_count"], keys["llama.attention.layer_norm_rms_epsilon"]
    rms = lambda v, w: v / np.sqrt((v * v).mean(-1, keepdims=True) + eps) * w  # noqa: E731
    lin = lambda v, name: v @ t[name + ".weight"].T + t.get(name + ".bias", 0)  # noqa: E731
    x = t["token_embd.weight"][ids].astype(np.float64)  # (T, C)
    T, C = x.shape
    mask = np.triu(np.full((T, T), -np.inf), 1)
    for i in range(keys["llama.block_count"]):
        b = f"blk.{i}."
        h = rms(x, t[b + "attn_norm.weight"])
        q, k, v = (lin(h, b + n).reshape(T, nh, -1).transpose(1, 0, 2) for n in ("attn_q", "attn_k", "attn_v"))
        q, k = rope_adjacent(q), rope_adjacent(k)
        scores = q @ k.transpose(0, 2, 1) / np.sqrt(q.shape[-1]) + mask  # (nh, T, T)
        w = np.exp(scores - scores.max(-1, keepdims=True))
        y = (w / w.sum(-1, keepdims=True)) @ v  # (nh, T, hs)
        x = x + lin(y.transpose(1, 0, 2).reshape(T, C), b + "attn_output")
        h = rms(x, t[b + "ffn_norm.weight"])
        gate = lin(h, b + "ffn_gate")
        x = x + lin(gate / (1 + np.exp(-gate)) * lin(h, b + "ffn_up"), b + "ffn_down")
    head = t.get("output.weight", t["token_embd.weight"])
    return rms(x, t["output_norm.weight"]) @ head.T


@pytest.mark.parametrize("arch", ["llama", "llama-bias-untied"])
def test_llama_cpps_rope_layout_gives_the_labs_logits(tmp_path, tokenizers, arch):
    # An independent reference: llama.cpp pairs adjacent channels, so only the exporter's q/k permutation
    # can make this NumPy model (which knows nothing of the lab's layout) agree with the lab.
    tok = tokenizers["bpe"]
    model = jittered_model(tok.vocab_size, **LLAMA_SHAPED[arch])
    export_gguf(model, tok, tmp_path / "m.gguf")
    keys, tensors = read(tmp_path / "m.gguf")
    ids = tok.encode(TEXT[:200])[:40]
    with torch.no_grad():
        ours = model(torch.tensor([ids]))[0][0].double().numpy()
    assert np.abs(llama_cpp_forward(tensors, keys, ids) - ours).max() < 1e-4


def test_float16_halves_the_matrices_and_keeps_norms_exact(tmp_path, tokenizers):
    tok = tokenizers["char"]
    model = jittered_model(tok.vocab_size, **LLAMA_SHAPED["qwen3"])
    export_gguf(model, tok, tmp_path / "m.gguf", dtype="float16")
    reader = gguf.GGUFReader(tmp_path / "m.gguf")
    types = {t.name: t.tensor_type for t in reader.tensors}
    assert types["blk.0.attn_q.weight"] == gguf.GGMLQuantizationType.F16
    assert types["blk.0.attn_q_norm.weight"] == gguf.GGMLQuantizationType.F32
    keys, tensors = read(tmp_path / "m.gguf")
    assert keys["general.file_type"] == 1
    assert np.array_equal(tensors["blk.0.attn_q_norm.weight"], model.blocks[0].attn.q_norm.weight.detach().numpy())
    emb = model.tok_emb.weight.detach().numpy()
    assert np.abs(tensors["token_embd.weight"] - emb).max() < 1e-3 * np.abs(emb).max()


@pytest.mark.parametrize(
    ("switches", "named"),
    [
        ({}, "mlp='gelu'"),  # the lab's exact GELU: llama.cpp's gpt2 uses the tanh approximation
        ({"mlp": "relu2"}, "mlp='relu2'"),
        ({"pos_encoding": "rope", "norm": "rmsnorm", "mlp": "swiglu", "logit_softcap": 20.0}, "logit_softcap=20.0"),
    ],
)
def test_a_model_llama_cpp_would_compute_differently_is_refused(tmp_path, switches, named):
    tok = CharTokenizer.from_text("abc \n")
    with pytest.raises(LabError, match="cannot export to GGUF") as err:
        export_gguf(jittered_model(tok.vocab_size, **switches), tok, tmp_path / "m.gguf")
    assert named in str(err.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("arch", [*LLAMA_SHAPED, *GPT2_SHAPED])
@pytest.mark.parametrize("kind", ["char", "bpe"])
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_llama_cpp_generates_the_labs_greedy_tokens(tmp_path, tokenizers, arch, kind, dtype):
    try:
        import llama_cpp
    except ImportError:
        pytest.skip(
            "llama-cpp-python is not installed: PyPI has only its source, which compiles llama.cpp "
            "(too long for make test); pip install llama-cpp-python to run this check"
        )
    tok = tokenizers[kind]
    model = jittered_model(tok.vocab_size, **(LLAMA_SHAPED | GPT2_SHAPED)[arch])
    export_gguf(model, tok, tmp_path / "m.gguf", dtype)
    llm = llama_cpp.Llama(str(tmp_path / "m.gguf"), n_ctx=model.cfg.context_length, logits_all=True, verbose=False)
    prompt = tok.encode(TEXT[:60])[:12]
    llm.eval(prompt)
    with torch.no_grad():
        ours = model(torch.tensor([prompt]))[0][0].numpy()
    # llama.cpp's CPU kernels round differently (f16 tables for GELU, its own matmul order): close, not equal.
    assert np.abs(np.asarray(llm.scores[: len(prompt)]) - ours).max() < 2e-2
    got = []
    for _ in range(30):
        got.append(int(np.argmax(llm.scores[llm.n_tokens - 1])))
        llm.eval([got[-1]])
    assert got == lab_greedy(model, prompt, 30)
    assert llm.tokenize(TEXT[:2000].encode(), add_bos=False, special=False) == tok.encode(TEXT[:2000])
    assert llm.detokenize(tok.encode(TEXT[:300])).decode() == TEXT[:300]


def test_two_tokens_with_one_spelling_are_refused(tmp_path):
    # 'a'+'bc' and 'ab'+'c' both spell 'abc': a vocabulary keyed by spelling cannot tell them apart.
    a, b, c = ord("a"), ord("b"), ord("c")
    tok = BPETokenizer([(a, b), (b, c), (256, c), (a, 257)])
    with pytest.raises(LabError, match="spell the same bytes"):
        export_gguf(jittered_model(tok.vocab_size, **LLAMA_SHAPED["llama"]), tok, tmp_path / "m.gguf")
    assert list(tmp_path.iterdir()) == []


def test_an_imported_gpt2_goes_to_llama_cpp_with_its_own_tokenizer(tmp_path):
    pytest.importorskip("transformers", reason="the hf extra is not installed (pip install -e '.[hf]')")
    from minilab.app.hf_import import import_gpt2
    from tests.support.hf import VARIED
    from tests.test_hf_import import save_gpt2

    (tmp_path / "gpt2").mkdir()
    save_gpt2(tmp_path / "gpt2")
    model, tok = import_gpt2(tmp_path / "gpt2", tmp_path / "g.pt")
    export_gguf(model, tok, tmp_path / "g.gguf")
    keys, _ = read(tmp_path / "g.gguf")
    end = tok.encode("<|endoftext|>")[0]
    assert keys["tokenizer.ggml.tokens"][end] == "<|endoftext|>" and keys["tokenizer.ggml.token_type"][end] == 3
    try:
        import llama_cpp
    except ImportError:
        pytest.skip("llama-cpp-python is not installed: the file was checked with gguf's reader only")
    llm = llama_cpp.Llama(str(tmp_path / "g.gguf"), n_ctx=model.cfg.context_length, verbose=False)
    for text in (TEXT[:2000], VARIED, "a<|endoftext|>b"):  # GPT-2's own pattern: llama.cpp's 'gpt-2' exactly
        assert llm.tokenize(text.encode(), add_bos=False, special=True) == tok.encode(text)
