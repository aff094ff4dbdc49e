"""Special tokens: a few ids after a tokenizer's own vocabulary that no text can spell.

A chat model needs to see where a turn starts, whose it is, and where it ends. Writing that as
ordinary text ("User: ...") would let a message forge a turn and would cost many tokens; instead
the vocabulary grows by one id per marker. ``SpecialTokens`` wraps either tokenizer (characters or
BPE): ids ``0 .. base.vocab_size - 1`` are the base's, the next ones are the markers, in order.

- ``encode`` never produces a special id: the text '<|end|>' typed by a user is spelled with its
  characters (and a character vocabulary may not even have them), so no message can end a turn.
- ``decode`` writes a special id as its name, so a decoded conversation shows its markers.
- ``to_dict`` is the base's dict plus ``"special_tokens": [names]``; ``tokenizer_from_dict``
  (minilab/tokenizers/char.py) rebuilds the wrapper from it.
"""

from collections.abc import Iterable

from minilab.errors import LabError
from minilab.tokenizers.utf8 import encode_utf8

# The markers of a conversation (minilab/tokenizers/template.py): one per role, one for the end of a turn.
SYSTEM, USER, ASSISTANT, END = "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"
CHAT_TOKENS = (SYSTEM, USER, ASSISTANT, END)


class SpecialTokens:
    """A base tokenizer plus named special tokens with the ids after the base's vocabulary."""

    def __init__(self, base, names: Iterable[str]):
        names = list(names)
        if isinstance(base, SpecialTokens):
            raise LabError("special tokens are added once, to a base tokenizer")
        if not names or len(set(names)) != len(names) or not all(isinstance(n, str) and n for n in names):
            raise LabError("special tokens must be distinct, non-empty names")
        self.base = base
        self.names = names
        self.ids = {name: base.vocab_size + i for i, name in enumerate(names)}  # name -> id

    kind = property(lambda self: self.base.kind)  # 'char' or 'bpe': what the text is cut into

    @property
    def vocab_size(self) -> int:
        return self.base.vocab_size + len(self.names)

    def id_of(self, name: str) -> int:
        """The id of a special token; a LabError if this tokenizer has no such token."""
        if name not in self.ids:
            raise LabError(f"the tokenizer has no special token {name!r} (it has {', '.join(self.names) or 'none'})")
        return self.ids[name]

    def is_special(self, token_id: int) -> bool:
        return int(token_id) >= self.base.vocab_size

    def unknown(self, text: str) -> list[str]:
        """Characters of ``text`` the base vocabulary cannot encode."""
        return self.base.unknown(text)

    def encode(self, text: str) -> list[int]:
        """Text to ids with the base tokenizer: text never turns into a special token."""
        return self.base.encode(text)

    def _pieces(self, ids) -> list:
        """Runs of base ids as lists, special ids as their names, in order."""
        out: list = []
        for i in ids:
            i = int(i)
            if i >= self.base.vocab_size:
                out.append(self.names[i - self.base.vocab_size])
            elif out and isinstance(out[-1], list):
                out[-1].append(i)
            else:
                out.append([i])
        return out

    def decode(self, ids) -> str:
        """Ids back to text, each special token written as its name."""
        return "".join(p if isinstance(p, str) else self.base.decode(p) for p in self._pieces(ids))

    def decode_bytes(self, ids) -> bytes:
        """Ids to UTF-8 bytes (for streaming); a special token is the bytes of its name."""
        return b"".join(encode_utf8(p) if isinstance(p, str) else self.base.decode_bytes(p) for p in self._pieces(ids))

    def summary(self) -> str:
        first = self.base.vocab_size
        extra = ", ".join(f"{first + i}: {name}" for i, name in enumerate(self.names))
        return f"{self.base.summary()}\nspecial tokens ({len(self.names)}): {extra}"

    def to_dict(self) -> dict:
        return {**self.base.to_dict(), "special_tokens": list(self.names)}

    def __getattr__(self, name: str):
        # Anything else a base tokenizer offers (chars, merges, token_text) is the base's.
        if name == "base":  # not set yet (while unpickling or copying): no recursion
            raise AttributeError(name)
        return getattr(self.base, name)


def with_chat_tokens(tokenizer) -> SpecialTokens:
    """``tokenizer`` with the chat markers; one that has them already is returned as it is."""
    if isinstance(tokenizer, SpecialTokens):
        missing = [n for n in CHAT_TOKENS if n not in tokenizer.ids]
        if missing:
            raise LabError(f"the tokenizer has special tokens {tokenizer.names} but not {missing}")
        return tokenizer
    return SpecialTokens(tokenizer, CHAT_TOKENS)


def has_chat_tokens(tokenizer) -> bool:
    return isinstance(tokenizer, SpecialTokens) and all(n in tokenizer.ids for n in CHAT_TOKENS)
