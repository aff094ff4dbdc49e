"""Every command's flags: the argparse parser of ``mini-transformer-lab`` (minilab/app/cli.py runs the commands).

Every flag is accepted with underscores (``--batch_size``, as the seed writes them) and with
dashes (``--batch-size``). Training flags default to "not given" so that a resumed run, a preset
and a config file can tell them apart from defaults.
"""

import argparse
from dataclasses import MISSING, fields

from minilab.app.settings import PRESETS
from minilab.model.config import MLPS, NORMS, POS_ENCODINGS
from minilab.tokenizers.char import TOKENIZERS
from minilab.training.config import OPTIMIZERS, SCHEDULES, TrainConfig


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not argparse's usage block
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _flag(parser, name: str, **kwargs) -> None:
    """Add ``--name`` and, if it has underscores, ``--name-with-dashes`` for the same setting."""
    names = [f"--{name}"] + ([f"--{name.replace('_', '-')}"] if "_" in name else [])
    parser.add_argument(*names, dest=name, **kwargs)


def _switch(parser, name: str, help: str) -> None:
    """An on/off setting: ``--name`` turns it on, ``--no_name`` off (each also with dashes)."""
    dashed = name.replace("_", "-")
    on = [f"--{name}"] + ([f"--{dashed}"] if dashed != name else [])
    off = [f"--no_{name}", f"--no-{dashed}"]
    parser.add_argument(*on, dest=name, action="store_const", const=True, default=argparse.SUPPRESS, help=help)
    parser.add_argument(*off, dest=name, action="store_const", const=False, default=argparse.SUPPRESS)


