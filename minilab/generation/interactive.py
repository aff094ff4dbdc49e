"""``generate --interactive``: the model stays loaded; each line typed is a prompt, answered as it streams.

Lines starting with '/' are commands: /temperature 0.5, /top_k 40, /top_p 0.9, /max_new_tokens 300,
/seed 7 (or /seed off), /settings, /help, /quit. Ctrl-D (end of input) also leaves. A prompt that
really starts with '/' is typed with two: '//etc' sends '/etc'.
"""

import sys
from dataclasses import asdict, replace

from minilab.errors import LabError
from minilab.generation.sampling import SamplingConfig
from minilab.generation.textgen import stream_text

HELP = (
    "commands: /temperature T, /top_k K, /top_p P, /max_new_tokens N, /seed N|off, /settings, /help, "
    "/quit (or Ctrl-D); any other line is a prompt ('//x' sends '/x')"
)
SETTINGS = {"temperature": float, "top_k": int, "top_p": float, "max_new_tokens": int, "seed": int}


def run_interactive(
    model, tokenizer, settings: SamplingConfig | dict, stop=(), stdin=None, stdout=None, stderr=None, dtype="fp32"
) -> int:
    """Read prompts from ``stdin`` until /quit or end of input; stream each answer to ``stdout``."""
    stdin, stdout, stderr = stdin or sys.stdin, stdout or sys.stdout, stderr or sys.stderr
    state = {"sampling": settings if isinstance(settings, SamplingConfig) else SamplingConfig(**settings)}
    print(f"interactive mode: the model knows {tokenizer.vocab_size} {tokenizer.kind} tokens. {HELP}", file=stderr)
    for command, prompt in typed_lines(stdin, stderr, "> "):
        if command is not None:
            if _command(command, state, stderr):
                break
            continue
        try:
            tokenizer.encode(prompt)  # unseen characters (char tokenizer): say so before printing anything
            print(prompt, end="", file=stdout, flush=True)
            for piece in stream_text(model, tokenizer, prompt, stop=stop, dtype=dtype, **asdict(state["sampling"])):
                print(piece, end="", file=stdout, flush=True)
            print(file=stdout, flush=True)
        except LabError as e:
            print(f"error: {e}", file=stderr, flush=True)
    return 0


def typed_lines(stdin, stderr, prompt: str):
    """Yield ``(command, None)`` for each '/command' typed and ``(None, text)`` for any other line, until
    end of input; '//x' is the text '/x'. On a terminal, ``prompt`` is shown before each line."""
    tty = stdin.isatty()
    while True:
        if tty:
            print(prompt, end="", file=stderr, flush=True)
        line = stdin.readline()
        if not line:  # Ctrl-D / end of input
            return
        line = line.rstrip("\r\n")
        if line.startswith("/") and not line.startswith("//"):
            yield line[1:], None
        else:
            yield None, line[1:] if line.startswith("//") else line


def _command(command: str, state: dict, stderr) -> bool:
    """Apply one /command (without its '/') to ``state['sampling']``; True means leave."""
    name, _, value = command.partition(" ")
    name, value = name.strip(), value.strip()
    if name in ("quit", "exit", "q"):
        return True
    if name == "help":
        print(HELP, file=stderr)
    elif name == "settings":
        print(" ".join(f"{k}={v}" for k, v in asdict(state["sampling"]).items()), file=stderr)
    elif name in SETTINGS:
        try:
            new = None if (name == "seed" and value == "off") else SETTINGS[name](value)
            sampling = replace(state["sampling"], **{name: new})  # checked by SamplingConfig
        except (ValueError, LabError) as e:
            print(f"error: /{name} {value}: {e}", file=stderr)
        else:
            state["sampling"] = sampling
            print(f"{name} = {new}", file=stderr)
    else:
        print(f"error: unknown command /{name}; {HELP}", file=stderr)
    return False
