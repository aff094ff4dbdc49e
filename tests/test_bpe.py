"""Byte-level BPE: the merges it learns, exact round trips, saved data, streaming, and the CLI with it."""

import importlib
import json
import random
import shutil
from collections import Counter

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from minilab.errors import LabError
from minilab.generation.textgen import generate_texts, prompt_ids, stream_text
from minilab.model.gpt import GPT
from minilab.tokenizers.bpe import BPETokenizer, learn_merges, merge_pair, pre_split
from minilab.tokenizers.char import tokenizer_from_dict
from minilab.tokenizers.utf8 import StreamDecoder, generated_text
from minilab.training.prepare import open_prepared, prepare_dataset
from minilab.training.trainer import Trainer
from tests.conftest import EXAMPLE, ROOT, tiny_model_config, tiny_train_config
from tests.test_cli import FAST, cli

textgen = importlib.import_module("minilab.generation.textgen")
prepare_module = importlib.import_module("minilab.training.prepare")

ANY_TEXT = st.text(alphabet=st.characters(blacklist_categories=()), max_size=200)  # surrogates included
MIXED = "héllo wörld — naïve café, 東京 and 北京 🙂🙂 😀! e\u0301 " * 3 + EXAMPLE.read_text()


@pytest.fixture(scope="module")
def tok():
    """Trained on text with accents, CJK and emoji, so merges also join parts of characters."""
    return BPETokenizer.train(MIXED, 400)


# ------------------------------------------------------------------ training


def test_training_is_deterministic_and_independent_of_chunk_order():
    a = BPETokenizer.train(MIXED, 350)
    b = BPETokenizer.train(MIXED, 350)
    counts = Counter(pre_split(MIXED))
    shuffled = list(counts.items())
    random.Random(0).shuffle(shuffled)  # ties must not be settled by the order chunks were seen in
    c = BPETokenizer.train_from_chunks(dict(shuffled), 350)
    assert a.merges == b.merges == c.merges
    assert a.vocab_size == 350


def brute_force_merges(text: str, n_merges: int) -> list[tuple[int, int]]:
    """The definition, with no cleverness: recount every pair of every chunk occurrence before each merge."""
    words = [list(chunk.encode("utf-8")) for chunk in pre_split(text)]
    merges = []
    for i in range(n_merges):
        counts = Counter(p for w in words for p in zip(w, w[1:]))
        if not counts:
            break
        top = max(counts.values())
        if top < 2:
            break
        pair = min(p for p, n in counts.items() if n == top)  # highest count, then the smallest pair
        merges.append(pair)
        words = [merge_pair(w, pair, 256 + i) for w in words]
    return merges


@pytest.mark.parametrize("path", ["ai_intro.txt", "tiny_poems.txt"])
def test_each_merge_is_the_most_frequent_pair(path):
    text = (ROOT / "example_data" / path).read_text()
    expected = brute_force_merges(text, 120)
    assert len(expected) == 120
    assert learn_merges(Counter(pre_split(text)), 256 + 120) == expected


def test_training_stops_when_no_pair_repeats():
    tok = BPETokenizer.train("abab abab xyz", 1000)
    assert tok.merges == [(ord("a"), ord("b")), (256, 256)]  # then every pair is unique
    assert tok.encode("abab") == [257]
    with pytest.raises(LabError, match="vocab_size must be between 256"):
        BPETokenizer.train("abc", 255)


# ------------------------------------------------------------------ boundaries and round trips


@settings(max_examples=300, deadline=None)
@given(ANY_TEXT)
def test_pre_split_covers_every_character(text):
    assert "".join(pre_split(text)) == text


def test_pre_split_pattern_examples():
    assert pre_split("Hello, world! It's 2024...\n\n  snake_case") == [
        "Hello",
        ",",
        " world",
        "!",
        " It",
        "'s",
        " 2024",
        "...",
        "\n\n ",
        " snake",
        "_",
        "case",
    ]


def test_merges_never_cross_pre_split_boundaries():
    # "b." and ". " would be the most frequent pairs if merges could cross from letters to punctuation.
    text = "ab. ab. ab. ab. cd! cd! cd! ab. cd! ab." * 5
    tok = BPETokenizer.train(text, 300)
    assert len(tok.merges) > 2
    for b in tok.token_bytes[256:]:
        piece = b.decode("utf-8")
        assert len(pre_split(piece)) == 1, piece
        assert not (any(c.isalpha() for c in piece) and any(c in ".!" for c in piece)), piece
    # Encoding a text is encoding each of its chunks on its own.
    assert tok.encode(text) == [i for chunk in pre_split(text) for i in tok.encode(chunk)]


