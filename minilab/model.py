"""The GPT-style transformer: embeddings, pre-norm blocks of causal self-attention and feed-forward.

Read top to bottom: positional encodings, attention (with both the explicit maths and PyTorch's
fused kernel), the feed-forward network, a block, and the model that stacks them. The model does
no I/O and knows nothing about text: ids in, logits out.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from minilab.config import ModelConfig
from minilab.kvcache import KVCache


def sinusoidal_table(length: int, dim: int) -> torch.Tensor:
    """The fixed sine/cosine position table of 'Attention Is All You Need'. (length, dim)"""
    pos = torch.arange(length, dtype=torch.float32).unsqueeze(1)  # (T, 1)
    # Each pair of channels (2i, 2i+1) oscillates at its own frequency, from 1 down to 1/10000.
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq[: dim // 2])  # an odd dim has one more sine than cosine
    return table


def future_mask(T: int, S: int, device=None) -> torch.Tensor:
    """True where a query may NOT look: the last T of S positions are the queries. (T, S)"""
    # Query i sits at position S - T + i and may look at keys 0..S-T+i, never later ones.
    return torch.ones(T, S, dtype=torch.bool, device=device).triu(S - T + 1)


def explicit_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor):
    """Causal attention written out: softmax(q k^T / sqrt(d), future masked) v. Returns (out, weights)."""
    T, S = q.size(-2), k.size(-2)
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))  # (B, nh, T, S)
    scores = scores.masked_fill(future_mask(T, S, q.device), float("-inf"))
    weights = F.softmax(scores, dim=-1)  # (B, nh, T, S), each row sums to 1
    return weights @ v, weights  # (B, nh, T, hs)


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention where each position sees only itself and earlier positions."""

    def __init__(self, cfg: ModelConfig, layer: int = 0):
        super().__init__()
        self.n_heads = cfg.n_heads
        self.layer = layer  # which slot of a KV cache is ours
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)  # queries, keys and values in one matmul
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)
        self.resid_dropout = nn.Dropout(cfg.dropout)
        # The fused kernel (flash / memory-efficient attention) is the default; the explicit path is
        # the same maths spelled out, used for attention maps and as the reference in tests.
        self.fused = True

    def forward(self, x: torch.Tensor, need_weights: bool = False, cache: KVCache | None = None):
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)  # 3 x (B, T, C)
        q = q.view(B, T, self.n_heads, C // self.n_heads).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_heads, C // self.n_heads).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.n_heads, C // self.n_heads).transpose(1, 2)  # (B, nh, T, hs)
        if cache is not None:  # attend over the cached earlier tokens too: k, v become (B, nh, S, hs)
            k, v = cache.update(self.layer, k, v)
        S = k.size(2)
        if need_weights or not self.fused:
            y, weights = explicit_attention(q, k, v)
        elif T == S or T == 1:
            # No dropout on the attention weights: it would force PyTorch off its fused kernel.
            # A single new token may see every cached position, so it needs no mask at all.
            y, weights = F.scaled_dot_product_attention(q, k, v, is_causal=T > 1), None
        else:  # several new tokens after cached ones: the causal mask is offset by S - T
            y, weights = F.scaled_dot_product_attention(q, k, v, attn_mask=~future_mask(T, S, q.device)), None
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # heads side by side again: (B, T, C)
        return self.resid_dropout(self.proj(y)), weights


class FeedForward(nn.Module):
    """Position-wise MLP: widen to d_ff, GELU, project back. Where most parameters live."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.fc = nn.Linear(cfg.d_model, cfg.d_ff)
        self.proj = nn.Linear(cfg.d_ff, cfg.d_model)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.proj(F.gelu(self.fc(x))))


class Block(nn.Module):
    """One transformer layer, pre-norm: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, cfg: ModelConfig, layer: int = 0):
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.attn = CausalSelfAttention(cfg, layer)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.mlp = FeedForward(cfg)

    def forward(self, x: torch.Tensor, need_weights: bool = False, cache: KVCache | None = None):
        # Normalising the input of each branch (not the sum) keeps the residual path a clean
        # highway for gradients, which is why pre-norm trains stably without tricks.
        a, weights = self.attn(self.ln1(x), need_weights, cache)
        x = x + a
        x = x + self.mlp(self.ln2(x))
        return x, weights


class GPT(nn.Module):
    """Token ids (B, T) -> next-token logits (B, T, vocab_size), plus the loss when targets are given."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.d_model)
        if cfg.pos_encoding == "learned":
            self.pos_emb = nn.Embedding(cfg.context_length, cfg.d_model)
        else:  # fixed table, rebuilt from the config, so it is not stored in checkpoints
            self.register_buffer("pos_table", sinusoidal_table(cfg.context_length, cfg.d_model), persistent=False)
            self.emb_scale = math.sqrt(cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg, layer) for layer in range(cfg.n_layers))
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        # Weight tying: reading a token in and predicting it out share one matrix, which saves
        # vocab_size x d_model parameters and tends to help small models.
        self.lm_head.weight = self.tok_emb.weight
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
        """Parameters, counting the tied embedding/head matrix once."""
        return sum(p.numel() for p in self.parameters())

    def set_fused_attention(self, fused: bool) -> None:
        """Choose PyTorch's fused attention kernel (True, default) or the explicit maths (False)."""
        for block in self.blocks:
            block.attn.fused = fused

    def embed(self, idx: torch.Tensor, start: int = 0) -> torch.Tensor:
        """Token embedding plus position encoding for positions start..start+T-1. (B, T) -> (B, T, C)"""
        T = idx.size(1)
        end = start + T
        if end > self.cfg.context_length:
            raise ValueError(f"position {end - 1} is beyond the context ({self.cfg.context_length} tokens)")
        x = self.tok_emb(idx)  # (B, T, C)
        if self.cfg.pos_encoding == "learned":
            x = x + self.pos_emb.weight[start:end]  # (T, C) broadcast over B
        else:
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
        x = self.embed(idx, start)
        for block in self.blocks:
            x, _ = block(x, cache=cache)
        if cache is not None:
            cache.advance(idx.size(1))
        logits = self.lm_head(self.ln_f(x))  # (B, T, V)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))
        return logits, loss

    @torch.no_grad()
    def attention_maps(self, idx: torch.Tensor) -> list[torch.Tensor]:
        """Attention weights of every layer through the explicit path: n_layers x (B, nh, T, T)."""
        x = self.embed(idx)
        maps = []
        for block in self.blocks:
            x, weights = block(x, need_weights=True)
            maps.append(weights)
        return maps
