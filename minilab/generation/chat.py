"""Talking to a fine-tuned model: the chat template applied, answers stopped at the end-of-turn token, history kept.

A ``ChatSession`` holds the conversation so far. To answer, it renders the messages with the
template (minilab/tokenizers/template.py), appends ``<|assistant|>`` and generates until the model
writes ``<|end|>`` (or ``max_new_tokens`` run out). The model attends over ``context_length``
tokens only, so before each answer the oldest turns are dropped (a system message is kept) until
the prompt leaves ``room`` tokens for the answer: by default ``max_new_tokens``, at most half the context.

``answer_batch`` answers many prompts greedily at once (prompts of equal length share a batch),
for scoring a model on held-out questions (minilab/training/score.py).
"""

from collections.abc import Iterator

import torch

from minilab.errors import LabError
from minilab.generation.decode import generate
from minilab.generation.sampling import check_sampling
from minilab.tokenizers.special import has_chat_tokens
from minilab.tokenizers.template import prompt_ids
from minilab.tokenizers.utf8 import StreamDecoder


def require_chat_tokens(tokenizer) -> None:
    if not has_chat_tokens(tokenizer):
        raise LabError(
            "this model has no chat tokens: it completes text but was never taught turns; fine-tune it on "
            "conversations first (mini-transformer-lab finetune --from CKPT --data chats.jsonl)"
        )


def fit_history(tokenizer, messages: list[dict], context_length: int, room: int) -> tuple[list[dict], int]:
    """(messages kept, how many dropped): the newest turns whose prompt leaves ``room`` tokens of the context.

    A leading system message is kept; turns are dropped from the oldest, so the kept part starts
    with a user message. If the newest message alone leaves less room, it is kept if it fits at all.
    """
    system = messages[:1] if messages and messages[0]["role"] == "system" else []
    turns = messages[len(system) :]
    for start in range(len(turns)):
        if turns[start]["role"] != "user" and start > 0:
            continue
        kept = system + turns[start:]
        if len(prompt_ids(tokenizer, kept)) + room <= context_length:
            return kept, start
    last = system + turns[-1:]
    n = len(prompt_ids(tokenizer, last))
    if n < context_length:
        return last, len(turns) - 1
    raise LabError(
        f"the message is {n} tokens with the chat markers; this model attends over at most "
        f"{context_length} (say it shorter, or /reset)"
    )


def prompt_in_context(model, tokenizer, messages: list[dict], max_new_tokens: int) -> tuple[list[int], int]:
    """(prompt ids, messages dropped): what the model is given to answer ``messages``, fitted to its context.

    Characters the model never saw are an error here, before anything is generated.
    """
    for m in messages:
        tokenizer.encode(m["content"])
    ctx = model.cfg.context_length
    kept, dropped = fit_history(tokenizer, messages, ctx, room=min(max_new_tokens, ctx // 2))
    return prompt_ids(tokenizer, kept), dropped


def stream_answer(
    model, tokenizer, ids: list[int], max_new_tokens: int, temperature: float, top_k: int, top_p: float, generator
) -> Iterator[str]:
    """Generate after ``ids`` and yield the answer's text piece by piece until ``<|end|>``.

    Any other marker ends the answer too: a model that writes ``<|user|>`` has begun the next turn.
    """
    device = next(model.parameters()).device
    decoder = StreamDecoder(tokenizer)
    idx = torch.tensor([ids], dtype=torch.long, device=device)
    for next_id in generate(model, idx, max_new_tokens, temperature, top_k, top_p, generator):
        token = int(next_id[0, 0])
        if tokenizer.is_special(token):
            break
        if piece := decoder.feed([token]):
            yield piece
    if tail := decoder.flush():
        yield tail


class ChatSession:
    """One conversation with a model: ``reply(text)`` streams the answer and remembers both turns."""

    def __init__(
        self,
        model,
        tokenizer,
        system: str | None = None,
        max_new_tokens: int = 200,
        temperature: float = 0.8,
        top_k: int = 0,
        top_p: float = 1.0,
        seed: int | None = None,
    ):
        require_chat_tokens(tokenizer)
        check_sampling(temperature, top_k, top_p, max_new_tokens)
        self.model, self.tokenizer, self.system = model, tokenizer, system
        self.settings = dict(max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p)
        device = next(model.parameters()).device
        self.generator = torch.Generator(device=device)
        if seed is None:
            self.generator.seed()
        else:
            self.generator.manual_seed(seed)
        self.dropped = 0  # messages left out of the last prompt, the oldest first
        self.reset()

    def reset(self) -> None:
        """Forget the conversation (a system message stays)."""
        self.messages = [{"role": "system", "content": self.system}] if self.system else []

    def reply(self, text: str) -> Iterator[str]:
        """Stream the answer to ``text``; once it has ended, both turns join the history."""
        s, pieces = self.settings, []
        asked = self.messages + [{"role": "user", "content": text}]
        ids, self.dropped = prompt_in_context(self.model, self.tokenizer, asked, s["max_new_tokens"])
        sampling = (s["max_new_tokens"], s["temperature"], s["top_k"], s["top_p"], self.generator)
        for piece in stream_answer(self.model, self.tokenizer, ids, *sampling):
            pieces.append(piece)
            yield piece
        self.messages = asked + [{"role": "assistant", "content": "".join(pieces)}]


@torch.inference_mode()
def answer_batch(model, prompts: list[list[int]], stop_ids, max_new_tokens: int, batch_size: int = 64):
    """Greedy answers to many prompts, batched by length: lists of ids, each up to the first of ``stop_ids``."""
    device = next(model.parameters()).device
    by_length: dict[int, list[int]] = {}
    for i, p in enumerate(prompts):
        by_length.setdefault(len(p), []).append(i)
    answers: list[list[int]] = [[] for _ in prompts]
    for group in by_length.values():
        for b in range(0, len(group), batch_size):
            rows = group[b : b + batch_size]
            idx = torch.tensor([prompts[i] for i in rows], dtype=torch.long, device=device)  # (B, T)
            done = [False] * len(rows)
            for next_ids in generate(model, idx, max_new_tokens, temperature=0.0):  # (B, 1)
                for r, token in enumerate(next_ids[:, 0].tolist()):
                    if not done[r]:
                        done[r] = token in stop_ids
                        if not done[r]:
                            answers[rows[r]].append(token)
                if all(done):
                    break
    return answers


def chat_answer(
    model,
    tokenizer,
    messages: list[dict],
    max_new_tokens: int = 200,
    temperature: float = 0.8,
    top_k: int = 0,
    top_p: float = 1.0,
    seed: int | None = None,
):
    """(answer pieces, messages dropped): the next assistant turn of ``messages`` (ending with the user's).

    Everything is checked before the first piece: the chat tokens, the characters, the length.
    """
    require_chat_tokens(tokenizer)
    check_sampling(temperature, top_k, top_p, max_new_tokens)
    ids, dropped = prompt_in_context(model, tokenizer, messages, max_new_tokens)
    generator = torch.Generator(device=next(model.parameters()).device)
    generator.seed() if seed is None else generator.manual_seed(seed)
    return stream_answer(model, tokenizer, ids, max_new_tokens, temperature, top_k, top_p, generator), dropped