def test_learned_tokens_are_whole_pre_split_pieces(tok):
    for b in tok.token_bytes[256:]:
        try:
            piece = b.decode("utf-8")
        except UnicodeDecodeError:
            continue  # part of a character: inside one chunk by construction
        if not piece.startswith("'"):  # "'l" is a prefix of the contraction "'ll", which pre-splits as "'" + "l"
            assert len(pre_split(piece)) == 1, piece


@settings(max_examples=300, deadline=None)
@given(ANY_TEXT)
def test_round_trip_any_string(text):
    tok = BPETokenizer.train(MIXED, 400)  # a fresh one each time: its cache starts empty
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert all(0 <= i < tok.vocab_size for i in ids)


def test_round_trip_examples(tok):
    for text in ["", "🙂", "\ud800", "a\udcff\ud83d\ude00b", "\x00\x01\n\t\r", "e\u0301", "東京🙂!"]:
        assert tok.decode(tok.encode(text)) == text
    assert len(tok.encode("🙂")) < 4  # the emoji's 4 bytes were merged, at least partly


def replay_merges(tok: BPETokenizer, chunk: str) -> list[int]:
    """A chunk spelled as training spells it: merge 0 everywhere, then merge 1, and so on."""
    ids = list(chunk.encode("utf-8", "surrogatepass"))
    for i, pair in enumerate(tok.merges):
        ids = merge_pair(ids, pair, 256 + i)
    return ids


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(pre_split(MIXED)) | ANY_TEXT)
def test_encoding_by_rank_spells_chunks_as_training_did(text):
    tok = BPETokenizer.train(MIXED, 400)
    assert tok.encode(text) == [i for chunk in pre_split(text) for i in replay_merges(tok, chunk)]


def test_decoding_invalid_bytes_gives_replacement_characters(tok):
    assert tok.decode([0xFF]) == "\ufffd"
    assert tok.decode([ord("a"), 0xF0, 0x9F, ord("b")]) == "a\ufffdb"  # a cut-off emoji
    assert tok.decode([0x80, 0x80]) == "\ufffd\ufffd"


# ------------------------------------------------------------------ saved data


def test_json_data_round_trip(tok):
    d = json.loads(json.dumps(tok.to_dict()))
    again = tokenizer_from_dict(d)
    assert isinstance(again, BPETokenizer) and again.merges == tok.merges
    assert again.encode(MIXED) == tok.encode(MIXED)
    assert d["type"] == "bpe" and d["vocab_size"] == tok.vocab_size == 400


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.pop("merges"), "no list of merges"),
        (lambda d: d.update(merges="abc"), "no list of merges"),
        (lambda d: d.update(merges=[[97, 98], [300, 1]]), "merge 1 is malformed"),
        (lambda d: d.update(merges=[[97, -1]]), "merge 0 is malformed"),
        (lambda d: d.update(merges=[[97, True]]), "merge 0 is malformed"),
        (lambda d: d.update(merges=[[97, 98, 99]]), "merge 0 is malformed"),
        (lambda d: d.update(merges=[[97, "b"]]), "merge 0 is malformed"),
        (lambda d: d.update(merges=[[97, 98], [97, 98]]), "repeats an earlier merge"),
        (lambda d: d.update(pattern=r"\w+"), "another pre-split pattern"),
        (lambda d: d.update(vocab_size=999), "says vocab_size 999"),
        (lambda d: d.update(type="bpe2"), "unknown tokenizer type 'bpe2'"),
    ],
)
def test_malformed_data_is_refused(tok, change, message):
    d = json.loads(json.dumps(tok.to_dict()))
    change(d)
    with pytest.raises(LabError, match=message):
        tokenizer_from_dict(d)


# ------------------------------------------------------------------ streaming


def split_emoji_tokenizer() -> BPETokenizer:
    """A vocabulary whose tokens cut emoji and accented letters in the middle of their bytes."""
    return BPETokenizer([(0xF0, 0x9F), (0x99, 0x82), (ord("h"), 0xC3)])  # '🙂' = f0 9f 99 82, 'é' = c3 a9


def test_stream_decoder_waits_for_the_rest_of_a_character():
    tok = split_emoji_tokenizer()
    ids = tok.encode("🙂hé")
    assert ids == [256, 257, 258, 0xA9]  # 🙂 in two halves, and 'é' split after 'h'
    decoder = StreamDecoder(tok)
    pieces = [decoder.feed([i]) for i in ids] + [decoder.flush()]
    assert pieces == ["", "🙂", "h", "é", ""]


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\ufffd"), max_size=60))
def test_streamed_pieces_add_up_and_never_hold_a_broken_character(text):
    tok = split_emoji_tokenizer()
    decoder = StreamDecoder(tok)
    pieces = [decoder.feed([i]) for i in tok.encode(text)] + [decoder.flush()]
    assert "".join(pieces) == tok.decode(tok.encode(text)) == text
    assert not any("\ufffd" in p for p in pieces)


