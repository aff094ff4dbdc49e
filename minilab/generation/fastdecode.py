"""A lean decode step for one sequence: the model's maths, rearranged so each new token costs little.

Generating one token at batch 1 is a chain of small matrix-vector products: the model's 3M
parameters are read once per token, and most of the rest of the time is the fixed cost of each
PyTorch call. ``FastDecoder`` keeps the maths of ``minilab.model.gpt`` exactly (pre-norm blocks,
exact GELU, tied head) but prepares the weights once so that a step needs as few calls as possible,
and so that both cores read weights at once:

- every weight matrix is stored transposed, (in, out), and cut into ``parts`` blocks of output
  columns, (parts, in, out/parts), one block per thread (``default_parts``): a product is one
  ``torch.bmm`` over the blocks, which PyTorch runs one block per thread. A single matrix-vector
  product is bound by how fast one core reads memory; the blocks let every core read its share (on
  the 2-core CPU the 16 products take 110 us instead of 180 us);
- the products write straight into preallocated buffers (``out=`` or in place), reused every
  token; only small temporaries (layer-norm and softmax outputs, erf) and the returned logits are new;
- the query part of the qkv weights is pre-multiplied by 1/sqrt(head_dim), which removes the
  scaling of the attention scores;
- the qkv product writes its row straight into the cache, one row (3 x d_model) per position, so
  storing the new key and value costs nothing extra, and the cached keys and values are read back
  through strided views (no copies);
- attention for a single query is two batched products over the heads and a softmax: nothing is
  masked, because a new token may see every cached position.

The prompt is prefilled by the model itself (one forward pass with a ``KVCache`` whose buffers are
views of the decoder's rows, so its keys and values land where the step reads them). When the
context is full the window slides as ``CachedDecoder``'s does (one logic: window.py). Tests compare
its logits with the model's full forward pass at every position.

Only batch 1 of the classic architecture takes this path (``FastDecoder.supports``, read from
``FAST_DECODE_SUPPORTS`` in minilab/model/config.py, where every ModelConfig field is declared);
batches and other architectures go through ``CachedDecoder``, where the same few calls already
serve many rows.
"""

import math

import torch
import torch.nn.functional as F

from minilab.generation.window import SlidingDecoder
from minilab.model.config import fast_decode_supports
from minilab.model.kvcache import KVCache, prefill

SQRT_HALF = math.sqrt(0.5)
MIN_BLOCK_COLUMNS = 64  # see default_parts


