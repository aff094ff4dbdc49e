"""The GPT-style transformer: embeddings, pre-norm blocks of causal self-attention and feed-forward.

Read top to bottom: attention (with both the explicit maths and PyTorch's fused kernel), a block,
and the model that stacks them. Position encodings live in ``positions.py``, the norms and the
feed-forward variants in ``layers.py``. The model does no I/O and knows nothing about text: ids in,
logits out. ``ModelConfig``'s switches (pos_encoding, norm, qk_norm, mlp, tie_embeddings, bias,
logit_softcap) each change one part; the defaults are the seed's classic GPT.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from minilab.model.config import ModelConfig
from minilab.model.kvcache import KVCache
from minilab.model.layers import Dropout, FeedForward, HookPoint, make_norm
from minilab.model.positions import Rotary, sinusoidal_table


def future_mask(T: int, S: int, device=None) -> torch.Tensor:
    """True where a query may NOT look: the last T of S positions are the queries. (T, S)"""
    # Query i sits at position S - T + i and may look at keys 0..S-T+i, never later ones.
    return torch.ones(T, S, dtype=torch.bool, device=device).triu(S - T + 1)


def attention_weights(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) with the future masked: how much each query reads each key. (B, nh, T, S)"""
    T, S = q.size(-2), k.size(-2)
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))  # (B, nh, T, S)
    scores = scores.masked_fill(future_mask(T, S, q.device), float("-inf"))
    return F.softmax(scores, dim=-1)  # (B, nh, T, S), each row sums to 1


def explicit_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor):
    """Causal attention written out: softmax(q k^T / sqrt(d), future masked) v. Returns (out, weights)."""
    weights = attention_weights(q, k)
    return weights @ v, weights  # (B, nh, T, hs)


def fused_attention(q, k, v, mask=None, is_causal=False, fp32_backward: bool = False) -> torch.Tensor:
    """PyTorch's fused attention kernel. With ``fp32_backward``, a causal bf16 attention that will be
    differentiated on a CPU runs its backward pass in fp32 (``CausalAttentionFP32Backward``)."""
    if fp32_backward and is_causal and mask is None and q.requires_grad and q.dtype != torch.float32:
        if q.device.type == "cpu" and hasattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu"):
            with torch.autocast("cpu", enabled=False):
                return CausalAttentionFP32Backward.apply(q, k, v)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal)


