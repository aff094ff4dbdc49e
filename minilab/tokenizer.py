"""Character-level tokenizer: every distinct character of the training text is one token.

The vocabulary is a sorted list of characters, saved as JSON-ready data (never pickle), so a
checkpoint carries the exact mapping its model was trained with.
"""

from minilab.errors import LabError


class CharTokenizer:
    """Maps characters to ids (their index in the sorted vocabulary) and back."""

    kind = "char"

    def __init__(self, chars: list[str]):
        if not chars:
            raise LabError("a tokenizer needs at least one character")
        if any(len(c) != 1 for c in chars) or len(set(chars)) != len(chars):
            raise LabError("a character vocabulary must be distinct single characters")
        self.chars = list(chars)
        self.stoi = {c: i for i, c in enumerate(self.chars)}

    @classmethod
    def from_text(cls, text: str) -> "CharTokenizer":
        """Build the vocabulary from every distinct character in ``text``."""
        return cls(sorted(set(text)))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def unknown(self, text: str) -> list[str]:
        """Characters of ``text`` that are not in the vocabulary, in order of first appearance."""
        return list(dict.fromkeys(c for c in text if c not in self.stoi))

    def encode(self, text: str) -> list[int]:
        """Text to token ids; characters the model never saw are an error that names them."""
        missing = self.unknown(text)
        if missing:
            shown = " ".join(repr(c) for c in missing[:10]) + (" ..." if len(missing) > 10 else "")
            raise LabError(
                f"{len(missing)} character(s) not in the model's vocabulary: {shown} "
                f"(the model knows {self.vocab_size} characters from its training text)"
            )
        return [self.stoi[c] for c in text]

    def decode(self, ids) -> str:
        """Token ids back to text."""
        return "".join(self.chars[int(i)] for i in ids)

    def to_dict(self) -> dict:
        return {"type": self.kind, "chars": self.chars}

    @classmethod
    def from_dict(cls, d: dict) -> "CharTokenizer":
        if not isinstance(d, dict) or d.get("type") != cls.kind or not isinstance(d.get("chars"), list):
            raise LabError("the tokenizer data is not a character vocabulary")
        return cls(d["chars"])


def tokenizer_from_dict(d: dict) -> CharTokenizer:
    """Rebuild whichever tokenizer a checkpoint holds."""
    kind = d.get("type") if isinstance(d, dict) else None
    if kind == CharTokenizer.kind:
        return CharTokenizer.from_dict(d)
    raise LabError(f"unknown tokenizer type {kind!r} in checkpoint")
