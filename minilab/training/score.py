"""Exact-match accuracy on held-out conversations: does the model answer, and answer right?

For each conversation, the last assistant message is the expected answer and everything before
it is the question. A model with chat tokens is prompted with the template and its answer ends
at ``<|end|>`` (or any other marker); a base model (no chat tokens) can only continue text, so it is given the messages
before the answer as plain text, one per line, and its answer is what it writes up to the end of
that line. Answers are generated greedily (temperature 0), so a score is the same every time.

Two measures: ``exact`` (the answer, stripped of surrounding spaces, is exactly the expected one)
and ``contains`` (the expected answer appears in it as a whole word: the model knows it, but says
more, or says it in another form).
"""

import re
from dataclasses import dataclass, field

from minilab.errors import LabError
from minilab.generation.chat import answer_batch
from minilab.tokenizers.special import has_chat_tokens
from minilab.tokenizers.template import prompt_ids
from minilab.tokenizers.utf8 import generated_text
from minilab.training.conversations import Conversation


@dataclass
class AnswerScore:
    """How many held-out answers were exactly right, and how many contained the right answer."""

    n: int
    exact: int
    contains: int
    chat: bool  # prompted with the chat template (else as plain text)
    examples: list[tuple[str, str, str]] = field(default_factory=list)  # (question, expected, answer)

    @property
    def accuracy(self) -> float:
        return self.exact / self.n

    @property
    def contains_rate(self) -> float:
        return self.contains / self.n

    def report(self) -> str:
        how = "chat template" if self.chat else "plain text (no chat tokens)"
        return (
            f"exact match {self.exact}/{self.n} = {100 * self.accuracy:.1f}% | answer contained "
            f"{self.contains}/{self.n} = {100 * self.contains_rate:.1f}% | prompted as {how}, greedy"
        )


def split_answer(c: Conversation) -> tuple[list[dict], str]:
    """(the messages before the last assistant turn, that turn's content)."""
    last = max((i for i, m in enumerate(c.messages) if m["role"] == "assistant"), default=None)
    if last is None:
        raise LabError(f"line {c.line}: the conversation has no assistant turn to score")
    return c.messages[:last], c.messages[last]["content"]


def contains_word(text: str, answer: str) -> bool:
    """``answer`` occurs in ``text`` with no letter or digit right before or after it."""
    return re.search(rf"(?<!\w){re.escape(answer.strip())}(?!\w)", text) is not None


def score_answers(
    model, tokenizer, conversations: list[Conversation], max_new_tokens: int = 32, show: int = 5
) -> AnswerScore:
    """Exact-match (and contained) accuracy of greedy answers to each conversation's last assistant turn."""
    chat = has_chat_tokens(tokenizer)
    questions, expected, prompts = [], [], []
    for c in conversations:
        before, answer = split_answer(c)
        questions.append(before[-1]["content"] if before else "")
        expected.append(answer)
        if chat:
            prompts.append(prompt_ids(tokenizer, before))
        else:
            prompts.append(tokenizer.encode("\n".join(m["content"] for m in before)))
    ctx = model.cfg.context_length
    too_long = sum(len(p) + 1 > ctx for p in prompts)
    if too_long:
        raise LabError(f"{too_long} question(s) are longer than the model's context ({ctx} tokens)")
    stop = set(tokenizer.ids.values()) if chat else set()  # any marker ends an answer, as in chat
    answers = answer_batch(model, prompts, stop, max_new_tokens)
    result = AnswerScore(n=len(conversations), exact=0, contains=0, chat=chat)
    for q, want, ids in zip(questions, expected, answers):
        got = generated_text(tokenizer, ids)
        if not chat:
            got = got.split("\n", 1)[0]  # a base model's answer: the rest of the line
        result.exact += got.strip() == want.strip()
        result.contains += contains_word(got, want)
        if len(result.examples) < show:
            result.examples.append((q, want, got))
    return result


def sample_answers(model, tokenizer, conversations: list[Conversation], max_new_tokens: int) -> str:
    """A run's samples.txt on conversations: greedy answers to a few validation questions, one per line."""
    result = score_answers(model, tokenizer, conversations, max_new_tokens, show=len(conversations))
    return "\n".join(f"{q!r} -> {got!r} (expected {want!r})" for q, want, got in result.examples)
