"""The token embeddings as a map: PCA down to 2-D, and each token's nearest neighbours by cosine similarity.

Tokens the model treats alike end up with similar embedding vectors: in a character model the
vowels, the capitals, the digits and the punctuation often form their own clusters.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from minilab.errors import LabError
from minilab.inside.windows import token_label


@dataclass
class EmbeddingMap:
    """The 2-D map of every token and how much of the embeddings' variance the two axes keep."""

    labels: list[str]  # one per token id
    coords: torch.Tensor  # (V, 2)
    explained: tuple[float, float]  # share of the variance along each axis


@torch.no_grad()
def embedding_map(model, tokenizer) -> EmbeddingMap:
    """PCA of the token embedding matrix (V, C): the two directions along which tokens differ most."""
    W = model.tok_emb.weight.detach().float().cpu()  # (V, C)
    centred = W - W.mean(dim=0)
    _, S, Vh = torch.linalg.svd(centred, full_matrices=False)  # principal directions are the rows of Vh
    coords = centred @ Vh[:2].T  # (V, 2)
    var = S.square() / S.square().sum().clamp_min(1e-12)
    explained = (float(var[0]), float(var[1]) if var.numel() > 1 else 0.0)
    labels = [token_label(tokenizer, i) for i in range(W.size(0))]
    return EmbeddingMap(labels, coords, explained)


def token_id(tokenizer, text: str) -> int:
    """The id of the single token spelled ``text``, or a LabError saying why there is none."""
    ids = tokenizer.encode(text)  # characters the model never saw: LabError
    if len(ids) != 1:
        raise LabError(f"--token {text!r} is {len(ids)} tokens for this model; give one token")
    return ids[0]


def default_tokens(tokenizer) -> list[str]:
    """A few common tokens to show neighbours of, those of ' etaoT.' the vocabulary has as single tokens."""
    found = []
    for c in "etaoT. ":
        try:
            if len(tokenizer.encode(c)) == 1:
                found.append(c)
        except LabError:
            continue
    return found or [tokenizer.decode_bytes([0]).decode("utf-8", "replace")]


@torch.no_grad()
def nearest(model, token: int, k: int) -> list[tuple[int, float]]:
    """The k tokens whose embeddings point most nearly the same way as ``token``'s: (id, cosine) pairs."""
    W = F.normalize(model.tok_emb.weight.detach().float().cpu(), dim=-1)  # (V, C), unit rows
    sims = W @ W[token]  # (V,)
    sims[token] = -2.0  # never its own neighbour
    values, ids = sims.topk(min(k, W.size(0) - 1))
    return list(zip(ids.tolist(), values.tolist()))


def neighbours_table(model, tokenizer, tokens: list[str], k: int) -> str:
    """One line per chosen token: its k nearest neighbours with their cosine similarity."""
    lines = [f"nearest neighbours by cosine similarity of the token embeddings (top {k})"]
    for text in tokens:
        tid = token_id(tokenizer, text)
        near = nearest(model, tid, k)
        label = lambda i: token_label(tokenizer, i)  # noqa: E731
        lines.append(f"{label(tid):>8}  " + "  ".join(f"{label(i)} {s:.2f}" for i, s in near))
    return "\n".join(lines)


def plot_embeddings(m: EmbeddingMap, path, max_labels: int = 250) -> None:
    """Every token as a point on the PCA map; up to ``max_labels`` labelled (the ones furthest from the centre)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    xy = m.coords.numpy()
    fig, ax = plt.subplots(figsize=(8, 7), dpi=100)
    ax.scatter(xy[:, 0], xy[:, 1], s=6, alpha=0.35)
    order = m.coords.norm(dim=1).argsort(descending=True)[:max_labels].tolist()
    for i in order:
        ax.text(xy[i, 0], xy[i, 1], m.labels[i], fontsize=8, ha="center", va="center")
    ax.set_xlabel(f"first principal component ({100 * m.explained[0]:.0f}% of the variance)")
    ax.set_ylabel(f"second principal component ({100 * m.explained[1]:.0f}%)")
    shown = "every token" if len(order) == len(m.labels) else f"{len(order)} of {len(m.labels)} tokens labelled"
    ax.set_title(f"token embeddings, PCA ({shown})")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    from minilab.files import atomic_write

    atomic_write(path, lambda f: fig.savefig(f, format="png"))
    plt.close(fig)
