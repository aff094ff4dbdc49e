import pytest
import torch

from minilab.errors import LabError
from minilab.generation.decode import generate
from minilab.generation.sampling import check_sampling, sample_next, top_k_filter, top_p_filter
from minilab.generation.textgen import generate_text, generate_texts, stream_text
from minilab.model.gpt import GPT
from minilab.tokenizers.char import CharTokenizer
from tests.conftest import tiny_model_config


def test_top_k_keeps_exactly_k_with_ties():
    logits = torch.tensor([[1.0, 3.0, 3.0, 3.0, 0.5, 3.0]])
    kept = torch.isfinite(top_k_filter(logits, 2))
    assert kept.sum().item() == 2
    assert torch.all(logits[kept] == 3.0)
    assert torch.isfinite(top_k_filter(logits, 0)).all()  # 0 = off


def test_top_p_keeps_smallest_set_reaching_p():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    logits = probs.log()
    assert torch.isfinite(top_p_filter(logits, 0.5)).tolist() == [[True, False, False, False]]
    assert torch.isfinite(top_p_filter(logits, 0.8)).tolist() == [[True, True, False, False]]
    assert torch.isfinite(top_p_filter(logits, 0.81)).tolist() == [[True, True, True, False]]
    assert torch.isfinite(top_p_filter(logits, 1.0)).all()
    # order in the vocabulary does not matter
    shuffled = logits[:, [2, 0, 3, 1]]
    assert torch.isfinite(top_p_filter(shuffled, 0.8)).tolist() == [[False, True, False, True]]


def test_temperature_zero_is_argmax_and_filters_restrict_draws():
    logits = torch.tensor([[0.1, 2.0, 1.9, -1.0]])
    assert sample_next(logits, temperature=0).item() == 1
    g = torch.Generator().manual_seed(0)
    draws = {sample_next(logits, 1.0, top_k=2, generator=g).item() for _ in range(200)}
    assert draws == {1, 2}


def test_higher_temperature_flattens():
    logits = torch.tensor([[3.0, 1.0, 0.0]])
    sharp = torch.softmax(logits / 0.5, -1)[0, 0]
    flat = torch.softmax(logits / 2.0, -1)[0, 0]
    assert sharp > torch.softmax(logits, -1)[0, 0] > flat


@pytest.mark.parametrize(
    "args",
    [
        (-0.1, 0, 1.0, 10),
        (1.0, -1, 1.0, 10),
        (1.0, 0, 0.0, 10),
        (1.0, 0, 1.5, 10),
        (float("nan"), 0, 1.0, 10),
        (1.0, 0, 1.0, -5),
    ],
)
def test_invalid_sampling_settings(args):
    with pytest.raises(LabError):
        check_sampling(*args)


def _model_and_tok():
    torch.manual_seed(0)
    tok = CharTokenizer.from_text("abcdefghij klmnopqrs\n")
    return GPT(tiny_model_config(vocab_size=tok.vocab_size)).eval(), tok


def test_greedy_is_deterministic_and_runs_past_context():
    model, tok = _model_and_tok()
    a = generate_text(model, tok, "abc", max_new_tokens=40, temperature=0)  # 43 > context 16
    b = generate_text(model, tok, "abc", max_new_tokens=40, temperature=0, seed=99)
    assert a == b and len(a) == 43


def test_same_seed_same_text_different_seed_differs():
    model, tok = _model_and_tok()
    a = generate_text(model, tok, "ab", max_new_tokens=60, temperature=1.0, seed=3)
    b = generate_text(model, tok, "ab", max_new_tokens=60, temperature=1.0, seed=3)
    c = generate_text(model, tok, "ab", max_new_tokens=60, temperature=1.0, seed=4)
    assert a == b and a != c


def test_generate_streams_one_token_at_a_time():
    model, _ = _model_and_tok()
    steps = list(generate(model, torch.tensor([[1, 2]]), 5, temperature=0))
    assert len(steps) == 5 and all(s.shape == (1, 1) for s in steps)


def test_empty_prompt_starts_from_newline():
    model, tok = _model_and_tok()
    out = generate_text(model, tok, "", max_new_tokens=5, temperature=0)
    assert len(out) == 5


def test_stop_strings_end_the_stream_and_are_not_printed():
    model, tok = _model_and_tok()
    full = "".join(stream_text(model, tok, "ab", max_new_tokens=80, temperature=1.0, seed=11))
    stop = full[30:33]  # a string that really occurs in this continuation
    cut = full.find(stop)
    pieces = list(stream_text(model, tok, "ab", max_new_tokens=80, temperature=1.0, seed=11, stop=[stop, "@@@"]))
    assert "".join(pieces) == full[:cut]
    assert stop not in "".join(pieces)


def test_batched_samples_are_one_batch_and_differ():
    model, tok = _model_and_tok()
    texts = generate_texts(model, tok, "ab", num_samples=4, max_new_tokens=30, temperature=1.0, seed=2)
    assert len(texts) == 4 and all(len(t) == 30 for t in texts) and len(set(texts)) > 1
    again = generate_texts(model, tok, "ab", num_samples=4, max_new_tokens=30, temperature=1.0, seed=2)
    assert texts == again
    greedy = generate_texts(model, tok, "ab", num_samples=3, max_new_tokens=30, temperature=0)
    assert greedy == [generate_text(model, tok, "ab", max_new_tokens=30, temperature=0)[2:]] * 3


def test_batched_stop_cuts_each_sample_at_its_own_stop():
    model, tok = _model_and_tok()
    texts = generate_texts(model, tok, "ab", num_samples=6, max_new_tokens=60, temperature=1.0, seed=5, stop=["a"])
    assert all("a" not in t for t in texts)
    assert any(len(t) < 60 for t in texts)
