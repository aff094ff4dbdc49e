"""Regenerate docs/errors.md from the bad-input cases the tests check: python tests/support/make_errors_doc.py

Each case is run for real (in-process, in a scratch directory holding one of every kind of bad
file), and the exact line the user sees is written into the catalogue.
"""

import contextlib
import io
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from minilab.app.cli import main  # noqa: E402
from tests.conftest import make_bad_inputs  # noqa: E402
from tests.test_cli import BAD_GENERATE, BAD_OTHER, BAD_TRAIN, FAST  # noqa: E402

EXTRA = [  # cases checked by other tests (crash safety, checkpoints), described here for completeness
    (
        "train",
        "(Ctrl-C or SIGTERM during training)",
        "stopped by signal at step N (epoch E, k/S steps in); saved "
        "checkpoints/checkpoint.pt. Resume with: mini-transformer-lab train --data FILE --resume "
        "checkpoints/checkpoint.pt --epochs E",
        "130 / 143",
    ),
    (
        "train",
        "(disk full while saving)",
        "could not write checkpoints/checkpoint.pt: No space left on device; "
        "training stopped at step N. Files already on disk are intact (every write is atomic)",
        "2",
    ),
    (
        "train",
        "(loss becomes NaN)",
        "the loss became nan at step N; training stopped before that update (try a lower --lr than X)",
        "2",
    ),
    (
        "generate",
        "--checkpoint evil.pt (a pickle that would run code)",
        "checkpoint 'evil.pt' was refused by the safe loader (it holds more than tensors and plain values): ...",
        "2",
    ),
    (
        "generate",
        "--checkpoint future.pt (format version 99)",
        "checkpoint 'future.pt' has format version 99; this version of the lab reads version 1",
        "2",
    ),
    (
        "generate",
        "--checkpoint other.pt (a PyTorch file of another program)",
        "'other.pt' is a PyTorch file but not a mini-transformer-lab checkpoint",
        "2",
    ),
    (
        "generate",
        "--checkpoint mismatched.pt (weights that do not fit the config)",
        "checkpoint's weights do not match its model config: ...",
        "2",
    ),
]


def main_() -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        make_bad_inputs(d)
        import os

        os.chdir(d)
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            assert main(["train", "--data", "ok.txt", "--epochs", "1", *FAST]) == 0
        cases = [("train", *c) for c in BAD_TRAIN] + [("generate", *c) for c in BAD_GENERATE] + BAD_OTHER
        for command, args, _ in cases:
            err = io.StringIO()
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
                try:
                    code = main([command, *args] if command else args)
                except SystemExit as e:
                    code = e.code
            rows.append((command, " ".join(_quote(a) for a in args), err.getvalue().strip(), str(code)))
    rows += [(c, a, m, code) for c, a, m, code in EXTRA]
    lines = [
        "# Bad inputs and what the user sees",
        "",
        "Every problem with the input is one line on stderr and a non-zero exit status, with no traceback,",
        "and is found before anything is written, so no existing file changes. The messages below are",
        "produced by running each case (`python tests/support/make_errors_doc.py` regenerates this page); the",
        "tests check each message, the exit status, the single line and that no file changed",
        "(`tests/test_cli.py`, `tests/test_crash_safety.py`, `tests/test_checkpoint.py`, and a",
        "hypothesis test feeding random argument lists in `tests/test_cli_fuzz.py`).",
        "",
        "The scratch directory holds a trained `checkpoints/checkpoint.pt` (epoch 1), `ok.txt` (a real text),",
        "`empty.txt`, `adir/` (a directory), `binary.txt` (NUL bytes), `latin1.txt` (not UTF-8), `blank.txt`",
        "(only whitespace), `afile` (a plain file where a directory is expected), `unseen.txt` (characters",
        "the model never saw), and three config files: `typo.toml` (`n_layer = 2`), `wrongtype.toml`",
        '(`epochs = "ten"`) and `broken.toml` (not valid TOML).',
        "",
        "| # | command | arguments | exit | message |",
        "| ---: | --- | --- | ---: | --- |",
    ]
    for i, (command, args, message, code) in enumerate(rows, 1):
        lines.append(f"| {i} | `{command}` | `{args}` | {code} | {_cell(message)} |")
    (ROOT / "docs" / "errors.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {len(rows)} cases to docs/errors.md")


def _quote(arg: str) -> str:
    return f'"{arg}"' if (" " in arg or not arg) else arg


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


if __name__ == "__main__":
    main_()
