"""Big corpora: turn a text file of any size into a token file once, then train from it via np.memmap.

    mini-transformer-lab prepare --data corpus.txt --out corpus_prepared/ [--tokenizer bpe --vocab_size 1024]
    mini-transformer-lab train --data corpus_prepared/

The file is read in chunks, twice: the first pass builds the vocabulary (counts which characters
occur, or, for BPE, counts the pre-split chunks and learns the merges from those counts), the second
writes the token ids to ``tokens.bin`` (uint16 when the vocabulary fits, else uint32). ``meta.json``
holds the tokenizer and the split: the last ``val_fraction`` of the tokens validates. Memory stays at
a few chunks (plus, for BPE, the table of distinct pre-split chunks) whatever the file's size, and
training reads only the windows it draws.
"""

import codecs
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from minilab.errors import LabError
from minilab.files import read_json, write_json
from minilab.tokenizers.bpe import DEFAULT_VOCAB_SIZE, BPETokenizer, pre_split
from minilab.tokenizers.char import CharTokenizer, Tokenizer, check_tokenizer_settings, tokenizer_from_dict

TOKENS, META = "tokens.bin", "meta.json"
FORMAT = "minilab-dataset"
CHUNK_BYTES = 16 << 20
N_CODEPOINTS = 0x110000  # every Unicode code point
SAFE_CUT = re.compile(r"\S\n(?=\S)")  # a newline between two non-spaces: always a pre-split boundary
MAX_CARRY = 4 * CHUNK_BYTES  # characters held back at most while looking for a safe cut


@dataclass
class Prepared:
    """A prepared dataset opened for training: memory-mapped token ids and their tokenizer."""

    tokenizer: Tokenizer
    train: np.ndarray  # np.memmap slices: nothing is read until a window is drawn
    val: np.ndarray
    meta: dict


def is_prepared(path: str | Path) -> bool:
    return Path(path).is_dir() and (Path(path) / META).is_file()


