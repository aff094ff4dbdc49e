"""The lab's tokenizers in Hugging Face's ``tokenizer.json`` format, and GPT-2-style tokenizers back into the lab.

Written and read as plain JSON: nothing here imports ``tokenizers`` or ``transformers`` (the tests check
the files with them). Both directions keep every id: a text encodes to the same ids on either side.

- A character vocabulary becomes a BPE model with no merges: each character is its own token.
- The lab's byte-level BPE becomes a BPE model over GPT-2's byte alphabet (each byte shown as a printable
  character, ``bytes_to_unicode``), pre-split by the lab's own pattern with its classes spelled out as
  ranges (minilab/tokenizers/charclass.py), so the two regex engines cut a text at the same places.
- A GPT-2-family tokenizer (vocab.json + merges.txt, or a byte-level tokenizer.json) becomes a lab
  ``BPETokenizer`` with GPT-2's pattern, its merges as pairs of lab ids, and ``ids`` giving each lab id
  its GPT-2 id (GPT-2 numbers the 256 bytes in another order, and may have special tokens).
"""

import json
from pathlib import Path

from minilab.errors import LabError
from minilab.tokenizers.bpe import GPT2_PATTERN, N_BYTES, BPETokenizer
from minilab.tokenizers.char import CharTokenizer


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's printable stand-in for each byte: printable Latin-1 bytes are themselves, the rest 256 + n."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table, n = {}, 0
    for b in range(N_BYTES):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(N_BYTES + n)
            n += 1
    return table


def lab_pattern_onig() -> str:
    """The lab's pre-split PATTERN for the Oniguruma engine of ``tokenizers``, its classes as explicit ranges."""
    from minilab.tokenizers.charclass import lab_classes, onig_class

    S, D, L = lab_classes()
    s, not_s = onig_class(S), onig_class(S, negate=True)
    # '(?:[^\s\w]|_)' is "neither space, letter nor digit": '_' is none of the three.
    other = onig_class(S, L, D, negate=True)
    return f"'(?:[sdmt]|ll|ve|re)| ?{onig_class(L)}+| ?{onig_class(D)}+| ?{other}+|{s}+(?!{not_s})|{s}+"


def _bpe_model(vocab: dict[str, int], merges: list[list[str]]) -> dict:
    return {
        "type": "BPE",
        "dropout": None,
        "unk_token": None,
        "continuing_subword_prefix": None,
        "end_of_word_suffix": None,
        "fuse_unk": False,
        "byte_fallback": False,
        "ignore_merges": False,
        "vocab": vocab,
        "merges": merges,
    }


def _document(model: dict, pre_tokenizer, decoder: dict, specials: dict[str, int]) -> dict:
    flags = {"single_word": False, "lstrip": False, "rstrip": False, "normalized": False, "special": True}
    added = [{"id": i, "content": t, **flags} for t, i in specials.items()]
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": pre_tokenizer,
        "post_processor": None,
        "decoder": decoder,
        "model": model,
    }


def to_tokenizer_json(tokenizer: CharTokenizer | BPETokenizer) -> dict:
    """The ``tokenizer.json`` document that encodes every text as ``tokenizer.encode`` does.

    A character the char vocabulary lacks (the lab refuses it) is dropped by the Hugging Face tokenizer,
    which has no way to refuse: it has no unknown token, and adding one would change the model.
    """
    if isinstance(tokenizer, CharTokenizer):
        vocab = {c: i for i, c in enumerate(tokenizer.chars)}
        # No pre-tokenizer: the whole text is one word, spelled character by character (no merges).
        return _document(_bpe_model(vocab, []), None, {"type": "Fuse"}, {})
    if not isinstance(tokenizer, BPETokenizer):
        raise LabError(f"cannot write a {type(tokenizer).__name__} as tokenizer.json")
    show = bytes_to_unicode()
    n_plain = N_BYTES + len(tokenizer.merges)
    strings = ["".join(show[b] for b in tokenizer.token_bytes[i]) for i in range(n_plain)]
    vocab: dict[str, int] = {}
    for i, s in enumerate(strings):
        if s in vocab:  # the format keys the vocabulary by spelling: two ids cannot share one
            raise LabError(
                f"BPE tokens {tokenizer.model_id(vocab[s])} and {tokenizer.model_id(i)} spell the same bytes "
                f"({tokenizer.token_text(tokenizer.model_id(i))}); tokenizer.json cannot hold both"
            )
        vocab[s] = tokenizer.model_id(i)
    merges = [[strings[a], strings[b]] for a, b in tokenizer.merges]
    specials = {t: tokenizer.model_id(n_plain + j) for j, t in enumerate(tokenizer.specials)}
    vocab.update(specials)
    # The lab's pattern with its classes spelled out; an imported GPT-2 tokenizer keeps GPT-2's own.
    split = GPT2_PATTERN if tokenizer.pattern == GPT2_PATTERN else lab_pattern_onig()
    pre = {
        "type": "Sequence",
        "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": split}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False},
        ],
    }
    decoder = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}
    return _document(_bpe_model(vocab, merges), pre, decoder, specials)


