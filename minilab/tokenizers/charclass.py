"""Character classes spelled out as code-point ranges, so two regex engines can agree on them exactly.

Python's ``re`` and the Oniguruma engine of Hugging Face ``tokenizers`` disagree at the edges on what
``\\s``, ``\\w`` and ``\\p{L}`` mean (Python counts the separators U+001C..U+001F as spaces, its ``\\w``
leaves out combining marks, the two know different Unicode versions). Writing a class as explicit
ranges, computed once from Python's own definition, makes a pattern mean the same in both.
"""

import functools
import unicodedata

MAX_CODE_POINT = 0x10FFFF
SURROGATES = range(0xD800, 0xE000)  # not characters: no UTF-8 text holds them


def ranges_by_class(classify, n_classes: int) -> list[tuple[tuple[int, int], ...]]:
    """Per class k < n_classes, the code points with ``classify(char) == k`` as inclusive (first, last) ranges.

    One pass over all of Unicode (about a second), shared by the classes of one pattern.
    """
    out: list[list[tuple[int, int]]] = [[] for _ in range(n_classes)]
    for c in range(MAX_CODE_POINT + 1):
        if c in SURROGATES:
            continue
        k = classify(chr(c))
        if k is None:
            continue
        cls = out[k]
        if cls and cls[-1][1] == c - 1:
            cls[-1] = (cls[-1][0], c)
        else:
            cls.append((c, c))
    return [tuple(cls) for cls in out]


def _lab_class(ch: str) -> int | None:
    # Python's re, on str: \s is str.isspace, \d is str.isdecimal, \w is str.isalnum or '_';
    # the pattern's letters [^\W\d_] are \w without digits and '_'.
    if ch.isspace():
        return 0
    if ch.isdecimal():
        return 1
    if ch.isalnum():
        return 2
    return None


@functools.cache
def lab_classes() -> tuple:
    """(space, digit, letter) of the lab's pre-split pattern (tokenizers/bpe.py), as Python's re defines them."""
    return tuple(ranges_by_class(_lab_class, 3))


def _gpt2_class(ch: str) -> int | None:
    # Oniguruma's \s has no U+001C..U+001F (Python's has); \p{L} and \p{N} are Unicode categories.
    if ch.isspace() and not "\x1c" <= ch <= "\x1f":
        return 0
    category = unicodedata.category(ch)[0]
    return 1 if category == "L" else 2 if category == "N" else None


@functools.cache
def gpt2_classes() -> tuple:
    """(space, letter, number) of GPT-2's pattern as Hugging Face tokenizers applies it.

    Unicode categories come from Python's unicodedata, so characters that a newer Unicode version
    added are the one place the two can still differ.
    """
    return tuple(ranges_by_class(_gpt2_class, 3))


def onig_class(*classes, negate: bool = False) -> str:
    """A bracket expression for Oniguruma: ``[\\x{41}-\\x{5a}...]`` (or ``[^...]``) of all the ranges given."""
    body = "".join(f"\\x{{{a:x}}}" + (f"-\\x{{{b:x}}}" if b > a else "") for cls in classes for a, b in cls)
    return f"[{'^' if negate else ''}{body}]"


def python_class(*classes, negate: bool = False) -> str:
    """The same bracket expression for Python's re: ``[\\U00000041-\\U0000005a...]``."""
    body = "".join(f"\\U{a:08x}" + (f"-\\U{b:08x}" if b > a else "") for cls in classes for a, b in cls)
    return f"[{'^' if negate else ''}{body}]"
