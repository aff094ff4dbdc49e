r"""Byte-level BPE (byte-pair encoding), built from scratch: the kind of tokenizer GPT-2 made standard.

The whole idea:

1. **Bytes first.** The text is written as UTF-8 bytes, and ids 0..255 are the 256 possible bytes.
   Every string has a spelling, so there is never an "unknown" token (a character the training text
   lacked is simply spelled with its bytes).
2. **Learn merges.** Count every pair of neighbouring tokens in the training text. The most frequent
   pair becomes a new token (id 256, then 257, ...) and every occurrence of it is rewritten as that one
   token. Repeat until the vocabulary holds ``vocab_size`` tokens. On English, the first merges join
   a space to a letter (' t', ' a'), then common endings and words ('he', ' the').
3. **Encode by replaying the merges** in the order they were learned (``BPETokenizer.encode``).

**Pre-splitting.** Before counting, the text is cut into chunks by a regular expression, and merges
happen only inside a chunk. Without it, the most frequent pairs would glue words to the punctuation
and spaces around them ('e.' or 'g ') and waste the vocabulary on many spellings of one word. The lab
uses GPT-2's pattern, adapted to Python's own ``re`` module (GPT-2 needs the third-party ``regex``
module for ``\p{L}``, "any letter"):

    '(?:[sdmt]|ll|ve|re)    an English contraction: 's 'd 'm 't 'll 've 're
    | ?[^\W\d_]+            a run of letters, with at most one space before it (' hello')
    | ?\d+                  a run of digits, with at most one space before it
    | ?(?:[^\s\w]|_)+       a run of anything else (punctuation, symbols, emoji), with one space before it
    |\s+(?!\S)              whitespace, leaving its last space to the word that follows
    |\s+                    whitespace at the very end

``[^\W\d_]`` is "a word character that is not a digit or '_'": letters, in any script. Python's ``\d``
is a decimal digit (GPT-2's ``\p{N}`` also counts things like '½' as numbers; here they are letters),
and '_' goes with punctuation as in GPT-2. Every character falls into exactly one of these classes, so
the chunks always join back into the whole text (tested on arbitrary Unicode). Pre-splitting also
makes training and encoding fast: a text repeats the same few thousand chunks, so each distinct chunk
is counted, trained on and encoded once.

**Tie-breaking.** When two pairs are equally frequent, the smaller pair of ids wins (compare the
first ids, then the second), so the same text always gives the same merges.

**Imported vocabularies.** A tokenizer that came from elsewhere (GPT-2's, via ``import``) keeps its
own numbering: ``ids`` maps the lab's ids (bytes, then merges) to the model's, ``specials`` are whole
tokens such as ``<|endoftext|>`` after the merges, and ``pattern`` is GPT-2's original pre-split
pattern (see minilab/tokenizers/hf.py). A tokenizer trained by the lab has none of these.
"""

import functools
import heapq
import re
from collections import Counter, defaultdict
from collections.abc import Iterable

from minilab.errors import LabError
from minilab.tokenizers.utf8 import decode_utf8, encode_utf8

PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?[^\W\d_]+| ?\d+| ?(?:[^\s\w]|_)+|\s+(?!\S)|\s+"""
# GPT-2's own pattern, as Hugging Face tokenizers writes it: an imported GPT-2 tokenizer splits with it.
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
N_BYTES = 256  # ids 0..255 are the bytes themselves
DEFAULT_VOCAB_SIZE = 512
MAX_VOCAB_SIZE = 1 << 20  # the model's limit on its vocabulary
MIN_PAIR_COUNT = 2  # a pair seen only once is not merged: it would compress nothing anywhere else
CACHE_SIZE = 1 << 18  # distinct chunks whose encoding is remembered


def pre_split(text: str) -> list[str]:
    """The chunks that merges never cross (see PATTERN above); ``"".join(pre_split(t)) == t``."""
    return re.findall(PATTERN, text)


@functools.cache
def compiled_pattern(pattern: str) -> re.Pattern:
    """PATTERN as it is, or GPT2_PATTERN spelled in Python's re (its classes as explicit ranges)."""
    if pattern == PATTERN:
        return re.compile(PATTERN)
    if pattern != GPT2_PATTERN:
        raise LabError("the BPE tokenizer was made with another pre-split pattern than this version of the lab's")
    from minilab.tokenizers.charclass import gpt2_classes, python_class

    S, L, N = gpt2_classes()
    s, not_s = python_class(S), python_class(S, negate=True)
    letters, numbers, other = python_class(L), python_class(N), python_class(S, L, N, negate=True)
    return re.compile(f"'s|'t|'re|'ve|'m|'ll|'d| ?{letters}+| ?{numbers}+| ?{other}+|{s}+(?!{not_s})|{s}+")


