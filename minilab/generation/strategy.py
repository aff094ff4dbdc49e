"""Which batch-1 decoder is fastest on this machine: measured once per process and model shape, then reused.

What wins depends on the CPU. On a 2-core AMD EPYC (AVX2) ``FastDecoder`` with two column blocks,
one per core, beat one block; on a 2-core Intel Xeon (AVX-512, AMX) one block beat two, and a
bf16 copy of the weights, which halves the bytes read per token, did not pay (docs/benchmarks.md).
So instead of a rule per CPU, the first batch-1 generation for a model shape times each candidate
for a few steps and keeps the fastest for the rest of the process:

- ``FastDecoder`` with 1 column block, and with one block per thread where the widths allow;
- ``CachedDecoder`` (the model's own forward pass with a KV cache);
- ``NativeDecoder``, the whole step in one C++ call (nativedecode.py), where it could be built;
- the FastDecoder and the C++ step on 1 thread instead of all (small calls skip the thread pool's hand-over);
- with bf16 weights instead (``--dtype bf16``): the C++ step and ``FastDecoder`` over a bf16 copy.

Every fp32 candidate gives the same logits as the full forward pass (within 1e-5, tested), so the
choice changes only the speed, and the same seed still gives the same text. bf16 weights change the
logits (by up to ``BF16_LOGIT_TOLERANCE`` of their range), so fp32 and bf16 candidates are never
timed against each other: which set is used is decided by ``--dtype``, not by the clock.
"""

import copy
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from minilab.generation import nativedecode
from minilab.generation.fastdecode import FastDecoder
from minilab.precision import decode_precision, device_facts

# The largest |logit - fp32 full forward| a bf16 decoder may show, as a share of the largest |logit|:
# bf16 keeps 8 bits of mantissa (0.4%), and four layers of products add up to about 1% (measured 0.5%
# at the seed size, 1.1% on the tests' tiny model).
BF16_LOGIT_TOLERANCE = 0.02
TIMED_STEPS = 12  # steps timed per candidate, after 3 warm-up steps; best of 2 rounds
_CHOSEN: dict[tuple, "Strategy"] = {}  # (shape, device, threads, bf16) -> the winner


@dataclass(frozen=True)
class Strategy:
    """One way to decode a single sequence."""

    parts: int  # FastDecoder's column blocks; 0 = CachedDecoder
    threads: int  # PyTorch's intra-op threads while decoding
    dtype: str = "fp32"  # 'bf16': a bf16 copy of the weights
    native: bool = False  # NativeDecoder, the C++ step (parts is 1 then)

    def describe(self) -> str:
        if self.native:
            kind = "C++ step (NativeDecoder)"
        else:
            kind = "CachedDecoder" if self.parts == 0 else f"FastDecoder, {self.parts} column block(s)"
        return f"{kind}, {self.threads} thread(s), {self.dtype} weights"


class _Bf16Decoder:
    """A FastDecoder over a bf16 copy of the model, returning fp32 logits."""

    def __init__(self, model, parts: int):
        self.inner = FastDecoder(copy.deepcopy(model).to(torch.bfloat16).eval(), parts=parts)

    def tokens(self) -> torch.Tensor:
        return self.inner.tokens()

    def prefill(self, idx: torch.Tensor) -> torch.Tensor:
        return self.inner.prefill(idx).float()

    def step(self, next_id: torch.Tensor) -> torch.Tensor:
        return self.inner.step(next_id).float()


