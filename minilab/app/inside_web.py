"""The JSON answers of serve's "Inside" tab: logit lens, head ablation, embedding map, neuron snippets.

serve.py routes ``/api/inside/<tool>`` here with the request's parameters and the Lab (which loads
models). Work per request is capped (the limits below, which the page shows), so one click cannot
keep the server busy for long. Bad input raises LabError, which serve turns into a one-line 400.
"""

import copy

from minilab.errors import LabError

MAX_TEXT_CHARS = 20_000  # text pasted for ablation or neurons
MAX_ABLATE_TOKENS = 2048  # predicted tokens scored per ablation (2 x layers x heads forward passes over them)
MAX_NEURON_TOKENS = 8192
MAX_PROMPT_CHARS = 2000
LIMITS = {
    "max_text_chars": MAX_TEXT_CHARS,
    "max_ablate_tokens": MAX_ABLATE_TOKENS,
    "max_neuron_tokens": MAX_NEURON_TOKENS,
    "max_prompt_chars": MAX_PROMPT_CHARS,
}


def answer(lab, tool: str, q: dict) -> dict:
    """The answer for ``/api/inside/<tool>``; ``q`` holds the request's parameters as strings."""
    if tool == "limits":
        return LIMITS
    if tool not in ("lens", "ablate", "embeddings", "neurons"):
        raise LabError(f"no inside tool {tool[:40]!r} (lens, ablate, embeddings, neurons)")
    model, tokenizer, _ = lab.model(q.get("checkpoint", ""))
    if tool != "embeddings":
        # The tools install hooks for the length of a request; the server's cached model may be
        # generating for another page at the same time, so each request works on its own copy.
        model = copy.deepcopy(model)
    if tool == "lens":
        return _lens(model, tokenizer, q.get("prompt", ""))
    if tool == "embeddings":
        return _embeddings(model, tokenizer)
    text = q.get("text", "")
    if not text.strip():
        raise LabError("paste some text to run the model on")
    if len(text) > MAX_TEXT_CHARS:
        raise LabError(f"the text is {len(text)} characters; the limit is {MAX_TEXT_CHARS}")
    if tool == "ablate":
        return _ablate(model, tokenizer, text)
    return _neurons(model, tokenizer, text, q.get("layer", "0"))


def _lens(model, tokenizer, prompt: str) -> dict:
    from minilab.inside.lens import read_prompt

    if len(prompt) > MAX_PROMPT_CHARS:
        raise LabError(f"the prompt is {len(prompt)} characters; the limit is {MAX_PROMPT_CHARS}")
    r = read_prompt(model, tokenizer, prompt)
    return {
        "tokens": r.labels,
        "layers": r.layers,
        "top": r.top,
        "top_prob": _rounded(r.top_prob),
        "target_prob": _rounded(r.target_prob),
    }


def _ablate(model, tokenizer, text: str) -> dict:
    from minilab.inside.ablate import ablate_heads
    from minilab.inside.windows import text_windows

    windows = text_windows(tokenizer, text, model.cfg.context_length, MAX_ABLATE_TOKENS)
    a = ablate_heads(model, windows)
    return {"base_loss": round(a.base_loss, 5), "tokens": a.tokens, "zero": _rounded(a.zero), "mean": _rounded(a.mean)}


def _embeddings(model, tokenizer) -> dict:
    from minilab.inside.embeddings import default_tokens, embedding_map, nearest, token_id

    m = embedding_map(model, tokenizer)
    near = {}
    for text in default_tokens(tokenizer):
        tid = token_id(tokenizer, text)
        near[m.labels[tid]] = [[m.labels[i], round(s, 3)] for i, s in nearest(model, tid, 6)]
    return {"labels": m.labels, "coords": _rounded(m.coords), "explained": list(m.explained), "nearest": near}


def _neurons(model, tokenizer, text: str, layer: str) -> dict:
    from minilab.inside.neurons import top_neurons
    from minilab.inside.windows import text_windows

    try:
        n = int(layer)
    except ValueError:
        raise LabError(f"layer must be a whole number, got {layer[:40]!r}") from None
    if not 0 <= n < model.cfg.n_layers:
        raise LabError(f"layer {n}: this model has layers 0..{model.cfg.n_layers - 1}")
    windows = text_windows(tokenizer, text, model.cfg.context_length, MAX_NEURON_TOKENS)
    found = top_neurons(model, tokenizer, windows, n, n_neurons=5, n_snippets=4)
    return {
        "layer": n,
        "neurons": [
            {
                "index": nr.index,
                "max": round(nr.max_act, 4),
                "snippets": [
                    {"tokens": s.tokens, "acts": [round(a, 3) for a in s.acts], "focus": s.focus} for s in nr.snippets
                ],
            }
            for nr in found
        ],
    }


def _rounded(t) -> list:
    """A tensor as nested lists of floats rounded to 4 places: small JSON for the page."""
    return [_rounded(x) for x in t] if t.dim() > 1 else [round(float(v), 4) for v in t]
