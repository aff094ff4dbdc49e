"""The assistant's commands: ``finetune``, ``chat``, ``score``, and ``eval`` on conversations (docs/assistant.md).

``add_commands`` adds their flags to the parser of minilab/app/flags.py; ``COMMANDS`` maps each
name to the function minilab/app/cli.py runs. ``finetune`` takes the training flags of ``train``
(generated from the same TrainConfig fields), minus those that describe a new tokenizer; the
model's shape is the checkpoint's, so it takes no model flags.
"""

import argparse
import sys
from pathlib import Path

from minilab.errors import LabError

# Training settings that a fine-tuning run does not take as flags: its tokenizer is the checkpoint's,
# and --from and --data are its own.
NOT_FOR_FINETUNE = {"data", "tokenizer", "vocab_size", "init_from"}


def add_commands(sub, flag, setting) -> None:
    """Add finetune, chat and score to the subcommands ``sub``; ``flag``/``setting`` are flags.py's helpers."""
    from dataclasses import fields

    from minilab.generation.sampling import SamplingConfig
    from minilab.training.config import TrainConfig

    f = sub.add_parser(
        "finetune", help="a new run from a checkpoint's weights, on text or conversations (.jsonl)", allow_abbrev=False
    )
    f.add_argument("--from", dest="init_from", metavar="CKPT", required=True, help="checkpoint to start from")
    flag(f, "data", metavar="FILE", required=True, help="UTF-8 text, or conversations as JSON Lines (.jsonl)")
    for field in fields(TrainConfig):  # the training flags, generated as train's are
        if field.name == "out_dir":  # a default of its own (cmd_finetune)
            help = "where checkpoints go (default checkpoints/RUN_NAME)"
            flag(f, "out_dir", metavar="DIR", default=argparse.SUPPRESS, help=help)
        elif field.name not in NOT_FOR_FINETUNE:
            setting(f, field)

    c = sub.add_parser("chat", help="talk to a fine-tuned model in the terminal", allow_abbrev=False)
    flag(c, "checkpoint", metavar="CKPT", required=True, help="a checkpoint fine-tuned on conversations")
    flag(c, "system", default=None, help="a system message that opens the conversation (default none)")
    for field in fields(SamplingConfig):  # --max_new_tokens (the longest answer), --temperature, ...
        setting(c, field, default=field.default)
    flag(c, "device", default="auto", help="auto | cpu | cuda | mps (default auto)")

    s = sub.add_parser(
        "score", help="exact-match accuracy of a model's answers to held-out conversations", allow_abbrev=False
    )
    flag(s, "checkpoint", metavar="CKPT", required=True, help="checkpoint file or export directory")
    flag(s, "data", metavar="FILE.jsonl", required=True, help="conversations; the last assistant turn is the answer")
    flag(s, "max_new_tokens", type=int, default=32, help="longest answer in tokens (default 32)")
    flag(s, "show", type=int, default=5, help="print this many questions with their answers (default 5)")
    flag(s, "device", default="auto", help="auto | cpu | cuda | mps (default auto)")


def cmd_finetune(args: argparse.Namespace) -> int:
    from minilab.checkpoint import DEFAULT_DIR
    from minilab.training.clock import process_start
    from minilab.training.config import TrainConfig
    from minilab.training.runlog import new_run_name
    from minilab.training.trainer import Trainer

    skip = ("command", "as_program")
    flags = {k: v for k, v in vars(args).items() if k not in skip}
    started = process_start() if args.as_program else None
    # A run of its own: by default its checkpoints go to checkpoints/RUN_NAME, beside the model it came from.
    flags.setdefault("run_name", new_run_name(args.data))
    flags.setdefault("out_dir", str(Path(DEFAULT_DIR) / flags["run_name"]))
    trainer = Trainer(TrainConfig(**flags), started=started)
    result = trainer.fit()
    if trainer.dist.is_main:
        best = result.out_dir / "best_model.pt"
        chat = trainer.conversations is not None
        try_cmd = f"chat --checkpoint {best}" if chat else f'generate --checkpoint {best} --prompt "..."'
        print(
            f"done: best val loss {result.best_val_loss:.4f} after {result.epochs} epochs "
            f"({result.wall_time:.1f}s). Try:\n  mini-transformer-lab {try_cmd}"
        )
    return 0


def cmd_chat(args: argparse.Namespace) -> int:
    from minilab.checkpoint import load_model
    from minilab.device import resolve_device
    from minilab.generation.chat import ChatSession
    from minilab.generation.chat_terminal import run_chat

    model, tokenizer, _ = load_model(args.checkpoint, resolve_device(args.device))
    session = ChatSession(
        model, tokenizer, args.system, args.max_new_tokens, args.temperature, args.top_k, args.top_p, args.seed
    )
    return run_chat(session)


def cmd_score(args: argparse.Namespace) -> int:
    from minilab.checkpoint import load_model
    from minilab.device import resolve_device
    from minilab.training.conversations import check_encodable, read_conversations
    from minilab.training.score import score_answers

    if not 1 <= args.max_new_tokens <= 100_000:
        raise LabError(f"--max_new_tokens must be between 1 and 100000, got {args.max_new_tokens}")
    if args.show < 0:
        raise LabError(f"--show must be 0 or more, got {args.show}")
    conversations = read_conversations(args.data)
    model, tokenizer, _ = load_model(args.checkpoint, resolve_device(args.device))
    check_encodable(tokenizer, conversations, args.data)
    result = score_answers(model, tokenizer, conversations, args.max_new_tokens, args.show)
    for question, want, got in result.examples:
        print(f"  {question!r} -> {got!r} (expected {want!r})")
    print(f"{args.data}: {result.report()}")
    return 0


def eval_conversations(args: argparse.Namespace, model, tokenizer) -> int:
    """``eval`` on a .jsonl file: the masked loss (the assistant's tokens only) over its conversations."""
    import math

    from minilab.generation.chat import require_chat_tokens
    from minilab.training.conversations import (
        Rows,
        check_encodable,
        encode_conversations,
        evaluate_rows,
        read_conversations,
    )

    require_chat_tokens(tokenizer)  # the template needs the markers the model was fine-tuned with
    conversations = read_conversations(args.data)
    check_encodable(tokenizer, conversations, args.data)
    fraction = args.val_fraction or 1.0  # a file of conversations is usually a test set: all of it
    data = encode_conversations(tokenizer, conversations, model.cfg.context_length, 0.0)
    keep = max(1, math.ceil(len(data.train) * fraction))  # the last ``fraction`` of the conversations
    rows = Rows(data.train.ids[-keep:], data.train.trained[-keep:])
    for note in data.notes:
        print(f"note: {note}", file=sys.stderr)
    loss = evaluate_rows(model, rows, args.batch_size)
    print(
        f"loss {loss:.4f} nats/token | perplexity {math.exp(loss):.3f} | over the {rows.trained_targets():,} "
        f"assistant tokens of {len(rows):,} conversations (the last {fraction:g} of {args.data}; masked as in finetune)"
    )
    return 0


COMMANDS = {"finetune": cmd_finetune, "chat": cmd_chat, "score": cmd_score}
