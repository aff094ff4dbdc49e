"""The KV cache must change nothing but the speed: cached logits equal a full forward pass."""

import gc

import pytest
import torch

from minilab.generation.decode import CachedDecoder, generate
from minilab.generation.fastdecode import FastDecoder, column_blocks, default_parts
from minilab.generation.sampling import sample_next
from minilab.model.config import ModelConfig
from minilab.model.gpt import GPT
from minilab.model.kvcache import KVCache, prefill
from tests.conftest import tiny_model_config

POS = ["sinusoidal", "learned", "rope", "none"]
# Every architecture switch on its own (and all the modern ones together), as ModelConfig overrides.
ARCHS = {
    **{pos: {"pos_encoding": pos} for pos in POS},
    "rmsnorm": {"norm": "rmsnorm"},
    "qk_norm": {"qk_norm": True},
    "relu2": {"mlp": "relu2"},
    "swiglu": {"mlp": "swiglu"},
    "softcap": {"logit_softcap": 2.0},  # small enough that the cap really bends the logits
    "no_bias": {"bias": False},
    "untied": {"tie_embeddings": False},
    "modern": {"pos_encoding": "rope", "norm": "rmsnorm", "qk_norm": True, "mlp": "relu2"},
}
CLASSIC = {"sinusoidal", "learned"}  # the architectures FastDecoder spells out
# The batch engine at batch 2, and the single-sequence fast path that generate() uses at batch 1.
# The fast path is also run with its weights cut into 4 column blocks (one per thread on a 4-core machine).
DECODERS = {
    "cached": (lambda m: CachedDecoder(m, batch_size=2), 2),
    "fast": (lambda m: FastDecoder(m, parts=1), 1),
    "fast-4-blocks": (lambda m: FastDecoder(m, parts=4), 1),
}
CASES = [(arch, kind) for arch in ARCHS for kind in DECODERS if kind == "cached" or arch in CLASSIC]


def _model(arch, seed=0):
    torch.manual_seed(seed)
    model = GPT(tiny_model_config(**ARCHS[arch])).eval()
    with torch.no_grad():  # fresh norms are all ones and zeros: give them something to get wrong
        for p in model.parameters():
            if p.dim() == 1:
                p.add_(0.1 * torch.randn_like(p))
    return model


@pytest.mark.parametrize(("arch", "kind"), CASES)
@torch.no_grad()
def test_cached_logits_match_full_forward_through_3x_context(arch, kind):
    model = _model(arch)
    ctx = model.cfg.context_length
    g = torch.Generator().manual_seed(1)
    make, batch = DECODERS[kind]
    prompt = torch.randint(0, 20, (batch, 5), generator=g)
    decoder = make(model)
    logits = decoder.prefill(prompt)
    slides = 0
    for _ in range(3 * ctx):
        full, _ = model(decoder.tokens())  # the same sequence the cache holds, without a cache
        assert (logits - full[:, -1]).abs().max() <= 1e-5, (decoder.tokens().size(1), slides)
        next_id = sample_next(logits, 1.0, generator=g)
        slides += decoder.tokens().size(1) == ctx
        logits = decoder.step(next_id)
    assert slides >= 3  # the window slid, and the logits kept matching after it


def test_fast_decoder_takes_only_the_classic_architecture():
    for arch in ARCHS:
        assert FastDecoder.supports(_model(arch)) == (arch in CLASSIC), arch


def test_every_model_setting_is_declared_for_the_fast_path():
    """A ModelConfig field added without an entry in FAST_DECODE_SUPPORTS fails here (and stays off the fast path)."""
    from dataclasses import fields, make_dataclass

    from minilab.model.config import FAST_DECODE_SUPPORTS, fast_decode_supports

    assert {f.name for f in fields(ModelConfig)} == set(FAST_DECODE_SUPPORTS)
    for name, allowed in FAST_DECODE_SUPPORTS.items():  # every listed value is one ModelConfig accepts
        for value in allowed or ():
            ModelConfig(**{name: value})
    # A config with a switch nobody declared never takes the fast path, whatever its value.
    Grown = make_dataclass("Grown", [("new_switch", bool, False)], bases=(ModelConfig,))
    assert fast_decode_supports(ModelConfig()) and not fast_decode_supports(Grown())


