"""The machine a benchmark ran on, printed beside its figures: CPU model, ISA flags, threads, dtype, peaks.

    python benchmarks/machine.py [--dtype fp32,bf16]     # the header alone, with the measured peaks

Every benchmark in this folder prints ``header(...)`` first, so that a table pasted into the docs
names its CPU: the figures differ by CPU family (docs/benchmarks.md keeps one table per family).
"""

import argparse
import os

import torch

from minilab.device import CPU_ISA_FLAGS, cpu_flags, cpu_model_name
from minilab.model.flops import measured_peak_flops
from minilab.precision import TORCH_DTYPES


def describe(device: str = "cpu", dtype: str = "fp32") -> str:
    """One line: device, CPU model, the ISA flags that matter, threads, dtype, torch."""
    flags = cpu_flags()
    isa = " ".join(f"{f}{'+' if f in flags else '-'}" for f in CPU_ISA_FLAGS) if flags else "flags unknown"
    gpu = f", {torch.cuda.get_device_name()}" if torch.device(device).type == "cuda" else ""
    return (
        f"machine: {device}{gpu}; CPU {cpu_model_name()} ({os.cpu_count()} CPUs; {isa}); "
        f"{torch.get_num_threads()} threads; dtype {dtype}; torch {torch.__version__}"
    )


def peak(device: str = "cpu", dtype: str = "fp32") -> float:
    """The measured matrix-multiply peak for ``dtype`` on ``device``, in FLOP/s (2048^2 on CPU)."""
    return measured_peak_flops(torch.device(device).type, dtype=TORCH_DTYPES[dtype])


def header(device: str = "cpu", dtypes: tuple[str, ...] = ("fp32",), peaks: bool = True) -> dict[str, float]:
    """Print the machine line and, with ``peaks``, the measured peak of each dtype; returns the peaks."""
    print(describe(device, ",".join(dtypes)))
    if not peaks:
        return {}
    found = {d: peak(device, d) for d in dtypes}
    print("measured peak (2048^2 matmul): " + ", ".join(f"{d} {v / 1e9:,.0f} GFLOP/s" for d, v in found.items()))
    return found


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="fp32,bf16", help="comma-separated dtypes to measure the peak of")
    args = p.parse_args()
    header(args.device, tuple(args.dtype.split(",")))
