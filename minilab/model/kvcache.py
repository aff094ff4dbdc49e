"""The key/value cache: what attention has already computed for earlier tokens, kept for the next one.

Without a cache, every new token re-runs the whole context through the model. With one, each layer
stores the keys and values of the tokens it has seen, and a new token only computes its own query,
key and value and attends over the stored ones. The buffers are allocated once, at their full
size, and filled in place: no tensor grows token by token.
"""

import torch


def default_keep(context_length: int) -> int:
    """Tokens a decoder keeps when its full cache slides: half the context (rounded up).

    llama.cpp's context shift makes the same choice: a re-prefill every half window costs a
    third of what keeping 3/4 (a longer prefill, twice as often) would.
    """
    return context_length - context_length // 2


class KVCache:
    """Keys and values of every layer: (n_layers, B, n_heads, max_len, head_dim) each, ``length`` filled."""

    def __init__(
        self,
        n_layers: int,
        batch_size: int,
        n_heads: int,
        max_len: int,
        head_dim: int,
        device=None,
        dtype=torch.float32,
    ):
        shape = (n_layers, batch_size, n_heads, max_len, head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.max_len = max_len
        self.length = 0  # positions 0..length-1 hold keys and values

    @classmethod
    def over(cls, k: torch.Tensor, v: torch.Tensor) -> "KVCache":
        """A cache that stores into ``k`` and ``v`` as given (n_layers, B, n_heads, max_len, head_dim).

        They may be views of another layout: ``FastDecoder`` hands the model views of its own rows,
        so a prefill writes the keys and values straight where the decoder reads them.
        """
        cache = cls.__new__(cls)
        cache.k, cache.v, cache.max_len, cache.length = k, v, k.size(3), 0
        return cache

    @classmethod
    def for_model(cls, model, batch_size: int) -> "KVCache":
        """A cache sized for ``model``'s context, on its device and in its dtype."""
        cfg, p = model.cfg, next(model.parameters())
        return cls(cfg.n_layers, batch_size, cfg.n_heads, cfg.context_length, cfg.head_dim, p.device, p.dtype)

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor):
        """Store one layer's new keys/values (B, nh, T, hs) after the filled part; return all of them so far."""
        start, end = self.length, self.length + k.size(2)
        if end > self.max_len:
            raise ValueError(f"KV cache holds {self.max_len} positions; {end} were asked for")
        self.k[layer, :, :, start:end] = k
        self.v[layer, :, :, start:end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]  # (B, nh, end, hs)

    def advance(self, n: int) -> None:
        """Mark ``n`` more positions as filled (the model calls this after all layers have stored theirs)."""
        self.length += n

    def reset(self) -> None:
        self.length = 0

    @property
    def nbytes(self) -> int:
        return self.k.nbytes + self.v.nbytes


def prefill(model, idx: torch.Tensor, cache: KVCache, chunk_tokens: int = 256) -> torch.Tensor:
    """Run ``idx`` (B, T) through ``model`` into ``cache``, a few positions at a time; logits of the last.

    A prompt of B x T tokens needs activations for all of them at once if it goes in one pass
    (8 x 256 tokens: about 15 MB more than the cache itself). Chunks of at most ``chunk_tokens``
    tokens (B x chunk) give the same keys, values and logits, each chunk attending over the
    cached ones, with a fraction of that peak. Returns the logits after the last token (B, V).
    """
    step = max(1, chunk_tokens // idx.size(0))
    for start in range(0, idx.size(1), step):
        logits, _ = model(idx[:, start : start + step], cache=cache)
    return logits[:, -1, :]
