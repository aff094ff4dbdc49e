"""From text completer to assistant: special tokens, the chat template, the loss mask, fine-tuning, chat and score."""

import json
import math

import pytest
import torch
import torch.nn.functional as F

from minilab.errors import LabError
from minilab.generation import chat as chat_module
from minilab.generation.chat import ChatSession, answer_batch, fit_history, stream_answer
from minilab.model.gpt import GPT
from minilab.tokenizers.bpe import BPETokenizer
from minilab.tokenizers.char import CharTokenizer, tokenizer_from_dict
from minilab.tokenizers.special import ASSISTANT, CHAT_TOKENS, END, USER, SpecialTokens, with_chat_tokens
from minilab.tokenizers.template import parse, prompt_ids, render
from minilab.training.conversations import (
    IGNORE,
    Conversation,
    encode_conversations,
    evaluate_rows,
    read_conversations,
)
from minilab.training.finetune import grow_vocabulary
from tests.conftest import tiny_model_config

TEXT = "0123456789 +=\nabcdefghijklmnopqrstuvwxyz?"
CONVERSATION = [
    {"role": "system", "content": "you add"},
    {"role": "user", "content": "12 + 30"},
    {"role": "assistant", "content": "42"},
    {"role": "user", "content": "1 + 1"},
    {"role": "assistant", "content": "2"},
]


def chat_tokenizer():
    return with_chat_tokens(CharTokenizer.from_text(TEXT))


# ---------------------------------------------------------------- special tokens and the template


def test_special_tokens_follow_the_base_vocabulary_and_survive_json():
    base = CharTokenizer.from_text(TEXT)
    tok = with_chat_tokens(base)
    assert tok.vocab_size == base.vocab_size + len(CHAT_TOKENS)
    assert [tok.id_of(n) for n in CHAT_TOKENS] == list(range(base.vocab_size, tok.vocab_size))
    again = tokenizer_from_dict(json.loads(json.dumps(tok.to_dict())))
    assert isinstance(again, SpecialTokens) and again.names == list(CHAT_TOKENS)
    assert again.to_dict() == tok.to_dict()
    assert with_chat_tokens(tok) is tok  # added once


def test_text_never_encodes_to_a_special_token():
    bpe = with_chat_tokens(BPETokenizer.train("a user said <|end|> twice <|end|>", 300))
    ids = bpe.encode("<|end|>")
    assert all(i < bpe.base.vocab_size for i in ids)
    assert bpe.decode(ids) == "<|end|>"
    with pytest.raises(LabError, match="not in the model's vocabulary"):
        chat_tokenizer().encode("<|end|>")  # a character vocabulary without '<' cannot even spell it


@pytest.mark.parametrize("kind", ["char", "bpe"])
def test_template_round_trip(kind):
    text = "".join(m["content"] for m in CONVERSATION)
    base = CharTokenizer.from_text(text) if kind == "char" else BPETokenizer.train(text * 3, 280)
    tok = with_chat_tokens(base)
    ids, trained = render(tok, CONVERSATION)
    assert len(ids) == len(trained)
    assert parse(tok.decode(ids)) == CONVERSATION
    assert tok.decode(prompt_ids(tok, CONVERSATION[:2])).endswith(f"{USER}12 + 30{END}{ASSISTANT}")


def test_template_marks_the_assistant_content_and_its_end_only():
    tok = chat_tokenizer()
    messages = [{"role": "user", "content": "1 + 1"}, {"role": "assistant", "content": "2"}]
    ids, trained = render(tok, messages)
    decoded = [tok.decode([i]) for i in ids]
    assert decoded == [USER, "1", " ", "+", " ", "1", END, ASSISTANT, "2", END]
    assert trained == [False] * 8 + [True, True]


# ---------------------------------------------------------------- the loss mask


