"""Reading the user's text, splitting it into train and validation, and drawing random batches."""

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from minilab.errors import LabError


def read_text(path: str | Path, what: str = "data file") -> str:
    """Read a UTF-8 text file, or raise LabError saying exactly what is wrong with it."""
    p, name = Path(path), f"{what} {str(path)!r}"
    if not p.exists():
        raise LabError(f"{name} does not exist")
    if p.is_dir():
        raise LabError(f"{name} is a directory, not a text file")
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise LabError(f"cannot read {name}: {e.strerror or e}") from None
    if not raw:
        raise LabError(f"{name} is empty")
    if b"\x00" in raw[:65536]:
        raise LabError(f"{name} looks binary (it contains NUL bytes); give a text file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise LabError(f"{name} is not UTF-8 text (bad byte at offset {e.start})") from None
    if not text.strip():
        raise LabError(f"{name} holds only whitespace")
    return text.removeprefix("\ufeff")  # an editor's byte-order mark is not part of the text


@dataclass
class Splits:
    """Token ids for training and validation, the window length used, and notes for the user."""

    train: torch.Tensor
    val: torch.Tensor
    window: int  # tokens per training sequence: the context length, or less for a tiny text
    notes: list[str] = field(default_factory=list)

    # The data source the trainer draws from (minilab/training/conversations.py has the other kind).
    @property
    def train_tokens(self) -> int:
        return len(self.train)

    def describe(self) -> str:
        return f"{len(self.train):,} training and {len(self.val):,} validation tokens"

    def draw(self, count: int, generator: torch.Generator) -> torch.Tensor:
        """``count`` random window starts in the training split. (count,)"""
        return draw_starts(len(self.train), count, self.window, generator)

    def batch(self, starts: torch.Tensor):
        """Inputs and targets at these starts: (x, y), (B, T) each."""
        return windows(self.train, starts, self.window)


def split_tokens(ids: list[int], val_fraction: float, context_length: int) -> Splits:
    """The first (1 - val_fraction) of the tokens trains, the rest validates; tiny texts are adjusted."""
    tokens = torch.tensor(ids, dtype=torch.long)
    n = len(tokens)
    if n < 3:
        raise LabError(f"the text has only {n} character(s); at least 3 are needed to train")
    notes = []
    n_val = int(n * val_fraction)
    if val_fraction > 0 and n_val < 2:
        notes.append(
            f"the text ({n} tokens) is too short for a {val_fraction:g} validation split; "
            "training without validation (best_model.pt follows the training loss)"
        )
        n_val = 0
    train, val = tokens[: n - n_val], tokens[n - n_val :]
    window = min(context_length, len(train) - 1)
    if window < context_length:
        notes.append(
            f"the training text ({len(train)} tokens) is shorter than the context ({context_length}); "
            f"training on windows of {window} tokens"
        )
    return Splits(train=train, val=val, window=window, notes=notes)


def draw_starts(n_tokens: int, count: int, window: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` random window start positions in a split of ``n_tokens`` tokens. (count,)"""
    return torch.randint(n_tokens - window, (count,), generator=generator)


def windows(data, starts: torch.Tensor, window: int):
    """Inputs x and targets y at the given starts; y is x shifted one token left. (B, T) each, int64.

    ``data`` is a 1-D tensor of token ids, or a numpy array / memmap of a prepared dataset (only the
    rows asked for are read from disk).
    """
    if isinstance(data, torch.Tensor):
        rows = data.unfold(0, window + 1, 1)[starts]  # (B, T+1): a view of all windows, then B of them
    else:
        rows = torch.from_numpy(np.stack([data[s : s + window + 1] for s in starts.tolist()]).astype(np.int64))
    return rows[:, :-1].contiguous(), rows[:, 1:].contiguous()


def get_batch(data, batch_size: int, window: int, generator: torch.Generator):
    """``batch_size`` random windows: (x, y), (B, T) each."""
    return windows(data, draw_starts(len(data), batch_size, window, generator), window)


def load_training_data(
    path: str,
    val_fraction: float,
    context_length: int,
    tokenizer=None,
    kind: str = "char",
    vocab_size: int | None = None,
):
    """(tokenizer, Splits) from a text file or a directory made by ``prepare``.

    Without a ``tokenizer`` one of ``kind`` ('char' or 'bpe', with ``vocab_size``) is built from the
    text; a prepared dataset brings its own. With one (a resumed run), the data must fit it: the same
    prepared vocabulary, or a text without characters it lacks (BPE never lacks any).
    """
    from minilab.tokenizers.bpe import DEFAULT_VOCAB_SIZE
    from minilab.tokenizers.char import build_tokenizer
    from minilab.training.prepare import is_prepared, open_prepared

    if is_prepared(path):
        data = open_prepared(path)
        if tokenizer is not None and tokenizer.to_dict() != data.tokenizer.to_dict():
            raise LabError(f"the prepared dataset {path} has another vocabulary than the checkpoint")
        asked_other_kind = kind != "char" and kind != data.tokenizer.kind  # 'char' is the default: not asked
        if tokenizer is None and (asked_other_kind or vocab_size not in (None, data.tokenizer.vocab_size)):
            raise LabError(
                f"the prepared dataset {path} is already tokenized ({data.tokenizer.kind}, vocabulary "
                f"{data.tokenizer.vocab_size}); drop --tokenizer/--vocab_size or prepare it again with them"
            )
        if len(data.train) < 3:
            raise LabError(f"the prepared dataset {path} has fewer than 3 training tokens")
        window = min(context_length, len(data.train) - 1)
        return data.tokenizer, Splits(train=data.train, val=data.val, window=window)
    text = read_text(path)
    notes = []
    if tokenizer is None:
        tokenizer = build_tokenizer(kind, text, vocab_size)
        asked = vocab_size or DEFAULT_VOCAB_SIZE
        if kind == "bpe" and tokenizer.vocab_size < asked:
            notes.append(
                f"no pair of tokens occurs twice after {tokenizer.vocab_size - 256} merges; the BPE "
                f"vocabulary has {tokenizer.vocab_size} tokens, not {asked} (a bigger text gives more)"
            )
    unseen = tokenizer.unknown(text)
    if unseen:
        shown = " ".join(repr(c) for c in unseen[:10])
        raise LabError(
            f"{path} has {len(unseen)} character(s) the checkpoint's vocabulary lacks: {shown}; "
            f"a resumed model cannot learn new characters"
        )
    splits = split_tokens(tokenizer.encode(text), val_fraction, context_length)
    splits.notes[:0] = notes
    return tokenizer, splits
