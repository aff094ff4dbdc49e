"""Conversations to train on: a JSON Lines file read and checked, encoded with the chat template, masked.

One conversation per line (blank lines are skipped)::

    {"messages": [{"role": "user", "content": "12 + 30"}, {"role": "assistant", "content": "42"}]}

A ``system`` message may come first. Every conversation must hold an assistant turn (it is what
is trained on). A conversation is one row of a batch, never cut: one longer than the model's
context is skipped, and the number skipped is said before training starts.

A batch is ``B`` random conversations padded to the longest of them: inputs ``x`` and targets ``y``
(B, T), where a target that is not trained on (the user's words, the markers, padding) is
``IGNORE`` (-100), which ``F.cross_entropy`` leaves out of its mean. So the model's own loss is the
masked loss: the mean cross-entropy over the assistant's tokens only. With ``mask=False`` every
real token is a target (the ablation of docs/assistant.md); padding never is. With --grad_accum,
each micro-batch's mean counts equally, whatever number of answer tokens it holds.
"""

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from minilab.errors import LabError
from minilab.tokenizers.template import check_messages, render
from minilab.training.data import read_text

IGNORE = -100  # F.cross_entropy's ignore_index: a target position that is not trained on
SUFFIX = ".jsonl"


def is_conversations(path: str | Path) -> bool:
    """A .jsonl file holds conversations; anything else is text (or a prepared dataset)."""
    return Path(path).suffix.lower() == SUFFIX


@dataclass
class Conversation:
    """One conversation as read: its messages and the line of the file it came from."""

    messages: list[dict]
    line: int


def read_conversations(path: str | Path) -> list[Conversation]:
    """Every conversation of a JSON Lines file; a bad line is a LabError naming its number and what is wrong."""
    text = read_text(path, "conversation file")
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path} line {n}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise LabError(f"{where}: not valid JSON ({e.msg} at column {e.colno})") from None
        if not isinstance(obj, dict) or "messages" not in obj:
            raise LabError(f'{where}: expected an object {{"messages": [...]}}, got {line.strip()[:40]!r}')
        messages = check_messages(obj["messages"], where)
        if not any(m["role"] == "assistant" for m in messages):
            raise LabError(f"{where}: the conversation has no assistant turn (nothing to learn from)")
        out.append(Conversation(messages, n))
    if not out:
        raise LabError(f"conversation file {str(path)!r} holds no conversations")
    return out


def missing_characters(tokenizer, conversations: list[Conversation]) -> list[str]:
    """Characters of the messages that the tokenizer cannot encode (a character vocabulary lacks them)."""
    text = "".join(m["content"] for c in conversations for m in c.messages)
    return tokenizer.unknown(text)


def check_encodable(tokenizer, conversations: list[Conversation], path) -> None:
    """A LabError naming the characters the checkpoint's vocabulary lacks, if any."""
    missing = missing_characters(tokenizer, conversations)
    if missing:
        shown = " ".join(repr(c) for c in missing[:20]) + (" ..." if len(missing) > 20 else "")
        raise LabError(
            f"{path} has {len(missing)} character(s) the checkpoint's vocabulary lacks: {shown}; "
            "a fine-tuned model cannot learn new characters (pretrain on text that has them, or use --tokenizer bpe)"
        )