def test_masked_loss_equals_the_hand_computed_loss_on_assistant_tokens():
    tok = chat_tokenizer()
    torch.manual_seed(0)
    model = GPT(tiny_model_config(vocab_size=tok.vocab_size, context_length=32)).eval()
    short = [{"role": "user", "content": "7 + 5"}, {"role": "assistant", "content": "12"}]
    convs = [Conversation(CONVERSATION[1:], 1), Conversation(short, 2)]
    data = encode_conversations(tok, convs, 32, val_fraction=0.0)
    x, y = data.batch(torch.tensor([0, 1]))
    _, loss = model(x, y)
    # By hand: for each conversation on its own, the positions whose next token is an assistant's
    # answer character or the <|end|> closing an answer; the mean of -log p over all of them.
    nll = []
    for c in convs:
        pieces = []  # (id, is it a target the loss counts)
        for m in c.messages:
            answer = m["role"] == "assistant"
            pieces += [(tok.id_of(f"<|{m['role']}|>"), False)]
            pieces += [(i, answer) for i in tok.encode(m["content"])] + [(tok.id_of(END), answer)]
        ids = torch.tensor([i for i, _ in pieces])
        logp = F.log_softmax(model(ids[None, :-1])[0][0], dim=-1)  # (T, V)
        nll += [-logp[t, ids[t + 1]] for t in range(len(ids) - 1) if pieces[t + 1][1]]
    assert len(nll) == (2 + 1) + (1 + 1) + (2 + 1)  # '42', '2', '12', each with its <|end|>
    assert loss.item() == pytest.approx(torch.stack(nll).mean().item(), rel=1e-5)
    assert evaluate_rows(model, data.train) == pytest.approx(loss.item(), rel=1e-5)


def test_without_the_mask_every_real_token_is_a_target_but_padding_never():
    tok = chat_tokenizer()
    short = [{"role": "user", "content": "7 + 5"}, {"role": "assistant", "content": "12"}]
    convs = [Conversation(CONVERSATION[1:], 1), Conversation(short, 2)]
    masked = encode_conversations(tok, convs, 32, 0.0, mask=True)
    full = encode_conversations(tok, convs, 32, 0.0, mask=False)
    _, y = full.batch(torch.tensor([1, 0]))
    n_short = len(render(tok, short)[0]) - 1
    assert (y[0, :n_short] != IGNORE).all() and (y[0, n_short:] == IGNORE).all()  # padded after the short one
    assert full.trained_share() == 1.0
    assert masked.train.trained_targets() == 8 and masked.trained_share() < 0.5


def test_too_long_conversations_are_skipped_and_counted():
    tok = chat_tokenizer()
    long = [{"role": "user", "content": "1 + 1 " * 10}, {"role": "assistant", "content": "2"}]
    convs = [Conversation(long, 1), Conversation(CONVERSATION[1:3], 2)]
    data = encode_conversations(tok, convs, 16, 0.0)
    assert len(data.train) == 1
    assert any("skipped 1 of 2" in n for n in data.notes)
    with pytest.raises(LabError, match="every conversation is longer"):
        encode_conversations(tok, convs[:1], 16, 0.0)


# ---------------------------------------------------------------- reading conversations: bad input


