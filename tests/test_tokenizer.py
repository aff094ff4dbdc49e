import pytest

from minilab.errors import LabError
from minilab.tokenizers.char import CharTokenizer, tokenizer_from_dict


def test_round_trip_and_sorted_vocab():
    text = "hello world\nÀ bientôt — 東京 🙂"
    tok = CharTokenizer.from_text(text)
    assert tok.chars == sorted(set(text))
    ids = tok.encode(text)
    assert len(ids) == len(text)
    assert tok.decode(ids) == text


def test_unseen_characters_are_named():
    tok = CharTokenizer.from_text("abc")
    with pytest.raises(LabError) as e:
        tok.encode("abz!z")
    assert "'z'" in str(e.value) and "'!'" in str(e.value)


def test_json_data_round_trip():
    tok = CharTokenizer.from_text("the cat sat")
    d = tok.to_dict()
    assert d == {"type": "char", "chars": tok.chars}
    again = tokenizer_from_dict(d)
    assert again.encode("cat") == tok.encode("cat")


def test_bad_tokenizer_data_is_refused():
    with pytest.raises(LabError):
        tokenizer_from_dict({"type": "mystery"})
    with pytest.raises(LabError):
        CharTokenizer(["a", "a"])
