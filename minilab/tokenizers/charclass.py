"""Character classes spelled out as code-point ranges, so two regex engines can agree on them exactly.

Python's ``re`` and the Oniguruma engine of Hugging Face ``tokenizers`` disagree at the edges on what
``\\s``, ``\\w`` and ``\\p{L}`` mean (Python counts the separators U+001C..U+001F as spaces, its ``\\w``
leaves out combining marks, the two know different Unicode versions). Writing a class as explicit
ranges, computed once from Python's own definition, makes a pattern mean the same in both.
"""

import functools
import re
import unicodedata

MAX_CODE_POINT = 0x10FFFF
SURROGATES = range(0xD800, 0xE000)  # not characters: no UTF-8 text holds them


def ranges(test) -> list[tuple[int, int]]:
    """The code points for which ``test(char)`` holds, as sorted, inclusive (first, last) ranges."""
    out: list[tuple[int, int]] = []
    for c in range(MAX_CODE_POINT + 1):
        if c in SURROGATES or not test(chr(c)):
            continue
        if out and out[-1][1] == c - 1:
            out[-1] = (out[-1][0], c)
        else:
            out.append((c, c))
    return out


def _matches(pattern: str):
    compiled = re.compile(pattern)
    return lambda ch: compiled.fullmatch(ch) is not None


# The classes of the lab's pre-split pattern (minilab/tokenizers/bpe.py), as Python's re defines them.
@functools.cache
def lab_space() -> tuple:
    return tuple(ranges(_matches(r"\s")))


@functools.cache
def lab_digit() -> tuple:
    return tuple(ranges(_matches(r"\d")))


@functools.cache
def lab_letter() -> tuple:
    return tuple(ranges(_matches(r"[^\W\d_]")))


# The classes of GPT-2's pattern as Oniguruma (Hugging Face tokenizers) applies it: \p{L}, \p{N}, and a
# \s without U+001C..U+001F. Unicode categories come from Python's unicodedata, so characters that a
# newer Unicode version added are the one place the two can still differ.
@functools.cache
def gpt2_space() -> tuple:
    return tuple(ranges(lambda ch: ch.isspace() and not "\x1c" <= ch <= "\x1f"))


@functools.cache
def gpt2_letter() -> tuple:
    return tuple(ranges(lambda ch: unicodedata.category(ch).startswith("L")))


@functools.cache
def gpt2_number() -> tuple:
    return tuple(ranges(lambda ch: unicodedata.category(ch).startswith("N")))


def onig_class(*classes, negate: bool = False) -> str:
    """A bracket expression for Oniguruma: ``[\\x{41}-\\x{5a}...]`` (or ``[^...]``) of all the ranges given."""
    body = "".join(f"\\x{{{a:x}}}" + (f"-\\x{{{b:x}}}" if b > a else "") for cls in classes for a, b in cls)
    return f"[{'^' if negate else ''}{body}]"


def python_class(*classes, negate: bool = False) -> str:
    """The same bracket expression for Python's re: ``[\\U00000041-\\U0000005a...]``."""
    body = "".join(f"\\U{a:08x}" + (f"-\\U{b:08x}" if b > a else "") for cls in classes for a, b in cls)
    return f"[{'^' if negate else ''}{body}]"
