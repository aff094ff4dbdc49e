"""Choosing the device to run on: auto picks cuda, then mps, then cpu."""

import torch

from minilab.errors import LabError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(name: str = "auto") -> torch.device:
    """Turn 'auto' | 'cpu' | 'cuda' | 'cuda:N' | 'mps' into a torch.device, or raise LabError if absent."""
    name = name.strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise LabError(f"--device {name}: no CUDA GPU is available here (use --device cpu or auto)")
        index = name.partition(":")[2]
        if index and (not index.isdigit() or int(index) >= torch.cuda.device_count()):
            raise LabError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
        return torch.device(name)
    if name == "mps":
        if not _mps_available():
            raise LabError("--device mps: Apple's MPS backend is not available here (use --device cpu or auto)")
        return torch.device("mps")
    raise LabError(f"--device {name!r}: choose one of auto, cpu, cuda, cuda:N, mps")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


# ---------------------------------------------------------------- what the machine's CPU can do

# The x86 features that multiply bf16 natively: AMX tiles (Sapphire Rapids and later) and the
# AVX-512 bf16 dot product (Cooper Lake and later). Without either, bf16 products are emulated and
# run about 100x slower than fp32 (measured on an AVX2 AMD EPYC).
CPU_BF16_FEATURES = ("amx_bf16", "avx512_bf16")
CPU_ISA_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")  # the ones the benchmarks print


def cpu_flags(cpuinfo: str | None = None) -> frozenset[str]:
    """The CPU's feature flags from /proc/cpuinfo (Linux); empty where there is no such file."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
                cpuinfo = f.read()
        except OSError:
            return frozenset()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):  # x86 says flags, ARM says Features
            return frozenset(value.split())
    return frozenset()


def cpu_model_name(cpuinfo: str | None = None) -> str:
    """The CPU's model name ('Intel(R) Xeon(R) Processor'), or the platform's word for it."""
    import platform

    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
                cpuinfo = f.read()
        except OSError:
            cpuinfo = ""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and value.strip():
            return value.strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def cpu_bf16_features(flags: frozenset[str] | None = None) -> tuple[str, ...]:
    """Which of CPU_BF16_FEATURES the CPU has: from ``flags`` if given, else /proc/cpuinfo or PyTorch's probe."""
    if flags is None:
        flags = cpu_flags()
        if not flags:  # no /proc/cpuinfo (macOS, Windows): PyTorch reads CPUID itself
            probe = torch.cpu
            flags = frozenset(
                name
                for name, has in (
                    ("amx_bf16", getattr(probe, "_is_amx_tile_supported", None)),
                    ("avx512_bf16", getattr(probe, "_is_avx512_bf16_supported", None)),
                )
                if has is not None and has()
            )
    return tuple(f for f in CPU_BF16_FEATURES if f in flags)
