"""Generation speed: the KV-cache engine against the plain recompute loop, at the seed configuration.

    python benchmarks/generate_bench.py [--device cpu] [--new_tokens 500] [--threads N] [--dtype auto] [--profile]

Prints the machine, then the time per step of every batch-1 decoding strategy (strategy.py) and the
one this process picked (--dtype auto|fp32|bf16 as generate's: auto is bf16 weights in the C++ step
on a CPU with bf16 units, fp32 elsewhere; precision.decode_precision), then tokens/s for prompts of
1 and 64 tokens, batch 1 and 8, with and without the cache, their ratio, and the memory of the
weights, of the cache, and the peak growth while generating at batch 8. Random weights: speed does
not depend on what the model has learned.
"""

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from machine import header

from minilab.device import resolve_device
from minilab.generation import nativedecode, strategy
from minilab.generation.decode import CachedDecoder, generate
from minilab.generation.fastdecode import FastDecoder
from minilab.model.config import ModelConfig
from minilab.model.gpt import GPT
from minilab.model.kvcache import KVCache
from minilab.precision import device_facts


def tokens_per_sec(model, prompt_len, batch, new_tokens, use_cache, device, repeats, dtype="fp32") -> float:
    rates = []
    for r in range(repeats):
        idx = torch.randint(0, model.cfg.vocab_size, (batch, prompt_len), device=device)
        gen = torch.Generator(device=device).manual_seed(r)
        _sync(device)
        t = time.perf_counter()
        for _ in generate(model, idx, new_tokens, temperature=1.0, generator=gen, use_cache=use_cache, dtype=dtype):
            pass
        _sync(device)
        rates.append(batch * new_tokens / (time.perf_counter() - t))
    return statistics.median(rates)


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def peak_rss_growth_mb(fn) -> float | None:
    """Peak resident memory growth while ``fn`` runs (Linux: /proc), in MB; None where unavailable."""
    status, clear = Path("/proc/self/status"), Path("/proc/self/clear_refs")
    if not (status.exists() and clear.exists()):
        return None

    def read(key):
        for line in status.read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1]) / 1024

    try:
        clear.write_text("5")  # reset the high-water mark to the current size
    except OSError:
        return None
    before = read("VmRSS:")
    fn()
    return read("VmHWM:") - before


def memory_growth() -> str:
    """Peak growth of resident memory while generating 64 tokens at batch 8 from a full-context prompt."""
    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=65)).eval()
    list(generate(model, torch.zeros(1, 1, dtype=torch.long), 2))  # load the kernels, not the buffers
    growth = peak_rss_growth_mb(lambda: list(generate(model, torch.zeros(8, 256, dtype=torch.long), 64)))
    return "n/a" if growth is None else f"{growth:.1f} MB"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--new_tokens", type=int, default=500)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--profile", action="store_true", help="also print where a cached decode step spends its time")
    p.add_argument("--threads", type=int, default=0, help="intra-op threads (default: PyTorch's choice)")
    p.add_argument("--dtype", choices=("auto", "fp32", "bf16"), default="auto", help="as generate's --dtype")
    p.add_argument("--memory_only", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.memory_only:
        return print(memory_growth())
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=65)).to(device).eval()
    header(str(device), (args.dtype,), peaks=False)
    print(
        f"seed config ({model.num_params() / 1e6:.2f}M params), {args.new_tokens} new tokens, median of {args.repeats}"
    )
    if device.type == "cpu":
        print("\n| batch-1 strategy | us/step (best of 2 x 100 steps) |\n| --- | ---: |")
        bf16 = args.dtype == "bf16" or bool(device_facts(device).cpu_bf16)
        native, threads = nativedecode.load(print) is not None, torch.get_num_threads()
        every = strategy.candidates(model, threads, False, native)
        every += strategy.candidates(model, threads, True, native) if bf16 else []
        every += strategy.candidates(model, threads, True, False) if bf16 and native else []  # FastDecoder's bf16
        for s in every:
            print(f"| {s.describe()} | {strategy.seconds_per_step(model, s, CachedDecoder, 100) * 1e6:,.0f} |")
        dtype = strategy.auto_dtype(model) if args.dtype == "auto" else args.dtype
        picked = strategy.choose(model, CachedDecoder, dtype == "bf16")
        why = "" if native else f" (no C++ step: {nativedecode.why()})"
        print(f"\n--dtype {args.dtype}: picked by this process's start-up measurement: {picked.describe()}{why}\n")
    print("| prompt | batch | cached tok/s | recompute tok/s | speed-up |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for prompt_len in (1, 64):
        for batch in (1, 8):
            cached = tokens_per_sec(model, prompt_len, batch, args.new_tokens, True, device, args.repeats, args.dtype)
            plain = tokens_per_sec(model, prompt_len, batch, args.new_tokens, False, device, args.repeats)
            print(f"| {prompt_len} | {batch} | {cached:,.0f} | {plain:,.0f} | {cached / plain:.1f}x |", flush=True)

    weights = sum(t.nbytes for t in model.state_dict().values() if t is not model.lm_head.weight)
    cache = KVCache.for_model(model, 8).nbytes
    if device.type == "cpu":
        # In a fresh process: memory this one has freed would otherwise be reused and hide the peak.
        # With a fixed mmap threshold, glibc gives every large buffer back when it is freed, so the
        # resident size follows the live tensors instead of the allocator's history.
        env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
        cmd = [sys.executable, __file__, "--memory_only"]
        peak = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env).stdout.strip()
    else:
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        list(generate(model, torch.zeros(8, 256, dtype=torch.long, device=device), 64))
        peak = f"{(torch.cuda.max_memory_allocated(device) - base) / 2**20:.1f} MB"
    print(
        f"\nmemory: weights {weights / 2**20:.1f} MB; KV cache at batch 8, full context {cache / 2**20:.1f} MB; "
        f"peak growth while generating at batch 8 from a full-context prompt: {peak}"
    )

    if args.profile:
        from torch.profiler import profile

        with torch.inference_mode():
            decoder = FastDecoder(model)
            logits = decoder.prefill(torch.zeros(1, 1, dtype=torch.long, device=device))
            for _ in range(20):
                logits = decoder.step(logits.argmax(-1, keepdim=True))
            with profile() as prof:
                for _ in range(100):
                    logits = decoder.step(logits.argmax(-1, keepdim=True))
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))


if __name__ == "__main__":
    main()
