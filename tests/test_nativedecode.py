"""The C++ decode step: the model's logits at every position, the same on any thread count, and a clean fallback."""

import pytest
import torch

from minilab.generation import nativedecode, strategy
from minilab.generation.decode import generate
from minilab.generation.nativedecode import NativeDecoder
from minilab.generation.strategy import Strategy
from tests.conftest import tiny_eval_model


@pytest.fixture(scope="module")
def module():
    built = nativedecode.load()
    if built is None:
        pytest.skip(f"no C++ decode step here: {nativedecode.why()}")
    return built


_model = tiny_eval_model


@pytest.mark.parametrize("pos", ["learned", "sinusoidal"])
@pytest.mark.parametrize("prompt", [3, 40], ids=["stepped prompt", "prefilled prompt"])
@torch.no_grad()
def test_the_step_gives_the_full_forward_pass_logits_for_each_position_encoding(module, pos, prompt):
    # Context 64: a 40-token prompt and the re-prefills of 32 kept tokens go through the model's forward
    # pass; a prompt of up to STEPPED_PROMPT tokens goes through the step itself.
    assert 3 <= nativedecode.STEPPED_PROMPT < 32
    model = _model(pos_encoding=pos, d_model=48, n_heads=3, d_ff=80, context_length=64)  # widths no multiple of 16
    decoder = NativeDecoder(model, module)
    g = torch.Generator().manual_seed(0)
    logits = decoder.prefill(torch.randint(0, 20, (1, prompt), generator=g))
    for _ in range(2 * model.cfg.context_length):  # past the window: re-prefills in between
        full, _ = model(decoder.tokens())
        assert (logits - full[:, -1]).abs().max() <= 1e-5
        logits = decoder.step(torch.multinomial(torch.softmax(logits, -1), 1, generator=g))


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
@torch.no_grad()
def test_one_thread_and_two_give_the_same_logits_bit_for_bit(module, dtype):
    model, before = _model(seed=1), torch.get_num_threads()
    runs = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            decoder = NativeDecoder(model, module, dtype)
            steps = [decoder.prefill(torch.tensor([[1, 2]]))]
            steps += [decoder.step(torch.tensor([[t]])) for t in (3, 4, 5, 6)]
            runs.append(torch.cat(steps))
    finally:
        torch.set_num_threads(before)
    assert torch.equal(runs[0], runs[1])


def test_greedy_generation_through_the_step_equals_the_recompute_loop(module, monkeypatch):
    model = _model(seed=2)
    prompt = torch.tensor([[1, 2, 3]])
    n = model.cfg.context_length - 3  # within one window: the recompute loop sees the same tokens
    reference = torch.cat(list(generate(model, prompt, n, temperature=0, use_cache=False)), dim=1)
    monkeypatch.setattr(strategy, "choose", lambda *a, **k: Strategy(1, 2, "fp32", True))
    assert torch.equal(torch.cat(list(generate(model, prompt, n, temperature=0)), dim=1), reference)


def test_models_it_cannot_run_are_refused(module):
    with pytest.raises(ValueError, match="fp32 models on the CPU"):
        NativeDecoder(_model().to(torch.bfloat16), module)


def test_without_a_compiler_or_when_turned_off_the_lab_says_why(monkeypatch):
    monkeypatch.setattr(nativedecode, "_LOADED", {})
    monkeypatch.setenv("MINILAB_NATIVE", "0")
    assert nativedecode.load() is None and nativedecode.why() == "MINILAB_NATIVE=0"
    monkeypatch.setattr(nativedecode, "_LOADED", {})
    monkeypatch.delenv("MINILAB_NATIVE")
    monkeypatch.setattr(nativedecode.shutil, "which", lambda name: None)
    assert nativedecode.load() is None and "C++ compiler" in nativedecode.why()
    monkeypatch.setattr(strategy, "_CHOSEN", {})  # and decoding still works, with the Python decoders
    out = torch.cat(list(generate(_model(), torch.tensor([[1]]), 5, dtype="auto")), dim=1)
    assert out.shape == (1, 5)


def test_a_build_made_for_another_cpu_is_never_loaded(monkeypatch):
    """The build folder's name holds the CPU's flags: -march=native code could crash on another CPU."""
    real_read = nativedecode.Path.read_text
    keys = set()
    for flags in ("flags : fpu avx2", "flags : fpu avx2 avx512f"):
        fake = lambda self, *a, flags=flags, **k: flags if str(self) == "/proc/cpuinfo" else real_read(self, *a, **k)  # noqa: E731
        monkeypatch.setattr(nativedecode.Path, "read_text", fake)
        keys.add(nativedecode._build_key())
    assert len(keys) == 2


@torch.no_grad()
def test_prepared_weights_are_reused_until_a_weight_changes(module):
    model = _model(seed=3)
    first = nativedecode.prepared(model, "bf16")
    assert nativedecode.prepared(model, "bf16") is first  # the same model, unchanged: not converted again
    model.blocks[0].mlp.fc.weight.add_(0.5)  # in place, as an optimizer step is
    assert nativedecode.prepared(model, "bf16") is not first
    decoder = NativeDecoder(model, module)  # fp32: the changed weight must be the one used
    logits = decoder.prefill(torch.tensor([[1, 2, 3]]))
    full, _ = model(torch.tensor([[1, 2, 3]]))
    assert (logits - full[:, -1]).abs().max() <= 1e-5


def test_a_failed_build_is_said_once_and_not_retried_in_every_process(monkeypatch, tmp_path):
    from torch.utils import cpp_extension

    monkeypatch.setenv("MINILAB_CACHE", str(tmp_path))
    calls, said = [], []

    def failing_build(name, sources, **kwargs):
        calls.append(name)
        raise RuntimeError("compiling failed\nerror: omp.h: no such file")

    monkeypatch.setattr(cpp_extension, "load", failing_build)
    monkeypatch.setattr(nativedecode.shutil, "which", lambda name: f"/usr/bin/{name}")
    for _ in range(2):  # two processes, one after the other
        monkeypatch.setattr(nativedecode, "_LOADED", {})
        assert nativedecode.load(said.append) is None
        assert "omp.h: no such file" in nativedecode.why()
    assert len(calls) == 1 and "delete" in nativedecode.why()
    assert said[0].startswith("building") and all("no C++ decode step" in line for line in said[1:])


def test_a_lock_left_by_a_killed_build_is_cleared(monkeypatch, tmp_path):
    import os

    from torch.utils import cpp_extension

    monkeypatch.setenv("MINILAB_CACHE", str(tmp_path))
    monkeypatch.setattr(nativedecode, "_LOADED", {})
    monkeypatch.setattr(nativedecode.shutil, "which", lambda name: f"/usr/bin/{name}")
    lock = nativedecode.cache_dir() / f"native-{nativedecode._build_key()}" / "lock"
    lock.parent.mkdir(parents=True)
    lock.write_text("")
    old = lock.stat().st_mtime - nativedecode.STALE_LOCK_SECONDS - 1
    os.utime(lock, (old, old))
    seen = []
    monkeypatch.setattr(cpp_extension, "load", lambda *a, **k: seen.append(lock.exists()) or object())
    assert nativedecode.load() is not None and seen == [False]
