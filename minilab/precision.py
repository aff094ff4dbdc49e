"""Which number format a run computes in: ``--dtype auto|fp32|bf16|fp16``, chosen from what the device has.

Weights and optimizer state always stay fp32; ``bf16`` and ``fp16`` mean mixed precision: the
matrix products run under ``torch.autocast`` in the narrow format, the rest (norms, softmax, the
loss, the optimizer) where PyTorch's autocast rules put it. The choice is a pure function of the
device's facts (``DeviceFacts``), so that tests can ask what any machine would get.

``auto`` picks, from measurements (docs/benchmarks.md, "Precision"):

- CUDA: bf16 where the GPU computes it natively (Ampere and newer), else fp16 with a gradient scaler;
- a CPU with bf16 matrix units (AMX or AVX512-BF16): bf16 when the model is at least
  ``CPU_BF16_MIN_WIDTH`` wide; narrower models spend more on casting than the units save;
- anything else (CPUs without those units, Apple's MPS): fp32.
"""

import contextlib
from dataclasses import dataclass

import torch

from minilab.device import CPU_BF16_FEATURES, cpu_bf16_features
from minilab.errors import LabError

DTYPE_CHOICES = ("auto", "fp32", "bf16", "fp16")
TORCH_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# Measured on the Intel Xeon (AMX), training step, bf16 against fp32, 1 thread, when bf16 runs kept all of
# attention in fp32 (now only its backward pass, which made bf16 faster still):
# d_model 32 0.9x, 64 1.2x, 96 1.2-1.4x, 128 1.4x, 192 1.6x, 256 (the seed) 2.0x. 128 keeps a margin for 2 threads.
CPU_BF16_MIN_WIDTH = 128
_FEATURE_NAMES = {"amx_bf16": "AMX-BF16", "avx512_bf16": "AVX512-BF16"}


@dataclass(frozen=True)
class DeviceFacts:
    """What the choice needs to know about a device; ``device_facts`` reads them, tests write them."""

    kind: str  # 'cpu', 'cuda' or 'mps'
    cpu_bf16: tuple[str, ...] = ()  # the CPU's bf16 matrix features found, a subset of CPU_BF16_FEATURES
    cuda_bf16: bool = False  # the GPU computes bf16 natively


def device_facts(device: torch.device) -> DeviceFacts:
    """The facts of this machine's ``device`` (reads /proc/cpuinfo or asks CUDA)."""
    kind = torch.device(device).type
    if kind == "cuda":
        return DeviceFacts("cuda", cuda_bf16=bool(torch.cuda.is_bf16_supported()))
    if kind == "cpu":
        return DeviceFacts("cpu", cpu_bf16=cpu_bf16_features())
    return DeviceFacts(kind)


@dataclass(frozen=True)
class Precision:
    """The resolved choice: what the products run in, and why."""

    name: str  # 'fp32', 'bf16' or 'fp16'
    reason: str  # a few words for the run's first line: 'auto: AMX-BF16, d_model 256 >= 160'
    warning: str = ""  # one line to print before the run, or ''

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        """The dtype ``torch.autocast`` runs the products in; None for plain fp32."""
        return None if self.name == "fp32" else TORCH_DTYPES[self.name]

    @property
    def grad_scaler(self) -> bool:
        """fp16 gradients underflow without loss scaling; only CUDA gets fp16, so only CUDA scales."""
        return self.name == "fp16"

    def autocast(self, device_type: str):
        """The context manager for forward passes: autocast in the narrow format, or nothing for fp32."""
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type, dtype=self.autocast_dtype)

    def describe(self) -> str:
        return f"{self.name} ({self.reason})"


def _features(facts: DeviceFacts) -> str:
    return " + ".join(_FEATURE_NAMES[f] for f in facts.cpu_bf16)


