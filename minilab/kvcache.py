"""The key/value cache: what attention has already computed for earlier tokens, kept for the next one.

Without a cache, every new token re-runs the whole context through the model. With one, each layer
stores the keys and values of the tokens it has seen, and a new token only computes its own query,
key and value and attends over the stored ones. The buffers are allocated once, at their full
size, and filled in place: no tensor grows token by token.
"""

import torch


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
