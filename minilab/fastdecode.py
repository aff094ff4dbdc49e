"""A lean decode step for one sequence: the model's maths, rearranged so each new token costs little.

Generating one token at batch 1 is a chain of small matrix-vector products: the model's 3M
parameters are read once per token, and most of the rest of the time is the fixed cost of each
PyTorch call. ``FastDecoder`` keeps the maths of ``minilab.model`` exactly (pre-norm blocks,
exact GELU, tied head) but prepares the weights once so that a step needs as few calls as possible:

- every weight matrix is stored transposed and contiguous, (in, out), so ``torch.addmm`` reads it
  row by row and writes straight into a preallocated buffer (no new tensors per token);
- the query part of the qkv weights is pre-multiplied by 1/sqrt(head_dim), which removes the
  scaling of the attention scores;
- the qkv product writes its row straight into the cache, one row (3 x d_model) per position, so
  storing the new key and value costs nothing extra, and the cached keys and values are read back
  through strided views (no copies);
- attention for a single query is two batched products over the heads and a softmax: nothing is
  masked, because a new token may see every cached position.

The prompt is prefilled by the model itself (one forward pass with a ``KVCache``), whose keys and
values are copied into this layout. Like ``CachedDecoder``, when the context is full the decoder keeps
the last ``keep`` tokens and prefills them again. Tests compare its logits with the model's full
forward pass at every position.

Only batch 1 of the classic architecture takes this path (``FastDecoder.supports``); batches and
other architectures go through ``CachedDecoder``, where the same few calls already serve many rows.
"""

import math

import torch
import torch.nn.functional as F

from minilab.kvcache import KVCache, default_keep, prefill

SQRT_HALF = math.sqrt(0.5)


