"""MLP neurons: which ones fire hardest on a text, and on what.

A neuron is one channel of an MLP's hidden layer (``blocks.n.mlp.hidden``). For the neurons with
the largest activation anywhere in the text, the snippets around their strongest activations often
show what they detect: the start of a word, a vowel after a capital, a newline before a name.
"""

from dataclasses import dataclass

import torch

from minilab.errors import LabError
from minilab.inside.hooks import hooks
from minilab.inside.windows import token_label


@dataclass
class Snippet:
    """Tokens around one strong activation, with the neuron's activation on each of them."""

    tokens: list[str]  # printable labels
    acts: list[float]  # the neuron's activation at each token
    focus: int  # index of the activating token within ``tokens``


@dataclass
class Neuron:
    index: int
    max_act: float
    snippets: list[Snippet]


@torch.no_grad()
def hidden_activations(model, windows: torch.Tensor, layer: int, batch_size: int = 16) -> torch.Tensor:
    """The layer's neurons on every input position: (N, T, d_ff)."""
    if model.cfg.mlp == "none":
        raise LabError("this model is attention-only (mlp 'none'): it has no neurons")
    if not 0 <= layer < model.cfg.n_layers:
        raise LabError(f"--layer {layer}: this model has layers 0..{model.cfg.n_layers - 1}")
    seen = []
    with hooks(model, {f"blocks.{layer}.mlp.hidden": lambda h: seen.append(h.float().cpu()) or h}, edits=False):
        for chunk in windows.split(batch_size):
            model(chunk[:, :-1])
    return torch.cat(seen)


def top_neurons(model, tokenizer, windows, layer: int, n_neurons: int = 5, n_snippets: int = 4, span: int = 24):
    """The ``n_neurons`` neurons with the largest activation, each with its ``n_snippets`` strongest snippets.

    Snippets show ``span`` tokens before the activating one and a few after; two snippets of a
    neuron never come from within ``span`` tokens of each other, so one phrase cannot fill the list.
    """
    acts = hidden_activations(model, windows, layer)  # (N, T, H)
    inputs = windows[:, :-1]
    N, T, H = acts.shape
    peak = acts.flatten(0, 1).max(dim=0).values  # (H,)
    chosen = peak.argsort(descending=True)[: min(n_neurons, H)].tolist()
    result = []
    for n in chosen:
        flat = acts[:, :, n].flatten()  # (N * T,)
        picked: list[tuple[int, int]] = []
        for pos in flat.argsort(descending=True).tolist():
            w, t = divmod(pos, T)
            if all(w != pw or abs(t - pt) > span for pw, pt in picked):
                picked.append((w, t))
            if len(picked) == n_snippets:
                break
        snippets = []
        for w, t in picked:
            lo, hi = max(0, t - span), min(T, t + 4)
            ids = inputs[w, lo:hi].tolist()
            snippets.append(Snippet([_text(tokenizer, i) for i in ids], acts[w, lo:hi, n].tolist(), t - lo))
        result.append(Neuron(n, float(peak[n]), snippets))
    return result


def _text(tokenizer, i: int) -> str:
    """A token as it reads in running text: spaces stay spaces, a newline shows as \\n."""
    return token_label(tokenizer, i).replace("␣", " ")


def neurons_table(neurons: list[Neuron], layer: int) -> str:
    """Each neuron's strongest snippets, the activating token [in brackets]."""
    lines = [f"layer {layer}: the neurons with the largest activations, and where they fire (the token in [brackets])"]
    for nr in neurons:
        lines.append(f"neuron {nr.index} (peak {nr.max_act:.2f})")
        for s in nr.snippets:
            text = "".join(s.tokens[: s.focus]) + f"[{s.tokens[s.focus]}]" + "".join(s.tokens[s.focus + 1 :])
            lines.append(f"  {s.acts[s.focus]:>7.2f}  {text}")
    return "\n".join(lines)


def plot_neurons(neurons: list[Neuron], layer: int, path) -> None:
    """Each snippet as a line of text, every token shaded by the neuron's activation, the peak boxed."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    lines = []  # (neuron or None for a title, snippet)
    for nr in neurons:
        lines.append((nr, None))
        lines += [(nr, s) for s in nr.snippets]
    width = max([sum(len(t) for t in s.tokens) for nr in neurons for s in nr.snippets] + [70]) + 4
    fig, ax = plt.subplots(figsize=(0.085 * width, 0.28 * len(lines) + 0.6), dpi=100)
    ax.set_xlim(0, width)
    ax.set_ylim(len(lines), 0)
    ax.axis("off")
    for y, (nr, s) in enumerate(lines):
        if s is None:
            ax.text(0, y + 0.7, f"neuron {nr.index} (peak {nr.max_act:.2f})", fontsize=9, weight="bold")
            continue
        x, scale = 2.0, max(nr.max_act, 1e-6)
        for i, (tok, a) in enumerate(zip(s.tokens, s.acts)):
            shade = min(1.0, max(0.0, a / scale))
            ax.add_patch(Rectangle((x, y + 0.1), len(tok), 0.8, color=(1.0, 0.55, 0.0, shade), lw=0, zorder=1))
            if i == s.focus:
                ax.add_patch(Rectangle((x, y + 0.1), len(tok), 0.8, fill=False, ec="k", lw=1, zorder=2))
            ax.text(x + len(tok) / 2, y + 0.7, tok, fontsize=9, family="monospace", ha="center", zorder=3)
            x += len(tok)
    ax.set_title(f"layer {layer}: strongest activations (orange = how strongly the neuron fires)", fontsize=10)
    fig.tight_layout()
    from minilab.files import atomic_write

    atomic_write(path, lambda f: fig.savefig(f, format="png"))
    plt.close(fig)
