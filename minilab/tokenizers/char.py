"""Tokenizers: characters (the default) or byte-level BPE (minilab/tokenizers/bpe.py), and how to choose one.

The character tokenizer's vocabulary is a sorted list of characters. Both tokenizers save as
JSON-ready data (never pickle), so a checkpoint carries the exact mapping its model was trained with,
and both offer the same methods: ``encode``, ``decode``, ``decode_bytes`` (for streaming, see
minilab/tokenizers/utf8.py), ``unknown``, ``summary``, ``to_dict``/``from_dict``.
"""

from minilab.errors import LabError
from minilab.tokenizers.bpe import DEFAULT_VOCAB_SIZE, BPETokenizer, check_vocab_size
from minilab.tokenizers.special import SpecialTokens
from minilab.tokenizers.utf8 import encode_utf8

TOKENIZERS = ("char", "bpe")


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

    def decode_bytes(self, ids) -> bytes:
        """Token ids to UTF-8 bytes (what streaming decodes; see minilab/tokenizers/utf8.py)."""
        return encode_utf8(self.decode(ids))

    def summary(self) -> str:
        """The vocabulary in one line, unprintable characters escaped."""
        shown = "".join(self.chars).encode("unicode_escape").decode("ascii")
        return f"vocabulary: {self.vocab_size} char tokens: {shown}"

    def to_dict(self) -> dict:
        return {"type": self.kind, "chars": self.chars}

    @classmethod
    def from_dict(cls, d: dict) -> "CharTokenizer":
        if not isinstance(d, dict) or d.get("type") != cls.kind or not isinstance(d.get("chars"), list):
            raise LabError("the tokenizer data is not a character vocabulary")
        return cls(d["chars"])


Tokenizer = CharTokenizer | BPETokenizer


def tokenizer_from_dict(d: dict) -> Tokenizer:
    """Rebuild whichever tokenizer a checkpoint, export or prepared dataset holds (with its special tokens)."""
    kind = d.get("type") if isinstance(d, dict) else None
    if kind is not None and "special_tokens" in d:  # a base vocabulary grown by a few markers (special.py)
        names = d["special_tokens"]
        if not isinstance(names, list):
            raise LabError("the tokenizer's special_tokens must be a list of names")
        base = {k: v for k, v in d.items() if k != "special_tokens"}
        return SpecialTokens(tokenizer_from_dict(base), names)
    if kind == CharTokenizer.kind:
        return CharTokenizer.from_dict(d)
    if kind == BPETokenizer.kind:
        return BPETokenizer.from_dict(d)
    raise LabError(f"unknown tokenizer type {kind!r} in checkpoint")


def check_tokenizer_settings(kind: str, vocab_size: int | None) -> None:
    """``--tokenizer`` must be known; ``--vocab_size`` belongs to BPE (a char vocabulary is the text's characters)."""
    if kind not in TOKENIZERS:
        raise LabError(f"tokenizer {kind!r}: choose one of {', '.join(TOKENIZERS)}")
    if vocab_size is None:
        return
    if kind == "char":
        raise LabError(
            "--vocab_size is for --tokenizer bpe (a char tokenizer's vocabulary is the characters of the text); "
            "add --tokenizer bpe or drop --vocab_size"
        )
    check_vocab_size(vocab_size)


def build_tokenizer(kind: str, text: str, vocab_size: int | None = None) -> Tokenizer:
    """A new tokenizer for ``text``: its characters, or BPE merges learned from it (default 512 tokens)."""
    check_tokenizer_settings(kind, vocab_size)
    if kind == "bpe":
        return BPETokenizer.train(text, vocab_size or DEFAULT_VOCAB_SIZE)
    return CharTokenizer.from_text(text)


def start_ids(tokenizer: Tokenizer) -> list[int]:
    """Where an empty prompt starts: a newline (BPE always has one: byte 10), else token 0."""
    return [0] if tokenizer.unknown("\n") else tokenizer.encode("\n")
