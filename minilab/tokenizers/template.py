"""The chat template: how a conversation becomes one sequence of token ids, and which of them are trained on.

A conversation is a list of messages ``{"role": "system" | "user" | "assistant", "content": text}``
(the JSON Lines format of minilab/training/conversations.py). Each message is written as its role's
marker, its content, and the end-of-turn marker (special tokens, minilab/tokenizers/special.py):

    <|system|>You add numbers.<|end|><|user|>12 + 30<|end|><|assistant|>42<|end|>

Nothing else is added (no newlines, no "User:"), so a character vocabulary needs no characters the
messages do not have. To answer, the model is given the conversation so far followed by
``<|assistant|>`` and generates until it writes ``<|end|>``.

Supervised fine-tuning trains only on what the assistant says: the content of each assistant turn
and its ``<|end|>`` (so the model learns to stop). The markers, the system prompt and the user's
words are context: the model reads them but is not taught to write them.
"""

from minilab.errors import LabError
from minilab.tokenizers.special import ASSISTANT, END, SYSTEM, USER, with_chat_tokens

ROLES = {"system": SYSTEM, "user": USER, "assistant": ASSISTANT}


def check_messages(messages, where: str = "conversation") -> list[dict]:
    """The messages as a list of {"role", "content"} dicts, or a LabError saying what is wrong (and ``where``)."""
    if not isinstance(messages, list) or not messages:
        raise LabError(f'{where}: \'messages\' must be a non-empty list of {{"role": ..., "content": ...}}')
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or set(m) - {"role", "content"} or "role" not in m or "content" not in m:
            raise LabError(f"{where}: message {i + 1} must be an object with exactly 'role' and 'content'")
        role, content = m["role"], m["content"]
        if role not in ROLES:
            raise LabError(f"{where}: message {i + 1} has unknown role {role!r} (use {', '.join(ROLES)})")
        if not isinstance(content, str):
            raise LabError(f"{where}: message {i + 1}'s content must be a string, got {type(content).__name__}")
        if role == "system" and i > 0:
            raise LabError(f"{where}: message {i + 1}: a system message may only come first")
        out.append({"role": role, "content": content})
    return out


def render(tokenizer, messages: list[dict]) -> tuple[list[int], list[bool]]:
    """(ids, trained): the conversation's token ids, and for each id whether it is a target trained on.

    ``trained[i]`` is True for the tokens of an assistant's content and the ``<|end|>`` closing it.
    """
    tok = with_chat_tokens(tokenizer)
    end = tok.id_of(END)
    ids: list[int] = []
    trained: list[bool] = []
    for m in messages:
        body = tok.encode(m["content"])
        is_answer = m["role"] == "assistant"
        ids += [tok.id_of(ROLES[m["role"]]), *body, end]
        trained += [False] + [is_answer] * (len(body) + 1)
    return ids, trained


def prompt_ids(tokenizer, messages: list[dict]) -> list[int]:
    """What the model continues to answer: the conversation so far, then ``<|assistant|>``."""
    ids, _ = render(tokenizer, messages)
    return ids + [with_chat_tokens(tokenizer).id_of(ASSISTANT)]


def parse(text: str) -> list[dict]:
    """A decoded conversation back to messages (the inverse of ``render`` then ``decode``)."""
    markers = {marker: role for role, marker in ROLES.items()}
    messages, rest = [], text
    while rest:
        role = next((r for m, r in markers.items() if rest.startswith(m)), None)
        if role is None:
            raise LabError(f"expected a role marker ({', '.join(markers)}) at {rest[:30]!r}")
        rest = rest[len(ROLES[role]) :]
        content, found, rest = rest.partition(END)
        if not found:
            raise LabError(f"the {role} turn {content[:30]!r} has no {END}")
        messages.append({"role": role, "content": content})
    return messages
