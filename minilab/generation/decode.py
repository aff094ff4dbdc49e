"""Decoding: a KV cache per batch of sequences, fed token by token, and the ``generate`` loop over it.

The sampler (sampling.py) picks each token; FastDecoder (fastdecode.py) is the batch-1 fast path.
"""

import contextlib
from collections.abc import Iterator

import torch

from minilab.generation import strategy
from minilab.generation.fastdecode import FastDecoder
from minilab.generation.sampling import sample_next
from minilab.generation.window import SlidingDecoder
from minilab.model.kvcache import KVCache, prefill


class CachedDecoder(SlidingDecoder):
    """Owns a KV cache for a batch of sequences: feed it tokens, get next-token logits back.

    The prompt is prefilled in one forward pass, then each new token costs one position; when the
    cache is full the window slides (minilab/generation/window.py).
    """

    def __init__(self, model, batch_size: int, keep: int | None = None):
        self.cache = KVCache.for_model(model, batch_size)
        super().__init__(model, batch_size, keep, self.cache.k.device)

    @property
    def length(self) -> int:
        return self.cache.length

    def _prefill(self, idx: torch.Tensor) -> torch.Tensor:
        self.cache.reset()
        return prefill(self.model, idx, self.cache)

    def _step(self, n: int, next_id: torch.Tensor) -> torch.Tensor:
        self.window[:, n] = next_id[:, 0]
        logits, _ = self.model(next_id, cache=self.cache)  # (B, 1, V)
        return logits[:, -1, :]


@torch.inference_mode()
def generate(
    model,
    idx: torch.Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
    use_cache: bool = True,
    dtype: str = "fp32",
) -> Iterator[torch.Tensor]:
    """Yield new token ids (B, 1) one at a time after the prompt ``idx`` (B, T).

    With ``use_cache`` (the default) a decoder with a KV cache does the work: ``FastDecoder`` for a
    single sequence, ``CachedDecoder`` for a batch. Without it, each step
    feeds the last ``context_length`` tokens back through the whole model (the plain recompute loop,
    kept as the reference and for the benchmark). Batch 1 takes the strategy measured fastest here
    (strategy.py). ``dtype`` 'bf16' decodes in bf16 (a bf16 copy of the weights at batch 1,
    autocast for batches), 'fp16' under fp16 autocast (GPUs); 'fp32' (the default) gives the
    full forward pass's logits; 'auto' is bf16 weights in the C++ step at batch 1 on a CPU with
    bf16 units for models 128 wide and wider, fp32 otherwise (precision.decode_precision).
    """
    model.eval()
    if max_new_tokens <= 0:
        return
    if use_cache:
        single = idx.size(0) == 1 and FastDecoder.supports(model)
        if dtype == "auto":
            dtype = strategy.auto_dtype(model) if single else "fp32"
        threads, narrow = torch.get_num_threads(), {"bf16": torch.bfloat16, "fp16": torch.float16}.get(dtype)
        if single and dtype in ("fp32", "bf16"):
            chosen = strategy.choose(model, CachedDecoder, dtype == "bf16")
            decoder, threads = strategy.build(model, chosen, CachedDecoder), chosen.threads
            narrow = None if chosen.parts else narrow  # FastDecoder holds its own bf16 weights
        else:
            decoder = CachedDecoder(model, idx.size(0))
        # Autocast around each call, never across a yield: the caller's code must not run under it.
        amp = lambda: torch.autocast(idx.device.type, narrow) if narrow else contextlib.nullcontext()  # noqa: E731
        before = torch.get_num_threads()
        if threads != before:
            torch.set_num_threads(threads)
        try:
            with amp():
                logits = decoder.prefill(idx)
            for i in range(max_new_tokens):
                next_id = sample_next(logits.float(), temperature, top_k, top_p, generator)  # (B, 1)
                yield next_id
                if i + 1 < max_new_tokens:
                    with amp():
                        logits = decoder.step(next_id)
        finally:
            if torch.get_num_threads() != before:
                torch.set_num_threads(before)
        return
    context = model.cfg.context_length
    for _ in range(max_new_tokens):
        logits, _ = model(idx[:, -context:])  # (B, T, V)
        next_id = sample_next(logits[:, -1, :], temperature, top_k, top_p, generator)  # (B, 1)
        idx = torch.cat([idx, next_id], dim=1)
        yield next_id
