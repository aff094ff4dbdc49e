"""The logit lens (nostalgebraist 2020): read each layer's residual stream through the model's own output head.

After every block the residual stream is a vector that the final norm and head could already turn
into a prediction. Doing that at each layer shows what the model "believes so far": usually the
guess sharpens layer by layer, and the last layer's reading is exactly the model's output.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from minilab.errors import LabError
from minilab.inside.windows import token_label


@dataclass
class LensReading:
    """What each layer predicts at each position of a prompt."""

    labels: list[str]  # the prompt's tokens, as printable labels
    layers: list[str]  # 'embed', 'layer 0', ..., one per reading
    top: list[list[str]]  # (n_layers + 1) x T: each reading's most likely next token
    top_prob: torch.Tensor  # (n_layers + 1, T): its probability
    target_prob: torch.Tensor  # (n_layers + 1, T - 1): probability given to the token that really comes next


@torch.no_grad()
def logit_lens(model, idx: torch.Tensor) -> torch.Tensor:
    """Next-token probabilities read after the embedding and after each block. (1, T) -> (n_layers + 1, T, V)"""
    _, cache = model.run_with_cache(idx)
    streams = [cache["embed"]] + [cache[f"blocks.{i}.resid_post"] for i in range(model.cfg.n_layers)]
    stacked = torch.cat(streams)  # (n_layers + 1, T, C): the batch of one dropped
    return F.softmax(model.unembed(model.ln_f(stacked)).float(), dim=-1)


def read_prompt(model, tokenizer, prompt: str) -> LensReading:
    """The logit lens of a prompt of 2 or more tokens (the lens scores each one's guess of the next)."""
    ids = tokenizer.encode(prompt)  # unseen characters: LabError
    if len(ids) < 2:
        raise LabError("--prompt needs at least 2 tokens: the lens scores each one's guess of the next")
    if len(ids) > model.cfg.context_length:
        raise LabError(f"the prompt is {len(ids)} tokens; this model attends over at most {model.cfg.context_length}")
    probs = logit_lens(model, torch.tensor([ids], device=next(model.parameters()).device)).cpu()
    L = probs.size(0)
    targets = torch.tensor(ids[1:]).view(1, -1, 1).expand(L, -1, 1)  # (L, T - 1, 1)
    target_prob = probs[:, :-1].gather(-1, targets).squeeze(-1)  # (L, T - 1)
    top_prob, top_id = probs.max(dim=-1)  # (L, T)
    label = lambda i: token_label(tokenizer, i)  # noqa: E731
    top = [[label(i) for i in row] for row in top_id.tolist()]
    layers = ["embed"] + [f"layer {i}" for i in range(model.cfg.n_layers)]
    return LensReading([label(i) for i in ids], layers, top, top_prob, target_prob)


def lens_table(r: LensReading) -> str:
    """One row per position: the token, the real next one, then per layer 'top guess  p(real next)'."""
    T = len(r.labels)
    tok_w = max([len("token -> next")] + [len(f"{a} -> {b}") for a, b in zip(r.labels, r.labels[1:] + ["?"])]) + 2
    cell_w = max(12, max(len(s) for row in r.top for s in row) + 9)
    lines = [
        "each cell: the layer's top guess for the next token, then the probability it gives the real next token",
        f"{'pos':>3}  {'token -> next':<{tok_w}}" + "".join(f"{name:>{cell_w}}" for name in r.layers),
    ]
    for t in range(T):
        pair = f"{r.labels[t]} -> {r.labels[t + 1] if t + 1 < T else '(end)'}"
        cells = []
        for layer in range(len(r.layers)):
            p = f"{r.target_prob[layer, t]:.2f}" if t + 1 < T else "  - "
            cells.append(f"{r.top[layer][t]:>{cell_w - 6}}  {p}")
        lines.append(f"{t:>3}  {pair:<{tok_w}}" + "".join(cells))
    mean = r.target_prob.mean(dim=1)
    lines.append(f"{'':>3}  {'mean p(next)':<{tok_w}}" + "".join(f"{m:>{cell_w}.3f}" for m in mean.tolist()))
    return "\n".join(lines)


def plot_lens(r: LensReading, path) -> None:
    """Heatmap of p(real next token), layers (rows) x positions (columns), each cell labelled with the top guess."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    T = len(r.labels) - 1
    fig, ax = plt.subplots(figsize=(min(24, 1.6 + 0.42 * T), 1.4 + 0.45 * len(r.layers)), dpi=100)
    im = ax.imshow(r.target_prob.numpy(), cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto", interpolation="nearest")
    if T <= 60:
        for layer in range(len(r.layers)):
            for t in range(T):
                dark = r.target_prob[layer, t] < 0.6
                ax.text(t, layer, r.top[layer][t], ha="center", va="center", fontsize=7, color="w" if dark else "k")
    ax.set_yticks(range(len(r.layers)), r.layers)
    ticks = [f"{a}→{b}" for a, b in zip(r.labels, r.labels[1:])]
    ax.set_xticks(range(T), ticks, rotation=0 if max(len(s) for s in ticks) <= 3 else 90, fontsize=7)
    ax.set_xlabel("position: token → the real next token (cell text: the layer's top guess)")
    fig.colorbar(im, ax=ax, label="p(real next token)", fraction=0.03)
    ax.set_title("logit lens: what each layer already predicts")
    fig.tight_layout()
    from minilab.files import atomic_write

    atomic_write(path, lambda f: fig.savefig(f, format="png"))
    plt.close(fig)
