"""``chat``: a conversation with a fine-tuned model in the terminal, one line per message.

Each line typed is the user's message; the answer streams back and both join the history (the
oldest turns are dropped when they no longer fit the context, see minilab/generation/chat.py).
Commands: /reset forgets the conversation, /quit (or Ctrl-D) leaves, /help. A message that really
starts with '/' is typed with two: '//etc' sends '/etc'.
"""

import sys

from minilab.errors import LabError
from minilab.generation.chat import ChatSession
from minilab.generation.interactive import typed_lines

HELP = "commands: /reset (forget the conversation), /quit (or Ctrl-D), /help; any other line is your message"


def run_chat(session: ChatSession, stdin=None, stdout=None, stderr=None) -> int:
    """Read messages from ``stdin`` until /quit or end of input; stream each answer to ``stdout``, one per line."""
    stdin, stdout, stderr = stdin or sys.stdin, stdout or sys.stdout, stderr or sys.stderr
    tty = stdin.isatty()
    ctx = session.model.cfg.context_length
    print(f"chat: the model attends over {ctx} tokens; older turns are dropped to fit. {HELP}", file=stderr)
    for command, text in typed_lines(stdin, stderr, "you> "):
        if command is not None:
            command = command.strip()
            if command in ("quit", "exit", "q"):
                break
            if command == "reset":
                session.reset()
                print("(conversation forgotten)", file=stderr, flush=True)
            elif command == "help":
                print(HELP, file=stderr)
            else:
                print(f"error: unknown command /{command}; {HELP}", file=stderr, flush=True)
            continue
        try:
            answer = session.reply(text)
            if tty:
                print("model> ", end="", file=stderr, flush=True)
            for piece in answer:
                print(piece, end="", file=stdout, flush=True)
            print(file=stdout, flush=True)
            if session.dropped:
                print(f"(the oldest {session.dropped} message(s) no longer fit the context)", file=stderr, flush=True)
        except LabError as e:
            print(f"error: {e}", file=stderr, flush=True)
    return 0
