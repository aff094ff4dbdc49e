"""What is inside a model file: its configuration, where its parameters are, its vocabulary, its history."""

import math

from minilab.model.gpt import GPT


def _is_norm(name: str) -> bool:
    return "norm" in name or ".ln" in name or name.startswith("ln_f")  # block norms, QK-norms, final norm


COMPONENTS = [  # (label, test on the parameter name); the first match wins
    ("token embedding", lambda n: n.startswith("tok_emb")),
    ("position embedding", lambda n: n.startswith("pos_emb")),
    ("norms", _is_norm),
    ("attention (q, k, v and output projections)", lambda n: ".attn." in n),
    ("feed-forward", lambda n: ".mlp." in n),
    ("output head", lambda n: n.startswith("lm_head")),
]


def parameters_by_component(model: GPT) -> list[tuple[str, int]]:
    """Parameter counts grouped by what they do; a tied head is counted once, with the embedding."""
    counts = {label: 0 for label, _ in COMPONENTS}
    seen = set()
    for name, p in model.named_parameters():  # named_parameters yields a shared tensor only once
        if id(p) in seen:
            continue
        seen.add(id(p))
        label = next((label for label, match in COMPONENTS if match(name)), "other")
        counts[label] = counts.get(label, 0) + p.numel()
    shared = "token embedding (shared with the output head)" if model.cfg.tie_embeddings else "token embedding"
    return [(shared if label == "token embedding" else label, n) for label, n in counts.items() if n]


def architecture(cfg) -> str:
    """The switches in one line, e.g. 'rope positions, rmsnorm, qk-norm, relu2 MLP, tied head'."""
    parts = [f"{cfg.pos_encoding} positions", cfg.norm]
    if cfg.qk_norm:
        parts.append("qk-norm")
    parts.append(f"{cfg.mlp} MLP" if cfg.mlp != "none" else "no MLP (attention only)")
    parts.append("tied head" if cfg.tie_embeddings else "untied head")
    parts.append("biases" if cfg.bias else "no biases")
    if cfg.logit_softcap:
        parts.append(f"logits soft-capped at {cfg.logit_softcap:g}")
    return ", ".join(parts)


def describe(model: GPT, tokenizer, ckpt: dict | None) -> str:
    """A readable report of a checkpoint or export."""
    lines = ["model config:"]
    lines += [f"  {k}: {v}" for k, v in model.cfg.to_dict().items()]
    lines.append(f"architecture: {architecture(model.cfg)}")
    total = model.num_params()
    lines.append(f"parameters: {total:,}")
    for label, n in parameters_by_component(model):
        lines.append(f"  {label}: {n:,} ({100 * n / total:.1f}%)")
    lines.append(tokenizer.summary())  # char: the characters; BPE: the size and the first merges
    if ckpt is None:
        lines.append("training history: none (an exported model carries weights, config and tokenizer only)")
        return "\n".join(lines)
    if "imported_from" in ckpt:  # `import` wrote it: the weights were trained elsewhere
        source = ckpt["imported_from"]
        lines.append(f"training history: none here (imported from {source.get('model_type')} {source.get('path')!r})")
        return "\n".join(lines)
    args, run = ckpt.get("train_args") or {}, ckpt.get("run") or {}
    best = ckpt.get("best_val_loss", math.inf)
    lines.append("training history:")
    lines.append(
        f"  epoch {ckpt.get('epoch')} "
        + (f"(time budget {args['time_budget']:g}s)" if args.get("time_budget") else f"of {args.get('epochs')}")
        + f", step {ckpt.get('step')}, "
        f"{run.get('tokens_seen', 0):,} tokens seen, {run.get('wall_time', 0.0):.1f}s of training"
    )
    if math.isfinite(best):
        prefix = run.get("val_prefix_tokens") or 0  # the in-training evaluations scored this many val tokens
        scope = f" on the first {prefix:,} validation tokens" if prefix else ""
        lines.append(f"  best validation loss {best:.4f}{scope} (perplexity {math.exp(best):.2f})")
    lines.append(
        f"  data {args.get('data')!r}, batch {args.get('batch_size')}, lr {args.get('lr')}, "
        f"optimizer {args.get('optimizer', 'adamw')}, schedule {args.get('schedule', 'cosine')}, "
        f"seed {args.get('seed')}, run {run.get('name')!r}"
    )
    if args.get("init_from"):
        lines.append(f"  fine-tuned from {args['init_from']!r}")
    conv = ckpt.get("conversations")  # a run on conversations (minilab/training/conversations.py)
    if isinstance(conv, dict):
        what = "the assistant's tokens only" if args.get("mask_loss", True) else "every token (no mask)"
        share = conv.get("trained", 0) / max(1, conv.get("targets", 1))
        lines.append(
            f"  {conv.get('train')} training and {conv.get('val')} validation conversations; the loss counts "
            f"{what}: {conv.get('trained'):,} of {conv.get('targets'):,} training targets ({100 * share:.1f}%)"
        )
    return "\n".join(lines)