class CausalAttentionFP32Backward(torch.autograd.Function):
    """Causal fused attention on a CPU: the forward pass in q's dtype (bf16), the backward pass in fp32.

    PyTorch's CPU flash-attention kernel runs its forward pass 2.3x faster in bf16 than in fp32 on
    an AMX Xeon, but its backward pass 1.6x slower (seed config, 2 threads; docs/precision.md), so
    training under bf16 autocast takes the fast half of each. The backward kernel gets q, k, v (cast
    up exactly), the output cast up, and the forward's fp32 log-sum-exp, from which it recomputes
    the softmax the forward pass used.
    """

    @staticmethod
    def forward(ctx, q, k, v):
        out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, 0.0, True)
        ctx.save_for_backward(q, k, v, out, lse)
        return out

    @staticmethod
    def backward(ctx, grad):
        q, k, v, out, lse = ctx.saved_tensors
        up = (t.float() for t in (grad, q, k, v, out))
        dq, dk, dv = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward(*up, lse, 0.0, True)
        return dq.to(q.dtype), dk.to(k.dtype), dv.to(v.dtype)


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention where each position sees only itself and earlier positions."""

    def __init__(self, cfg: ModelConfig, layer: int = 0):
        super().__init__()
        self.n_heads = cfg.n_heads
        self.layer = layer  # which slot of a KV cache is ours
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=cfg.bias)  # queries, keys and values in one matmul
        self.proj = nn.Linear(cfg.d_model, cfg.d_model, bias=cfg.bias)
        self.resid_dropout = Dropout(cfg.dropout)
        # QK-norm (used by OLMo 2, Gemma 3, modded-nanoGPT): normalising each head's queries and keys
        # bounds the attention scores, so the softmax cannot saturate and a higher lr stays stable.
        self.q_norm = make_norm(cfg, cfg.head_dim) if cfg.qk_norm else None
        self.k_norm = make_norm(cfg, cfg.head_dim) if cfg.qk_norm else None
        self.rotary = Rotary(cfg.head_dim, cfg.context_length) if cfg.pos_encoding == "rope" else None
        # The fused kernel (flash / memory-efficient attention) is the default; the explicit path is
        # the same maths spelled out, used for attention maps and as the reference in tests.
        self.fused = True
        # Hook points (minilab/inside/hooks.py): named places where a tool may read or replace a tensor.
        self.hook_pattern = HookPoint(f"blocks.{layer}.attn.pattern")  # the attention weights (B, nh, T, S)
        self.hook_heads = HookPoint(f"blocks.{layer}.attn.heads")  # each head's output, before proj (B, nh, T, hs)
        self.hook_out = HookPoint(f"blocks.{layer}.attn.out")  # what attention adds to the residual (B, T, C)
        # Under bf16 autocast on a CPU, the fused kernel's backward pass is faster in fp32 than in
        # bf16 (1.6x on an AMX Xeon), so the trainer sets this (see CausalAttentionFP32Backward).
        self.fp32_backward = False

    def forward(self, x: torch.Tensor, need_weights: bool = False, cache: KVCache | None = None):
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)  # 3 x (B, T, C)
        q = q.view(B, T, self.n_heads, C // self.n_heads).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_heads, C // self.n_heads).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.n_heads, C // self.n_heads).transpose(1, 2)  # (B, nh, T, hs)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)  # each head's vectors, over hs
        if self.rotary is not None:  # new tokens sit after the cached ones: positions start at cache.length
            start = cache.length if cache is not None else 0
            q, k = self.rotary(q, start), self.rotary(k, start)  # keys are cached already rotated
        if cache is not None:  # attend over the cached earlier tokens too: k, v become (B, nh, S, hs)
            k, v = cache.update(self.layer, k, v)
        S = k.size(2)
        if need_weights or not self.fused or self.hook_pattern.edits:
            weights = self.hook_pattern(attention_weights(q, k))  # (B, nh, T, S)
            y = weights @ v  # (B, nh, T, hs)
        else:
            # A tool that only reads the pattern gets it computed on the side; y still comes from
            # the fused kernel, so looking does not change a single bit of the output.
            weights = self.hook_pattern(attention_weights(q, k)) if self.hook_pattern.fn is not None else None
            if T == S or T == 1:
                # No dropout on the attention weights: it would force PyTorch off its fused kernel.
                # A single new token may see every cached position, so it needs no mask at all.
                y = fused_attention(q, k, v, is_causal=T > 1, fp32_backward=self.fp32_backward)
            else:  # several new tokens after cached ones: the causal mask is offset by S - T
                y = fused_attention(q, k, v, ~future_mask(T, S, q.device))
        y = self.hook_heads(y)  # (B, nh, T, hs): zeroing one head here removes it from the model
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # heads side by side again: (B, T, C)
        return self.hook_out(self.resid_dropout(self.proj(y))), weights


class Block(nn.Module):
    """One transformer layer, pre-norm: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, cfg: ModelConfig, layer: int = 0):
        super().__init__()
        self.ln1 = make_norm(cfg, cfg.d_model)
        self.attn = CausalSelfAttention(cfg, layer)
        # mlp='none' leaves attention only: the smallest model in which induction heads form.
        self.ln2 = make_norm(cfg, cfg.d_model) if cfg.mlp != "none" else None
        self.mlp = FeedForward(cfg, layer) if cfg.mlp != "none" else None
        self.hook_resid_mid = HookPoint(f"blocks.{layer}.resid_mid")  # the residual stream after attention
        self.hook_resid_post = HookPoint(f"blocks.{layer}.resid_post")  # ... and after the whole block

    def forward(self, x: torch.Tensor, need_weights: bool = False, cache: KVCache | None = None):
        # Normalising the input of each branch (not the sum) keeps the residual path a clean
        # highway for gradients, which is why pre-norm trains stably without tricks.
        a, weights = self.attn(self.ln1(x), need_weights, cache)
        x = self.hook_resid_mid(x + a)
        if self.mlp is not None:
            x = x + self.mlp(self.ln2(x))
        return self.hook_resid_post(x), weights


