"""What is inside a model file: its configuration, where its parameters are, its vocabulary, its history."""

import math

from minilab.model import GPT

COMPONENTS = [  # (label, test on the parameter name)
    ("token embedding (shared with the output head)", lambda n: n.startswith("tok_emb")),
    ("position embedding", lambda n: n.startswith("pos_emb")),
    ("attention (q, k, v and output projections)", lambda n: ".attn." in n),
    ("feed-forward", lambda n: ".mlp." in n),
    ("layer norms", lambda n: ".ln" in n or n.startswith("ln_f")),
]


def parameters_by_component(model: GPT) -> list[tuple[str, int]]:
    """Parameter counts grouped by what they do; the tied head is counted once, with the embedding."""
    counts = {label: 0 for label, _ in COMPONENTS}
    seen = set()
    for name, p in model.named_parameters():  # named_parameters yields a shared tensor only once
        if id(p) in seen:
            continue
        seen.add(id(p))
        label = next((label for label, match in COMPONENTS if match(name)), "other")
        counts[label] = counts.get(label, 0) + p.numel()
    return [(label, n) for label, n in counts.items() if n]


def describe(model: GPT, tokenizer, ckpt: dict | None) -> str:
    """A readable report of a checkpoint or export."""
    lines = ["model config:"]
    lines += [f"  {k}: {v}" for k, v in model.cfg.to_dict().items()]
    total = model.num_params()
    lines.append(f"parameters: {total:,}")
    for label, n in parameters_by_component(model):
        lines.append(f"  {label}: {n:,} ({100 * n / total:.1f}%)")
    lines.append(tokenizer.summary())  # char: the characters; BPE: the size and the first merges
    if ckpt is None:
        lines.append("training history: none (an exported model carries weights, config and tokenizer only)")
        return "\n".join(lines)
    args, run = ckpt.get("train_args") or {}, ckpt.get("run") or {}
    best = ckpt.get("best_val_loss", math.inf)
    lines.append("training history:")
    lines.append(
        f"  epoch {ckpt.get('epoch')} of {args.get('epochs')}, step {ckpt.get('step')}, "
        f"{run.get('tokens_seen', 0):,} tokens seen, {run.get('wall_time', 0.0):.1f}s of training"
    )
    if math.isfinite(best):
        lines.append(f"  best validation loss {best:.4f} (perplexity {math.exp(best):.2f})")
    lines.append(
        f"  data {args.get('data')!r}, batch {args.get('batch_size')}, lr {args.get('lr')}, "
        f"seed {args.get('seed')}, run {run.get('name')!r}"
    )
    return "\n".join(lines)
