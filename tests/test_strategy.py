"""Batch-1 decoding chosen per machine: every candidate gives the model's logits, the fastest is kept."""

import pytest
import torch

from minilab.generation import nativedecode, strategy
from minilab.generation.decode import CachedDecoder, generate
from minilab.generation.strategy import BF16_LOGIT_TOLERANCE, Strategy, build, candidates, choose, fastest
from minilab.model.config import ModelConfig
from minilab.model.gpt import GPT
from tests.conftest import tiny_eval_model

EVERY = [Strategy(1, 2), Strategy(2, 2), Strategy(0, 2), Strategy(1, 1), Strategy(1, 2, "bf16"), Strategy(2, 2, "bf16")]
EVERY += [Strategy(1, 2, "fp32", True), Strategy(1, 1, "fp32", True), Strategy(1, 2, "bf16", True)]


_model = tiny_eval_model


@pytest.mark.parametrize("chosen", EVERY, ids=Strategy.describe)
@torch.no_grad()
def test_every_strategy_matches_the_full_forward_pass_past_the_window(chosen):
    """fp32: within 1e-5 at every position; bf16 weights: within BF16_LOGIT_TOLERANCE of the largest |logit|."""
    if chosen.native and nativedecode.load() is None:
        pytest.skip(f"no C++ decode step here: {nativedecode.why()}")
    model = _model()
    ctx = model.cfg.context_length
    g = torch.Generator().manual_seed(1)
    decoder = build(model, chosen, CachedDecoder)
    logits = decoder.prefill(torch.randint(0, 20, (1, 5), generator=g))
    slides = 0
    for _ in range(3 * ctx):
        full, _ = model(decoder.tokens())
        want = full[:, -1]
        tolerance = BF16_LOGIT_TOLERANCE * want.abs().max() if chosen.dtype == "bf16" else 1e-5
        assert logits.dtype == torch.float32
        assert (logits - want).abs().max() <= tolerance, (chosen, decoder.tokens().size(1))
        slides += decoder.tokens().size(1) == ctx
        logits = decoder.step(torch.multinomial(torch.softmax(logits, -1), 1, generator=g))
    assert slides >= 3


@pytest.mark.parametrize("native", [False, True], ids=["FastDecoder", "C++ step"])
@torch.no_grad()
def test_bf16_decoder_at_the_seed_size_stays_within_tolerance(native):
    if native and nativedecode.load() is None:
        pytest.skip(f"no C++ decode step here: {nativedecode.why()}")
    torch.manual_seed(5)
    model = GPT(ModelConfig(vocab_size=65)).eval()
    decoder = build(model, Strategy(1, 2, "bf16", native), CachedDecoder)
    logits = decoder.prefill(torch.randint(0, 65, (1, 40)))
    for _ in range(60):
        full, _ = model(decoder.tokens())
        assert (logits - full[:, -1]).abs().max() <= BF16_LOGIT_TOLERANCE * full[:, -1].abs().max()
        logits = decoder.step(logits.argmax(-1, keepdim=True))


def test_candidates_cover_blocks_threads_and_cached_and_bf16_only_when_asked():
    model = _model(d_model=32, d_ff=64)
    two = candidates(model, 2, bf16=False)
    assert set(two) == {Strategy(1, 2), Strategy(2, 2), Strategy(0, 2), Strategy(1, 1)}
    assert candidates(model, 1, bf16=False) == [Strategy(1, 1), Strategy(0, 1)]
    assert candidates(model, 2, bf16=False)[0] == Strategy(1, 1)  # timed first: cheap on a busy machine
    assert set(candidates(model, 2, bf16=True)) == {Strategy(1, 2, "bf16"), Strategy(2, 2, "bf16")}
    assert Strategy(3, 3) not in candidates(model, 3, bf16=False)  # 3 does not divide 32
    # With the C++ step built: it comes first, on 1 thread and all; in bf16 it replaces FastDecoder's bf16
    with_native = candidates(model, 2, bf16=False, native=True)
    assert with_native[:2] == [Strategy(1, 1, "fp32", True), Strategy(1, 2, "fp32", True)]
    assert set(with_native[2:]) == set(two)
    assert candidates(model, 2, bf16=True, native=True) == [Strategy(1, 1, "bf16", True), Strategy(1, 2, "bf16", True)]