def fake_generation(monkeypatch, ids: list[int]):
    """Make the generation engine produce exactly ``ids`` (the model is only asked for its device)."""

    def generate(model, idx, max_new_tokens, *args, **kwargs):
        for i in ids[:max_new_tokens]:
            yield torch.full((idx.size(0), 1), i)

    monkeypatch.setattr(textgen, "generate", generate)


def test_stream_text_joins_split_characters_and_honours_stop_strings(monkeypatch):
    tok = split_emoji_tokenizer()
    model = GPT(tiny_model_config(vocab_size=tok.vocab_size))
    ids = tok.encode("a🙂 hé 🙂!🙂 end")
    fake_generation(monkeypatch, ids)
    pieces = list(stream_text(model, tok, "x", max_new_tokens=100))
    assert "".join(pieces) == "a🙂 hé 🙂!🙂 end" and not any("\ufffd" in p for p in pieces)
    assert "".join(stream_text(model, tok, "x", max_new_tokens=100, stop=["🙂!"])) == "a🙂 hé "
    assert "".join(stream_text(model, tok, "x", max_new_tokens=100, stop=["é"])) == "a🙂 h"
    assert generate_texts(model, tok, "x", num_samples=2, max_new_tokens=100, stop=["!"]) == ["a🙂 hé 🙂"] * 2
    # Cut off after the first half of the emoji: the flush at the end shows one replacement character.
    assert "".join(stream_text(model, tok, "x", max_new_tokens=2)) == "a\ufffd"


def test_generated_text_is_always_printable():
    tok = BPETokenizer([])
    surrogate = list("\ud800".encode("utf-8", "surrogatepass"))  # bytes an untrained model could emit
    assert tok.decode(surrogate) == "\ud800"  # exact decoding keeps it
    shown = generated_text(tok, surrogate)
    shown.encode("utf-8")  # generated text can always be printed and saved
    assert set(shown) == {"\ufffd"}


def test_empty_prompt_starts_from_a_newline(tok):
    assert prompt_ids(tok, "") == [ord("\n")]
    assert prompt_ids(tok, "🙂") == tok.encode("🙂")


# ------------------------------------------------------------------ training runs and the CLI


def test_prepare_with_bpe_matches_encoding_the_whole_text(tmp_path, monkeypatch):
    monkeypatch.setattr(prepare_module, "CHUNK_BYTES", 50)  # many pieces, cut inside words and characters
    text = MIXED.replace("\n", "\n\n  ") + "\nend line\nlast"
    (tmp_path / "t.txt").write_text(text, encoding="utf-8")
    meta = prepare_dataset(tmp_path / "t.txt", tmp_path / "p", progress=False, tokenizer="bpe", vocab_size=300)
    data = open_prepared(tmp_path / "p")
    expected = BPETokenizer.train(text, 300)
    assert data.tokenizer.merges == expected.merges
    assert meta["dtype"] == "uint16" and meta["vocab_size"] == 300 and meta["tokenizer"]["type"] == "bpe"
    assert np.concatenate([data.train, data.val]).tolist() == expected.encode(text)


def test_training_from_prepared_bpe_equals_training_from_text(tmp_path):
    prepare_dataset(EXAMPLE, tmp_path / "prep", progress=False, tokenizer="bpe", vocab_size=300)
    quiet = dict(log=lambda *_: None, progress=False)
    cfg = tiny_model_config(context_length=32, dropout=0.1)
    a = Trainer(tiny_train_config(tmp_path / "a", epochs=1, tokenizer="bpe", vocab_size=300), cfg, **quiet)
    a.fit()
    b = Trainer(tiny_train_config(tmp_path / "b", epochs=1, data=str(tmp_path / "prep")), cfg, **quiet)
    b.fit()
    assert a.model_cfg.vocab_size == b.model_cfg.vocab_size == 300
    assert b.cfg.tokenizer == "bpe" and b.cfg.vocab_size == 300
    for name, tensor in a.model.state_dict().items():
        assert torch.equal(tensor, b.model.state_dict()[name]), name


