"""Text for the inside tools: a file's tokens cut into windows of the model's context, capped in size."""

import torch

from minilab.errors import LabError


def text_windows(tokenizer, text: str, context_length: int, max_tokens: int) -> torch.Tensor:
    """At most ``max_tokens`` predicted tokens of ``text`` as windows of context + 1 ids, spread over the text.

    Returns (N, T + 1): inputs are [:, :-1], targets [:, 1:]. Windows do not overlap and are taken
    evenly from the whole text, so a long file is sampled throughout, not only at its start.
    """
    if max_tokens < 1:
        raise LabError(f"--max_tokens must be at least 1, got {max_tokens}")
    ids = torch.tensor(tokenizer.encode(text), dtype=torch.long)  # characters the model never saw: LabError
    if ids.numel() < 2:
        raise LabError("the data holds fewer than 2 tokens: nothing to predict")
    T = min(context_length, ids.numel() - 1, max_tokens)
    available = (ids.numel() - 1) // T  # whole windows that fit
    n = max(1, min(available, max_tokens // T))
    starts = torch.linspace(0, ids.numel() - 1 - T, n).long()  # evenly spread, never past the end
    return torch.stack([ids[s : s + T + 1] for s in starts.tolist()])  # (N, T + 1)


def token_label(tokenizer, i: int) -> str:
    """Token ``i`` as a printable label: bytes_label's escapes, and other control characters as \\xNN."""
    from minilab.plots import bytes_label

    label = bytes_label(tokenizer.decode_bytes([i]))
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in label)