def _read_json(path: Path) -> dict | list:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise LabError(f"{str(path)!r} is not readable JSON ({e})") from None


def _gpt2_parts(folder: Path) -> tuple[dict[str, int], list[tuple[str, str]], set[str]]:
    """(vocab, merges, names of special tokens) of a byte-level BPE folder; anything else is refused."""
    if (folder / "tokenizer.json").is_file():
        doc = _read_json(folder / "tokenizer.json")
        model, pre = doc.get("model") or {}, doc.get("pre_tokenizer") or {}
        if model.get("type") != "BPE":
            raise LabError(f"tokenizer.json in {str(folder)!r} is a {model.get('type')!r} model, not byte-level BPE")
        byte_level = pre.get("type") == "ByteLevel" and pre.get("use_regex", True)
        if not byte_level or pre.get("add_prefix_space") or doc.get("normalizer") or model.get("ignore_merges"):
            raise LabError(
                f"tokenizer.json in {str(folder)!r} is not a GPT-2-style byte-level BPE "
                "(GPT-2's pre-split, no prefix space, no normalizer)"
            )
        merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model.get("merges", [])]
        specials = {t["content"] for t in doc.get("added_tokens", [])}
        vocab = dict(model.get("vocab", {}))
        vocab.update({t["content"]: t["id"] for t in doc.get("added_tokens", [])})
        return vocab, merges, specials
    if (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file():
        vocab = _read_json(folder / "vocab.json")
        lines = (folder / "merges.txt").read_text(encoding="utf-8").splitlines()
        merges = [tuple(line.split(" ")) for line in lines if line and not line.startswith("#version")]
        return vocab, merges, set()
    raise LabError(f"{str(folder)!r} has no tokenizer (tokenizer.json, or vocab.json and merges.txt)")


def bpe_from_hf(folder: str | Path) -> BPETokenizer:
    """A GPT-2-family tokenizer folder as a lab BPE tokenizer that encodes every text to the same ids."""
    try:
        vocab, merges, specials = _gpt2_parts(Path(folder))
    except (AttributeError, KeyError, TypeError) as e:  # JSON of another shape than the tokenizers library's
        raise LabError(f"the tokenizer files in {str(folder)!r} are malformed ({type(e).__name__}: {e})") from None
    if not isinstance(vocab, dict) or not all(isinstance(i, int) for i in vocab.values()):
        raise LabError("the tokenizer's vocabulary is not a mapping of tokens to ids")
    show = bytes_to_unicode()
    missing = [show[b] for b in range(N_BYTES) if show[b] not in vocab]
    if missing:
        raise LabError(f"the tokenizer is not byte-level: it lacks the byte token(s) {' '.join(missing[:5])}")
    lab_id = {show[b]: b for b in range(N_BYTES)}  # a token's spelling -> its lab id
    for i, pair in enumerate(merges):
        if len(pair) != 2 or pair[0] not in lab_id or pair[1] not in lab_id:
            raise LabError(f"merge {i} ({' '.join(pair)!r}) joins tokens the vocabulary does not have")
        joined = pair[0] + pair[1]
        if joined in lab_id or joined not in vocab:
            raise LabError(f"merge {i} makes {joined!r}, which the vocabulary has twice or not at all")
        lab_id[joined] = N_BYTES + i
    # Whatever is left is a whole token of its own (GPT-2's <|endoftext|>): a special token.
    extra = sorted((i, t) for t, i in vocab.items() if t not in lab_id)
    odd = [t for _, t in extra if t not in specials and Path(folder, "tokenizer.json").is_file()]
    if odd:
        raise LabError(f"the tokenizer has token(s) that no merge makes: {' '.join(odd[:5])}")
    order = [None] * (N_BYTES + len(merges))
    for t, i in lab_id.items():
        order[i] = vocab[t]
    ids = order + [i for i, _ in extra]
    if sorted(ids) != list(range(len(ids))):
        raise LabError(f"the tokenizer's ids are not 0..{len(ids) - 1}, each used once")
    pairs = [(lab_id[a], lab_id[b]) for a, b in merges]
    identity = ids == list(range(len(ids)))
    return BPETokenizer(pairs, GPT2_PATTERN, None if identity else ids, [t for _, t in extra])