class GPT(nn.Module):
    """Token ids (B, T) -> next-token logits (B, T, vocab_size), plus the loss when targets are given."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.d_model)
        if cfg.pos_encoding == "learned":
            self.pos_emb = nn.Embedding(cfg.context_length, cfg.d_model)
        elif cfg.pos_encoding == "sinusoidal":  # fixed table, rebuilt from the config, so not in checkpoints
            self.register_buffer("pos_table", sinusoidal_table(cfg.context_length, cfg.d_model), persistent=False)
            self.emb_scale = math.sqrt(cfg.d_model)
        # 'rope' rotates q and k inside attention instead; 'none' relies on the causal mask alone.
        self.drop = Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg, layer) for layer in range(cfg.n_layers))
        self.ln_f = make_norm(cfg, cfg.d_model)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            # Weight tying: reading a token in and predicting it out share one matrix, which saves
            # vocab_size x d_model parameters and tends to help small models. Untied, the head is
            # free to differ from the embedding (most large models untie it).
            self.lm_head.weight = self.tok_emb.weight
        self.hook_embed = HookPoint("embed")  # tokens plus positions: the residual stream entering block 0
        self.hook_final_norm = HookPoint("final_norm")  # the last residual stream, normalised for the head
        self.hook_logits = HookPoint("logits")
        self.apply(self._init_weights)
        # Scale the layers that write into the residual stream by depth so that its variance does
        # not grow with the number of blocks (GPT-2's initialisation).
        for name, p in self.named_parameters():
            if name.endswith("proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layers))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def num_params(self) -> int:
        """Parameters, counting a tied embedding/head matrix once."""
        return sum(p.numel() for p in self.parameters())

    def set_fused_attention(self, fused: bool) -> None:
        """Choose PyTorch's fused attention kernel (True, default) or the explicit maths (False)."""
        for block in self.blocks:
            block.attn.fused = fused

    def set_attention_fp32_backward(self, on: bool) -> None:
        """Run the fused attention's backward pass in fp32 under bf16 autocast on a CPU (training there)."""
        for block in self.blocks:
            block.attn.fp32_backward = on

    def embed(self, idx: torch.Tensor, start: int = 0) -> torch.Tensor:
        """Token embedding plus position encoding for positions start..start+T-1. (B, T) -> (B, T, C)

        With 'rope' and 'none' nothing is added here: rope acts on q and k inside attention.
        """
        cfg, T = self.cfg, idx.size(1)
        end = start + T
        if end > cfg.context_length:
            raise ValueError(f"position {end - 1} is beyond the context ({cfg.context_length} tokens)")
        x = self.tok_emb(idx)  # (B, T, C)
        if cfg.pos_encoding == "learned":
            x = x + self.pos_emb.weight[start:end]  # (T, C) broadcast over B
        elif cfg.pos_encoding == "sinusoidal":
            # The fixed table has values of size ~1 while token embeddings start near 0.02: scale the
            # embeddings by sqrt(d_model), as the original Transformer does, or position drowns out
            # which token is there.
            x = x * self.emb_scale + self.pos_table[start:end]
        return self.drop(x)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, cache: KVCache | None = None):
        """Returns (logits (B, T, V), mean cross-entropy loss or None).

        With a ``cache``, ``idx`` continues the tokens already in it: positions start at
        ``cache.length``, each layer attends over the cached keys/values too, and the cache grows by T.
        """
        start = cache.length if cache is not None else 0
        x = self.hook_embed(self.embed(idx, start))
        for block in self.blocks:
            x, _ = block(x, cache=cache)
        if cache is not None:
            cache.advance(idx.size(1))
        logits = self.unembed(self.hook_final_norm(self.ln_f(x)))  # (B, T, V)
        logits = self.hook_logits(logits)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))
        return logits, loss

    def unembed(self, x: torch.Tensor) -> torch.Tensor:
        """A normalised residual stream (B, T, C) -> logits (B, T, V): the head, soft-capped if asked."""
        logits = self.lm_head(x)  # (B, T, V)
        if self.cfg.logit_softcap > 0:
            # Soft-capping (Gemma 2, modded-nanoGPT) squashes logits smoothly into (-C, C): the model
            # cannot become arbitrarily confident, which keeps early training stable.
            C = self.cfg.logit_softcap
            logits = C * torch.tanh(logits / C)
        return logits

    def hook_points(self) -> dict[str, HookPoint]:
        """Every hook point by name ('embed', 'blocks.0.attn.pattern', ..., 'logits'); see minilab/inside/hooks.py."""
        return {p.name: p for m in self.modules() for p in vars(m).values() if isinstance(p, HookPoint)}

    @torch.no_grad()
    def run_with_cache(self, idx: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(logits, {hook name: tensor}) for every hook point; recording leaves the logits bitwise unchanged."""
        cache, points = {}, list(self.hook_points().values())
        saved = [p.fn for p in points]
        for p, fn in zip(points, saved):  # record what flows past, after any replacement already installed
            p.fn = lambda x, name=p.name, fn=fn: cache.setdefault(name, x if fn is None else fn(x))
        try:
            logits, _ = self(idx)
        finally:
            for p, fn in zip(points, saved):
                p.fn = fn
        return logits, cache

    @torch.no_grad()
    def attention_maps(self, idx: torch.Tensor) -> list[torch.Tensor]:
        """Attention weights of every layer through the explicit path: n_layers x (B, nh, T, T)."""
        x = self.embed(idx)
        maps = []
        for block in self.blocks:
            x, weights = block(x, need_weights=True)
            maps.append(weights)
        return maps
