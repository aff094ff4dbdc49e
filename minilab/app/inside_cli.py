"""The look-inside commands: ``lens``, ``ablate``, ``embeddings``, ``neurons`` and ``induction``.

Each prints a table and, with ``--out FILE.png``, draws it. The maths lives in minilab/inside/;
this module only checks the flags, loads the model and prints. flags.py adds the parsers below.
"""

import argparse

from minilab.errors import LabError


def add_parsers(sub, flag) -> None:
    """The subcommands' flags, added to the main parser's ``sub`` with flags.py's ``flag`` helper."""
    ckpt = dict(metavar="CKPT", required=True, help="checkpoint file or export directory")
    png = dict(metavar="FILE.png", default=None, help="also draw it into this PNG")
    cap = "predicted tokens of the text used, spread over it"

    p = sub.add_parser("lens", help="logit lens: what each layer already predicts for a prompt", allow_abbrev=False)
    flag(p, "checkpoint", **ckpt)
    flag(p, "prompt", required=True, help="the text to read (2 tokens up to the model's context)")
    flag(p, "out", **png)

    p = sub.add_parser(
        "ablate", help="remove each attention head (or MLP) in turn: the rise in loss", allow_abbrev=False
    )
    flag(p, "checkpoint", **ckpt)
    flag(p, "data", metavar="FILE", required=True, help="UTF-8 text to score the model on")
    flag(p, "mlp", action="store_true", help="ablate each layer's MLP instead of each head")
    flag(p, "max_tokens", type=int, default=4096, help=f"{cap} (default 4096)")
    flag(p, "out", **png)

    p = sub.add_parser(
        "embeddings", help="the token embeddings on a 2-D map, and nearest neighbours", allow_abbrev=False
    )
    flag(p, "checkpoint", **ckpt)
    flag(p, "token", action="append", default=[], metavar="TEXT", help="show this token's neighbours (repeatable)")
    flag(p, "k", type=int, default=8, help="neighbours per token (default 8)")
    flag(p, "out", **png)

    p = sub.add_parser("neurons", help="the MLP neurons that fire hardest on a text, and on what", allow_abbrev=False)
    flag(p, "checkpoint", **ckpt)
    flag(p, "data", metavar="FILE", required=True, help="UTF-8 text to run the model on")
    flag(p, "layer", type=int, required=True, help="which layer's MLP (from 0)")
    flag(p, "top", type=int, default=5, help="neurons to show (default 5)")
    flag(p, "snippets", type=int, default=4, help="snippets per neuron (default 4)")
    flag(p, "max_tokens", type=int, default=16384, help=f"{cap} (default 16384)")
    flag(p, "out", **png)

    p = sub.add_parser(
        "induction", help="train a 2-layer attention-only model and watch induction heads form", allow_abbrev=False
    )
    flag(p, "steps", type=int, default=None, help="training steps (default: the 'induction' preset's)")
    flag(p, "eval_every", type=int, default=100, help="measure the loss and head scores every N steps (default 100)")
    flag(p, "seed", type=int, default=0, help="random seed (default 0)")
    flag(p, "threads", type=int, default=0, help="CPU threads, 0 = one per core (default 0)")
    flag(p, "write_data", metavar="FILE", default=None, help="only write 1 MB of the training text here and stop")
    flag(p, "out", **png)


def _load(args):
    from minilab.checkpoint import load_model

    model, tokenizer, _ = load_model(args.checkpoint)
    return model, tokenizer


def _png(args):
    from minilab.plots import check_png_path

    return check_png_path(args.out) if args.out is not None else None


def _windows(args, model, tokenizer):
    from minilab.inside.windows import text_windows
    from minilab.training.data import read_text

    return text_windows(tokenizer, read_text(args.data), model.cfg.context_length, args.max_tokens)


def cmd_lens(args: argparse.Namespace) -> int:
    from minilab.inside.lens import lens_table, plot_lens, read_prompt

    out = _png(args)
    model, tokenizer = _load(args)
    reading = read_prompt(model, tokenizer, args.prompt)
    print(lens_table(reading))
    if out is not None:
        plot_lens(reading, out)
        print(f"wrote {out}")
    return 0