def check_vocab_size(vocab_size) -> None:
    """A BPE vocabulary is the 256 bytes plus at least zero merges, and no bigger than the model allows."""
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int):
        raise LabError(f"vocab_size must be a whole number, got {vocab_size!r}")
    if not N_BYTES <= vocab_size <= MAX_VOCAB_SIZE:
        raise LabError(f"vocab_size must be between {N_BYTES} (the bytes alone) and {MAX_VOCAB_SIZE}, got {vocab_size}")


def merge_pair(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """Rewrite every occurrence of ``pair`` in ``ids`` (left to right, not overlapping) as ``new_id``."""
    a, b = pair
    out, i = [], 0
    while i < len(ids):
        if ids[i] == a and i + 1 < len(ids) and ids[i + 1] == b:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def learn_merges(chunk_counts: dict[str, int], vocab_size: int) -> list[tuple[int, int]]:
    """The merges BPE learns from pre-split chunks and their counts, most useful first.

    The state is each distinct chunk as a list of ids (its bytes at first) and, for every adjacent
    pair, how often it occurs in the whole text (``pair_counts``) and which chunks hold it
    (``where``). A merge only touches the chunks that hold the pair, and only their pair counts
    change, so a merge costs the size of those chunks, not of the text. A heap of (-count, pair)
    finds the most frequent pair; entries whose count has since changed are skipped when they come
    up ("lazy deletion"), and a fresh entry is pushed whenever a count changes.
    """
    check_vocab_size(vocab_size)
    words = [list(encode_utf8(chunk)) for chunk in chunk_counts]  # distinct chunks as ids
    counts = list(chunk_counts.values())  # how often each occurs in the text
    pair_counts: Counter = Counter()
    where = defaultdict(set)  # pair -> indices of the chunks holding it
    for w, (word, n) in enumerate(zip(words, counts)):
        for pair in zip(word, word[1:]):
            pair_counts[pair] += n
            where[pair].add(w)
    heap = [(-n, pair) for pair, n in pair_counts.items()]
    heapq.heapify(heap)  # smallest first: the highest count, then the smallest pair
    merges: list[tuple[int, int]] = []
    while heap and N_BYTES + len(merges) < vocab_size:
        neg_count, pair = heapq.heappop(heap)
        if pair_counts.get(pair) != -neg_count:
            continue  # stale: this pair's count changed after the entry was pushed
        if -neg_count < MIN_PAIR_COUNT:
            break  # every pair left occurs once: nothing more to learn
        new_id = N_BYTES + len(merges)
        merges.append(pair)
        delta: Counter = Counter()  # how the merge changes each pair's count
        for w in sorted(where.pop(pair)):
            old, n = words[w], counts[w]
            new = merge_pair(old, pair, new_id)
            for p in zip(old, old[1:]):
                delta[p] -= n
            for p in zip(new, new[1:]):
                delta[p] += n
                where[p].add(w)
            words[w] = new
        for p, d in delta.items():
            if d == 0:
                continue
            pair_counts[p] += d
            if pair_counts[p] > 0:
                heapq.heappush(heap, (-pair_counts[p], p))
            else:
                del pair_counts[p]
    return merges


class BPETokenizer:
    """Byte-level BPE: ids 0..255 are bytes, id 256 + i is merge i; ``vocab_size = 256 + len(merges)``."""

    kind = "bpe"

    def __init__(
        self,
        merges: list[tuple[int, int]],
        pattern: str = PATTERN,
        ids: list[int] | None = None,
        specials: list[str] | None = None,
    ):
        self.merges = [tuple(pair) for pair in merges]
        self.ranks = {pair: N_BYTES + i for i, pair in enumerate(self.merges)}  # pair -> its new id
        self.token_bytes = [bytes([b]) for b in range(N_BYTES)]  # id -> the bytes it stands for
        for a, b in self.merges:
            self.token_bytes.append(self.token_bytes[a] + self.token_bytes[b])
        self._cache: dict[str, list[int]] = {}  # chunk -> its ids
        # Imported vocabularies only (see above); a lab-trained tokenizer has the defaults.
        self.pattern, self._split = pattern, compiled_pattern(pattern).findall
        self.specials = list(specials or [])
        self.token_bytes += [s.encode("utf-8") for s in self.specials]
        self.ids = list(ids) if ids is not None else None  # lab id -> model id
        self._lab_id = {m: i for i, m in enumerate(self.ids)} if self.ids is not None else None
        # Longest first, so that a special token containing another is found whole.
        ordered = sorted(self.specials, key=len, reverse=True)
        self._special_re = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    @classmethod
    def train(cls, text: str, vocab_size: int = DEFAULT_VOCAB_SIZE) -> "BPETokenizer":
        """Learn merges from ``text`` until the vocabulary has ``vocab_size`` tokens (or no pair repeats)."""
        return cls(learn_merges(Counter(pre_split(text)), vocab_size))

    @classmethod
    def train_from_chunks(cls, chunk_counts: dict[str, int], vocab_size: int) -> "BPETokenizer":
        """Learn merges from pre-split chunk counts (a big file, counted piece by piece)."""
        return cls(learn_merges(chunk_counts, vocab_size))

    @property
    def vocab_size(self) -> int:
        return len(self.token_bytes)

    def unknown(self, text: str) -> list[str]:
        """Characters the tokenizer cannot encode: none, ever (every character has bytes)."""
        return []

    def _encode_chunk(self, chunk: str) -> list[int]:
        """One chunk's ids: start from its bytes and apply the learned merges, earliest learned first.

        Training merged the pair learned first everywhere before it learned the second, so applying
        the lowest-ranked pair present, again and again, spells a chunk exactly as training did.
        """
        ids = list(encode_utf8(chunk))
        while len(ids) >= 2:
            pair = min(zip(ids, ids[1:]), key=lambda p: self.ranks.get(p, 1 << 62))
            if pair not in self.ranks:
                break  # no learned pair left in this chunk
            ids = merge_pair(ids, pair, self.ranks[pair])
        return ids

    def encode(self, text: str) -> list[int]:
        """Text to token ids; any string works (lone surrogates too, see minilab/tokenizers/utf8.py)."""
        if self._special_re is None and self.ids is None:
            return self._encode_ordinary(text)
        out: list[int] = []
        start = 0
        for m in self._special_re.finditer(text) if self._special_re else ():  # a special token is one id
            out += self._encode_ordinary(text[start : m.start()])
            out.append(N_BYTES + len(self.merges) + self.specials.index(m.group()))
            start = m.end()
        out += self._encode_ordinary(text[start:])
        return out if self.ids is None else [self.ids[i] for i in out]

    def _encode_ordinary(self, text: str) -> list[int]:
        out: list[int] = []
        cache = self._cache
        for chunk in self._split(text):
            ids = cache.get(chunk)
            if ids is None:
                ids = self._encode_chunk(chunk)
                if len(cache) < CACHE_SIZE:  # the frequent chunks come early, so a full cache still helps
                    cache[chunk] = ids
            out.extend(ids)
        return out

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """Token ids to the bytes they stand for."""
        if self._lab_id is not None:
            ids = (self._lab_id[int(i)] for i in ids)
        return b"".join(self.token_bytes[int(i)] for i in ids)

    def decode(self, ids: Iterable[int]) -> str:
        """Token ids back to text: ``decode(encode(s)) == s`` for every string; bytes that are not
        valid UTF-8 (possible for an arbitrary id sequence) become U+FFFD."""
        return decode_utf8(self.decode_bytes(ids))

    def token_text(self, token_id: int) -> str:
        """A token as readable, quoted text: 'th', ' the', '\\n', or '\\xe2' for part of a character."""
        return show_bytes(self.token_bytes[token_id if self._lab_id is None else self._lab_id[token_id]])

    def summary(self, n_merges: int = 20) -> str:
        """The vocabulary in a few lines: its size and the first merges, as text."""
        lines = [f"vocabulary: {self.vocab_size} bpe tokens: 256 bytes + {len(self.merges)} merges"]
        if self.merges:
            lines.append(f"first {min(n_merges, len(self.merges))} merges, in the order learned:")
        show = lambda i: show_bytes(self.token_bytes[i])  # noqa: E731 (lab ids, as the merges hold them)
        for i, (a, b) in enumerate(self.merges[:n_merges]):
            lines.append(f"  {self.model_id(N_BYTES + i)}: {show(a)} + {show(b)} -> {show(N_BYTES + i)}")
        if self.specials:
            lines.append(f"special tokens: {', '.join(self.specials)}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """JSON-ready data: the merges (pairs of ids) are the whole tokenizer; the pattern is recorded."""
        d = {"type": self.kind, "pattern": self.pattern, "vocab_size": self.vocab_size, "merges": self.merges}
        if self.specials:
            d["specials"] = self.specials
        if self.ids is not None:
            d["ids"] = self.ids
        return d

    def model_id(self, lab_id: int) -> int:
        """The id the model uses for the lab's id ``lab_id`` (the same, unless imported)."""
        return lab_id if self.ids is None else self.ids[lab_id]

    @classmethod
    def from_dict(cls, d: dict) -> "BPETokenizer":
        """Rebuild from ``to_dict`` data, checking every merge; malformed data is a LabError."""
        if not isinstance(d, dict) or d.get("type") != cls.kind:
            raise LabError("the tokenizer data is not a BPE tokenizer")
        if d.get("pattern") not in (PATTERN, GPT2_PATTERN):
            raise LabError("the BPE tokenizer was made with another pre-split pattern than this version of the lab's")
        merges = d.get("merges")
        if not isinstance(merges, list):
            raise LabError("the BPE tokenizer data has no list of merges")
        seen = set()
        for i, pair in enumerate(merges):
            ok = (
                isinstance(pair, (list, tuple))
                and len(pair) == 2
                and all(isinstance(x, int) and not isinstance(x, bool) and 0 <= x < N_BYTES + i for x in pair)
            )
            if not ok:  # a merge can only join tokens that exist before it
                raise LabError(f"BPE merge {i} is malformed: {pair!r} (expected two ids below {N_BYTES + i})")
            if tuple(pair) in seen:
                raise LabError(f"BPE merge {i} repeats an earlier merge: {pair!r}")
            seen.add(tuple(pair))
        specials, ids = d.get("specials", []), d.get("ids")
        if not isinstance(specials, list) or not all(isinstance(t, str) and t for t in specials):
            raise LabError("the BPE tokenizer's special tokens must be a list of non-empty strings")
        size = N_BYTES + len(merges) + len(specials)
        if d.get("vocab_size", size) != size:
            raise LabError(f"the BPE tokenizer says vocab_size {d['vocab_size']!r} but has {size} tokens")
        if ids is not None and (not isinstance(ids, list) or sorted(ids) != list(range(size))):
            raise LabError(f"the BPE tokenizer's ids must be a permutation of 0..{size - 1}")
        return cls([tuple(pair) for pair in merges], d["pattern"], ids, specials)


def show_bytes(data: bytes) -> str:
    """Bytes as quoted, readable text: printable characters as they are, the rest escaped (\\n, \\xe2)."""
    out = []
    for ch in data.decode("utf-8", "surrogateescape"):  # a byte that is not a whole character -> \udcXX
        if "\udc80" <= ch <= "\udcff":
            out.append(f"\\x{ord(ch) - 0xDC00:02x}")
        elif ch.isprintable() and ch not in "\\'":
            out.append(ch)
        elif ch in "\\'":
            out.append("\\" + ch)
        else:
            out.append(ch.encode("unicode_escape").decode("ascii"))
    return "'" + "".join(out) + "'"
