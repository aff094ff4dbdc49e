"""``make demo``: a minute of real learning on a real corpus, with the text before and after.

Trains the fast CPU recipe (the ``shakespeare-cpu`` preset, docs/speedrun.md) on the shipped
tinyshakespeare for a time budget, samples from the untrained and the trained model, and ends with
the three next things to try as commands to copy. Run as ``python -m minilab.app.demo``.
"""

import argparse
import shlex
import sys
import time
from pathlib import Path

from minilab.app.settings import resolve_settings
from minilab.errors import LabError
from minilab.generation.textgen import generate_text
from minilab.model.config import ModelConfig
from minilab.training.clock import RunClock
from minilab.training.config import TrainConfig
from minilab.training.trainer import Trainer

PRESET = "shakespeare-cpu"
SAMPLE = dict(max_new_tokens=300, temperature=0.8, seed=7)  # the same draw before and after training


def lab_command() -> str:
    """How to call the lab from this shell: the venv's script if that is where we run, else ``python -m minilab``."""
    script = Path(sys.executable).parent / "mini-transformer-lab"
    if not script.exists():
        return f"{shlex.quote(sys.executable)} -m minilab"
    try:
        return str(script.relative_to(Path.cwd()))
    except ValueError:
        return str(script)


def sample(trainer: Trainer) -> str:
    """300 characters from a newline, at the lab's default temperature (0.8)."""
    text = generate_text(trainer.model, trainer.tokenizer, "\n", **SAMPLE)
    trainer.model.train()
    return text.strip("\n")


def next_steps(checkpoint: Path, run_dir: Path, out: Path, lab: str) -> list[str]:
    """The three things to try next, as exact commands."""
    return [
        "Next, try:",
        "  1. talk to it: each line you type is a prompt (/help lists the settings, Ctrl-D leaves)",
        f"     {lab} generate --checkpoint {checkpoint} --interactive",
        "  2. the lab in a browser: this run's curves, generation, attention, the model",
        f"     {lab} serve --experiments {run_dir.parent} --checkpoints {checkpoint.parent}",
        "  3. what each attention head looks at in a line of Shakespeare",
        f'     {lab} attention --checkpoint {checkpoint} --prompt "ROMEO: But soft" --out {out / "attention.png"}',
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m minilab.app.demo", description=__doc__.splitlines()[0])
    p.add_argument("--data", default="example_data/tinyshakespeare.txt", help="the text to learn")
    p.add_argument("--out", default="demo-output", help="folder for checkpoints and the run's log")
    p.add_argument("--time_budget", type=float, default=60.0, help="seconds of training (default 60)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads, 0 = PyTorch's default (one per core)")
    args = p.parse_args(argv)
    out = Path(args.out)
    train_settings, model_settings = resolve_settings(
        dict(
            data=args.data,
            time_budget=args.time_budget,
            threads=args.threads,
            out_dir=str(out / "checkpoints"),
            experiments_dir=str(out / "experiments"),
            run_name=time.strftime("demo-%Y%m%d-%H%M%S"),
        ),
        preset=PRESET,
    )
    try:
        trainer = Trainer(TrainConfig(**train_settings), ModelConfig(**model_settings))
        print(f"\nBefore training (random weights), the model writes:\n\n{sample(trainer)}\n", flush=True)
        trainer.clock = RunClock()  # the budget is for training: its clock starts now, after the sample
        print(f"Training the '{PRESET}' recipe for {args.time_budget:g} s (docs/speedrun.md):", flush=True)
        result = trainer.fit()
        if result.steps == 0:
            raise LabError(
                f"{args.time_budget:g} s ran out before the first training step; give a larger --time_budget"
            )
    except LabError as e:
        print(f"demo: error: {e}", file=sys.stderr)
        return 2
    print(
        f"\nAfter {result.wall_time:.0f} s of training ({result.steps} steps, val loss {result.final_val_loss:.3f}):\n"
    )
    print(f"{sample(trainer)}\n")
    print(f"The loss curve: {result.run_dir / 'loss.png'}\n")
    print("\n".join(next_steps(result.out_dir / "checkpoint.pt", result.run_dir, out, lab_command())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