def test_resume_keeps_the_checkpoints_tokenizer(tmp_path):
    quiet = dict(log=lambda *_: None, progress=False)
    first = Trainer(
        tiny_train_config(tmp_path, epochs=1, tokenizer="bpe", vocab_size=300), tiny_model_config(), **quiet
    )
    first.fit()
    from minilab.app.settings import resume_configs
    from minilab.checkpoint import load_checkpoint

    ckpt = load_checkpoint(tmp_path / "checkpoints" / "checkpoint.pt")
    other = tmp_path / "other.txt"
    other.write_text("Quite different words: zebra, quokka, 🙂 and Ωmega.\n" * 30)
    cfg, _ = resume_configs(ckpt, {"data": str(other), "epochs": 2}, {})
    resumed = Trainer(cfg, resume=ckpt, **quiet)  # a text with unseen characters is fine for BPE
    assert resumed.tokenizer.merges == first.tokenizer.merges  # not retrained on the new text
    resumed.fit()
    with pytest.raises(LabError, match="contradicts the checkpoint, whose tokenizer is bpe"):
        resume_configs(ckpt, {"vocab_size": 512}, {})
    with pytest.raises(LabError, match="contradicts the checkpoint"):
        resume_configs(ckpt, {"tokenizer": "char"}, {})


@pytest.fixture(scope="module")
def bpe_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("bpe_lab")
    shutil.copy(EXAMPLE, d / "my_data.txt")
    return d


def test_cli_train_generate_info_eval_export(bpe_run, tmp_path, monkeypatch, capsys):
    args = ["train", "--data", "my_data.txt", "--epochs", "1", "--tokenizer", "bpe", "--vocab-size", "300", *FAST]
    code, out, err = cli(args, bpe_run, monkeypatch, capsys)
    assert code == 0, err
    assert "vocabulary 300" in out
    gen = ["generate", "--checkpoint", "checkpoint.pt", "--prompt", "The 🙂", "--max_new_tokens", "12", "--seed", "1"]
    code, out, err = cli(gen, bpe_run, monkeypatch, capsys)
    assert code == 0, err and out.startswith("The 🙂")  # no unknown characters with BPE
    code, out2, err = cli(gen, bpe_run, monkeypatch, capsys)
    assert out2 == out  # same seed, same text
    code, out, err = cli(
        ["generate", "--checkpoint", "checkpoint.pt", "--max_new_tokens", "5"], bpe_run, monkeypatch, capsys
    )
    assert code == 0, err  # empty prompt
    code, out, err = cli(["info", "--checkpoint", "checkpoint.pt"], bpe_run, monkeypatch, capsys)
    assert code == 0, err
    assert "vocabulary: 300 bpe tokens: 256 bytes + 44 merges" in out
    assert "256: ' ' + 't' -> ' t'" in out  # the first merge of ai_intro.txt, as readable text
    code, out, err = cli(
        ["eval", "--checkpoint", "checkpoint.pt", "--data", "my_data.txt"], bpe_run, monkeypatch, capsys
    )
    assert code == 0, err and "bits/byte" in out
    code, out, err = cli(
        ["export", "--checkpoint", "checkpoint.pt", "--out", str(tmp_path / "x")], bpe_run, monkeypatch, capsys
    )
    assert code == 0, err
    assert json.loads((tmp_path / "x" / "tokenizer.json").read_text())["type"] == "bpe"
    code, out, err = cli(
        ["generate", "--checkpoint", str(tmp_path / "x"), "--prompt", "é", "--max_new_tokens", "3"],
        bpe_run,
        monkeypatch,
        capsys,
    )
    assert code == 0, err
    code, out, err = cli([*gen[:4], "\udcff"], bpe_run, monkeypatch, capsys)  # bytes that were not UTF-8 in argv
    assert code == 2 and "not UTF-8" in err and len(err.strip().splitlines()) == 1


def test_cli_prepare_bpe_then_train_from_the_dir(tmp_path, monkeypatch, capsys):
    shutil.copy(EXAMPLE, tmp_path / "t.txt")
    code, out, err = cli(
        ["prepare", "--data", "t.txt", "--out", "prep", "--tokenizer", "bpe", "--vocab_size", "280"],
        tmp_path,
        monkeypatch,
        capsys,
    )
    assert code == 0, err and "bpe vocabulary 280" in out
    code, out, err = cli(["train", "--data", "prep", "--epochs", "1", *FAST], tmp_path, monkeypatch, capsys)
    assert code == 0, err and "vocabulary 280" in out
    code, out, err = cli(
        ["train", "--data", "prep", "--epochs", "1", "--vocab_size", "512", "--tokenizer", "bpe", *FAST],
        tmp_path,
        monkeypatch,
        capsys,
    )
    assert code == 2 and "already tokenized (bpe, vocabulary 280)" in err


def test_a_tiny_text_gets_fewer_merges_with_a_note(tmp_path, monkeypatch, capsys):
    (tmp_path / "t.txt").write_text("the cat sat on the mat. " * 20)
    code, out, err = cli(
        ["train", "--data", "t.txt", "--epochs", "1", "--tokenizer", "bpe", "--vocab_size", "1024", *FAST],
        tmp_path,
        monkeypatch,
        capsys,
    )
    assert code == 0, err
    assert "note: no pair of tokens occurs twice after" in out and "not 1024" in out