@dataclass
class Rows:
    """Encoded conversations: per conversation, its ids and the trained flag of each id as a target."""

    ids: list[torch.Tensor] = field(default_factory=list)  # (L,) int64 each
    trained: list[torch.Tensor] = field(default_factory=list)  # (L,) bool each; [0] is never a target

    def __len__(self) -> int:
        return len(self.ids)

    def targets(self) -> int:
        """Target positions of all rows (a row of L tokens predicts L - 1)."""
        return sum(len(r) - 1 for r in self.ids)

    def trained_targets(self) -> int:
        return sum(int(t[1:].sum()) for t in self.trained)

    def batch(self, index: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows ``index`` padded to the longest: (x, y), (B, T) each; y is IGNORE where nothing is trained."""
        T = max(len(self.ids[i]) for i in index) - 1
        x = torch.zeros(len(index), T, dtype=torch.long)  # padding reads token 0: its targets are ignored
        y = torch.full((len(index), T), IGNORE, dtype=torch.long)
        for row, i in enumerate(index):
            ids, trained = self.ids[i], self.trained[i]
            n = len(ids) - 1
            x[row, :n] = ids[:-1]
            y[row, :n] = ids[1:].masked_fill(~trained[1:], IGNORE)
        return x, y


@dataclass
class ConversationData:
    """Training and validation conversations, ready to batch; what the trainer draws from."""

    train: Rows
    val: Rows
    window: int  # the longest row's inputs: at most the context length
    mask: bool
    notes: list[str] = field(default_factory=list)
    val_conversations: list[Conversation] = field(default_factory=list)  # as read: for the samples of a run

    def trained_share(self) -> float:
        """The share of the training targets that the loss counts (1.0 without the mask)."""
        return self.train.trained_targets() / max(1, self.train.targets())

    @property
    def train_tokens(self) -> int:
        """For sizing batches and epochs (training/setup.py): each conversation fills one row of a batch."""
        return len(self.train) * self.window

    def draw(self, count: int, generator: torch.Generator) -> torch.Tensor:
        """``count`` random conversation indices of the training split. (count,)"""
        return torch.randint(len(self.train), (count,), generator=generator)

    def batch(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Those conversations padded to the longest: (x, y), (B, T) each, y IGNORE where nothing is trained."""
        return self.train.batch(index.tolist())

    def summary(self) -> dict:
        """Plain numbers for config.json and the checkpoint: conversations and how many targets the loss counts."""
        t = self.train
        return {"train": len(t), "val": len(self.val), "targets": t.targets(), "trained": t.trained_targets()}

    def val_head(self, cap: int) -> tuple[Rows, str | None]:
        """The validation conversations scored each epoch: all, or the first within ``cap`` tokens (0 = all)."""
        lengths = [len(r) for r in self.val.ids]
        if not cap or sum(lengths) <= cap:
            return self.val, None
        n, total = 0, 0
        while n < len(lengths) and total + lengths[n] <= cap:
            total += lengths[n]
            n += 1
        n = max(n, 1)
        note = f"scoring the first {n:,} of {len(lengths):,} validation conversations each epoch (--eval_tokens)"
        return Rows(self.val.ids[:n], self.val.trained[:n]), note

    def describe(self) -> str:
        t = self.train
        return (
            f"{len(t):,} training and {len(self.val):,} validation conversations; the loss counts "
            f"{t.trained_targets():,} of {t.targets():,} training targets ({100 * self.trained_share():.1f}%: "
            + ("the assistant's tokens" if self.mask else "every token, no mask")
            + ")"
        )


def encode_conversations(
    tokenizer, conversations: list[Conversation], context_length: int, val_fraction: float = 0.1, mask: bool = True
) -> ConversationData:
    """Encode with the chat template; skip the conversations longer than the context; split off the last ones."""
    rows, kept = Rows(), []
    for c in conversations:
        ids, trained = render(tokenizer, c.messages)
        if len(ids) - 1 > context_length:  # inputs are all tokens but the last
            continue
        kept.append(c)
        trained_t = torch.tensor(trained, dtype=torch.bool)
        if not mask:
            trained_t = torch.ones_like(trained_t)
        rows.ids.append(torch.tensor(ids, dtype=torch.long))
        rows.trained.append(trained_t)
    notes, skipped = [], len(conversations) - len(kept)
    if skipped:
        notes.append(
            f"skipped {skipped} of {len(conversations)} conversation(s) longer than the context "
            f"({context_length} tokens)"
        )
    if not len(rows):
        raise LabError(
            f"every conversation is longer than the model's context ({context_length} tokens); nothing to train on"
        )
    n_val = int(len(rows) * val_fraction)
    if val_fraction > 0 and n_val < 1:
        notes.append(f"{len(rows)} conversation(s) are too few for a {val_fraction:g} validation split; none held out")
    cut = len(rows) - n_val
    train = Rows(rows.ids[:cut], rows.trained[:cut])
    val = Rows(rows.ids[cut:], rows.trained[cut:])
    window = max(len(r) for r in rows.ids) - 1
    return ConversationData(train, val, window, mask, notes, val_conversations=kept[cut:])


@torch.no_grad()
def evaluate_rows(model, rows: Rows, batch_size: int = 32, device=None) -> float:
    """Mean cross-entropy over the trained targets of every row, in order (no random draw); nan if none."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(rows), batch_size):
        x, y = rows.batch(list(range(i, min(i + batch_size, len(rows)))))
        logits, _ = model(x.to(device))
        y = y.to(device)
        total += F.cross_entropy(logits.flatten(0, 1).float(), y.flatten(), ignore_index=IGNORE, reduction="sum").item()
        count += int((y != IGNORE).sum())
    model.train(was_training)
    return total / count if count else math.nan
