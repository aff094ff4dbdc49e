"""How a model knows where each token is: a fixed sinusoidal table, or rotary position embedding (RoPE).

Attention by itself is blind to order: it compares every query with every key the same way
wherever they sit. The seed adds a position vector to each token's embedding (the sinusoidal table
below, or a learned table in ``gpt.py``). RoPE instead rotates the queries and keys, so that the
score between two tokens depends on how far apart they are, not on where they are. A model can also
go without any position signal ('none'): the causal mask alone lets it count how many tokens came
before, and small models learn surprisingly well that way.
"""

import math

import torch
import torch.nn as nn


def sinusoidal_table(length: int, dim: int) -> torch.Tensor:
    """The fixed sine/cosine position table of 'Attention Is All You Need'. (length, dim)"""
    pos = torch.arange(length, dtype=torch.float32).unsqueeze(1)  # (T, 1)
    # Each pair of channels (2i, 2i+1) oscillates at its own frequency, from 1 down to 1/10000.
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq[: dim // 2])  # an odd dim has one more sine than cosine
    return table


class Rotary(nn.Module):
    """Rotary position embedding (RoPE, Su et al. 2021), used by LLaMA and most current models.

    Channel i of the first half and channel i of the second half of a head form a pair (a point in
    the plane); at position p the pair is rotated by the angle p * base^(-2i/head_dim). Rotating
    both q and k makes q.k depend only on the distance between the two positions: the model gets
    relative positions for free, nothing is added to the residual stream, and nothing is learned.
    """

    def __init__(self, head_dim: int, max_len: int, base: float = 10000.0):
        super().__init__()
        freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)  # (hs/2,)
        angle = torch.arange(max_len, dtype=torch.float32).unsqueeze(1) * freq  # (max_len, hs/2)
        # Fixed tables rebuilt from the config, so they are not stored in checkpoints.
        self.register_buffer("cos", angle.cos(), persistent=False)
        self.register_buffer("sin", angle.sin(), persistent=False)

    def forward(self, x: torch.Tensor, start: int = 0) -> torch.Tensor:
        """Rotate x (B, nh, T, hs) as if its tokens sat at positions start..start+T-1."""
        T = x.size(-2)
        cos, sin = self.cos[start : start + T].to(x.dtype), self.sin[start : start + T].to(x.dtype)  # (T, hs/2)
        x1, x2 = x.chunk(2, dim=-1)  # the two coordinates of each pair: 2 x (B, nh, T, hs/2)
        # The 2D rotation [[cos, -sin], [sin, cos]] applied to every pair (x1, x2).
        return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)  # (B, nh, T, hs)
