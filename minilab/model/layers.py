"""The interchangeable parts of a block: the normalisation and the feed-forward network.

Each option is selected by one field of ``ModelConfig`` (``norm``, ``mlp``, ``bias``), so an
ablation changes one thing at a time. The seed's classic GPT uses LayerNorm and a GELU MLP.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

from minilab.model.config import ModelConfig


class HookPoint:
    """A named place in the forward pass where a tool (minilab/inside) can read or replace a tensor.

    Unused (``fn`` is None) it hands its input straight back: one attribute test, no copy. It is
    not an nn.Module, so it holds no weights and adds nothing to checkpoints.
    """

    __slots__ = ("name", "fn", "edits")

    def __init__(self, name: str):
        self.name = name
        self.fn = None  # set by minilab/inside/hooks.py: takes the tensor, returns the one to use
        self.edits = False  # True when fn may change the tensor, not only look at it

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.fn is None else self.fn(x)


class Dropout(nn.Module):
    """Dropout (zero each element with probability p while training, scale the rest by 1 / (1 - p)).

    The same maths as nn.Dropout, with a cheaper mask. nn.Dropout on a CPU draws one random float
    per element (under torch.compile, one Philox draw per element inside the fused kernel); at the
    sizes this lab trains, those draws took a third of a compiled training step (docs/benchmarks.md).
    Here one 64-bit draw makes the masks of four elements: a draw below 2^60 is read as four 16-bit
    quarters, and each quarter's low 12 bits (all random) keep its element when they are at least
    p * 4096. So p is rounded to a multiple of 1/4096 (0.1 drops 410/4096 = 0.1001 of the elements;
    anything between 0 and 1 drops at least 1/4096 and keeps at least 1/4096),
    and the kept ones are scaled by the exact inverse of the kept fraction. On CUDA, where PyTorch's
    dropout is one fused kernel already, that is used instead.
    """

    def __init__(self, p: float):
        super().__init__()
        self.p = p
        # An element is dropped when its 12 random bits are below this: 1 to 4095 for 0 < p < 1, so
        # a tiny p still drops something and one near 1 still keeps something.
        self.cut = 0 if p == 0 else min(max(round(p * 4096), 1), 4095)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.cut == 0:
            return x
        if x.is_cuda:
            return F.dropout(x, self.p, training=True)
        n = x.numel()
        draws = torch.randint(0, 2**60, ((n + 3) // 4,), dtype=torch.int64, device=x.device)
        bits = draws.view(torch.int16)[:n].view(x.shape) & 0x0FFF  # four 12-bit numbers per draw
        return x * (bits >= self.cut) * (4096 / (4096 - self.cut))

    def extra_repr(self) -> str:
        return f"p={self.p}"


class RMSNorm(nn.Module):
    """Root-mean-square norm (Zhang & Sennrich 2019): x / sqrt(mean(x^2) + eps) * gain.

    LayerNorm also subtracts the mean and adds a bias; RMSNorm drops both. It is cheaper, has half
    the parameters, and trains as well, which is why LLaMA, Mistral and most current models use it.
    """

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The gain in x's dtype: under bf16 autocast, a bf16 x with an fp32 gain misses the fused kernel.
        return F.rms_norm(x, (x.size(-1),), self.weight.to(x.dtype), self.eps)


def make_norm(cfg: ModelConfig, dim: int) -> nn.Module:
    """The normalisation the config asks for, over the last ``dim`` channels."""
    if cfg.norm == "rmsnorm":
        return RMSNorm(dim)
    return nn.LayerNorm(dim, bias=cfg.bias)  # the seed's: subtract the mean, divide by the std, scale, shift


def swiglu_hidden(d_ff: int) -> int:
    """SwiGLU's hidden width: 2/3 of d_ff, so its three matrices hold as many weights as GELU's two."""
    return max(1, round(2 * d_ff / 3))


class FeedForward(nn.Module):
    """Position-wise MLP: widen, a non-linearity, project back. Where most parameters live.

    - 'gelu' (the seed's): proj(gelu(fc(x))), the exact GELU x * Phi(x).
    - 'gelu_tanh': the same with GELU's tanh approximation, which GPT-2 was trained with (its
      ``gelu_new``); only imported GPT-2 models need it.
    - 'relu2': proj(relu(fc(x))^2), squared ReLU (So et al. 2021, "Primer"): as cheap as ReLU, and
      in speed-run GPTs (modded-nanoGPT) it trains a little faster than GELU.
    - 'swiglu': proj(silu(gate(x)) * up(x)), a gated unit (Shazeer 2020) used by LLaMA and PaLM:
      one branch decides how much of the other passes. Three matrices instead of two, so the hidden
      width is 2/3 of d_ff to keep the parameter count (nearly) the same.
    """

    def __init__(self, cfg: ModelConfig, layer: int = 0):
        super().__init__()
        self.kind = cfg.mlp
        hidden = swiglu_hidden(cfg.d_ff) if cfg.mlp == "swiglu" else cfg.d_ff
        # For SwiGLU, fc computes the gate and the up branch in one matmul: (C) -> (2 * hidden).
        self.fc = nn.Linear(cfg.d_model, 2 * hidden if cfg.mlp == "swiglu" else hidden, bias=cfg.bias)
        self.proj = nn.Linear(hidden, cfg.d_model, bias=cfg.bias)
        self.dropout = Dropout(cfg.dropout)
        self.hook_hidden = HookPoint(f"blocks.{layer}.mlp.hidden")  # the neurons, after the non-linearity
        self.hook_out = HookPoint(f"blocks.{layer}.mlp.out")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc(x)  # (B, T, hidden) or (B, T, 2 * hidden)
        if self.kind == "gelu":
            h = F.gelu(h)
        elif self.kind == "gelu_tanh":
            h = F.gelu(h, approximate="tanh")
        elif self.kind == "relu2":
            h = F.relu(h).square()
        else:
            gate, up = h.chunk(2, dim=-1)  # 2 x (B, T, hidden)
            h = F.silu(gate) * up
        h = self.hook_hidden(h)  # (B, T, hidden)
        return self.hook_out(self.dropout(self.proj(h)))  # (B, T, C)