def choose_precision(requested: str, facts: DeviceFacts, d_model: int) -> Precision:
    """Resolve ``--dtype`` for a model ``d_model`` wide on a device with ``facts``; LabError if impossible."""
    if requested not in DTYPE_CHOICES:
        raise LabError(f"--dtype {requested!r}: choose one of {', '.join(DTYPE_CHOICES)}")
    kind = facts.kind
    if requested == "fp32":
        return Precision("fp32", "asked for")
    if requested == "fp16":
        if kind != "cuda":
            raise LabError(
                f"--dtype fp16 on {kind}: fp16 needs a gradient scaler, which runs only on CUDA "
                f"(and a CPU has no fp16 training path); use --dtype bf16 or fp32"
            )
        return Precision("fp16", "asked for; with a gradient scaler")
    if requested == "bf16":
        if kind == "cuda" and not facts.cuda_bf16:
            raise LabError("--dtype bf16: this GPU does not compute bf16 natively; use --dtype fp16 or fp32")
        if kind == "cpu" and not facts.cpu_bf16:
            missing = " or ".join(_FEATURE_NAMES[f] for f in CPU_BF16_FEATURES)
            return Precision(
                "bf16",
                "asked for; emulated",
                f"warning: --dtype bf16: this CPU has no {missing} (no amx_bf16 or avx512_bf16 in its flags), "
                "so bf16 products are emulated and run far slower than fp32 (about 100x on an AVX2 AMD EPYC)",
            )
        return Precision("bf16", "asked for")
    # auto
    if kind == "cuda":
        if facts.cuda_bf16:
            return Precision("bf16", "auto: the GPU computes bf16")
        return Precision("fp16", "auto: the GPU has no bf16; fp16 with a gradient scaler")
    if kind == "cpu":
        if not facts.cpu_bf16:
            return Precision("fp32", "auto: this CPU has no bf16 matrix units")
        if d_model < CPU_BF16_MIN_WIDTH:
            return Precision("fp32", f"auto: d_model {d_model} < {CPU_BF16_MIN_WIDTH}, too narrow for bf16 to pay")
        return Precision("bf16", f"auto: {_features(facts)}, d_model {d_model} >= {CPU_BF16_MIN_WIDTH}")
    return Precision("fp32", f"auto: mixed precision on {kind} is not measured here")


def inference_precision(requested: str, facts: DeviceFacts) -> Precision:
    """``--dtype`` for eval (and for generate's batches): ``auto`` keeps the numbers exact (fp32); bf16/fp16 when asked.

    A score should not depend on which machine computed it.
    """
    if requested == "auto":
        return Precision("fp32", "auto: inference stays exact")
    return choose_precision(requested, facts, 0)


def decode_precision(requested: str, facts: DeviceFacts, native: bool, d_model: int) -> Precision:
    """``--dtype`` for decoding one sequence: ``auto`` is bf16 weights in the C++ step on a CPU with bf16 units.

    There the step reads half the bytes per token and ran 1.6x faster than in fp32 at the seed size
    (docs/precision.md), its logits within 0.2% of fp32's; the rule is the CPU's features and the
    width (narrower models, whose weights sit in the cache anyway, stay exact), never a timing, so the
    same machine always decodes the same way. ``native``: the C++ step could be built here.
    """
    if requested == "auto":
        if facts.kind == "cpu" and facts.cpu_bf16 and native and d_model >= CPU_BF16_MIN_WIDTH:
            return Precision("bf16", f"auto: bf16 weights in the C++ step ({_features(facts)})")
        return Precision("fp32", "auto: exact")
    return inference_precision(requested, facts)


def fused_adamw(device_type: str) -> bool:
    """Whether to ask for AdamW's fused kernel: on CUDA and on CPUs (torch >= 2.4), never on MPS.

    One kernel updates every parameter and its two moments in one pass: on the Intel Xeon it made a
    bf16 training step of a 96-wide model about 10% faster, and changed little at 256.
    """
    return device_type in ("cuda", "cpu")
