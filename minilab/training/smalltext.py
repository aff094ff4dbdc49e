"""Small texts: settings that adapt to a text shorter than a few windows, and a check that a model writes words.

A 1.5 KB text (the seed's sample paragraphs) holds five or six windows of the seed's 256-token
context. What was measured on it (docs/small-texts.md) decides the adaptation below.
"""

import re

MIN_WINDOWS = 32  # a training text should hold at least this many windows of the context ...
MIN_CONTEXT = 32  # ... down to this context: below it a character model sees less than a few words


def small_text_context(n_train: int, context_length: int) -> int:
    """The context for a training text of ``n_train`` tokens when the user did not choose one.

    ``context_length`` if the text holds MIN_WINDOWS windows of it; else the largest power of two,
    at least MIN_CONTEXT, of which it does (1,376 training characters of the seed's paragraphs: 32).
    A short context forgets a prompt it never saw within a few words and falls back on the text's own
    words; the seed's 256 kept such a model babbling for the whole sample (docs/small-texts.md).
    """
    if n_train >= MIN_WINDOWS * context_length:
        return context_length
    context = MIN_CONTEXT
    while context * 2 * MIN_WINDOWS <= n_train:
        context *= 2
    return min(context, context_length)


_WORD = re.compile(r"[^\W\d_]+")  # a run of letters (any script); digits, '_' and punctuation split words


def words(text: str, min_letters: int = 3) -> list[str]:
    """The words of ``text`` with at least ``min_letters`` letters, lower-cased, in order."""
    return [w.lower() for w in _WORD.findall(text) if len(w) >= min_letters]


def known_word_fraction(generated: str, reference: str, prompt: str = "", min_letters: int = 3) -> float:
    """The share of the words written after ``prompt`` that are words of ``reference`` (nan if none).

    ``generated`` is the prompt followed by the model's text; a word the model continues from the
    prompt's last letters ('is' + 'yon' = 'isyon') counts as written, a word wholly in the prompt does not.
    """
    known = set(words(reference, 1))
    written = []
    for m in _WORD.finditer(generated):
        if m.end() > len(prompt) and len(m.group()) >= min_letters:
            written.append(m.group().lower())
    return sum(w in known for w in written) / len(written) if written else float("nan")