@pytest.mark.parametrize(("pos", "parts"), [("sinusoidal", 2), ("learned", 1)])
@torch.no_grad()
def test_fast_decoder_matches_the_model_at_the_seed_config(pos, parts):
    """Full size (256 wide, 8 heads, 4 layers, context 256), past the window: within 1e-5 at every step."""
    torch.manual_seed(5)
    model = GPT(ModelConfig(vocab_size=65, pos_encoding=pos)).eval()
    decoder = FastDecoder(model, parts=parts)
    logits = decoder.prefill(torch.randint(0, 65, (1, 40)))
    worst = 0.0
    for _ in range(300):  # 40 + 300 > 256: one slide of the window included
        full, _ = model(decoder.tokens())
        worst = max(worst, (logits - full[:, -1]).abs().max().item())
        logits = decoder.step(logits.argmax(-1, keepdim=True))
    assert worst <= 1e-5


def test_column_blocks_give_the_same_product():
    """bmm over the blocks, read back as one row, is x @ (w * scale) + b, for every way to cut it."""
    g = torch.Generator().manual_seed(0)
    w_t, x = torch.randn(12, 24, generator=g), torch.randn(1, 12, generator=g)
    bias, scale = torch.randn(24, generator=g), torch.rand(24, generator=g)
    for parts in (1, 2, 3, 4, 6, 24):
        out = torch.bmm(x.expand(parts, 1, 12), column_blocks(w_t, parts, scale)).reshape(1, 24)
        assert torch.allclose(out, x @ (w_t * scale), atol=1e-6), parts
        with_one = torch.cat([x, torch.ones(1, 1)], dim=1).expand(parts, 1, 13)
        out = torch.bmm(with_one, column_blocks(w_t, parts, 0.5, bias)).reshape(1, 24)
        assert torch.allclose(out, x @ w_t * 0.5 + bias, atol=1e-6), parts


def test_fast_decoder_blocks_follow_the_threads():
    """One block per thread where the widths allow, each at least 64 columns; a number that does not
    divide the widths is refused."""
    threads = torch.get_num_threads()
    try:
        for n, expected in ((1, 1), (2, 2), (3, 2), (4, 4), (5, 4), (8, 4)):
            torch.set_num_threads(n)
            assert default_parts(256, 1024, "cpu") == expected, n
            assert default_parts(256, 1024, "meta") == 1  # not a CPU: one block
        assert default_parts(768, 3072, "cpu") == 8  # 8 threads: 96 columns each
        assert default_parts(384, 1536, "cpu") == 6  # at most 6 blocks of 64, and 6 divides both
        assert default_parts(32, 64, "cpu") == 1  # too narrow to cut
    finally:
        torch.set_num_threads(threads)
    model = _model("sinusoidal")  # d_model 32, d_ff 64
    for parts in (0, 3, 64):
        with pytest.raises(ValueError, match="parts must divide"):
            FastDecoder(model, parts=parts)


@torch.no_grad()
def test_fast_decoder_keeps_no_objects_per_position():
    """Views are made per step and dropped: thousands of kept tensors would make Python's garbage
    collector stall generation now and then (a full collection here takes ~80 ms)."""
    model = _model("learned")
    decoder = FastDecoder(model)
    logits = decoder.prefill(torch.zeros(1, 1, dtype=torch.long))
    for _ in range(3):
        logits = decoder.step(logits.argmax(-1, keepdim=True))
    gc.collect()
    before = len(gc.get_objects())
    for _ in range(model.cfg.context_length - 5):
        logits = decoder.step(logits.argmax(-1, keepdim=True))
    gc.collect()
    assert len(gc.get_objects()) - before < 20


