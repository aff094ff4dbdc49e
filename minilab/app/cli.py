"""The command line: ``mini-transformer-lab train|generate ...``. Parses flags, calls the library.

Every flag is accepted with underscores (``--batch_size``, as the seed writes them) and with
dashes (``--batch-size``). A problem with the input is one line on stderr and exit status 2.
"""

import argparse
import os
import sys
from dataclasses import asdict

from minilab.app.assistant import COMMANDS as ASSISTANT_COMMANDS
from minilab.app.assistant import eval_conversations
from minilab.app.flags import build_parser
from minilab.app.inside_cli import COMMANDS as INSIDE_COMMANDS
from minilab.app.settings import resolve_settings, run_configs
from minilab.errors import LabError


def cmd_info(args: argparse.Namespace) -> int:
    from minilab.app.info import describe
    from minilab.checkpoint import load_model

    model, tokenizer, ckpt = load_model(args.checkpoint)
    print(describe(model, tokenizer, ckpt))
    return 0


def _inference_precision(requested: str, device):
    """--dtype of eval, generate and serve, resolved for ``device``; a warning goes to stderr."""
    from minilab.precision import device_facts, inference_precision

    precision = inference_precision(requested, device_facts(device))
    if precision.warning:
        print(f"mini-transformer-lab: {precision.warning}", file=sys.stderr)
    return precision


def cmd_eval(args: argparse.Namespace) -> int:
    import math

    from minilab.checkpoint import load_model
    from minilab.device import resolve_device
    from minilab.training.conversations import is_conversations
    from minilab.training.data import read_text
    from minilab.training.evaluate import score_text

    if args.val_fraction is not None and not 0 < args.val_fraction <= 1:
        raise LabError(f"--val_fraction must be in (0, 1], got {args.val_fraction}")
    if not 1 <= args.batch_size <= 1 << 16:
        raise LabError(f"--batch_size must be between 1 and 65536, got {args.batch_size}")
    device = resolve_device(args.device)
    precision = _inference_precision(args.dtype, device)
    if is_conversations(args.data):  # the masked loss over the assistant's tokens, as fine-tuning counts it
        return eval_conversations(args, *load_model(args.checkpoint, device)[:2])
    text = read_text(args.data)
    model, tokenizer, ckpt = load_model(args.checkpoint, device)
    fraction = args.val_fraction or ((ckpt or {}).get("train_args") or {}).get("val_fraction") or 0.1
    with precision.autocast(device.type):
        score = score_text(model, tokenizer, text, fraction, args.batch_size)
    loss = score.loss
    print(
        f"loss {loss:.4f} nats/token | perplexity {math.exp(loss):.3f} | {loss / math.log(2):.4f} bits/token | "
        f"{score.bits_per_byte:.4f} bits/byte | {score.positions:,} positions scored "
        f"({score.n_bytes:,} bytes: the last {fraction:g} of {args.data}; {precision.name})"
    )
    return 0


