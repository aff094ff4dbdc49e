"""The window both KV-cached decoders share: which tokens are in the cache, and how it slides when full.

A cache holds at most ``context_length`` positions. When it is full, the decoder keeps the last
``keep`` tokens (half the context by default, ``default_keep``) and prefills them again at positions
0..keep-1, then goes on one token at a time. Every position encoding needs this, not only absolute
ones: a learned or sinusoidal table has no row past the context, and a model trained on windows of
``context_length`` tokens has never attended further, with rope or without positions too. Keeping
half means a re-prefill (a forward pass over ``keep`` tokens) every ``context - keep`` new tokens:
keeping more gives each token more context after the first slide, at the price of longer and more
frequent re-prefills (keeping 3/4 costs about three times as much re-prefill time).
"""

from abc import ABC, abstractmethod

import torch

from minilab.model.kvcache import default_keep


class SlidingDecoder(ABC):
    """Feed tokens, get next-token logits; a subclass supplies ``_prefill``, ``_step`` and ``length``."""

    length: int  # positions in the cache now

    def __init__(self, model, batch_size: int, keep: int | None, device):
        self.model = model
        self.ctx = model.cfg.context_length
        self.keep = keep if keep is not None else default_keep(self.ctx)
        if not 1 <= self.keep <= self.ctx:
            raise ValueError(f"keep must be in 1..{self.ctx}, got {self.keep}")
        self.window = torch.zeros(batch_size, self.ctx, dtype=torch.long, device=device)  # (B, ctx) token ids

    def tokens(self) -> torch.Tensor:
        """The token ids whose keys and values are in the cache now. (B, length)"""
        return self.window[:, : self.length]

    def prefill(self, idx: torch.Tensor) -> torch.Tensor:
        """Start over from ``idx`` (B, T), keeping its last ``context_length`` tokens. Returns logits (B, V)."""
        idx = idx[:, -self.ctx :]
        self.window[:, : idx.size(1)] = idx
        return self._prefill(idx)

    def step(self, next_id: torch.Tensor) -> torch.Tensor:
        """Append one token per sequence (B, 1) and return the logits that follow it (B, V)."""
        n = self.length
        if n == self.ctx:  # full: slide the window and re-encode what is kept
            return self.prefill(torch.cat([self.window[:, n - self.keep + 1 :], next_id], dim=1))
        return self._step(n, next_id)

    @abstractmethod
    def _prefill(self, idx: torch.Tensor) -> torch.Tensor:
        """Reset the cache and run ``idx`` (B, T) into it; the logits after its last token (B, V)."""

    @abstractmethod
    def _step(self, n: int, next_id: torch.Tensor) -> torch.Tensor:
        """Put ``next_id`` (B, 1) at position ``n`` (window and cache); the logits after it (B, V)."""