@pytest.mark.parametrize(
    "line, message",
    [
        ('{"messages": [{"role": "user", "content": "1"}', "line 2: not valid JSON"),
        ('{"messages": [{"role": "user", "content": "1 + 1"}]}', "line 2: the conversation has no assistant turn"),
        ('{"messages": [{"role": "robot", "content": "1"}]}', "line 2: message 1 has unknown role 'robot'"),
        ('{"messages": [{"role": "user", "content": 5}]}', "line 2: message 1's content must be a string"),
        ('["hello"]', "line 2: expected an object"),
        ('{"messages": []}', "line 2: 'messages' must be a non-empty list"),
    ],
)
def test_bad_conversation_lines_name_their_line(tmp_path, line, message):
    good = json.dumps({"messages": CONVERSATION[1:3]})
    path = tmp_path / "chats.jsonl"
    path.write_text(f"{good}\n{line}\n")
    with pytest.raises(LabError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_conversations(path)


# ---------------------------------------------------------------- generation: the end-of-turn stop


def scripted_generate(tokens: list[int], served: list):
    """A stand-in for decode.generate that yields these ids (B = 1) and counts how many were asked for."""

    def generate(model, idx, max_new_tokens, *args, **kwargs):
        for t in tokens[:max_new_tokens]:
            served.append(t)
            yield torch.tensor([[t]] * idx.size(0))

    return generate


def test_an_answer_stops_at_the_end_of_turn_token(monkeypatch):
    tok = chat_tokenizer()
    model = GPT(tiny_model_config(vocab_size=tok.vocab_size, context_length=32))
    served = []
    script = tok.encode("42") + [tok.id_of(END)] + tok.encode("99")
    monkeypatch.setattr(chat_module, "generate", scripted_generate(script, served))
    answer = "".join(stream_answer(model, tok, [0], 50, 0.0, 0, 1.0, None))
    assert answer == "42"
    assert len(served) == 3  # nothing was generated after <|end|>
    served.clear()
    assert answer_batch(model, [[0, 1], [2, 3]], {tok.id_of(END)}, 50) == [tok.encode("42")] * 2
    assert len(served) == 3


def test_history_drops_the_oldest_turns_and_keeps_the_system_message():
    tok = chat_tokenizer()
    everything = len(prompt_ids(tok, CONVERSATION + [{"role": "user", "content": "3 + 4"}]))
    asked = CONVERSATION + [{"role": "user", "content": "3 + 4"}]
    kept, dropped = fit_history(tok, asked, everything + 4, room=4)
    assert (kept, dropped) == (asked, 0)
    kept, dropped = fit_history(tok, asked, everything + 3, room=4)
    assert kept == [asked[0], *asked[3:]] and dropped == 2  # the first exchange went, the system stayed
    with pytest.raises(LabError, match="attends over at most"):
        fit_history(tok, [{"role": "user", "content": "1 + 1" * 20}], 16, room=4)


def test_chat_session_keeps_the_history_and_resets(monkeypatch):
    tok = chat_tokenizer()
    model = GPT(tiny_model_config(vocab_size=tok.vocab_size, context_length=64))
    monkeypatch.setattr(chat_module, "generate", scripted_generate(tok.encode("7") + [tok.id_of(END)], []))
    session = ChatSession(model, tok, system="you add", temperature=0.0)
    assert "".join(session.reply("3 + 4")) == "7"
    assert session.messages[1:] == [{"role": "user", "content": "3 + 4"}, {"role": "assistant", "content": "7"}]
    session.reset()
    assert session.messages == [{"role": "system", "content": "you add"}]
    with pytest.raises(LabError, match="no chat tokens"):
        ChatSession(model, CharTokenizer.from_text(TEXT))


# ---------------------------------------------------------------- fine-tuning starts from the checkpoint


def test_new_embedding_rows_are_the_mean_of_the_old_ones():
    w = torch.randn(5, 3)
    state = {"tok_emb.weight": w, "lm_head.weight": w.clone() * 2, "other": torch.ones(2)}
    grown = grow_vocabulary(state, 5, 8)
    assert grown["tok_emb.weight"].shape == (8, 3)
    assert torch.equal(grown["tok_emb.weight"][:5], w)
    assert torch.allclose(grown["tok_emb.weight"][5:], w.mean(0).expand(3, 3))
    assert torch.allclose(grown["lm_head.weight"][7], (w * 2).mean(0))
    assert grown["other"] is state["other"]


def test_masked_loss_is_finite_for_every_batch():
    tok = chat_tokenizer()
    convs = [Conversation(CONVERSATION[1:3], i) for i in range(4)]
    data = encode_conversations(tok, convs, 32, 0.0)
    model = GPT(tiny_model_config(vocab_size=tok.vocab_size, context_length=32))
    x, y = data.batch(data.draw(8, torch.Generator().manual_seed(0)))
    assert math.isfinite(model(x, y)[1].item())


def test_the_addition_task_holds_its_test_problems_out(tmp_path):
    from tests.test_finetune import write_task

    write_task(tmp_path)  # digits=1: 100 problems, 10 held out
    asked = lambda path: {  # noqa: E731
        m["content"] for line in open(path) for m in json.loads(line)["messages"] if m["role"] == "user"
    }
    test = asked(tmp_path / "test.jsonl")
    pretrain = {line.split(" = ")[0] for line in (tmp_path / "pretrain.txt").read_text().splitlines()}
    assert len(test) == 10 and len(pretrain) == 90
    assert not test & pretrain and not test & asked(tmp_path / "train.jsonl")
    for line in (tmp_path / "pretrain.txt").read_text().splitlines():
        a, b, c = (int(x) for x in line.replace(" + ", " ").replace(" = ", " ").split())
        assert a + b == c
    import make_addition  # on sys.path now (write_task put it in sys.modules)

    make_addition.make(tmp_path / "multi", digits=1, test=10, chats=40, turns=3)
    convs = read_conversations(tmp_path / "multi" / "train.jsonl")
    assert sum(len(c.messages) for c in convs) == 2 * 40 and max(len(c.messages) for c in convs) <= 6


def test_eval_tokens_caps_the_validation_conversations():
    tok = chat_tokenizer()
    convs = [Conversation(CONVERSATION[1:3], i) for i in range(10)]
    data = encode_conversations(tok, convs, 32, val_fraction=0.5)
    n = len(data.val.ids[0])  # every conversation has the same length
    rows, note = data.val_head(2 * n + 1)
    assert len(rows) == 2 and "first 2 of 5 validation conversations" in note
    assert data.val_head(0) == (data.val, None) and data.val_head(10 * n) == (data.val, None)
