"""BPE tokenizer speed and compression, beside HuggingFace ``tokenizers`` as the reference.

    python benchmarks/tokenizer_bench.py --data ../shared/data/tinyshakespeare.txt [--vocab_size 1024]

Measures, on the given text: the time to train minilab's BPE to ``--vocab_size`` tokens, encoding
speed with an empty chunk cache (a freshly loaded tokenizer) and with a warm one, decoding speed,
and compression in bytes per token. The reference row is the HuggingFace ``tokenizers`` package's
byte-level BPE trained on the same text to the same vocabulary size (256 byte tokens + merges, no
special tokens). It is not a dependency of the lab: ``pip install tokenizers`` to get that row;
without it the row says "unavailable" and the benchmark still exits 0. Times are the best of
``--repeats`` runs.
"""

import argparse
import platform
import time
from pathlib import Path

import torch
from machine import describe

from minilab.tokenizers.bpe import BPETokenizer


def best_time(fn, repeats: int):
    """(best seconds, last result) over ``repeats`` calls of ``fn``."""
    best, result = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t)
    return best, result


def ours(text: str, vocab_size: int, repeats: int) -> dict:
    n_bytes = len(text.encode("utf-8"))
    train_s, tok = best_time(lambda: BPETokenizer.train(text, vocab_size), repeats)
    cold_s, ids = best_time(lambda: BPETokenizer.from_dict(tok.to_dict()).encode(text), repeats)
    warm_s, _ = best_time(lambda: tok.encode(text), repeats + 1)  # the first call fills the cache
    decode_s, back = best_time(lambda: tok.decode(ids), repeats)
    assert back == text, "round trip failed"
    return {
        "name": "minilab BPE (Python)",
        "vocab": tok.vocab_size,
        "train_s": train_s,
        "encode_cold": n_bytes / cold_s / 1e6,
        "encode_warm": n_bytes / warm_s / 1e6,
        "decode": n_bytes / decode_s / 1e6,
        "bytes_per_token": n_bytes / len(ids),
    }


def reference(text: str, vocab_size: int, repeats: int) -> dict | None:
    """HuggingFace tokenizers' byte-level BPE (Rust), or None if the package is not installed."""
    try:
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    except ImportError:
        return None
    n_bytes = len(text.encode("utf-8"))

    def train():
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)  # GPT-2's pattern, on bytes
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # all 256 bytes, as in minilab
            special_tokens=[],
            show_progress=False,
        )
        tok.train_from_iterator([text], trainer)
        return tok

    train_s, tok = best_time(train, repeats)
    encode_s, ids = best_time(lambda: tok.encode(text).ids, repeats)
    decode_s, back = best_time(lambda: tok.decode(ids), repeats)
    assert back == text, "reference round trip failed"
    return {
        "name": "HF tokenizers byte-level BPE (Rust), reference",
        "vocab": tok.get_vocab_size(),
        "train_s": train_s,
        "encode_cold": n_bytes / encode_s / 1e6,
        "encode_warm": None,
        "decode": n_bytes / decode_s / 1e6,
        "bytes_per_token": n_bytes / len(ids),
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="UTF-8 text to train and encode")
    p.add_argument("--vocab_size", type=int, default=1024)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(1)  # nothing here uses torch; keep its threads out of the way
    text = Path(args.data).read_text(encoding="utf-8")
    n_bytes = len(text.encode("utf-8"))
    print(describe("cpu", "n/a (no tensors)"))
    print(
        f"{Path(args.data).name}: {n_bytes:,} bytes; vocab {args.vocab_size}; "
        f"{platform.python_implementation()} {platform.python_version()}, {platform.machine()}; "
        f"best of {args.repeats}",
        flush=True,
    )
    rows = [ours(text, args.vocab_size, args.repeats)]
    ref = reference(text, args.vocab_size, args.repeats)
    if ref is None:
        print("note: the HuggingFace `tokenizers` package is not installed, so the reference row is unavailable")
    print()
    print("| tokenizer | vocab | train | encode, cold cache | encode, warm cache | decode | bytes / token |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows + ([ref] if ref else []):
        warm = f"{r['encode_warm']:.1f} MB/s" if r["encode_warm"] is not None else "-"
        print(
            f"| {r['name']} | {r['vocab']:,} | {r['train_s']:.2f} s | {r['encode_cold']:.1f} MB/s | {warm} "
            f"| {r['decode']:.1f} MB/s | {r['bytes_per_token']:.3f} |"
        )
    if ref is None:
        print("| HF tokenizers (reference) | unavailable: `pip install tokenizers` to compare | | | | | |")


if __name__ == "__main__":
    main()
