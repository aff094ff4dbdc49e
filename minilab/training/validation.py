"""What a run is scored on: the validation split each epoch (or its first --eval_tokens), the whole split at the end.

A run on conversations is scored instead on the assistant's tokens of its validation conversations
(the loss mask of training/conversations.py), the same way each epoch and at the end.
"""

import math

import numpy as np
import torch

from minilab.training.conversations import ConversationData, evaluate_rows
from minilab.training.evaluate import evaluate_loss

# The run's final evaluation scores the whole validation split up to this many tokens (a prepared
# corpus of gigabytes has a split too long to score in passing; then its first 10M tokens).
FINAL_EVAL_TOKENS = 10_000_000


def as_tensor(tokens) -> torch.Tensor:
    """Token ids as an int64 tensor (a prepared dataset's are a numpy memmap)."""
    return tokens if isinstance(tokens, torch.Tensor) else torch.from_numpy(np.asarray(tokens, dtype=np.int64))


class Validation:
    """The validation tokens a run scores, and its three figures: best and last of the epochs, and final."""

    def __init__(self, splits, eval_tokens: int, batch_size: int, device, log=print):
        self.splits, self.batch_size, self.device = splits, batch_size, device
        self.conversations = splits if isinstance(splits, ConversationData) else None
        self.prefix = 0  # 0: every evaluation covers the whole split; else the first this many tokens
        if self.conversations is not None:  # whole conversations: the first ones within eval_tokens
            self.tokens, note = self.conversations.val_head(eval_tokens)
            if note:
                log(f"note: {note}")
            return
        val = splits.val
        if eval_tokens and len(val) > eval_tokens:
            self.prefix = eval_tokens
            final = "the whole split" if len(val) <= FINAL_EVAL_TOKENS else f"the first {FINAL_EVAL_TOKENS:,}"
            log(
                f"note: scoring the first {eval_tokens:,} of {len(val):,} validation tokens each epoch "
                f"(--eval_tokens), and {final} once training ends"
            )
            val = val[:eval_tokens]
        self.tokens = as_tensor(val)

    def loss(self, model) -> float:
        """The validation loss: of the text, or the masked loss over the assistant's tokens of every conversation."""
        if self.conversations is not None:
            return evaluate_rows(model, self.tokens, self.batch_size, self.device)
        return evaluate_loss(model, self.tokens, self.splits.window, self.batch_size, self.device)

    def final_share(self) -> float:
        """How much longer the final evaluation takes than an epoch's (0 when the epochs score the whole split)."""
        return min(len(self.splits.val), FINAL_EVAL_TOKENS) / len(self.tokens) if self.prefix else 0.0

    def final_loss(self, model) -> tuple[float, str]:
        """The final model on the whole split (at most FINAL_EVAL_TOKENS): (loss, what was scored)."""
        val = as_tensor(self.splits.val[:FINAL_EVAL_TOKENS])
        loss = evaluate_loss(model, val, self.splits.window, self.batch_size, self.device)
        scope = "the whole validation split" if len(val) == len(self.splits.val) else "the first"
        return loss, f"{scope} ({len(val):,} tokens)"

    def summary(self, best: float, last: float, final: float = math.nan) -> dict:
        """summary.json's validation figures. With a prefix, the in-training figures are of its first
        tokens and say so in their keys (``..._prefix``); ``final_val_loss`` is the whole split's."""
        if self.prefix:
            return {
                "final_val_loss": final,
                "best_val_loss_prefix": best,
                "final_val_loss_prefix": last,
                "val_prefix_tokens": self.prefix,
            }
        return {"best_val_loss": best, "final_val_loss": last}