class _Layer:
    """One block's weights, transposed to (in, out), with constants folded in.

    Two products end in a bias; their matrices get the bias as one extra input row, and their
    inputs an extra 1 (kept in the buffers), so x @ W + b is a single call. Exact GELU is
    gelu(h) = h * (1 + erf(h / sqrt 2)) / 2: with the feed-forward input weights divided by sqrt 2
    we compute h' = h / sqrt 2 directly, and gelu(h) = (h' + h' * erf(h')) / sqrt 2, whose last
    factor goes into the output weights.
    """

    def __init__(self, block, n_heads: int):
        attn, mlp = block.attn, block.mlp
        C = attn.qkv.in_features
        scale = torch.ones(3 * C, device=attn.qkv.weight.device, dtype=attn.qkv.weight.dtype)
        scale[:C] = 1.0 / math.sqrt(C // n_heads)
        self.ln1 = (block.ln1.weight, block.ln1.bias, block.ln1.eps)
        self.ln2 = (block.ln2.weight, block.ln2.bias, block.ln2.eps)
        self.qkv_w = (attn.qkv.weight * scale[:, None]).t().contiguous()  # (C, 3C)
        self.qkv_b = (attn.qkv.bias * scale).unsqueeze(0)  # (1, 3C)
        self.proj_w = torch.cat([attn.proj.weight.t(), attn.proj.bias[None]]).contiguous()  # (C+1, C)
        self.fc_w = (mlp.fc.weight * SQRT_HALF).t().contiguous()  # (C, d_ff)
        self.fc_b = (mlp.fc.bias * SQRT_HALF).unsqueeze(0)  # (1, d_ff)
        self.out_w = torch.cat([mlp.proj.weight.t() * SQRT_HALF, mlp.proj.bias[None]]).contiguous()  # (d_ff+1, C)


class FastDecoder:
    """KV-cached decoding of a single sequence; same interface as ``CachedDecoder`` with batch 1."""

    @staticmethod
    def supports(model) -> bool:
        """True for the architecture this step spells out: the seed's classic GPT, in eval mode.

        Any other switch (rope or no positions, RMSNorm, QK-norm, relu2 or SwiGLU, no biases, an
        untied head, logit soft-capping) goes through ``CachedDecoder``, which runs the model itself.
        """
        cfg = model.cfg
        classic = (
            cfg.pos_encoding in ("sinusoidal", "learned")
            and cfg.norm == "layernorm"
            and not cfg.qk_norm
            and cfg.mlp == "gelu"
            and cfg.bias
            and cfg.tie_embeddings
            and cfg.logit_softcap == 0
        )
        return classic and not model.training

    @torch.no_grad()
    def __init__(self, model, keep: int | None = None):
        cfg = model.cfg
        self.model = model
        self.ctx = cfg.context_length
        self.keep = keep if keep is not None else default_keep(self.ctx)
        if not 1 <= self.keep <= self.ctx:
            raise ValueError(f"keep must be in 1..{self.ctx}, got {self.keep}")
        C, self.nh = cfg.d_model, cfg.n_heads
        self.C, self.hs = C, C // self.nh
        w = model.tok_emb.weight.detach()
        dev, dt = w.device, w.dtype
        self.layers = [_Layer(b, self.nh) for b in model.blocks]
        self.ln_f = (model.ln_f.weight, model.ln_f.bias, model.ln_f.eps)
        self.head_w = w.t().contiguous()  # tied with the token embedding: (C, V)
        self.tok_emb = w
        if cfg.pos_encoding == "learned":
            self.pos, self.emb_scale = model.pos_emb.weight.detach(), 1.0
        else:
            self.pos, self.emb_scale = model.pos_table, model.emb_scale
        # Position p of layer l holds [q | k | v] of the token at p: (n_layers, ctx, 3C).
        self.rows = torch.zeros(cfg.n_layers, self.ctx, 3 * C, device=dev, dtype=dt)
        self.staging = KVCache.for_model(model, 1)  # the model's own cache, for prefills
        self.views = [None] * self.ctx  # per position, the views a step needs (made on first use)
        self.length = 0
        self.window = torch.zeros(1, self.ctx, dtype=torch.long, device=dev)
        # Work buffers, reused every step; the trailing 1s multiply the bias rows.
        self.x = torch.empty(1, C, device=dev, dtype=dt)
        self.y = torch.ones(1, C + 1, device=dev, dtype=dt)
        self.h = torch.empty(1, cfg.d_ff, device=dev, dtype=dt)
        self.g = torch.ones(1, cfg.d_ff + 1, device=dev, dtype=dt)
        self.logits = torch.empty(1, cfg.vocab_size, device=dev, dtype=dt)
        self.y_heads = self.y[:, :C].view(self.nh, 1, self.hs)  # attention writes here, head by head
        self.g_in = self.g[:, :-1]  # the GELU writes here, before the 1

    def tokens(self) -> torch.Tensor:
        """The token ids whose keys and values are in the cache now. (1, length)"""
        return self.window[:, : self.length]

    @torch.inference_mode()
    def prefill(self, idx: torch.Tensor) -> torch.Tensor:
        """Start over from ``idx`` (1, T), keeping its last ``context_length`` tokens. Returns logits (1, V)."""
        idx = idx[:, -self.ctx :]
        T = idx.size(1)
        cache = self.staging
        cache.reset()
        logits = prefill(self.model, idx, cache)
        # cache.k[l, 0] is (nh, T, hs); our row layout puts the heads side by side: (T, C).
        C = self.C
        self.rows[:, :T, C : 2 * C] = cache.k[:, 0, :, :T].transpose(1, 2).reshape(-1, T, C)
        self.rows[:, :T, 2 * C :] = cache.v[:, 0, :, :T].transpose(1, 2).reshape(-1, T, C)
        self.window[:, :T] = idx
        self.length = T
        return logits

    def _views(self, n: int):
        """For position n and each layer: where q, k, v land, and the views of q, K^T and V."""
        C, nh, hs, S = self.C, self.nh, self.hs, n + 1
        views = []
        for i in range(len(self.layers)):
            row, seen = self.rows[i, n : n + 1], self.rows[i, :S]  # (1, 3C), (S, 3C)
            q = row[:, :C].view(nh, 1, hs)
            k_t = seen[:, C : 2 * C].view(S, nh, hs).permute(1, 2, 0)  # (nh, hs, S)
            v = seen[:, 2 * C :].view(S, nh, hs).transpose(0, 1)  # (nh, S, hs)
            views.append((row, q, k_t, v))
        self.views[n] = views
        return views

    @torch.inference_mode()
    def step(self, next_id: torch.Tensor) -> torch.Tensor:
        """Append one token (1, 1) and return the logits that follow it (1, V)."""
        n = self.length
        if n == self.ctx:  # full: slide the window and re-encode what is kept
            return self.prefill(torch.cat([self.window[:, n - self.keep + 1 :], next_id], dim=1))
        tok = int(next_id)
        self.window[0, n] = tok
        C, x, y, h, g, y_heads, g_in = self.C, self.x, self.y, self.h, self.g, self.y_heads, self.g_in
        # Token embedding (scaled for sinusoidal positions) plus the position's encoding.
        torch.add(self.pos[n : n + 1], self.tok_emb[tok : tok + 1], alpha=self.emb_scale, out=x)
        for L, (row, q, k_t, v) in zip(self.layers, self.views[n] or self._views(n)):
            torch.addmm(L.qkv_b, F.layer_norm(x, (C,), *L.ln1), L.qkv_w, out=row)  # q, k, v of this token
            torch.bmm(torch.softmax(torch.bmm(q, k_t), dim=-1), v, out=y_heads)  # (nh, 1, hs)
            x.addmm_(y, L.proj_w)  # + attention output, bias included
            torch.addmm(L.fc_b, F.layer_norm(x, (C,), *L.ln2), L.fc_w, out=h)  # h' = h / sqrt 2
            torch.addcmul(h, h, torch.erf(h), out=g_in)  # sqrt 2 * gelu(h)
            x.addmm_(g, L.out_w)  # + feed-forward output, bias included
        torch.mm(F.layer_norm(x, (C,), *self.ln_f), self.head_w, out=self.logits)
        self.length = n + 1
        return self.logits.clone()