def candidates(model, threads: int, bf16: bool, native: bool = False) -> list[Strategy]:
    """The strategies worth timing for ``model`` with ``threads`` threads: fp32 ones, or with ``bf16`` bf16 ones.

    ``native``: the C++ step was built here, so it is a candidate too (1 thread and all).
    """
    cfg = model.cfg
    blocks = [p for p in sorted({1, threads}) if cfg.d_model % p == 0 and cfg.d_ff % p == 0]
    dtype = "bf16" if bf16 else "fp32"
    # The C++ step first, on one thread first: cheap to time anywhere, so on a busy machine the
    # others give up early against it.
    found = [Strategy(1, t, dtype, True) for t in sorted({1, threads})] if native else []
    if bf16:  # FastDecoder in bf16 only without the C++ step: far slower, and its logits differ from it
        return found or [Strategy(p, threads, "bf16") for p in blocks]
    found += [Strategy(1, 1)] if threads > 1 else []
    return found + [Strategy(p, threads) for p in blocks] + [Strategy(0, threads)]


def build(model, strategy: Strategy, cached_decoder: Callable):
    """The decoder ``strategy`` names; ``cached_decoder(model, batch_size)`` makes a CachedDecoder."""
    if strategy.native:
        module = nativedecode.load()
        if module is None:
            raise ValueError(f"the C++ decode step is not available here: {nativedecode.why()}")
        return nativedecode.NativeDecoder(model, module, strategy.dtype)
    if strategy.parts == 0:
        return cached_decoder(model, 1)
    if strategy.dtype == "bf16":
        return _Bf16Decoder(model, strategy.parts)
    return FastDecoder(model, parts=strategy.parts)


def fastest(timings: dict[Strategy, float]) -> Strategy:
    """The strategy with the least time per step (the first one listed on a tie)."""
    return min(timings, key=timings.__getitem__)


@torch.inference_mode()
def seconds_per_step(
    model, strategy: Strategy, cached_decoder: Callable, steps: int = TIMED_STEPS, limit: float = math.inf
) -> float:
    """Time ``steps`` decode steps of ``strategy`` from a 1-token prompt (best of 2 rounds).

    Gives up (returns inf) as soon as the steps so far average over ``limit`` seconds: on a busy
    machine a two-thread step can take 100x a one-thread one, and the measurement must stay short.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(strategy.threads)
    try:
        decoder = build(model, strategy, cached_decoder)
        device = next(model.parameters()).device
        logits = decoder.prefill(torch.zeros(1, 1, dtype=torch.long, device=device))
        best = math.inf
        for _ in range(2):
            t = time.perf_counter()
            for i in range(3 + steps):
                if i == 3:  # the first 3 warm up
                    t = time.perf_counter()
                logits = decoder.step(logits.argmax(-1, keepdim=True))
                # Warm-up steps (cold caches, first allocations) get five times the limit.
                if time.perf_counter() - t > limit * (5 * (i + 1) if i < 3 else i - 2):
                    return math.inf
            best = min(best, (time.perf_counter() - t) / steps)
        return best
    finally:
        torch.set_num_threads(before)


def auto_dtype(model) -> str:
    """What ``--dtype auto`` decodes one sequence of ``model`` in here: 'bf16' or 'fp32' (decode_precision)."""
    device = next(model.parameters()).device
    native = device.type == "cpu" and nativedecode.load(_notify) is not None
    return decode_precision("auto", device_facts(device), native, model.cfg.d_model).name


def _notify(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def choose(model, cached_decoder: Callable, bf16: bool = False, measure=seconds_per_step) -> Strategy:
    """The fastest batch-1 strategy for ``model``'s shape here: measured the first time, then remembered."""
    device = next(model.parameters()).device
    if device.type != "cpu":  # one GPU kernel per product: column blocks and threads mean nothing there
        return Strategy(1, torch.get_num_threads(), "bf16" if bf16 else "fp32")
    threads = torch.get_num_threads()
    key = (repr(model.cfg), str(device), threads, bf16)
    if key not in _CHOSEN:
        timings: dict[Strategy, float] = {}
        native = next(model.parameters()).dtype == torch.float32 and nativedecode.load(_notify) is not None
        for s in candidates(model, threads, bf16, native):  # each may give up at twice the best time so far
            timings[s] = measure(model, s, cached_decoder, limit=2 * min(timings.values(), default=math.inf))
        _CHOSEN[key] = fastest(timings)
    return _CHOSEN[key]
