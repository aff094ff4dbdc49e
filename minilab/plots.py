"""Plots: loss curves and attention maps. matplotlib is imported lazily and draws off-screen (Agg)."""

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
    from minilab.files import atomic_write

    atomic_write(path, lambda f: fig.savefig(f, format="png"))
    plt.close(fig)


def token_label(text: str) -> str:
    """A token as an axis label: newlines and tabs escaped, a space made visible."""
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r").replace(" ", "␣")


def bytes_label(data: bytes) -> str:
    """A token's bytes as an axis label; bytes that are only part of a character show as \\xNN.

    A BPE token can hold the first byte of a character and the next token the rest, so a token's
    bytes are not always text on their own.
    """
    text = data.decode("utf-8", "surrogateescape")  # an invalid byte b becomes the code point U+DC00 + b
    return "".join(f"\\x{ord(c) - 0xDC00:02x}" if 0xDC80 <= ord(c) <= 0xDCFF else c for c in token_label(text))


def plot_attention(
    maps: list, labels: list[str], path: str | Path, layer: int | None = None, head: int | None = None
) -> None:
    """Attention weights as heatmaps, one row per query token, one column per key token, into a PNG.

    ``maps`` is ``GPT.attention_maps`` for one sequence: n_layers tensors of (1, n_heads, T, T).
    With ``layer`` and ``head`` one large map; otherwise a grid of every layer (rows) x head (columns).
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    T = len(labels)
    if layer is not None:
        cells = [(layer, head)]
        rows, cols, size = 1, 1, max(5.0, 0.28 * T + 2)
    else:
        rows, cols = len(maps), maps[0].size(1)
        cells = [(i, h) for i in range(rows) for h in range(cols)]
        size = max(2.2, min(4.0, 0.12 * T + 1))
    fig, axes = plt.subplots(rows, cols, figsize=(size * cols, size * rows), dpi=100, squeeze=False)
    show_ticks = layer is not None or T <= 24
    fontsize = 10 if layer is not None else (8 if T <= 16 else 7)
    rotation = 0 if max(len(s) for s in labels) <= 2 else 90  # characters stand upright, words turn
    for ax, (i, h) in zip(axes.flat, cells):
        weights = maps[i][0, h].float().cpu().numpy()  # (T, T): row = query, column = key
        ax.imshow(weights, cmap="viridis", vmin=0.0, vmax=1.0, interpolation="nearest")
        ax.set_title(f"layer {i}, head {h}", fontsize=10 if layer is not None else 8)
        if show_ticks:
            ax.set_xticks(range(T), labels, rotation=rotation, fontsize=fontsize)
            ax.set_yticks(range(T), labels, fontsize=fontsize)
        else:
            ax.set_xticks([])
            ax.set_yticks([])
    if layer is not None:
        axes[0, 0].set_xlabel("key (the token looked at)")
        axes[0, 0].set_ylabel("query (the token looking)")
    fig.tight_layout()
    from minilab.files import atomic_write

    atomic_write(path, lambda f: fig.savefig(f, format="png"))
    plt.close(fig)


def check_png_path(path: str | Path, flag: str = "--out") -> Path:
    """An output path for a PNG: ends in .png, its directory exists, and it is not some other file."""
    from minilab.errors import LabError

    out = Path(path)
    if out.suffix.lower() != ".png":
        raise LabError(f"{flag} {str(path)!r}: give a file name ending in .png")
    if out.is_dir():
        raise LabError(f"{flag} {str(path)!r} is a directory")
    if not out.parent.is_dir():
        raise LabError(f"{flag} {str(path)!r}: its directory does not exist")
    if out.exists() and out.read_bytes()[:8] != b"\x89PNG\r\n\x1a\n":
        raise LabError(f"{flag} {str(path)!r} exists and is not a PNG; it is left alone (choose another name)")
    return out


def plot_comparison(runs: list, path: str | Path) -> None:
    """Validation loss of several runs against the optimizer step and against wall-clock seconds, into a PNG."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, (by_step, by_time) = plt.subplots(1, 2, figsize=(13, 4.8), dpi=100)
    palette = plt.get_cmap("tab10" if len(runs) <= 10 else "tab20")  # a distinct colour per run
    for i, run in enumerate(runs):
        steps, losses, walls = zip(*run.val)
        prefix = run.summary.get("val_prefix_tokens")  # in-training evaluations of the split's first tokens
        label = run.name + (f" (first {prefix:,} val tokens)" if prefix else "")
        style = dict(marker="o", markersize=3, linewidth=1.5, color=palette(i % palette.N), label=label)
        by_step.plot(steps, losses, **style)
        timed = [(w, v) for w, v in zip(walls, losses) if w is not None]  # runs from before wall_time have none
        if timed:
            by_time.plot(*zip(*timed), **style)
    by_step.set_xlabel("optimizer step")
    by_time.set_xlabel("wall-clock time (s)")
    for ax in (by_step, by_time):
        ax.set_ylabel("validation loss (nats per token)")
        ax.grid(alpha=0.3)
    by_time.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.tight_layout()
    from minilab.files import atomic_write

    atomic_write(path, lambda f: fig.savefig(f, format="png"))
    plt.close(fig)
