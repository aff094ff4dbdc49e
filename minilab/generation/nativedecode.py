"""FastDecoder's architecture with the whole step in one C++ call (native/decode_step.cpp), built once per machine.

At batch 1 a token costs about 60 small PyTorch calls, and on a CPU their dispatch is a large share
of the step; the C++ step makes one call per token and may keep the weights in bf16 (half the bytes
to read, widened to fp32 before every product, so any x86 or ARM CPU can run it). It is compiled on
first use with PyTorch's own extension builder (``torch.utils.cpp_extension.load``: a C++ compiler
and ``ninja``), for this CPU (``-march=native``), into a cache folder named after the source, the
CPU and the PyTorch version; later processes only load it. Where it cannot be built (no compiler,
``MINILAB_NATIVE=0``), ``load`` says why and the lab decodes with the Python decoders.

The prompt is prefilled by the model itself into the cache the step reads (as FastDecoder does);
tests compare the step's logits with the full forward pass at every position.
"""

import hashlib
import os
import platform
import shutil
import sys
import time
import weakref
from collections.abc import Callable
from pathlib import Path

import torch

from minilab.device import cpu_bf16_features
from minilab.generation.window import SlidingDecoder
from minilab.model.kvcache import KVCache, prefill

SOURCE = Path(__file__).with_name("native") / "decode_step.cpp"
# -O3 -march=native vectorises the products for this CPU; reassociating the sums (and what it needs)
# lets the compiler split each dot product over vector lanes; no -ffast-math, so infinities stay
# exact. -fopenmp: the step runs as one OpenMP team of PyTorch's thread count, and the extension
# uses the libgomp PyTorch has already loaded (the same thread pool as its own ops).
CFLAGS = ["-O3", "-march=native", "-fno-math-errno", "-fassociative-math", "-fno-signed-zeros", "-fno-trapping-math"]
CFLAGS += ["-fopenmp"]
_LOADED: dict[str, object] = {}  # "module" -> the extension, or "why" -> why there is none
_PREPARED: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # model -> (fingerprint, its weights for the step)
STALE_LOCK_SECONDS = 600  # a build takes about 30 s; a lock file this old belongs to a killed one
STEPPED_PROMPT = 16  # prompts up to this long go through the step token by token (about 0.2 ms each)


def cache_dir() -> Path:
    """Where builds are kept: $MINILAB_CACHE, else $XDG_CACHE_HOME or ~/.cache, under mini-transformer-lab/."""
    base = os.environ.get("MINILAB_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return Path(base) / "mini-transformer-lab"


def _build_key() -> str:
    """The source, the flags, this CPU's features and PyTorch's version: a build made elsewhere is never loaded."""
    try:
        flags = next((ln for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("flags")), "")
    except OSError:
        flags = platform.processor()
    parts = [SOURCE.read_bytes(), " ".join(CFLAGS).encode(), flags.encode(), torch.__version__.encode()]
    parts.append(f"{sys.version_info[:2]} {platform.machine()}".encode())
    return hashlib.sha256(b"\0".join(parts)).hexdigest()[:16]


def load(notify: Callable[[str], None] | None = None):
    """The compiled extension, built first if this machine has none yet; None if it cannot be had (``why`` says why).

    ``notify`` gets one line before a build starts, and one line if there is no C++ step to be had.
    """
    if "module" in _LOADED or "why" in _LOADED:
        return _LOADED.get("module")
    if os.environ.get("MINILAB_NATIVE", "1") == "0":
        _LOADED["why"] = "MINILAB_NATIVE=0"
        return None
    module = _build(notify)
    if module is None and notify is not None:
        notify(f"no C++ decode step: {_LOADED['why']}; decoding in Python (MINILAB_NATIVE=0 skips the attempt)")
    return module


def _build(notify):
    compiler = os.environ.get("CXX", "c++")
    if shutil.which("ninja") is None:  # the pip package's binary, in a virtual environment not activated
        try:
            import ninja

            os.environ["PATH"] = os.pathsep.join([ninja.BIN_DIR, os.environ.get("PATH", "")])
        except ImportError:
            pass
    if shutil.which(compiler) is None or shutil.which("ninja") is None:
        _LOADED["why"] = f"building it needs a C++ compiler ({compiler}) and ninja on the PATH"
        return None
    from torch.utils import cpp_extension

    key = _build_key()
    folder = cache_dir() / f"native-{key}"
    name = f"minilab_decode_{key}"
    failed, lock = folder / "FAILED", folder / "lock"
    if failed.exists():  # a build failed here before: do not spend half a minute on it in every process
        _LOADED["why"] = f"{failed.read_text().strip()} (delete {folder} to try again)"
        return None
    if lock.exists() and time.time() - lock.stat().st_mtime > STALE_LOCK_SECONDS:
        lock.unlink(missing_ok=True)  # left by a build that was killed: PyTorch would wait for it forever
    if notify is not None and not any(folder.glob(f"{name}*.so")):
        notify("building the C++ decode step for this CPU, once (about 30 s; MINILAB_NATIVE=0 skips it)")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        module = cpp_extension.load(
            name, [str(SOURCE)], extra_cflags=CFLAGS, extra_ldflags=["-fopenmp"], build_directory=str(folder)
        )
    except Exception as e:  # a compiler error, a missing header: decode without it
        last = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        _LOADED["why"] = f"the build failed: {last}"
        try:
            failed.write_text(_LOADED["why"] + "\n")
        except OSError:
            pass
        return None
    _LOADED["module"] = module
    return module


def why() -> str:
    """Why ``load`` gave None ('' if it has not been called or succeeded)."""
    return str(_LOADED.get("why", ""))


def _fingerprint(model) -> tuple:
    """Changes whenever a weight does: in place (an optimizer step, load_state_dict) or by a new tensor."""
    return tuple((p.data_ptr(), p._version) for p in model.parameters())


@torch.no_grad()
def prepared(model, dtype: str) -> tuple[list, list, tuple]:
    """``model``'s weights as the C++ step takes them, in ``dtype``; kept per model until a weight changes.

    Converting 3M weights to bf16 took 4 ms at the seed size, 8 us per token of a 500-token generation.
    """
    key = (_fingerprint(model), dtype)
    cached = _PREPARED.get(model)
    if cached is not None and cached[0] == key:
        return cached[1]
    cfg, emb = model.cfg, model.tok_emb.weight.detach()
    wdt = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype]
    mat = lambda lin: lin.weight.detach().to(wdt).contiguous()  # (out, in)  # noqa: E731
    vec = lambda t: t.detach().float().contiguous()  # noqa: E731
    tensors, eps = [], []
    for b in model.blocks:
        a, m = b.attn, b.mlp
        tensors += [vec(b.ln1.weight), vec(b.ln1.bias), mat(a.qkv), vec(a.qkv.bias), mat(a.proj), vec(a.proj.bias)]
        tensors += [vec(b.ln2.weight), vec(b.ln2.bias), mat(m.fc), vec(m.fc.bias), mat(m.proj), vec(m.proj.bias)]
        eps += [b.ln1.eps, b.ln2.eps]
    if cfg.pos_encoding == "learned":
        pos, scale = model.pos_emb.weight.detach(), 1.0
    else:
        pos, scale = model.pos_table, model.emb_scale
    rest = (emb.contiguous(), vec(pos), float(scale), emb.to(wdt).contiguous())  # the head is the embedding
    rest += (vec(model.ln_f.weight), vec(model.ln_f.bias), float(model.ln_f.eps))
    _PREPARED[model] = (key, (tensors, eps, rest))
    return _PREPARED[model][1]


