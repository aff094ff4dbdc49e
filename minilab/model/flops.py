"""Model FLOPs utilisation (MFU): how much of the machine's arithmetic peak training really uses."""

import functools
import time

import torch


def flops_per_token(model) -> float:
    """Training FLOPs per token: 6 per non-embedding parameter (forward + backward) plus attention.

    The attention term, 12 * n_layers * d_model * context, counts the q.k and weights.v products
    that the parameter count misses (the usual estimate from the scaling-law literature).
    """
    cfg = model.cfg
    embedding = sum(p.numel() for n, p in model.named_parameters() if n.startswith(("tok_emb", "pos_emb")))
    return 6 * (model.num_params() - embedding) + 12 * cfg.n_layers * cfg.d_model * cfg.context_length


@functools.lru_cache(maxsize=8)
def measured_peak_flops(
    device_type: str = "cpu", size: int = 2048, repeats: int = 5, dtype: torch.dtype | None = None
) -> float:
    """This machine's matrix-multiply rate in FLOP/s in ``dtype`` (default fp32 on CPU, bf16 on CUDA), measured once."""
    if dtype is None:
        dtype = torch.bfloat16 if device_type == "cuda" else torch.float32
    if device_type == "cuda":
        size = 8192
    gen = torch.Generator(device=device_type).manual_seed(0)  # never touch the global random state
    a = torch.randn(size, size, device=device_type, dtype=dtype, generator=gen)
    b = torch.randn(size, size, device=device_type, dtype=dtype, generator=gen)
    best = float("inf")
    for _ in range(repeats + 1):  # the first one warms up
        _sync(device_type)
        t = time.perf_counter()
        a @ b
        _sync(device_type)
        best = min(best, time.perf_counter() - t)
    return 2 * size**3 / best


def _sync(device_type: str) -> None:
    if device_type == "cuda":
        torch.cuda.synchronize()
