"""The assistant lesson's task (docs/assistant.md): addition, as plain text and as conversations, with held-out sums.

    python example_data/make_addition.py --out addition/ [--digits 2] [--test 300] [--chats 2000] [--turns 1] [--seed 0]

Every pair (a, b) of numbers below 10^digits is one problem. A random ``--test`` of them is held
out; no file but test.jsonl holds them. From the rest it writes:

- ``pretrain.txt``: every remaining problem once, in random order, as a plain line ``a + b = c``
  (the text a base model learns the domain from),
- ``train.jsonl``: ``--chats`` conversations ``{"messages": [{"role": "user", "content": "a + b"},
  {"role": "assistant", "content": "c"}]}`` on problems of pretrain.txt (with ``--turns N``, each
  conversation asks 1 to N of them in turn, so that a model also sees questions after a history),
- ``test.jsonl``: the held-out problems as conversations, for ``mini-transformer-lab score``.

Standard library only; the same arguments give the same files.
"""

import argparse
import json
import random
from pathlib import Path


def conversation(*pairs: tuple[int, int]) -> str:
    """One JSON line: for each pair the user asks ``a + b`` and the assistant answers with the sum alone."""
    messages = []
    for a, b in pairs:
        messages += [{"role": "user", "content": f"{a} + {b}"}, {"role": "assistant", "content": str(a + b)}]
    return json.dumps({"messages": messages})


def make(out: Path, digits: int = 2, test: int = 300, chats: int = 2000, seed: int = 0, turns: int = 1) -> dict:
    """Write pretrain.txt, train.jsonl and test.jsonl into ``out``; returns the counts."""
    n = 10**digits
    pairs = [(a, b) for a in range(n) for b in range(n)]
    if not 0 < test < len(pairs) // 2:
        raise SystemExit(f"--test must be between 1 and {len(pairs) // 2 - 1} for {digits}-digit numbers")
    rng = random.Random(seed)
    rng.shuffle(pairs)
    held_out, seen = pairs[:test], pairs[test:]
    chats = min(chats, len(seen))
    out.mkdir(parents=True, exist_ok=True)
    (out / "pretrain.txt").write_text("".join(f"{a} + {b} = {a + b}\n" for a, b in seen), encoding="utf-8")
    lines, todo = [], seen[:chats]  # each training problem is asked once
    while todo:
        n = rng.randint(1, turns)  # questions in this conversation
        lines.append(conversation(*todo[:n]))
        todo = todo[n:]
    (out / "train.jsonl").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    (out / "test.jsonl").write_text("".join(conversation(p) + "\n" for p in held_out), encoding="utf-8")
    return {"pretrain_lines": len(seen), "train_conversations": len(lines), "test_conversations": test}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="directory to write the three files into")
    p.add_argument("--digits", type=int, default=2, help="numbers below 10^digits (default 2: 0..99)")
    p.add_argument("--test", type=int, default=300, help="held-out problems (default 300)")
    p.add_argument("--chats", type=int, default=2000, help="training conversations (default 2000)")
    p.add_argument("--turns", type=int, default=1, help="questions per training conversation: 1 to N (default 1)")
    p.add_argument("--seed", type=int, default=0, help="which problems are held out (default 0)")
    args = p.parse_args()
    if args.turns < 1:
        raise SystemExit("--turns must be 1 or more")
    counts = make(Path(args.out), args.digits, args.test, args.chats, args.seed, args.turns)
    print(", ".join(f"{k} {v}" for k, v in counts.items()), f"-> {args.out}")


if __name__ == "__main__":
    main()