def column_blocks(w_t: torch.Tensor, parts: int, scale=1.0, bias: torch.Tensor | None = None) -> torch.Tensor:
    """(in, out) weights x ``scale`` -> (parts, in, out / parts): block j holds the j-th run of columns.

    ``torch.bmm(x.expand(parts, 1, in), blocks)`` then gives x @ w_t laid out as (parts, 1, out/parts),
    which is the (1, out) row in order. ``scale`` is a number or one factor per output column. With a
    ``bias`` (out,), the blocks get it as one more input row, (parts, in + 1, out / parts), to be
    multiplied by a constant 1 at the end of the input.
    """
    n_in, n_out = w_t.shape
    blocks = w_t.new_empty(parts, n_in + (bias is not None), n_out // parts)
    if isinstance(scale, torch.Tensor):
        scale = scale.view(parts, 1, -1)
    torch.mul(w_t.view(n_in, parts, -1).transpose(0, 1), scale, out=blocks[:, :n_in])
    if bias is not None:
        blocks[:, n_in] = bias.view(parts, -1)
    return blocks


def default_parts(d_model: int, d_ff: int, device) -> int:
    """How many column blocks per weight: one per CPU thread, as many as divide the widths; 1 elsewhere.

    Blocks keep at least ``MIN_BLOCK_COLUMNS`` of d_model's columns each: narrower ones would read
    each weight row in short pieces, for products too small to keep many threads busy (the benefit
    is measured on 2 cores only).
    """
    if torch.device(device).type != "cpu":
        return 1
    parts = max(1, min(torch.get_num_threads(), d_model // MIN_BLOCK_COLUMNS))
    while d_model % parts or d_ff % parts:
        parts -= 1
    return parts


class _Layer:
    """One block's weights as column blocks, with constants folded in.

    The qkv and feed-forward input products take the bias as the starting value of ``baddbmm``
    (their inputs are fresh layer-norm outputs). The two products that are added to the residual
    stream get their bias as one extra input row instead, and their inputs an extra 1 (kept in
    the buffers), so x += y @ W + b is a single in-place call. Exact GELU is
    gelu(h) = h * (1 + erf(h / sqrt 2)) / 2: with the feed-forward input weights divided by sqrt 2
    we compute h' = h / sqrt 2 directly, and gelu(h) = (h' + h' * erf(h')) / sqrt 2, whose last
    factor goes into the output weights.
    """

    def __init__(self, block, n_heads: int, parts: int):
        attn, mlp = block.attn, block.mlp
        C = attn.qkv.in_features
        scale = torch.ones(3 * C, device=attn.qkv.weight.device, dtype=attn.qkv.weight.dtype)
        scale[:C] = 1.0 / math.sqrt(C // n_heads)
        self.ln1 = (block.ln1.weight, block.ln1.bias, block.ln1.eps)
        self.ln2 = (block.ln2.weight, block.ln2.bias, block.ln2.eps)
        self.qkv_w = column_blocks(attn.qkv.weight.t(), parts, scale)  # (parts, C, 3C/parts)
        self.qkv_b = (attn.qkv.bias * scale).view(parts, 1, -1)
        self.proj_w = column_blocks(attn.proj.weight.t(), parts, bias=attn.proj.bias)  # (parts, C+1, C/parts)
        self.fc_w = column_blocks(mlp.fc.weight.t(), parts, SQRT_HALF)  # (parts, C, d_ff/parts)
        self.fc_b = (mlp.fc.bias * SQRT_HALF).view(parts, 1, -1)
        self.out_w = column_blocks(mlp.proj.weight.t(), parts, SQRT_HALF, mlp.proj.bias)  # (parts, d_ff+1, C/parts)


class FastDecoder(SlidingDecoder):
    """KV-cached decoding of a single sequence; same interface as ``CachedDecoder`` with batch 1."""

    @staticmethod
    def supports(model) -> bool:
        """True for the architecture this step spells out, in eval mode: ``FAST_DECODE_SUPPORTS`` next to ModelConfig.

        Any other switch (rope or no positions, RMSNorm, QK-norm, relu2 or SwiGLU, no biases, an
        untied head, logit soft-capping) goes through ``CachedDecoder``, which runs the model itself.
        """
        return fast_decode_supports(model.cfg) and not model.training

    @torch.no_grad()
    def __init__(self, model, keep: int | None = None, parts: int | None = None):
        cfg = model.cfg
        w = model.tok_emb.weight.detach()
        dev, dt = w.device, w.dtype
        super().__init__(model, 1, keep, dev)
        C, nh, L = cfg.d_model, cfg.n_heads, cfg.n_layers
        p = parts if parts is not None else default_parts(C, cfg.d_ff, dev)
        if p < 1 or C % p or cfg.d_ff % p:
            raise ValueError(f"parts must divide d_model ({C}) and d_ff ({cfg.d_ff}), got {p}")
        self.C, self.nh, self.hs, self.parts = C, nh, C // nh, p
        self.layers = [_Layer(b, nh, p) for b in model.blocks]
        self.ln_f = (model.ln_f.weight, model.ln_f.bias, model.ln_f.eps)
        self.head_w = w.t().contiguous()  # tied with the token embedding: (C, V)
        self.tok_emb = w
        if cfg.pos_encoding == "learned":
            self.pos, self.emb_scale = model.pos_emb.weight.detach(), 1.0
        else:
            self.pos, self.emb_scale = model.pos_table, model.emb_scale
        # Position p of layer l holds [q | k | v] of the token at p: (n_layers, ctx, 3C). Only the
        # first ``length`` positions are ever read, so the buffer needs no zeroing.
        self.rows = torch.empty(L, self.ctx, 3 * C, device=dev, dtype=dt)
        keys = self.rows[:, :, C : 2 * C].view(L, self.ctx, nh, self.hs)
        values = self.rows[:, :, 2 * C :].view(L, self.ctx, nh, self.hs)
        self.keys_t = keys.permute(0, 2, 3, 1)  # (L, nh, hs, ctx): K^T of every layer
        self.values = values.transpose(1, 2)  # (L, nh, ctx, hs)
        # The model's own cache layout (L, B=1, nh, ctx, hs), as views of the same rows: prefills
        # write the keys and values where the step reads them.
        self.prefill_cache = KVCache.over(keys.transpose(1, 2).unsqueeze(1), self.values.unsqueeze(1))
        self.length = 0
        # Work buffers, reused every step; the trailing 1s multiply the bias rows.
        self.x = torch.empty(1, C, device=dev, dtype=dt)
        self.y = torch.ones(1, C + 1, device=dev, dtype=dt)
        self.h = torch.empty(1, cfg.d_ff, device=dev, dtype=dt)
        self.g = torch.ones(1, cfg.d_ff + 1, device=dev, dtype=dt)
        self.logits = torch.empty(1, cfg.vocab_size, device=dev, dtype=dt)
        self.y_heads = self.y[:, :C].view(nh, 1, self.hs)  # attention writes here, head by head
        self.g_in = self.g[:, :-1]  # the GELU writes here, before the 1
        # The same buffers as the blocked products see them: inputs repeated (no copy) for every
        # block, outputs cut into the blocks' (parts, 1, out/parts) rows.
        self.x_out, self.h_out = self.x.view(p, 1, -1), self.h.view(p, 1, -1)
        self.y_in, self.g_full = self.y.expand(p, 1, -1), self.g.expand(p, 1, -1)

    @torch.inference_mode()
    def _prefill(self, idx: torch.Tensor) -> torch.Tensor:
        self.prefill_cache.reset()
        logits = prefill(self.model, idx, self.prefill_cache)
        self.length = idx.size(1)
        return logits

    def _views(self, n: int):
        """For position n, per layer: the qkv row's blocks, and the views of q, K^T and V over 0..n.

        Made anew each step (a dozen calls for all layers): keeping them per position would pile up
        thousands of tensors, which Python's garbage collector then walks through.
        """
        L, C, S = len(self.layers), self.C, n + 1
        at_n = self.rows[:, n]  # (L, 3C)
        rows = at_n.view(L, self.parts, 1, -1).unbind(0)  # the qkv product writes here
        queries = at_n[:, :C].view(L, self.nh, 1, self.hs).unbind(0)
        keys_t = self.keys_t[..., :S].unbind(0)
        values = self.values[:, :, :S].unbind(0)
        return zip(self.layers, rows, queries, keys_t, values)

    @torch.inference_mode()
    def _step(self, n: int, next_id: torch.Tensor) -> torch.Tensor:
        """One token (1, 1) at position n: the model's maths spelled out; returns the logits after it (1, V)."""
        tok = int(next_id)
        self.window[0, n] = tok
        C, p, x, h, g_in, y_heads = self.C, self.parts, self.x, self.h, self.g_in, self.y_heads
        x_out, h_out, y_in, g_full = self.x_out, self.h_out, self.y_in, self.g_full
        # Token embedding (scaled for sinusoidal positions) plus the position's encoding.
        torch.add(self.pos[n : n + 1], self.tok_emb[tok : tok + 1], alpha=self.emb_scale, out=x)
        for L, row, q, k_t, v in self._views(n):
            xn = F.layer_norm(x, (C,), *L.ln1).expand(p, 1, C)
            torch.baddbmm(L.qkv_b, xn, L.qkv_w, out=row)  # q, k, v of this token, into the cache
            torch.bmm(torch.softmax(torch.bmm(q, k_t), dim=-1), v, out=y_heads)  # (nh, 1, hs)
            x_out.baddbmm_(y_in, L.proj_w)  # + attention output, bias included
            xn = F.layer_norm(x, (C,), *L.ln2).expand(p, 1, C)
            torch.baddbmm(L.fc_b, xn, L.fc_w, out=h_out)  # h' = h / sqrt 2
            torch.addcmul(h, h, torch.erf(h), out=g_in)  # sqrt 2 * gelu(h)
            x_out.baddbmm_(g_full, L.out_w)  # + feed-forward output, bias included
        torch.mm(F.layer_norm(x, (C,), *self.ln_f), self.head_w, out=self.logits)
        self.length = n + 1
        return self.logits.clone()