def test_auto_decodes_bf16_only_on_a_cpu_with_bf16_units_and_the_cpp_step(monkeypatch):
    from minilab.precision import DeviceFacts

    wide, narrow = _model(d_model=128, n_heads=4, d_ff=256), _model(d_model=64, d_ff=128)
    for facts, built, model, want in [
        (DeviceFacts("cpu", ("amx_bf16",)), True, wide, "bf16"),
        (DeviceFacts("cpu", ("amx_bf16",)), True, narrow, "fp32"),  # below CPU_BF16_MIN_WIDTH: exact
        (DeviceFacts("cpu", ("avx512_bf16",)), False, wide, "fp32"),  # without the C++ step: exact
        (DeviceFacts("cpu"), True, wide, "fp32"),  # an AVX2 CPU
    ]:
        monkeypatch.setattr(strategy, "device_facts", lambda device, facts=facts: facts)
        monkeypatch.setattr(nativedecode, "load", lambda notify=None, built=built: object() if built else None)
        assert strategy.auto_dtype(model) == want, (facts, built, model.cfg.d_model)


def test_the_fastest_is_chosen_once_per_shape_and_remembered(monkeypatch):
    monkeypatch.setattr(strategy, "_CHOSEN", {})
    monkeypatch.setattr(nativedecode, "load", lambda notify=None: None)  # the Python decoders only
    calls = []
    times = {Strategy(1, 2): 3.0, Strategy(2, 2): 2.0, Strategy(0, 2): 5.0, Strategy(1, 1): 2.5}

    def fake_measure(model, s, cached, limit):
        calls.append(s)
        return times[s]

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        model = _model(d_model=32, d_ff=64)
        assert choose(model, CachedDecoder, measure=fake_measure) == Strategy(2, 2)
        assert len(calls) == 4
        assert choose(_model(seed=3, d_model=32, d_ff=64), CachedDecoder, measure=fake_measure) == Strategy(2, 2)
        assert len(calls) == 4  # same shape: not measured again
        times.update({Strategy(1, 2): 1.0, Strategy(2, 2): 9.0})
        assert choose(_model(n_layers=3, d_model=32, d_ff=64), CachedDecoder, measure=fake_measure) == Strategy(1, 2)
    finally:
        torch.set_num_threads(threads)
    assert fastest({Strategy(1, 1): 1.0, Strategy(2, 2): 1.0}) == Strategy(1, 1)


def test_a_measurement_gives_up_above_its_limit():
    model = _model()
    assert strategy.seconds_per_step(model, Strategy(1, 1), CachedDecoder, limit=0.0) == float("inf")
    assert strategy.seconds_per_step(model, Strategy(1, 1), CachedDecoder) < float("inf")


def test_a_real_measurement_restores_the_thread_count(monkeypatch):
    monkeypatch.setattr(strategy, "_CHOSEN", {})
    before = torch.get_num_threads()
    picked = choose(_model(), CachedDecoder)
    assert picked in candidates(_model(), before, bf16=False, native=nativedecode.load() is not None)
    assert torch.get_num_threads() == before


def test_generation_with_a_one_thread_strategy_restores_threads_and_matches(monkeypatch):
    model = _model(seed=2)
    prompt = torch.tensor([[1, 2, 3]])
    n = model.cfg.context_length - 3  # within one window: the recompute loop sees the same tokens
    reference = torch.cat(list(generate(model, prompt, n, temperature=0, use_cache=False)), dim=1)
    before = torch.get_num_threads()
    for s in (Strategy(1, 1), Strategy(0, before)):
        monkeypatch.setattr(strategy, "choose", lambda *a, s=s, **k: s)
        out = torch.cat(list(generate(model, prompt, n, temperature=0)), dim=1)
        assert torch.equal(out, reference), s
        assert torch.get_num_threads() == before


def test_bf16_generation_runs_for_batches_and_single_sequences():
    model = _model()
    for batch in (1, 3):
        ids = torch.cat(list(generate(model, torch.ones(batch, 2, dtype=torch.long), 10, dtype="bf16")), dim=1)
        assert ids.shape == (batch, 10) and int(ids.max()) < model.cfg.vocab_size
