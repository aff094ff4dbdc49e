"""Plots: the loss curves of a run. matplotlib is imported lazily and draws off-screen (Agg)."""

from pathlib import Path


def plot_losses(rows: list[dict], path: str | Path, title: str = "") -> None:
    """Train loss per step and val loss per evaluation, against the optimizer step, into a PNG."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    train = [(r["step"], r["train_loss"]) for r in rows if r.get("train_loss") not in (None, "")]
    val = [(r["step"], r["val_loss"]) for r in rows if r.get("val_loss") not in (None, "")]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    if train:
        ax.plot(*zip(*train), label="train", linewidth=1, alpha=0.8)
    if val:
        ax.plot(*zip(*val), "o-", label="validation", linewidth=2, markersize=4)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("cross-entropy loss (nats per token)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if train or val:
        ax.legend()
    fig.tight_layout()
    from minilab.checkpoint import atomic_write

    atomic_write(path, lambda f: fig.savefig(f, format="png"))
    plt.close(fig)