def _default(cls, name):
    f = next(f for f in fields(cls) if f.name == name)
    return f.default if f.default is not MISSING else None


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="mini-transformer-lab",
        allow_abbrev=False,
        description="Train a small GPT-style language model on your text and generate from it.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    t = sub.add_parser("train", help="train a model on a text file (or resume training)", allow_abbrev=False)
    # SUPPRESS: only the flags the user typed appear, so a resume can tell them from defaults.
    s = argparse.SUPPRESS
    _flag(t, "data", metavar="FILE", default=s, help="UTF-8 text file, or a directory made by `prepare` (required)")
    _flag(t, "resume", metavar="CKPT", default=s, help="continue training from this checkpoint")
    _flag(t, "preset", choices=PRESETS, default=s, help="start from a named recipe (flags and --config override it)")
    _flag(t, "config", metavar="FILE", default=s, help="settings from a .toml or .json file (flags override it)")
    _flag(t, "epochs", type=int, default=s, help="train until this epoch (default 10)")
    _flag(t, "batch_size", type=int, default=s, help="sequences per step, 0 = auto (32; fewer for a tiny text)")
    _flag(t, "steps_per_epoch", type=int, default=s, help="steps per epoch, 0 = auto (one pass over the text, >= 50)")
    _flag(t, "lr", type=float, default=s, help=f"peak learning rate (default {_default(TrainConfig, 'lr')})")
    _flag(t, "min_lr_ratio", type=float, default=s, help="final lr as a fraction of --lr (default 0.1)")
    _flag(t, "warmup_steps", type=int, default=s, help="linear warmup steps, -1 = auto (10%% of steps, <= 100)")
    _flag(t, "weight_decay", type=float, default=s, help="AdamW weight decay (default 0.1)")
    _flag(t, "grad_clip", type=float, default=s, help="clip gradient norm to this, 0 = off (default 1.0)")
    _flag(t, "val_fraction", type=float, default=s, help="share of the text held out (default 0.1)")
    _flag(t, "seed", type=int, default=s, help="random seed for a reproducible run (default 1337)")
    _flag(t, "device", default=s, help="auto | cpu | cuda | mps (default auto: cuda, then mps, then cpu)")
    _flag(t, "out_dir", metavar="DIR", default=s, help="where checkpoints go (default checkpoints)")
    _flag(t, "experiments_dir", metavar="DIR", default=s, help="where run logs go (default experiments)")
    _flag(t, "run_name", default=s, help="name of this run's experiment folder (default: time and data name)")
    _flag(t, "sample_length", type=int, default=s, help="tokens sampled into samples.txt per epoch, 0 = none (200)")
    _flag(t, "grad_accum", type=int, default=s, help="micro-batches per optimizer step (default 1)")
    _flag(t, "compile", action="store_true", default=s, help="torch.compile the model for training")
    _flag(t, "eval_tokens", type=int, default=s, help="validation tokens scored per epoch, 0 = all (1000000)")
    _flag(t, "save_every_steps", type=int, default=s, help="also save checkpoint.pt every N steps (default 0 = off)")
    _flag(t, "keep_last", type=int, default=s, help="keep only the newest K checkpoint_epoch_N.pt (default 0 = all)")
    _flag(t, "optimizer", choices=OPTIMIZERS, default=s, help="adamw, or muon for the blocks' weight matrices (adamw)")
    _flag(t, "schedule", choices=SCHEDULES, default=s, help="lr after warmup: cosine, wsd or constant (cosine)")
    _flag(
        t,
        "time_budget",
        type=float,
        metavar="SECONDS",
        default=s,
        help="train for this much wall clock instead of --epochs, the lr schedule laid out over it (default 0 = off)",
    )
    _switch(t, "tensorboard", "also log losses, lr and tokens/s for TensorBoard if it is installed (default off)")
    _flag(t, "threads", type=int, default=s, help="CPU threads for training, 0 = one per core (default 0)")
    _flag(t, "context_length", type=int, default=s, help="tokens the model attends over (default 256)")
    _flag(t, "d_model", type=int, default=s, help="model width (default 256)")
    _flag(t, "n_heads", type=int, default=s, help="attention heads (default 8)")
    _flag(t, "n_layers", type=int, default=s, help="transformer blocks (default 4)")
    _flag(t, "d_ff", type=int, default=s, help="feed-forward hidden width (default 1024)")
    _flag(t, "dropout", type=float, default=s, help="dropout rate (default 0.1)")
    _flag(t, "pos_encoding", choices=POS_ENCODINGS, default=s, help="position encoding (default sinusoidal)")
    _flag(t, "tokenizer", choices=TOKENIZERS, default=s, help="char (default: one token per character) or bpe")
    _flag(t, "vocab_size", type=int, default=s, help="with --tokenizer bpe: 256 bytes + merges to learn (default 512)")
    _flag(t, "norm", choices=NORMS, default=s, help="normalisation in every block (default layernorm)")
    _switch(t, "qk_norm", "normalise queries and keys per head before attention (default off)")
    _flag(
        t,
        "mlp",
        choices=MLPS,
        default=s,
        help="feed-forward activation (default gelu); swiglu uses a hidden width of 2/3 d_ff, "
        "so the parameter count stays about the same",
    )
    _switch(t, "tie_embeddings", "share the token embedding with the output head (default on; --no_tie_embeddings)")
    _switch(t, "bias", "biases in linear layers and layer norms (default on; --no_bias)")
    _flag(t, "logit_softcap", type=float, default=s, metavar="C", help="logits = C tanh(logits / C), 0 = off (0)")

    g = sub.add_parser("generate", help="generate text from a checkpoint", allow_abbrev=False)
    _flag(
        g,
        "checkpoint",
        metavar="CKPT",
        required=True,
        help="checkpoint file; a bare name is also looked for in checkpoints/",
    )
    _flag(g, "prompt", default=None, help="text to continue (default: start from a newline)")
    _flag(g, "prompt_file", metavar="FILE", default=None, help="read the prompt from a UTF-8 text file")
    _flag(
        g,
        "stop",
        action="append",
        default=[],
        metavar="TEXT",
        help="end a sample at this string (repeatable; escapes like \\n work)",
    )
    _flag(
        g,
        "interactive",
        action="store_true",
        help="keep the model loaded and answer each line typed (/help lists commands)",
    )
    _flag(g, "max_new_tokens", type=int, default=200, help="tokens to generate (default 200)")
    _flag(
        g,
        "temperature",
        type=float,
        default=0.8,
        help="above 1 flattens the distribution (more random), below 1 sharpens it; 0 = greedy (default 0.8)",
    )
    _flag(g, "top_k", type=int, default=0, help="keep only the k most likely tokens, 0 = off (default 0)")
    _flag(g, "top_p", type=float, default=1.0, help="keep the smallest set reaching probability p (default 1.0)")
    _flag(g, "num_samples", type=int, default=1, help="how many continuations, generated as one batch (default 1)")
    _flag(g, "seed", type=int, default=None, help="random seed (default: different each run)")
    _flag(g, "device", default="auto", help="auto | cpu | cuda | mps (default auto)")

    i = sub.add_parser("info", help="show a model's config, parameters, vocabulary and history", allow_abbrev=False)
    _flag(i, "checkpoint", metavar="CKPT", required=True, help="checkpoint file or export directory")

    e = sub.add_parser("eval", help="validation loss of a model on a text file", allow_abbrev=False)
    _flag(e, "checkpoint", metavar="CKPT", required=True, help="checkpoint file or export directory")
    _flag(e, "data", metavar="FILE", required=True, help="UTF-8 text file")
    _flag(
        e,
        "val_fraction",
        type=float,
        default=None,
        help="score the last part of the text (default: the checkpoint's, else 0.1); 1 = the whole text",
    )
    _flag(e, "batch_size", type=int, default=32, help="windows per forward pass (default 32)")
    _flag(e, "device", default="auto", help="auto | cpu | cuda | mps (default auto)")

    p = sub.add_parser("prepare", help="turn a big text file into a token file to train from", allow_abbrev=False)
    _flag(p, "data", metavar="FILE", required=True, help="UTF-8 text file of any size")
    _flag(p, "out", metavar="DIR", required=True, help="directory for tokens.bin and meta.json")
    _flag(p, "val_fraction", type=float, default=0.1, help="share of the tokens held out (default 0.1)")
    _flag(p, "tokenizer", choices=TOKENIZERS, default="char", help="char (default) or bpe: byte-level BPE")
    _flag(p, "vocab_size", type=int, default=None, help="BPE: 256 bytes + merges to learn (default 512)")

    a = sub.add_parser("attention", help="draw a model's attention weights on a prompt (PNG)", allow_abbrev=False)
    _flag(a, "checkpoint", metavar="CKPT", required=True, help="checkpoint file or export directory")
    _flag(a, "prompt", required=True, help="the text whose attention to draw (at most the model's context)")
    _flag(a, "out", metavar="FILE.png", required=True, help="PNG to write (an existing PNG is replaced)")
    _flag(a, "layer", type=int, default=None, help="with --head: one large map of this layer (from 0)")
    _flag(a, "head", type=int, default=None, help="with --layer: the head to draw (from 0)")

    c = sub.add_parser("compare", help="compare training runs: settings, losses, speed (and a PNG)", allow_abbrev=False)
    c.add_argument("runs", nargs="+", metavar="RUN_DIR", help="experiment folders of runs (globs allowed)")
    _flag(c, "out", metavar="FILE.png", default=None, help="also draw val loss vs step and vs wall clock here")

    w = sub.add_parser(
        "serve", help="a local web page: runs, live loss curves, generation, attention", allow_abbrev=False
    )
    _flag(w, "experiments", metavar="DIR", default="experiments", help="folder of run logs (default experiments)")
    _flag(w, "checkpoints", metavar="DIR", default="checkpoints", help="folder of checkpoints (default checkpoints)")
    _flag(w, "port", type=int, default=8000, help="port to listen on, 0 = any free one (default 8000)")
    _flag(w, "host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    _flag(w, "device", default="cpu", help="auto | cpu | cuda | mps: where models run (default cpu)")

    x = sub.add_parser("export", help="write weights (.safetensors), config and tokenizer (JSON)", allow_abbrev=False)
    _flag(x, "checkpoint", metavar="CKPT", required=True, help="checkpoint to export")
    _flag(x, "out", metavar="DIR", required=True, help="directory to write (must not hold an export already)")
    return parser
