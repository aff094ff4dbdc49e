"""The induction-head experiment (Olsson et al. 2022): watch a 2-layer attention-only model learn to copy.

Each training sequence is random tokens in which a random segment is followed at once by its copy.
The first copy cannot be predicted; the second can, once the model has two heads working together:
a previous-token head (layer 0: each position looks one back, so it knows the token before it) and
an induction head (layer 1: look for an earlier occurrence of the current token and read what came
after it). They form suddenly: the loss on the repeated half drops in a few hundred steps, the
phase change. The induction score of a head is its attention, on a sequence repeated twice, from
each token of the second copy to the token after its first occurrence.
"""

import string
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from minilab.errors import LabError

ALPHABET = string.ascii_letters + string.digits + "+/"  # 64 characters (base64's): the experiment's vocabulary


def repeated_sequences(batch: int, T: int, vocab: int, generator: torch.Generator):
    """Sequences of T tokens: random filler around a random segment that is followed at once by its copy.

    Each sequence draws its own segment length (T/4 to T/2), so its own distance between the two
    copies (a head that looks a fixed number of tokens back cannot solve it), and its own place for
    the pair (nothing about the positions says where the copy is). The segment's tokens are distinct,
    so each of them occurs once in it: the token after its first occurrence is unambiguous.
    Returns (tokens (batch, T), first (batch,): where the first copy starts, length (batch,)).
    """
    if not (4 <= T and T // 2 <= vocab):
        raise LabError(f"repeated sequences need T >= 4 and a vocabulary of at least T/2 tokens, got T={T}, {vocab}")
    length = torch.randint(T // 4, T // 2 + 1, (batch,), generator=generator)
    tokens = torch.randint(0, vocab, (batch, T), generator=generator)
    first = torch.zeros(batch, dtype=torch.long)
    for b in range(batch):
        m = int(length[b])
        f = int(torch.randint(0, T - 2 * m + 1, (1,), generator=generator))
        segment = torch.randperm(vocab, generator=generator)[:m]  # m distinct tokens
        tokens[b, f : f + m] = tokens[b, f + m : f + 2 * m] = segment
        first[b] = f
    return tokens, first, length


def repeated_text(n_chars: int, seed: int = 0, line: int = 64) -> str:
    """The training data as text, one sequence of ``line`` letters a line: what ``train --preset induction`` reads."""
    rows = -(-n_chars // line)  # ceil: whole lines, trimmed below
    tokens, _, _ = repeated_sequences(rows, line, len(ALPHABET), torch.Generator().manual_seed(seed))
    text = "".join(ALPHABET[i] for i in tokens.flatten().tolist())[:n_chars]
    return "\n".join(text[i : i + line] for i in range(0, len(text), line)) + "\n"


def induction_scores(pattern: torch.Tensor, first, length) -> torch.Tensor:
    """Per head, the mean attention from each token of the second copy to the token after its first occurrence.

    ``pattern`` (B, nh, T, T); the first copy starts at ``first`` and is ``length`` long (ints, or one per
    sequence). At query q of the second copy the current token first occurred at q - length; the
    token after it, at q - length + 1, is the one to copy. A perfect induction head scores 1; a head
    spreading its attention evenly scores about 0. Returns (nh,).
    """
    B, T = pattern.size(0), pattern.size(-1)
    first, length = torch.as_tensor(first).expand(B), torch.as_tensor(length).expand(B)
    total, count = torch.zeros(pattern.size(1)), 0
    for b in range(B):
        start, m = int(first[b]) + int(length[b]), int(length[b])
        queries = torch.arange(start, min(start + m, T))  # the second copy, as far as the pattern reaches
        total += pattern[b, :, queries, queries - m + 1].float().sum(-1)
        count += queries.numel()
    return total / max(count, 1)


def previous_token_scores(pattern: torch.Tensor) -> torch.Tensor:
    """Per head, the mean attention from each query to the token just before it. (B, nh, T, T) -> (nh,)"""
    queries = torch.arange(1, pattern.size(-1))
    return pattern[:, :, queries, queries - 1].mean(dim=(0, 2))


@dataclass
class InductionRun:
    """What was measured every ``eval_every`` steps, and the trained model."""

    steps: list[int] = field(default_factory=list)
    first_half: list[float] = field(default_factory=list)  # loss predicting the random first copy
    second_half: list[float] = field(default_factory=list)  # loss predicting the repeated second copy
    scores: list[torch.Tensor] = field(default_factory=list)  # (n_layers, n_heads) induction scores
    prev_scores: list[torch.Tensor] = field(default_factory=list)  # (n_layers, n_heads) previous-token scores
    model: object = None
    test: tuple | None = None  # the held-out sequences: (tokens, first, length) from repeated_sequences


@torch.no_grad()
def measure(model, test) -> tuple[float, float, torch.Tensor, torch.Tensor]:
    """(loss on the first copy, loss on the second copy, induction scores, previous-token scores) on
    ``test``, what ``repeated_sequences`` returns."""
    tokens, first, length = test
    logits, cache = model.run_with_cache(tokens[:, :-1])
    loss = F.cross_entropy(logits.transpose(1, 2), tokens[:, 1:], reduction="none")  # (B, T - 1)
    # Position t predicts token t + 1. The first copy's tokens after its first are random; the second
    # copy's tokens after its first can be copied (its first token starts the copy, and nothing says so).
    t = torch.arange(loss.size(1))
    f, m = first.unsqueeze(1), length.unsqueeze(1)  # (B, 1)
    in_first = (t >= f) & (t <= f + m - 2)
    in_second = (t >= f + m) & (t <= f + 2 * m - 2)
    first_loss, second_loss = loss[in_first].mean().item(), loss[in_second].mean().item()
    patterns = [cache[f"blocks.{i}.attn.pattern"] for i in range(model.cfg.n_layers)]
    scores = torch.stack([induction_scores(p, first, length) for p in patterns])
    prev = torch.stack([previous_token_scores(p) for p in patterns])
    return first_loss, second_loss, scores, prev


def train_induction(
    cfg, steps: int, batch_size: int, lr: float, eval_every: int, seed: int, warmup: int = 100, log=print
) -> InductionRun:
    """Train a fresh model of ``cfg`` on repeated random segments, measuring every ``eval_every`` steps.

    AdamW without weight decay, the learning rate warmed up linearly over ``warmup`` steps, then constant."""
    from minilab.model.gpt import GPT

    if steps < 1 or eval_every < 1 or batch_size < 1:
        raise LabError("--steps, --eval_every and --batch_size must be at least 1")
    if warmup < 0:
        raise LabError(f"warmup must be at least 0, got {warmup}")
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = GPT(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.0)
    T = cfg.context_length
    # T + 1 tokens: the model reads the first T and predicts the last T
    test = repeated_sequences(64, T + 1, cfg.vocab_size, torch.Generator().manual_seed(seed + 1))
    run = InductionRun(model=model, test=test)
    for step in range(steps + 1):
        if step % eval_every == 0 or step == steps:
            model.eval()
            first, second, scores, prev = measure(model, test)
            run.steps.append(step), run.first_half.append(first), run.second_half.append(second)
            run.scores.append(scores), run.prev_scores.append(prev)
            best, prev_best = divmod(int(scores.argmax()), cfg.n_heads), divmod(int(prev.argmax()), cfg.n_heads)
            log(
                f"step {step:>5} | loss first copy {first:.3f} | repeated copy {second:.3f} | "
                f"best induction head L{best[0]}H{best[1]} {scores.max():.2f} | "
                f"best previous-token head L{prev_best[0]}H{prev_best[1]} {prev.max():.2f}"
            )
            model.train()
        if step == steps:
            break
        # Fresh sequences every step, each holding a whole segment and its copy: a window that split
        # the pair would give the model nothing to copy from.
        data, _, _ = repeated_sequences(batch_size, T + 1, cfg.vocab_size, gen)  # (B, T + 1)
        inputs, targets = data[:, :-1].contiguous(), data[:, 1:].contiguous()
        for group in opt.param_groups:
            group["lr"] = lr * min(1.0, (step + 1) / max(warmup, 1))
        _, loss = model(inputs, targets)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval()
    return run


def plot_induction(run: InductionRun, path) -> None:
    """Four panels: the two losses, every head's induction score, then the patterns of the best induction
    head and the best previous-token head on one test sequence."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    model, cfg = run.model, run.model.cfg
    fig, axes = plt.subplots(2, 2, figsize=(11, 9), dpi=80)
    ax = axes[0, 0]
    ax.plot(run.steps, run.first_half, label="first copy (random: cannot be learned)")
    ax.plot(run.steps, run.second_half, label="repeated copy (needs an induction head)")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats/token)")
    ax.set_title("loss on the test sequences")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    ax = axes[0, 1]
    scores = torch.stack(run.scores)  # (evals, n_layers, n_heads)
    for i in range(cfg.n_layers):
        for h in range(cfg.n_heads):
            ax.plot(run.steps, scores[:, i, h], "-" if i == cfg.n_layers - 1 else "--", label=f"L{i}H{h}")
    ax.set_xlabel("step")
    ax.set_ylabel("induction score")
    ax.set_ylim(0, 1)
    ax.set_title("induction score of every head")
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    _, cache = model.run_with_cache(run.test[0][:1, :-1])
    best_ind = divmod(int(run.scores[-1].argmax()), cfg.n_heads)
    prev = run.prev_scores[-1].clone()
    prev[best_ind] = -1.0  # the best previous-token head among the other heads
    best_prev = divmod(int(prev.argmax()), cfg.n_heads)
    scored = (
        (axes[1, 0], best_ind, "induction", run.scores),
        (axes[1, 1], best_prev, "previous-token", run.prev_scores),
    )
    for ax, (i, h), what, scores in scored:
        ax.imshow(cache[f"blocks.{i}.attn.pattern"][0, h].numpy(), cmap="viridis", vmin=0, vmax=1)
        ax.set_title(f"layer {i} head {h}: best {what} score ({scores[-1][i, h]:.2f})", fontsize=10)
        ax.set_xlabel("key (the token looked at)")
        ax.set_ylabel("query (the token looking)")
    fig.suptitle("the induction-head experiment: 2 attention-only layers on repeated random text", fontsize=11)
    fig.tight_layout()
    from minilab.files import atomic_write

    atomic_write(path, lambda f: fig.savefig(f, format="png"))
    plt.close(fig)
