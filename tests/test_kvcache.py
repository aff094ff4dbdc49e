"""The KV cache must change nothing but the speed: cached logits equal a full forward pass."""

import pytest
import torch

from minilab.config import ModelConfig
from minilab.fastdecode import FastDecoder
from minilab.generate import CachedDecoder, generate, sample_next
from minilab.kvcache import KVCache, prefill
from minilab.model import GPT
from tests.conftest import tiny_model_config

POS = ["sinusoidal", "learned"]
# The batch engine at batch 2, and the single-sequence fast path that generate() uses at batch 1.
DECODERS = {"cached": (lambda m: CachedDecoder(m, batch_size=2), 2), "fast": (FastDecoder, 1)}


def _model(pos, seed=0):
    torch.manual_seed(seed)
    return GPT(tiny_model_config(pos_encoding=pos)).eval()


@pytest.mark.parametrize("pos", POS)
@pytest.mark.parametrize("kind", DECODERS)
@torch.no_grad()
def test_cached_logits_match_full_forward_through_3x_context(pos, kind):
    model = _model(pos)
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


@pytest.mark.parametrize("pos", POS)
@torch.no_grad()
def test_fast_decoder_matches_the_model_at_the_seed_config(pos):
    """Full size (256 wide, 8 heads, 4 layers, context 256), past the window: within 1e-5 at every step."""
    torch.manual_seed(5)
    model = GPT(ModelConfig(vocab_size=65, pos_encoding=pos)).eval()
    decoder = FastDecoder(model)
    logits = decoder.prefill(torch.randint(0, 65, (1, 40)))
    worst = 0.0
    for _ in range(300):  # 40 + 300 > 256: one slide of the window included
        full, _ = model(decoder.tokens())
        worst = max(worst, (logits - full[:, -1]).abs().max().item())
        logits = decoder.step(logits.argmax(-1, keepdim=True))
    assert worst <= 1e-5


def test_the_exponential_race_draws_what_multinomial_draws():
    """sample_next's draw is torch.multinomial's own method: the same generator gives the same tokens."""
    for i in range(300):
        logits = torch.randn(1 + i % 4, 65) * (1 + i % 7)
        ours = sample_next(logits, 0.8, generator=torch.Generator().manual_seed(i))
        probs = torch.softmax(logits / 0.8, dim=-1)
        assert torch.equal(ours, torch.multinomial(probs, 1, generator=torch.Generator().manual_seed(i)))


@pytest.mark.parametrize("pos", POS)
@pytest.mark.parametrize("batch", [1, 3])
def test_greedy_is_identical_with_and_without_cache(pos, batch):
    model = _model(pos, seed=2)
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


@torch.no_grad()
def test_several_new_tokens_after_cached_ones():
    """A chunk of T > 1 tokens after cached ones uses the offset causal mask (both attention paths)."""
    for fused in (True, False):
        model = _model("learned")
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
    buffers = (decoder.rows, decoder.staging.k, decoder.x, decoder.y, decoder.h, decoder.g, decoder.logits)
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