class NativeDecoder(SlidingDecoder):
    """KV-cached decoding of a single sequence by the C++ step; same interface as ``CachedDecoder`` at batch 1.

    It runs what ``FastDecoder.supports`` (the classic architecture, in eval mode) on the CPU in fp32.

    ``dtype`` 'bf16' keeps a bf16 copy of the weight matrices (the embedding's fp32 rows still give
    the input); the cache, the norms and every sum stay fp32.
    """

    @torch.no_grad()
    def __init__(self, model, module, dtype: str = "fp32", keep: int | None = None):
        cfg = model.cfg
        emb = model.tok_emb.weight
        if emb.device.type != "cpu" or emb.dtype != torch.float32:
            raise ValueError("the C++ decode step runs fp32 models on the CPU")
        super().__init__(model, 1, keep, emb.device)
        # The model's own cache layout (L, B=1, nh, ctx, hs): the prefill writes where the step reads.
        self.cache = KVCache.for_model(model, 1)
        self.window_np = self.window[0].numpy()  # the same memory as the window (B=1, ctx)
        self.dtype = dtype
        self.bf16_prefill = dtype == "bf16" and bool(cpu_bf16_features())
        tensors, eps, rest = prepared(model, dtype)
        self.step_fn = module.Step(tensors, eps, *rest, self.cache.k, self.cache.v, cfg.n_heads)

    @property
    def length(self) -> int:
        return self.cache.length

    @torch.inference_mode()
    def _prefill(self, idx: torch.Tensor) -> torch.Tensor:
        self.cache.reset()
        if idx.size(1) <= STEPPED_PROMPT:  # a short prompt: a few steps cost less than one forward pass
            self.step_fn.sync(0)
            for n, tok in enumerate(idx[0].tolist()):
                logits = self.step_fn(tok, n)
                self.cache.advance(1)
            return logits
        # With bf16 weights on a CPU with bf16 matrix units, longer prompts and every re-prefill after a
        # slide run under bf16 autocast too (1.7x faster at 128 tokens); the cache stays fp32.
        with torch.autocast("cpu", torch.bfloat16, enabled=self.bf16_prefill):
            logits = prefill(self.model, idx, self.cache).float()
        self.step_fn.sync(self.cache.length)  # the step reads the keys transposed: copy them over once
        return logits

    def _step(self, n: int, next_id: torch.Tensor) -> torch.Tensor:
        # No inference_mode here (the C++ step records nothing for autograd anyway), and the token is
        # written through a NumPy view of the window: each saves microseconds on a ~200 us step.
        tok = int(next_id)
        self.window_np[n] = tok
        logits = self.step_fn(tok, n)
        self.cache.advance(1)
        return logits
