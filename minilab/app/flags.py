"""Every command's flags: the argparse parser of ``mini-transformer-lab`` (minilab/app/cli.py runs the commands).

Every flag is accepted with underscores (``--batch_size``, as the seed writes them) and with
dashes (``--batch-size``). Training flags default to "not given" so that a resumed run, a preset
and a config file can tell them apart from defaults.
"""

import argparse
from dataclasses import Field, fields

from minilab.app.assistant import add_commands as add_assistant_commands
from minilab.app.inside_cli import add_parsers as add_inside_parsers
from minilab.app.settings import PRESETS
from minilab.checks import shown_default
from minilab.generation.sampling import SamplingConfig
from minilab.model.config import ModelConfig
from minilab.precision import DTYPE_CHOICES
from minilab.tokenizers.char import TOKENIZERS
from minilab.training.config import TrainConfig

INFERENCE_DTYPE_HELP = "auto | fp32 | bf16 | fp16: what the products compute in; auto = fp32, exact (default auto)"
DECODE_DTYPE_HELP = (
    "auto | fp32 | bf16 | fp16: what decoding computes in; auto = bf16 weights in the C++ step for one sequence "
    "of a model >= 128 wide on a CPU with AMX/AVX512-BF16, else fp32 (docs/precision.md); fp32 = exact (default auto)"
)


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


def _setting(parser, f: Field, default=argparse.SUPPRESS) -> None:
    """The flag of one config field: its type, choices and help (with the default) all read from the field.

    ``default`` SUPPRESS (train): only the flags the user typed appear, so a resume, a preset and a
    config file can tell them from defaults.
    """
    meta = f.metadata
    shown = "" if f.name == "data" else f" (default {shown_default(f)})"  # --data has none to show
    help = (meta["help"] + shown).replace("%", "%%")  # argparse formats help with %
    if f.type is bool:
        return _switch(parser, f.name, help)
    kind = int if f.type == int | None else f.type  # int | None: TrainConfig.vocab_size
    extra = {"choices": meta["choices"]} if "choices" in meta else {}
    if "metavar" in meta:
        extra["metavar"] = meta["metavar"]
    _flag(parser, f.name, type=kind, default=default, help=help, **extra)


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
    _setting(t, fields(TrainConfig)[0])  # --data
    _flag(t, "resume", metavar="CKPT", default=s, help="continue training from this checkpoint")
    _flag(t, "preset", choices=PRESETS, default=s, help="start from a named recipe (flags and --config override it)")
    _flag(t, "config", metavar="FILE", default=s, help="settings from a .toml or .json file (flags override it)")
    # Every training and model setting is a flag, generated from its config field (a model's
    # vocabulary comes from its data, so ModelConfig.vocab_size is none).
    for f in fields(TrainConfig)[1:] + tuple(f for f in fields(ModelConfig) if f.name != "vocab_size"):
        _setting(t, f)

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
    for f in fields(SamplingConfig):  # --max_new_tokens, --temperature, --top_k, --top_p, --seed
        _setting(g, f, default=f.default)
    _flag(g, "num_samples", type=int, default=1, help="how many continuations, generated as one batch (default 1)")
    _flag(g, "device", default="auto", help="auto | cpu | cuda | mps (default auto)")
    _flag(g, "dtype", choices=DTYPE_CHOICES, default="auto", help=DECODE_DTYPE_HELP)

    i = sub.add_parser("info", help="show a model's config, parameters, vocabulary and history", allow_abbrev=False)
    _flag(i, "checkpoint", metavar="CKPT", required=True, help="checkpoint file or export directory")

    e = sub.add_parser("eval", help="validation loss of a model on a text file", allow_abbrev=False)
    _flag(e, "checkpoint", metavar="CKPT", required=True, help="checkpoint file or export directory")
    _flag(e, "data", metavar="FILE", required=True, help="UTF-8 text file, or conversations (.jsonl: the masked loss)")
    _flag(
        e,
        "val_fraction",
        type=float,
        default=None,
        help="score the last part of the text (default: the checkpoint's, else 0.1); 1 = the whole text",
    )
    _flag(e, "batch_size", type=int, default=32, help="windows per forward pass (default 32)")
    _flag(e, "device", default="auto", help="auto | cpu | cuda | mps (default auto)")
    _flag(e, "dtype", choices=DTYPE_CHOICES, default="auto", help=INFERENCE_DTYPE_HELP)

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
    _flag(w, "dtype", choices=DTYPE_CHOICES, default="auto", help=DECODE_DTYPE_HELP)

    add_inside_parsers(sub, _flag)  # lens, ablate, embeddings, neurons, induction

    x = sub.add_parser(
        "export", help="write a model for the lab, Hugging Face transformers or llama.cpp", allow_abbrev=False
    )
    _flag(x, "checkpoint", metavar="CKPT", required=True, help="checkpoint to export")
    _flag(x, "out", metavar="DIR|FILE", required=True, help="directory to write (a .gguf file for --format gguf)")
    _flag(
        x,
        "format",
        choices=("lab", "hf", "gguf"),
        default="lab",
        help="lab (safetensors + JSON, default), hf (transformers folder) or gguf (llama.cpp file)",
    )
    _flag(x, "dtype", choices=("float32", "float16"), default="float32", help="--format gguf: tensor type (float32)")

    m = sub.add_parser(
        "import", help="turn a Hugging Face GPT-2-family folder into a lab checkpoint", allow_abbrev=False
    )
    m.add_argument(
        "--from", dest="source", metavar="DIR", required=True, help="folder with config.json, weights, tokenizer"
    )
    _flag(m, "out", metavar="CKPT", required=True, help="checkpoint file to write (must not exist)")

    add_assistant_commands(sub, _flag, _setting)  # finetune, chat, score (minilab/app/assistant.py)
    return parser
