"""tokenizer.json: the tokenizers library cuts every text where the lab does, over all of Unicode."""

import json
import subprocess
import sys
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minilab.tokenizers.bpe import GPT2_PATTERN, BPETokenizer, compiled_pattern
from minilab.tokenizers.hf import bytes_to_unicode, to_tokenizer_json
from tests.conftest import ROOT
from tests.support.hf import TEXT, VARIED


@pytest.mark.slow
def test_the_lab_imports_none_of_the_hf_packages():
    # The exporters write plain files; only the tests (and users) run transformers, tokenizers and gguf.
    code = (
        "import sys, minilab.app.cli, minilab.app.hf_export, minilab.app.gguf_export, minilab.app.hf_import; "
        "print(sorted({'transformers', 'tokenizers', 'gguf'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_gpt2s_byte_alphabet_is_a_bijection_onto_printable_characters():
    table = bytes_to_unicode()
    assert sorted(table) == list(range(256)) and len(set(table.values())) == 256
    assert table[ord("A")] == "A" and table[ord(" ")] == "Ġ" and table[ord("\n")] == "Ċ"


@pytest.fixture(scope="module")
def pair():
    tokenizers = pytest.importorskip("tokenizers", reason="the hf extra is not installed (pip install -e '.[hf]')")
    lab = BPETokenizer.train(TEXT + VARIED, 450)
    return lab, tokenizers.Tokenizer.from_str(json.dumps(to_tokenizer_json(lab)))


def every_code_point(step: int = 1, assigned: bool = False) -> str:
    """Every character (no surrogates), five at a time between spaces, so that chunks stay short."""
    chars = [chr(c) for c in range(0, 0x110000, step) if not 0xD800 <= c < 0xE000]
    if assigned:  # only what Python's Unicode database knows (tokenizers may know a newer Unicode)
        chars = [c for c in chars if unicodedata.category(c) != "Cn"]
    return " ".join("".join(chars[i : i + 5]) for i in range(0, len(chars), 5))


@pytest.mark.slow
def test_all_of_unicode_is_cut_alike(pair):
    lab, hf = pair
    text = every_code_point(step=3)
    assert hf.encode(text).ids == lab.encode(text)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=60))
def test_any_text_is_cut_alike(pair, text):
    lab, hf = pair
    assert hf.encode(text).ids == lab.encode(text)
    assert hf.decode(lab.encode(text)) == text


def test_gpt2s_pattern_in_pythons_re_matches_the_tokenizers_library():
    tokenizers = pytest.importorskip("tokenizers", reason="the hf extra is not installed (pip install -e '.[hf]')")
    split = tokenizers.pre_tokenizers.Split(tokenizers.Regex(GPT2_PATTERN), "isolated")
    ours = compiled_pattern(GPT2_PATTERN)
    for text in (VARIED, TEXT[:3000], every_code_point(step=7, assigned=True)):
        assert [piece for piece, _ in split.pre_tokenize_str(text)] == ours.findall(text)


def test_a_lab_trained_tokenizer_saves_exactly_as_before():
    # Checkpoints written before imported vocabularies existed must load, and new ones look the same.
    d = BPETokenizer.train(TEXT, 300).to_dict()
    assert sorted(d) == ["merges", "pattern", "type", "vocab_size"]
    assert BPETokenizer.from_dict(d).encode(TEXT[:500]) == BPETokenizer.train(TEXT, 300).encode(TEXT[:500])


def test_an_imported_vocabulary_round_trips_and_bad_ones_are_refused():
    from minilab.errors import LabError

    merges = [(104, 101), (256, 108)]  # 'he', 'hel'
    ids = list(range(258, -1, -1))  # the model numbers everything backwards
    tok = BPETokenizer(merges, GPT2_PATTERN, ids, ["<|end|>"])
    assert tok.vocab_size == 259
    encoded = tok.encode("hel<|end|>he")
    assert encoded == [258 - 257, 258 - 258, 258 - 256]
    assert tok.decode(encoded) == "hel<|end|>he"
    again = BPETokenizer.from_dict(tok.to_dict())
    assert again.encode("help <|end|>") == tok.encode("help <|end|>")
    bad = [
        ({"ids": list(range(258))}, "permutation of 0..258"),
        ({"ids": [0] * 259}, "permutation"),
        ({"specials": [""]}, "special tokens"),
        ({"pattern": "x+"}, "another pre-split pattern"),
        ({"vocab_size": 258}, "says vocab_size 258"),
    ]
    for change, message in bad:
        with pytest.raises(LabError, match=message):
            BPETokenizer.from_dict(tok.to_dict() | change)


@pytest.mark.slow
def test_the_lab_classes_are_what_pythons_re_means():
    import re

    from minilab.tokenizers.charclass import lab_classes

    space, digit, letter = (re.compile(p) for p in (r"\s", r"\d", r"[^\W\d_]"))
    for cls, pattern in zip(lab_classes(), (space, digit, letter)):
        members = {c for a, b in cls for c in range(a, b + 1)}
        for c in range(0x110000):
            if not 0xD800 <= c < 0xE000:
                assert (c in members) == (pattern.fullmatch(chr(c)) is not None), hex(c)
