"""Text in, text out: the tokenizer and the generation loop joined, for the CLI and notebooks."""

from collections.abc import Iterator

import torch

from minilab.generate import check_sampling, generate


def prompt_ids(tokenizer, prompt: str) -> list[int]:
    """Encode a prompt; an empty prompt starts from a newline (or the first token if there is none)."""
    if prompt:
        return tokenizer.encode(prompt)
    return [tokenizer.stoi.get("\n", 0)]


def stream_text(
    model,
    tokenizer,
    prompt: str,
    max_new_tokens: int = 200,
    temperature: float = 0.8,
    top_k: int = 0,
    top_p: float = 1.0,
    seed: int | None = None,
) -> Iterator[str]:
    """Yield the continuation of ``prompt`` piece by piece, as the model produces it."""
    check_sampling(temperature, top_k, top_p, max_new_tokens)
    device = next(model.parameters()).device
    idx = torch.tensor([prompt_ids(tokenizer, prompt)], dtype=torch.long, device=device)
    gen = torch.Generator(device=device)
    if seed is not None:
        gen.manual_seed(seed)
    else:
        gen.seed()
    for next_id in generate(model, idx, max_new_tokens, temperature, top_k, top_p, gen):
        yield tokenizer.decode(next_id[0].tolist())


def generate_text(model, tokenizer, prompt: str, **kwargs) -> str:
    """The prompt followed by its continuation, as one string (see ``stream_text`` for the settings)."""
    return prompt + "".join(stream_text(model, tokenizer, prompt, **kwargs))