def cmd_ablate(args: argparse.Namespace) -> int:
    from minilab.inside.ablate import ablate_heads, ablate_mlps, ablation_table, plot_ablation

    out = _png(args)
    model, tokenizer = _load(args)
    windows = _windows(args, model, tokenizer)
    result = ablate_mlps(model, windows) if args.mlp else ablate_heads(model, windows)
    print(ablation_table(result, mlp=args.mlp))
    if out is not None:
        plot_ablation(result, out, mlp=args.mlp)
        print(f"wrote {out}")
    return 0


def cmd_embeddings(args: argparse.Namespace) -> int:
    from minilab.inside.embeddings import default_tokens, embedding_map, neighbours_table, plot_embeddings

    if not 1 <= args.k <= 1000:
        raise LabError(f"--k must be between 1 and 1000, got {args.k}")
    out = _png(args)
    model, tokenizer = _load(args)
    # '\n' typed on a command line means a newline token (and '\t' a tab).
    tokens = [t.replace("\\n", "\n").replace("\\t", "\t") for t in args.token] or default_tokens(tokenizer)
    print(neighbours_table(model, tokenizer, tokens, args.k))
    m = embedding_map(model, tokenizer)
    print(f"PCA map: the two axes keep {100 * m.explained[0]:.1f}% and {100 * m.explained[1]:.1f}% of the variance")
    if out is not None:
        plot_embeddings(m, out)
        print(f"wrote {out}")
    return 0


def cmd_neurons(args: argparse.Namespace) -> int:
    from minilab.inside.neurons import neurons_table, plot_neurons, top_neurons

    for name in ("top", "snippets"):
        if not 1 <= getattr(args, name) <= 100:
            raise LabError(f"--{name} must be between 1 and 100, got {getattr(args, name)}")
    out = _png(args)
    model, tokenizer = _load(args)
    if not 0 <= args.layer < model.cfg.n_layers:
        raise LabError(f"--layer {args.layer}: this model has layers 0..{model.cfg.n_layers - 1}")
    windows = _windows(args, model, tokenizer)
    found = top_neurons(model, tokenizer, windows, args.layer, args.top, args.snippets)
    print(neurons_table(found, args.layer))
    if out is not None:
        plot_neurons(found, args.layer, out)
        print(f"wrote {out}")
    return 0


def cmd_induction(args: argparse.Namespace) -> int:
    import torch

    from minilab.app.settings import PRESETS
    from minilab.files import atomic_write
    from minilab.inside.induction import ALPHABET, plot_induction, repeated_text, train_induction
    from minilab.model.config import ModelConfig

    recipe = PRESETS["induction"]
    if args.write_data is not None:
        text = repeated_text(1_000_000, args.seed, recipe["context_length"])
        atomic_write(args.write_data, lambda f: f.write(text.encode()))
        print(f"wrote {args.write_data}; train on it with: mini-transformer-lab train --preset induction --data ...")
        return 0
    out = _png(args)
    if not 0 <= args.threads <= 1024:
        raise LabError(f"--threads must be between 0 and 1024, got {args.threads}")
    if args.threads:
        torch.set_num_threads(args.threads)
    model_keys = {f for f in ModelConfig.__dataclass_fields__} - {"vocab_size"}
    cfg = ModelConfig(vocab_size=len(ALPHABET), **{k: v for k, v in recipe.items() if k in model_keys})
    steps = args.steps if args.steps is not None else recipe["steps_per_epoch"] * recipe["epochs"]
    run = train_induction(
        cfg, steps, recipe["batch_size"], recipe["lr"], args.eval_every, args.seed, recipe["warmup_steps"]
    )
    if out is not None:
        plot_induction(run, out)
        print(f"wrote {out}")
    return 0


COMMANDS = {
    "lens": cmd_lens,
    "ablate": cmd_ablate,
    "embeddings": cmd_embeddings,
    "neurons": cmd_neurons,
    "induction": cmd_induction,
}
