"""Sampling: turning the model's logits into the next token, one step at a time.

Order of operations for every new token (the same everywhere in the lab):
  1. take the logits of the last position,
  2. divide by the temperature (0 means: take the most likely token, no sampling),
  3. top-k: keep exactly the k highest logits,
  4. top-p: of those, keep the smallest set whose probabilities add up to at least p,
  5. softmax over what is left and draw one token with the caller's torch.Generator.

The draw in step 5 is the "exponential race": give every token i a random time E_i ~ Exp(1) and
pick the largest p_i / E_i. Token i wins with probability exactly p_i, and it is how torch.multinomial
draws a single sample, written out (the same generator gives the same tokens) without the checks
that make multinomial slow for one row of 65 numbers.

Temperature reshapes the distribution: above 1 it flattens it (more surprising, more random
text), below 1 it sharpens it (safer, more repetitive text). This module knows nothing about
text: ids in, ids out.
"""

import math
from dataclasses import dataclass

import torch

from minilab.checks import setting
from minilab.errors import LabError

MAX_NEW_TOKENS = 1_000_000


@dataclass(frozen=True)
class SamplingConfig:
    """How to sample text: the settings of ``generate``, the web page, interactive mode and the samples of a run.

    Checked once, when made; the defaults here are the only ones (the flags' help reads them).
    """

    max_new_tokens: int = setting(200, "tokens to generate")
    temperature: float = setting(
        0.8, "above 1 flattens the distribution (more random), below 1 sharpens it; 0 = greedy"
    )
    top_k: int = setting(0, "keep only the k most likely tokens, 0 = off")
    top_p: float = setting(1.0, "keep the smallest set of tokens reaching probability p, 1.0 = off")
    seed: int | None = setting(None, "random seed", shown="none: a different draw each run")

    def __post_init__(self) -> None:
        t, k, p, n = self.temperature, self.top_k, self.top_p, self.max_new_tokens
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t < 0:
            raise LabError(f"--temperature must be 0 (greedy) or a positive number, got {t}")
        if isinstance(k, bool) or not isinstance(k, int) or k < 0:
            raise LabError(f"--top_k must be 0 (off) or a positive whole number, got {k}")
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not (0 < p <= 1):
            raise LabError(f"--top_p must be in (0, 1], got {p}")
        if isinstance(n, bool) or not isinstance(n, int) or not (0 <= n <= MAX_NEW_TOKENS):
            raise LabError(f"--max_new_tokens must be between 0 and {MAX_NEW_TOKENS}, got {n}")


def check_sampling(temperature: float, top_k: int, top_p: float, max_new_tokens: int) -> None:
    """Raise LabError for settings that cannot be sampled with (``SamplingConfig``'s checks)."""
    SamplingConfig(max_new_tokens, temperature, top_k, top_p)


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep exactly the k largest logits of each row (ties broken by position), -inf elsewhere."""
    if k <= 0 or k >= logits.size(-1):
        return logits
    keep = torch.topk(logits, k, dim=-1).indices  # (B, k): exactly k, even when values tie
    out = torch.full_like(logits, float("-inf"))
    return out.scatter(-1, keep, logits.gather(-1, keep))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Keep the smallest set of most likely tokens whose probabilities reach p; -inf elsewhere."""
    if p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)  # (B, V)
    probs = torch.softmax(sorted_logits, dim=-1)
    before = torch.cumsum(probs, dim=-1) - probs  # probability mass of the tokens ranked above
    drop_sorted = before >= p  # already reached p without this token: not needed
    drop = drop_sorted.scatter(-1, order, drop_sorted)  # back to vocabulary order
    return logits.masked_fill(drop, float("-inf"))


def sample_next(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Pick the next token id for each row of last-position logits (B, V) -> (B, 1)."""
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)
    logits = top_p_filter(top_k_filter(logits / temperature, top_k), top_p)
    probs = torch.softmax(logits.float(), dim=-1)
    race = torch.empty_like(probs).exponential_(generator=generator)  # E_i ~ Exp(1)
    return probs.div_(race).argmax(dim=-1, keepdim=True)