def _chunks(path: Path, desc: str, progress: bool):
    """Decoded text of ``path``, chunk by chunk; a UTF-8 character split across chunks is kept whole."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    size, offset = path.stat().st_size, 0
    with (
        open(path, "rb") as f,
        tqdm(total=size, desc=desc, unit="B", unit_scale=True, leave=False, disable=None if progress else True) as bar,
    ):
        while raw := f.read(CHUNK_BYTES):
            if offset == 0 and b"\x00" in raw[:65536]:
                raise LabError(f"data file {str(path)!r} looks binary (it contains NUL bytes); give a text file")
            try:
                text = decoder.decode(raw, final=len(raw) < CHUNK_BYTES)
            except UnicodeDecodeError as e:
                raise LabError(
                    f"data file {str(path)!r} is not UTF-8 text (bad byte at offset {offset + e.start})"
                ) from None
            offset += len(raw)
            bar.update(len(raw))
            yield text
        decoder.decode(b"", final=True)


def _whole_pieces(texts):
    """Re-cut decoded chunks so that no pre-split chunk (minilab/tokenizers/bpe.py) straddles two pieces.

    A piece ends just after a newline that has a non-space on both sides: the regex always splits
    there, and what it does on each side depends on that side alone, so encoding piece by piece
    gives exactly the ids of encoding the whole text. A text with no such newline for MAX_CARRY
    characters is cut anyway (the tokens at that one seam may differ; the text stays exact).
    """
    carry = ""
    for text in texts:
        buf = carry + text
        cut = _last_safe_cut(buf)
        if cut == 0 and len(buf) > MAX_CARRY:
            cut = len(buf)
        carry = buf[cut:]
        if cut:
            yield buf[:cut]
    if carry:
        yield carry


def _last_safe_cut(text: str) -> int:
    """Index just after the last newline that has a non-space on both sides, or 0 if there is none."""
    i = len(text)
    while (i := text.rfind("\n", 0, i)) > 0:
        if SAFE_CUT.match(text, i - 1):
            return i + 1
    return 0


def _codepoints(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)


def _char_pass(src: Path, progress: bool):
    """Pass 1 for characters: count code points. Returns (tokenizer, text -> ids)."""
    counts = np.zeros(N_CODEPOINTS, dtype=np.int64)
    for text in _chunks(src, "vocabulary", progress):
        counts += np.bincount(_codepoints(text), minlength=N_CODEPOINTS)
    present = np.flatnonzero(counts)
    tokenizer = CharTokenizer([chr(c) for c in present])
    if not "".join(tokenizer.chars).strip():
        raise LabError(f"data file {str(src)!r} holds only whitespace")
    dtype = np.uint16 if len(present) <= 1 << 16 else np.uint32
    table = np.zeros(N_CODEPOINTS, dtype=dtype)  # code point -> token id
    table[present] = np.arange(len(present), dtype=dtype)
    return tokenizer, lambda text: table[_codepoints(text)]


def _bpe_pass(src: Path, vocab_size: int, progress: bool):
    """Pass 1 for BPE: count the distinct pre-split chunks, learn merges from the counts."""
    counts: Counter = Counter()
    for piece in _whole_pieces(_chunks(src, "vocabulary", progress)):
        counts.update(pre_split(piece))
    if not any(chunk.strip() for chunk in counts):
        raise LabError(f"data file {str(src)!r} holds only whitespace")
    tokenizer = BPETokenizer.train_from_chunks(counts, vocab_size)
    return tokenizer, tokenizer.encode


def prepare_dataset(
    data: str | Path,
    out_dir: str | Path,
    val_fraction: float = 0.1,
    progress: bool = True,
    tokenizer: str = "char",
    vocab_size: int | None = None,
) -> dict:
    """Write ``tokens.bin`` and ``meta.json`` for ``data`` into ``out_dir``; returns the metadata.

    ``tokenizer`` is 'char' or 'bpe'; ``vocab_size`` is BPE's (default 512).
    """
    src, out = Path(data), Path(out_dir)
    if not src.exists():
        raise LabError(f"data file {str(src)!r} does not exist")
    if src.is_dir():
        raise LabError(f"data file {str(src)!r} is a directory, not a text file")
    if src.stat().st_size == 0:
        raise LabError(f"data file {str(src)!r} is empty")
    if not 0 <= val_fraction < 0.5:
        raise LabError(f"--val_fraction must be in [0, 0.5), got {val_fraction}")
    check_tokenizer_settings(tokenizer, vocab_size)
    if out.exists() and not out.is_dir():
        raise LabError(f"--out {str(out)!r} is a file, not a directory")
    if (out / META).exists() or (out / TOKENS).exists():
        raise LabError(f"{str(out)!r} already holds a prepared dataset; choose another --out")

    if tokenizer == "bpe":
        tok, ids_of = _bpe_pass(src, vocab_size or DEFAULT_VOCAB_SIZE, progress)
        pieces = lambda: _whole_pieces(_chunks(src, "tokens", progress))  # noqa: E731
    else:
        tok, ids_of = _char_pass(src, progress)
        pieces = lambda: _chunks(src, "tokens", progress)  # noqa: E731  (characters never straddle pieces)
    dtype = np.uint16 if tok.vocab_size <= 1 << 16 else np.uint32

    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".{TOKENS}.tmp"
    n_tokens = 0
    try:
        with open(tmp, "wb") as f:  # pass 2: the ids, written as they are made
            for piece in pieces():
                ids = np.asarray(ids_of(piece), dtype=dtype)
                ids.tofile(f)
                n_tokens += len(ids)
        tmp.replace(out / TOKENS)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    n_val = int(n_tokens * val_fraction)
    meta = {
        "format": FORMAT,
        "format_version": 1,
        "tokenizer": tok.to_dict(),
        "vocab_size": tok.vocab_size,
        "dtype": np.dtype(dtype).name,
        "n_tokens": n_tokens,
        "n_train": n_tokens - n_val,
        "n_val": n_val,
        "val_fraction": val_fraction,
        "source": str(src),
        "source_bytes": src.stat().st_size,
    }
    write_json(out / META, meta)
    return meta


def open_prepared(path: str | Path) -> Prepared:
    """Open a prepared dataset for training (memory-mapped, read-only)."""
    d = Path(path)
    meta = read_json(d / META, f"the dataset description {str(d / META)!r}")
    if meta.get("format") != FORMAT:
        raise LabError(f"{str(d)!r} is not a prepared dataset (its {META} is not one of ours)")
    tokens_path = d / TOKENS
    dtype = np.dtype(meta.get("dtype", "uint16"))
    expected = int(meta["n_tokens"]) * dtype.itemsize
    if not tokens_path.is_file() or tokens_path.stat().st_size != expected:
        raise LabError(
            f"{str(tokens_path)!r} is missing or not the size {META} says ({expected:,} bytes); "
            f"prepare the dataset again"
        )
    tokens = np.memmap(tokens_path, dtype=dtype, mode="r")
    n_train = int(meta["n_train"])
    return Prepared(tokenizer_from_dict(meta["tokenizer"]), tokens[:n_train], tokens[n_train:], meta)