def test_the_exponential_race_draws_what_multinomial_draws():
    """sample_next's draw is torch.multinomial's own method: the same generator gives the same tokens."""
    for i in range(300):
        logits = torch.randn(1 + i % 4, 65) * (1 + i % 7)
        ours = sample_next(logits, 0.8, generator=torch.Generator().manual_seed(i))
        probs = torch.softmax(logits / 0.8, dim=-1)
        assert torch.equal(ours, torch.multinomial(probs, 1, generator=torch.Generator().manual_seed(i)))


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("batch", [1, 3])
def test_greedy_is_identical_with_and_without_cache(arch, batch):
    model = _model(arch, seed=2)
    prompt = torch.randint(0, 20, (batch, 4), generator=torch.Generator().manual_seed(3))
    n = model.cfg.context_length - 4  # the whole window: both loops see exactly the same tokens
    cached = torch.cat(list(generate(model, prompt, n, temperature=0)), dim=1)
    plain = torch.cat(list(generate(model, prompt, n, temperature=0, use_cache=False)), dim=1)
    assert torch.equal(cached, plain)


@pytest.mark.parametrize("pos", POS)
@pytest.mark.parametrize("batch", [1, 2])
def test_generation_runs_3x_past_the_context(pos, batch):
    model = _model(pos)
    out = list(
        generate(
            model,
            torch.zeros(batch, 1, dtype=torch.long),
            3 * model.cfg.context_length,
            temperature=0.9,
            generator=torch.Generator().manual_seed(0),
        )
    )
    assert len(out) == 3 * model.cfg.context_length and all(t.shape == (batch, 1) for t in out)


@pytest.mark.parametrize("arch", ["learned", "rope"])
@torch.no_grad()
def test_several_new_tokens_after_cached_ones(arch):
    """A chunk of T > 1 tokens after cached ones uses the offset causal mask (and rope offset), both paths."""
    for fused in (True, False):
        model = _model(arch)
        model.set_fused_attention(fused)
        idx = torch.randint(0, 20, (2, 12), generator=torch.Generator().manual_seed(4))
        cache = KVCache.for_model(model, 2)
        a, _ = model(idx[:, :5], cache=cache)
        b, _ = model(idx[:, 5:], cache=cache)
        full, _ = model(idx)
        assert torch.allclose(torch.cat([a, b], 1), full, atol=1e-5)


@torch.no_grad()
def test_cache_is_allocated_once():
    model = _model("sinusoidal")
    decoder = CachedDecoder(model, batch_size=1)
    ptrs = (decoder.cache.k.data_ptr(), decoder.cache.v.data_ptr())
    logits = decoder.prefill(torch.zeros(1, 3, dtype=torch.long))
    for _ in range(2 * model.cfg.context_length):
        logits = decoder.step(logits.argmax(-1, keepdim=True))
    assert (decoder.cache.k.data_ptr(), decoder.cache.v.data_ptr()) == ptrs
    cfg = model.cfg
    assert decoder.cache.nbytes == 2 * cfg.n_layers * cfg.n_heads * cfg.context_length * cfg.head_dim * 4


@torch.no_grad()
def test_fast_decoder_allocates_once():
    model = _model("learned")
    decoder = FastDecoder(model)
    buffers = (decoder.rows, decoder.x, decoder.y, decoder.h, decoder.g, decoder.logits)
    ptrs = [b.data_ptr() for b in buffers]
    logits = decoder.prefill(torch.zeros(1, 3, dtype=torch.long))
    for _ in range(2 * model.cfg.context_length):
        logits = decoder.step(logits.argmax(-1, keepdim=True))
    assert [b.data_ptr() for b in buffers] == ptrs


def test_cache_overflow_is_refused():
    model = _model("sinusoidal")
    cache = KVCache.for_model(model, 1)
    model(torch.zeros(1, 16, dtype=torch.long), cache=cache)
    with pytest.raises(ValueError):
        model(torch.zeros(1, 1, dtype=torch.long), cache=cache)


@torch.no_grad()
def test_prefill_in_chunks_equals_one_pass():
    model = _model("sinusoidal")
    idx = torch.randint(0, 20, (3, model.cfg.context_length), generator=torch.Generator().manual_seed(6))
    one, chunked = KVCache.for_model(model, 3), KVCache.for_model(model, 3)
    full = prefill(model, idx, one, chunk_tokens=10**6)
    parts = prefill(model, idx, chunked, chunk_tokens=3 * 5)  # chunks of 5 positions
    assert one.length == chunked.length == idx.size(1)
    assert (full - parts).abs().max() <= 1e-5
    assert (one.k - chunked.k).abs().max() <= 1e-5 and (one.v - chunked.v).abs().max() <= 1e-5
