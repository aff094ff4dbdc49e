"""Ablation: remove one head (or one MLP) at a time and see how much worse the model predicts the text.

Zero ablation sets the part's output to 0; mean ablation sets it to its average over the text, which
keeps the constant part of what it writes and removes only the information it carries per token.
A large rise in loss means the model relies on that part.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from minilab.inside.hooks import hooks, replace_all, replace_head, zero_head


@dataclass
class Ablation:
    """Loss on the text with nothing removed, and its rise when each part is removed."""

    base_loss: float
    zero: torch.Tensor  # (n_layers, n_heads) or (n_layers,) for MLPs: loss(ablated) - base_loss
    mean: torch.Tensor  # same shape, mean ablation
    tokens: int  # predicted tokens scored


@torch.no_grad()
def text_loss(model, windows: torch.Tensor, batch_size: int = 16) -> float:
    """Mean next-token cross-entropy over windows (N, T + 1), in float64 so tiny changes survive the sum."""
    total, count = 0.0, 0
    for chunk in windows.split(batch_size):
        logits, _ = model(chunk[:, :-1])  # (b, T, V)
        loss = F.cross_entropy(logits.flatten(0, 1).double(), chunk[:, 1:].flatten(), reduction="sum")
        total, count = total + loss.item(), count + chunk[:, 1:].numel()
    return total / count


@torch.no_grad()
def mean_activations(model, windows: torch.Tensor, names: list[str], batch_size: int = 16) -> dict[str, torch.Tensor]:
    """The average of each named hook point's tensor over the batch and positions: (nh, hs) for heads, (C,) else."""
    sums: dict[str, torch.Tensor] = {}
    count = 0

    def adder(name):
        def fn(x):
            dims = (0, 2) if x.dim() == 4 else (0, 1)  # heads (B, nh, T, hs) -> (nh, hs); (B, T, C) -> (C,)
            sums[name] = sums.get(name, 0) + x.double().sum(dim=dims)
            return x

        return fn

    with hooks(model, {name: adder(name) for name in names}, edits=False):
        for chunk in windows.split(batch_size):
            model(chunk[:, :-1])
            count += chunk[:, :-1].numel()  # B * T positions
    return {name: (s / count).float() for name, s in sums.items()}


def ablate_heads(model, windows: torch.Tensor) -> Ablation:
    """Each head of each layer zeroed, then set to its mean, in turn: (n_layers, n_heads) loss rises."""
    cfg = model.cfg
    base = text_loss(model, windows)
    names = [f"blocks.{i}.attn.heads" for i in range(cfg.n_layers)]
    means = mean_activations(model, windows, names)
    zero, mean = torch.zeros(cfg.n_layers, cfg.n_heads), torch.zeros(cfg.n_layers, cfg.n_heads)
    for i, name in enumerate(names):
        for h in range(cfg.n_heads):
            with hooks(model, {name: zero_head(h)}):
                zero[i, h] = text_loss(model, windows) - base
            with hooks(model, {name: replace_head(h, means[name][h])}):
                mean[i, h] = text_loss(model, windows) - base
    return Ablation(base, zero, mean, windows[:, 1:].numel())


def ablate_mlps(model, windows: torch.Tensor) -> Ablation:
    """Each layer's MLP output zeroed, then set to its mean, in turn: (n_layers,) loss rises."""
    from minilab.errors import LabError

    if model.cfg.mlp == "none":
        raise LabError("this model is attention-only (mlp 'none'): it has no MLPs to ablate")
    base = text_loss(model, windows)
    names = [f"blocks.{i}.mlp.out" for i in range(model.cfg.n_layers)]
    means = mean_activations(model, windows, names)
    zero, mean = torch.zeros(len(names)), torch.zeros(len(names))
    for i, name in enumerate(names):
        with hooks(model, {name: replace_all(0.0)}):
            zero[i] = text_loss(model, windows) - base
        with hooks(model, {name: replace_all(means[name])}):
            mean[i] = text_loss(model, windows) - base
    return Ablation(base, zero, mean, windows[:, 1:].numel())


def ablation_table(a: Ablation, mlp: bool = False) -> str:
    """The loss rises as a table: one row per layer, one column per head (or zero/mean for MLPs)."""
    lines = [f"loss with nothing removed: {a.base_loss:.4f} nats/token over {a.tokens:,} tokens"]
    if mlp:
        lines.append(f"{'layer':>5}  {'zeroed':>8}  {'mean':>8}   (rise in loss when the MLP is removed)")
        lines += [f"{i:>5}  {z:>+8.4f}  {m:>+8.4f}" for i, (z, m) in enumerate(zip(a.zero.tolist(), a.mean.tolist()))]
        return "\n".join(lines)
    n_heads = a.zero.size(1)
    for title, table in (("zeroed", a.zero), ("mean-ablated", a.mean)):
        lines.append(f"rise in loss when one head is {title} (rows: layers, columns: heads)")
        lines.append(f"{'layer':>5}" + "".join(f"{'head ' + str(h):>10}" for h in range(n_heads)))
        lines += [f"{i:>5}" + "".join(f"{v:>+10.4f}" for v in row) for i, row in enumerate(table.tolist())]
    top = sorted(((v, i, h) for i, row in enumerate(a.mean.tolist()) for h, v in enumerate(row)), reverse=True)[:3]
    lines.append("most important (mean ablation): " + ", ".join(f"layer {i} head {h} ({v:+.4f})" for v, i, h in top))
    return "\n".join(lines)


def plot_ablation(a: Ablation, path, mlp: bool = False) -> None:
    """The loss rises as heatmaps (layers x heads), zeroed beside mean-ablated; for MLPs, bars per layer."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    if mlp:
        fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
        x = torch.arange(a.zero.numel()).float()
        ax.bar(x - 0.2, a.zero.numpy(), 0.4, label="zeroed")
        ax.bar(x + 0.2, a.mean.numpy(), 0.4, label="mean-ablated")
        ax.set_xticks(x.tolist(), [f"layer {i}" for i in range(a.zero.numel())])
        ax.set_ylabel("rise in loss (nats/token)")
        ax.set_title(f"MLP ablation (base loss {a.base_loss:.3f})")
        ax.legend()
        axes = [ax]
    else:
        L, H = a.zero.shape
        fig, axes = plt.subplots(1, 2, figsize=(2 * (1.6 + 0.6 * H), 1.4 + 0.55 * L), dpi=100)
        top = max(float(a.zero.max()), float(a.mean.max()), 1e-6)
        for ax, table, title in ((axes[0], a.zero, "zeroed"), (axes[1], a.mean, "mean-ablated")):
            im = ax.imshow(table.numpy(), cmap="magma_r", vmin=min(0.0, float(table.min())), vmax=top, aspect="auto")
            for i in range(L):
                for h in range(H):
                    ax.text(h, i, f"{table[i, h]:.3f}", ha="center", va="center", fontsize=7, color="tab:blue")
            ax.set_xticks(range(H), [str(h) for h in range(H)])
            ax.set_yticks(range(L), [str(i) for i in range(L)])
            ax.set_xlabel("head")
            ax.set_ylabel("layer")
            ax.set_title(f"head {title}", fontsize=10)
        fig.colorbar(im, ax=list(axes), label="rise in loss (nats/token)", fraction=0.05)
        fig.suptitle(f"head ablation (base loss {a.base_loss:.3f})", fontsize=10)
    from minilab.files import atomic_write

    atomic_write(path, lambda f: fig.savefig(f, format="png", bbox_inches="tight"))
    plt.close(fig)
