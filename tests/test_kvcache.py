"""The KV cache must change nothing but the speed: cached logits equal a full forward pass."""

import pytest
import torch

from minilab.generate import CachedDecoder, generate, sample_next
from minilab.kvcache import KVCache
from minilab.model import GPT
from tests.conftest import tiny_model_config

POS = ["sinusoidal", "learned"]


def _model(pos, seed=0):
    torch.manual_seed(seed)
    return GPT(tiny_model_config(pos_encoding=pos)).eval()


@pytest.mark.parametrize("pos", POS)
@torch.no_grad()
def test_cached_logits_match_full_forward_through_3x_context(pos):
    model = _model(pos)
    ctx = model.cfg.context_length
    g = torch.Generator().manual_seed(1)
    prompt = torch.randint(0, 20, (2, 5), generator=g)
    decoder = CachedDecoder(model, batch_size=2)
    logits = decoder.prefill(prompt)
    slides = 0
    for _ in range(3 * ctx):
        full, _ = model(decoder.tokens())  # the same sequence the cache holds, without a cache
        assert torch.allclose(logits, full[:, -1], atol=1e-5), (decoder.cache.length, slides)
        next_id = sample_next(logits, 1.0, generator=g)
        slides += decoder.cache.length == ctx
        logits = decoder.step(next_id)
    assert slides >= 3  # the window slid, and the logits kept matching after it


@pytest.mark.parametrize("pos", POS)
def test_greedy_is_identical_with_and_without_cache(pos):
    model = _model(pos, seed=2)
    prompt = torch.randint(0, 20, (3, 4), generator=torch.Generator().manual_seed(3))
    n = model.cfg.context_length - 4  # the whole window: both loops see exactly the same tokens
    cached = torch.cat(list(generate(model, prompt, n, temperature=0)), dim=1)
    plain = torch.cat(list(generate(model, prompt, n, temperature=0, use_cache=False)), dim=1)
    assert torch.equal(cached, plain)


@pytest.mark.parametrize("pos", POS)
def test_generation_runs_3x_past_the_context(pos):
    model = _model(pos)
    out = list(
        generate(
            model,
            torch.zeros(1, 1, dtype=torch.long),
            3 * model.cfg.context_length,
            temperature=0.9,
            generator=torch.Generator().manual_seed(0),
        )
    )
    assert len(out) == 3 * model.cfg.context_length


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


def test_cache_overflow_is_refused():
    model = _model("sinusoidal")
    cache = KVCache.for_model(model, 1)
    model(torch.zeros(1, 16, dtype=torch.long), cache=cache)
    with pytest.raises(ValueError):
        model(torch.zeros(1, 1, dtype=torch.long), cache=cache)
