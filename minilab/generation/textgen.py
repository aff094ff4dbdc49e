"""Text in, text out: the tokenizer and the generation engine joined, for the CLI and notebooks.

Token ids become text through a ``StreamDecoder`` (minilab/tokenizers/utf8.py): with BPE one character can
be split over two tokens, so bytes of an unfinished character wait for the next token, and no
printed piece ever holds half a character. At the end whatever bytes are left are flushed.

Stop strings are handled here, on text: generation of a sequence ends at the first stop string,
which is not included in the result. While streaming, the last few characters are held back until
it is certain they do not begin a stop string, so nothing after a stop is ever printed.
"""

from collections.abc import Iterator

import torch

from minilab.generation.decode import generate
from minilab.generation.sampling import SamplingConfig
from minilab.tokenizers.char import start_ids
from minilab.tokenizers.utf8 import StreamDecoder


def prompt_ids(tokenizer, prompt: str) -> list[int]:
    """Encode a prompt; an empty prompt starts from a newline (or the first token if there is none)."""
    if prompt:
        return tokenizer.encode(prompt)
    return start_ids(tokenizer)


def _generator(device, seed: int | None) -> torch.Generator:
    gen = torch.Generator(device=device)
    if seed is None:
        gen.seed()
    else:
        gen.manual_seed(seed)
    return gen


def _token_stream(model, tokenizer, prompt: str, batch_size: int, s: SamplingConfig, dtype: str = "fp32"):
    device = next(model.parameters()).device
    ids = torch.tensor([prompt_ids(tokenizer, prompt)] * batch_size, dtype=torch.long, device=device)
    gen = _generator(device, s.seed)
    return generate(model, ids, s.max_new_tokens, s.temperature, s.top_k, s.top_p, gen, dtype=dtype)


def _find_stop(text: str, stop) -> int:
    """Index of the earliest stop string in ``text``, or -1."""
    hits = [i for i in (text.find(s) for s in stop) if i >= 0]
    return min(hits) if hits else -1


def stream_text(
    model,
    tokenizer,
    prompt: str,
    max_new_tokens: int = SamplingConfig.max_new_tokens,
    temperature: float = SamplingConfig.temperature,
    top_k: int = SamplingConfig.top_k,
    top_p: float = SamplingConfig.top_p,
    seed: int | None = SamplingConfig.seed,
    stop=(),
    dtype: str = "fp32",
) -> Iterator[str]:
    """Yield the continuation of ``prompt`` piece by piece as the model produces it, up to a stop string.

    The sampling settings are ``SamplingConfig``'s (checked there); ``stream_text(..., **asdict(sampling))``.
    ``dtype``: 'fp32' (exact) or 'bf16' (see ``generate``).
    """
    stop = [s for s in stop if s]
    hold = max((len(s) for s in stop), default=1) - 1  # characters that might start a stop string
    text, sent = "", 0
    decoder = StreamDecoder(tokenizer)
    sampling = SamplingConfig(max_new_tokens, temperature, top_k, top_p, seed)
    tokens = _token_stream(model, tokenizer, prompt, 1, sampling, dtype)
    for next_id in tokens:
        text += decoder.feed(next_id[0].tolist())
        cut = _find_stop(text, stop)
        if cut >= 0:
            if cut > sent:
                yield text[sent:cut]
            return
        if len(text) - hold > sent:
            yield text[sent : len(text) - hold]
            sent = len(text) - hold
    text += decoder.flush()
    cut = _find_stop(text, stop)
    end = cut if cut >= 0 else len(text)
    if end > sent:
        yield text[sent:end]


def generate_texts(
    model, tokenizer, prompt: str, num_samples: int = 1, stop=(), dtype: str = "fp32", **sampling
) -> list[str]:
    """``num_samples`` continuations of ``prompt``, generated as one batch; each ends at its first stop string.

    ``sampling``: any of ``SamplingConfig``'s fields (max_new_tokens, temperature, top_k, top_p, seed).
    """
    sampling = SamplingConfig(**sampling)
    stop = [s for s in stop if s]
    texts, done = [""] * num_samples, [False] * num_samples
    decoders = [StreamDecoder(tokenizer) for _ in range(num_samples)]
    for next_ids in _token_stream(model, tokenizer, prompt, num_samples, sampling, dtype):
        for i, token in enumerate(next_ids[:, 0].tolist()):
            if not done[i]:
                done[i] = _extend(texts, i, decoders[i].feed([token]), stop)
        if all(done):
            break
    for i in range(num_samples):
        if not done[i]:
            _extend(texts, i, decoders[i].flush(), stop)
    return texts


def _extend(texts: list[str], i: int, piece: str, stop) -> bool:
    """Append ``piece`` to sample i and cut it at a stop string; True if it has ended."""
    texts[i] += piece
    cut = _find_stop(texts[i], stop)
    if cut >= 0:
        texts[i] = texts[i][:cut]
    return cut >= 0


def generate_text(model, tokenizer, prompt: str, **kwargs) -> str:
    """The prompt followed by its continuation, as one string (see ``stream_text`` for the settings)."""
    return prompt + "".join(stream_text(model, tokenizer, prompt, **kwargs))