def cmd_attention(args: argparse.Namespace) -> int:
    import torch

    from minilab.checkpoint import load_model
    from minilab.plots import bytes_label, check_png_path, plot_attention

    out = check_png_path(args.out)
    if (args.layer is None) != (args.head is None):
        raise LabError("give --layer and --head together (one map), or neither (every layer and head)")
    if not args.prompt:
        raise LabError("--prompt needs at least one character")
    model, tokenizer, _ = load_model(args.checkpoint)
    cfg = model.cfg
    if args.layer is not None and not (0 <= args.layer < cfg.n_layers and 0 <= args.head < cfg.n_heads):
        raise LabError(
            f"--layer {args.layer} --head {args.head}: this model has layers 0..{cfg.n_layers - 1} "
            f"and heads 0..{cfg.n_heads - 1}"
        )
    ids = tokenizer.encode(args.prompt)
    if len(ids) > cfg.context_length:
        raise LabError(f"the prompt is {len(ids)} tokens; this model attends over at most {cfg.context_length}")
    maps = model.attention_maps(torch.tensor([ids]))  # n_layers x (1, n_heads, T, T), the explicit path
    plot_attention(maps, [bytes_label(tokenizer.decode_bytes([i])) for i in ids], out, args.layer, args.head)
    print(
        f"wrote {out} ({len(ids)} tokens, "
        + (
            f"layer {args.layer} head {args.head})"
            if args.layer is not None
            else f"{cfg.n_layers} layers x {cfg.n_heads} heads)"
        )
    )
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from minilab.app.compare import compare_table, expand, load_run
    from minilab.plots import check_png_path, plot_comparison

    out = check_png_path(args.out) if args.out is not None else None
    runs = [load_run(p) for p in expand(args.runs)]
    print(compare_table(runs))
    if out is not None:
        plot_comparison(runs, out)
        print(f"wrote {out}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import ipaddress

    from minilab.app.serve import Lab, make_server
    from minilab.device import resolve_device

    for flag, folder in (("--experiments", args.experiments), ("--checkpoints", args.checkpoints)):
        if not os.path.exists(folder):
            raise LabError(f"{flag} folder {folder!r} does not exist (train a model first, or give {flag} DIR)")
        if not os.path.isdir(folder):
            raise LabError(f"{flag} {folder!r} is not a directory")
    if not 0 <= args.port <= 65535:
        raise LabError(f"--port must be between 0 and 65535, got {args.port}")
    device = resolve_device(args.device)
    try:
        loopback = args.host == "localhost" or ipaddress.ip_address(args.host).is_loopback
    except ValueError:
        loopback = False  # a host name: assume it can be reached from elsewhere
    try:
        dtype = "auto" if args.dtype == "auto" else _inference_precision(args.dtype, device).name
        server = make_server(Lab(args.experiments, args.checkpoints, device, dtype), args.host, args.port)
    except OSError as e:
        raise LabError(f"cannot listen on {args.host}:{args.port}: {e.strerror or e}") from None
    if not loopback:
        print(
            f"mini-transformer-lab serve: warning: --host {args.host} lets other machines reach the lab "
            "(it has no login); the default 127.0.0.1 keeps it to this one",
            file=sys.stderr,
        )
    host, port = server.server_address[:2]
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else f"[{host}]" if ":" in host else host
    print(f"serving {args.experiments} and {args.checkpoints} at http://{shown}:{port}/ (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    import time

    from minilab.training.prepare import prepare_dataset

    t = time.perf_counter()
    meta = prepare_dataset(args.data, args.out, args.val_fraction, tokenizer=args.tokenizer, vocab_size=args.vocab_size)
    took = time.perf_counter() - t
    print(
        f"{args.out}: {meta['n_tokens']:,} tokens ({meta['dtype']}, {meta['tokenizer']['type']} vocabulary "
        f"{meta['vocab_size']}), "
        f"{meta['n_train']:,} train / {meta['n_val']:,} val, {meta['source_bytes'] / 1e6 / took:.0f} MB/s. "
        f"Train with: mini-transformer-lab train --data {args.out}"
    )
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from minilab.app.export import export_model
    from minilab.checkpoint import load_model

    if args.dtype != "float32" and args.format != "gguf":
        raise LabError("--dtype is for --format gguf; the lab and hf formats keep float32")
    model, tokenizer, _ = load_model(args.checkpoint)
    if args.format == "hf":
        from minilab.app.hf_export import export_hf

        paths = export_hf(model, tokenizer, args.out)
    elif args.format == "gguf":
        from minilab.app.gguf_export import export_gguf

        paths = [export_gguf(model, tokenizer, args.out, args.dtype)]
    else:
        paths = export_model(model, tokenizer, args.out)
    for path in paths:
        print(path)
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from minilab.app.hf_import import import_gpt2

    model, tokenizer = import_gpt2(args.source, args.out)
    print(f"wrote {args.out}: GPT-2 with {model.num_params():,} parameters, {tokenizer.vocab_size:,} BPE tokens")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from minilab.checkpoint import load_checkpoint, resolve_checkpoint
    from minilab.training.clock import process_start
    from minilab.training.trainer import Trainer

    given = {k: v for k, v in vars(args).items() if k not in ("command", "resume", "preset", "config", "as_program")}
    # Run as a program, the clock of a --time_budget starts with the process (imports included);
    # called in-process (a notebook, a test), it starts now.
    started = process_start() if args.as_program else None
    ckpt = load_checkpoint(resolve_checkpoint(args.resume)) if "resume" in args else None
    config, preset = getattr(args, "config", None), getattr(args, "preset", None)
    train_cfg, model_cfg = run_configs(given, config, preset, ckpt)
    # A context nobody chose (no flag, config file or preset) adapts to a tiny text (training/smalltext.py).
    auto_context = ckpt is None and "context_length" not in resolve_settings(given, config, preset)[1]
    trainer = Trainer(train_cfg, None if ckpt else model_cfg, resume=ckpt, started=started, auto_context=auto_context)
    result = trainer.fit()
    if trainer.dist.is_main:  # under torchrun, one report
        print(f"done: {final_report(result)}. Try:")
        print(f'  mini-transformer-lab generate --checkpoint {result.out_dir / "best_model.pt"} --prompt "..."')
    return 0


def final_report(result) -> str:
    """The figure a run ends with: the final model on the whole validation split; a prefix figure says so."""
    import math

    took = f"after {result.epochs} epochs ({result.wall_time:.1f}s)"
    if math.isnan(result.final_val_loss):  # no validation split (a tiny text): the training loss is all there is
        return f"train loss {result.final_train_loss:.4f} {took}"
    best = f"best in-training val loss {result.best_val_loss:.4f}"
    if result.val_prefix:
        best += f" on the first {result.val_prefix:,} validation tokens"
    return f"val loss {result.final_val_loss:.4f} (the final model, whole validation split) {took}; {best}"


def cmd_generate(args: argparse.Namespace) -> int:
    from minilab.checkpoint import load_model
    from minilab.device import resolve_device
    from minilab.generation.interactive import run_interactive
    from minilab.generation.sampling import SamplingConfig
    from minilab.generation.textgen import generate_texts, stream_text
    from minilab.training.data import read_text

    sampling = SamplingConfig(args.max_new_tokens, args.temperature, args.top_k, args.top_p, args.seed)
    if not 1 <= args.num_samples <= 1000:
        raise LabError(f"--num_samples must be between 1 and 1000, got {args.num_samples}")
    if args.prompt is not None and args.prompt_file is not None:
        raise LabError("give --prompt or --prompt_file, not both")
    if args.interactive and (args.prompt is not None or args.prompt_file is not None or args.num_samples > 1):
        raise LabError("--interactive reads its prompts as you type them; drop --prompt/--prompt_file/--num_samples")
    stop = [_unescape(s) for s in args.stop]
    if any(not s for s in stop):
        raise LabError("--stop needs a non-empty string")
    prompt = read_text(args.prompt_file, "prompt file") if args.prompt_file is not None else (args.prompt or "")
    if any("\ud800" <= c <= "\udfff" for c in prompt):  # bytes that were not UTF-8 on the command line
        raise LabError("--prompt holds bytes that are not UTF-8 text; give the prompt as UTF-8")
    device = resolve_device(args.device)
    # auto: exact fp32, except one sequence on a CPU with bf16 units (precision.decode_precision)
    dtype = "auto" if args.dtype == "auto" else _inference_precision(args.dtype, device).name
    model, tokenizer, _ = load_model(args.checkpoint, device)
    tokenizer.encode(prompt)  # unseen characters are an error before anything is printed
    settings = asdict(sampling)
    if args.interactive:
        return run_interactive(model, tokenizer, sampling, stop, dtype=dtype)
    if args.num_samples == 1:
        print(prompt, end="", flush=True)
        for piece in stream_text(model, tokenizer, prompt, stop=stop, dtype=dtype, **settings):
            print(piece, end="", flush=True)
        print(flush=True)
        return 0
    texts = generate_texts(model, tokenizer, prompt, args.num_samples, stop=stop, dtype=dtype, **settings)
    for i, text in enumerate(texts):
        print(f"{'' if i == 0 else chr(10)}--- sample {i + 1} ---\n{prompt}{text}", flush=True)
    return 0


def _unescape(text: str) -> str:
    """'\\n' typed on a command line means a newline (and '\\t' a tab, '\\\\' a backslash)."""
    return text.replace("\\\\", "\0").replace("\\n", "\n").replace("\\t", "\t").replace("\0", "\\")


COMMANDS = {
    "train": cmd_train,
    "generate": cmd_generate,
    "info": cmd_info,
    "eval": cmd_eval,
    "export": cmd_export,
    "import": cmd_import,
    "prepare": cmd_prepare,
    "attention": cmd_attention,
    "compare": cmd_compare,
    "serve": cmd_serve,
    **ASSISTANT_COMMANDS,  # finetune, chat, score
    **INSIDE_COMMANDS,  # lens, ablate, embeddings, neurons, induction: minilab/app/inside_cli.py
}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.as_program = argv is None  # the command line of this process, not a call from Python
    from minilab.training.signals import TrainingInterrupted

    try:
        return COMMANDS[args.command](args)
    except TrainingInterrupted as e:
        print(f"mini-transformer-lab {args.command}: {e}", file=sys.stderr)
        return e.exit_code
    except LabError as e:
        print(f"mini-transformer-lab {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"mini-transformer-lab {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `generate ... | head`: the reader left, nothing is wrong
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as e:  # disk full, permission denied, ...: say which file and why
        where = f" ({e.filename})" if getattr(e, "filename", None) else ""
        print(f"mini-transformer-lab {args.command}: error: {e.strerror or e}{where}", file=sys.stderr)
        return 1
