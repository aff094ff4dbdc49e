"""The command line as a user meets it: the seed's commands, and bad input of every kind."""

import json
import shutil

import pytest

from minilab.app.cli import main
from minilab.checkpoint import load_checkpoint
from tests.conftest import EXAMPLE, TINY_MODEL_FLAGS, make_bad_inputs, run_cli, snapshot

FAST = [*TINY_MODEL_FLAGS, "--steps_per_epoch", "3", "--batch_size", "4", "--sample_length", "10", "--device", "cpu"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A directory where the seed's `train --data my_data.txt --epochs 1` has run (tiny model)."""
    d = tmp_path_factory.mktemp("lab")
    shutil.copy(EXAMPLE, d / "my_data.txt")
    r = run_cli("train", "--data", "my_data.txt", "--epochs", "1", *FAST, cwd=d)
    assert r.returncode == 0, r.stderr
    return d


def cli(args, cwd, monkeypatch, capsys):
    """Run the CLI in-process from ``cwd``: (exit code, stdout, stderr)."""
    monkeypatch.chdir(cwd)
    try:
        code = main([str(a) for a in args])
    except SystemExit as e:  # argparse's own exits
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.slow
def test_seed_flow_end_to_end(trained, tmp_path):
    trained = shutil.copytree(trained, tmp_path / "lab")  # the module's run stays at epoch 1
    names = {p.name for p in (trained / "checkpoints").iterdir()}
    assert names == {"checkpoint.pt", "best_model.pt", "checkpoint_epoch_1.pt"}
    runs = list((trained / "experiments").iterdir())
    assert len(runs) == 1
    assert {p.name for p in runs[0].iterdir()} >= {
        "config.json",
        "metrics.csv",
        "loss.png",
        "samples.txt",
        "summary.json",
    }
    for name in sorted(names):  # bare names resolve through checkpoints/
        r = run_cli(
            "generate",
            "--checkpoint",
            name,
            "--prompt",
            "The future of AI is",
            "--max_new_tokens",
            "20",
            "--seed",
            "1",
            cwd=trained,
        )
        assert r.returncode == 0, r.stderr
        assert r.stdout.startswith("The future of AI is") and len(r.stdout) >= len("The future of AI is") + 20
    r = run_cli(
        "generate",
        "--checkpoint",
        "best_model.pt",
        "--prompt",
        "In a galaxy far away",
        "--temperature",
        "0.7",
        "--top_k",
        "40",
        "--top_p",
        "0.9",
        "--max_new_tokens",
        "30",
        cwd=trained,
    )
    assert r.returncode == 0, r.stderr
    r = run_cli("train", "--data", "my_data.txt", "--resume", "checkpoint_epoch_1.pt", "--epochs", "2", cwd=trained)
    assert r.returncode == 0, r.stderr
    assert "resuming" in r.stdout and "epoch 2/2" in r.stdout
    assert (trained / "checkpoints" / "checkpoint_epoch_2.pt").exists()
    assert len(list((trained / "experiments").iterdir())) == 1  # the same run continues


def test_dashed_and_underscored_flags(tmp_path, monkeypatch, capsys):
    shutil.copy(EXAMPLE, tmp_path / "t.txt")
    args = [
        "train",
        "--data",
        "t.txt",
        "--epochs",
        "1",
        "--batch-size",
        "2",
        "--steps-per-epoch",
        "2",
        "--context-length",
        "16",
        "--d-model",
        "16",
        "--n-heads",
        "2",
        "--n-layers",
        "1",
        "--d-ff",
        "32",
        "--sample-length",
        "0",
        "--device",
        "cpu",
    ]
    code, out, err = cli(args, tmp_path, monkeypatch, capsys)
    assert code == 0, err
    code, out, err = cli(
        [
            "generate",
            "--checkpoint",
            "checkpoint.pt",
            "--max-new-tokens",
            "5",
            "--top-k",
            "3",
            "--num-samples",
            "2",
            "--seed",
            "1",
        ],
        tmp_path,
        monkeypatch,
        capsys,
    )
    assert code == 0, err
    assert "--- sample 2 ---" in out


def test_architecture_switches_from_the_command_line(tmp_path, monkeypatch, capsys):
    shutil.copy(EXAMPLE, tmp_path / "t.txt")
    switches = ["--pos-encoding", "rope", "--norm", "rmsnorm", "--qk_norm", "--mlp", "swiglu"]
    switches += ["--no_tie_embeddings", "--no-bias", "--logit_softcap", "30"]
    args = ["train", "--data", "t.txt", "--epochs", "1", *FAST, "--steps_per_epoch", "2", *switches]
    code, out, err = cli(args, tmp_path, monkeypatch, capsys)
    assert code == 0, err
    cfg = load_checkpoint(tmp_path / "checkpoints" / "checkpoint.pt")["model_config"]
    assert (cfg["pos_encoding"], cfg["norm"], cfg["qk_norm"], cfg["mlp"]) == ("rope", "rmsnorm", True, "swiglu")
    assert (cfg["tie_embeddings"], cfg["bias"], cfg["logit_softcap"]) == (False, False, 30.0)
    code, out, err = cli(
        ["generate", "--checkpoint", "checkpoint.pt", "--max_new_tokens", "40", "--seed", "1"],
        tmp_path,
        monkeypatch,
        capsys,
    )
    assert code == 0 and len(out) > 40, err
    code, out, err = cli(["info", "--checkpoint", "checkpoint.pt"], tmp_path, monkeypatch, capsys)
    assert code == 0 and "mlp: swiglu" in out and "tie_embeddings: False" in out, err


def test_time_budget_from_the_command_line(tmp_path, monkeypatch, capsys):
    from minilab.training.clock import RunClock
    from minilab.training.trainer import Trainer

    # An injected clock that advances half a second per training step and stands still otherwise,
    # so the budget's arithmetic is checked exactly, whatever the machine's load.
    now = [100.0]
    real_step = Trainer.train_step

    def timed_step(self, lr):
        now[0] += 0.5
        return real_step(self, lr)

    monkeypatch.setattr(RunClock, "now", staticmethod(lambda: now[0]))
    monkeypatch.setattr(Trainer, "train_step", timed_step)
    shutil.copy(EXAMPLE, tmp_path / "t.txt")
    args = ["train", "--data", "t.txt", *FAST, "--time_budget", "4", "--optimizer", "muon", "--schedule", "wsd"]
    code, out, err = cli(args, tmp_path, monkeypatch, capsys)
    assert code == 0, err
    assert "for 4s of wall clock in all" in out and "done: val loss" in out
    summary = json.loads(next((tmp_path / "experiments").glob("*/summary.json")).read_text())
    # Called in-process, the clock starts with the call, not with the (older) test process; the run
    # ends early enough to leave its last second for the exit: 3 s of training, 6 steps of 0.5 s.
    assert summary["steps"] == 6 and summary["wall_time_sec"] == 3.0


def test_generate_is_reproducible_with_seed(trained, monkeypatch, capsys):
    args = ["generate", "--checkpoint", "checkpoint.pt", "--prompt", "The", "--max_new_tokens", "40", "--seed", "5"]
    a = cli(args, trained, monkeypatch, capsys)
    b = cli(args, trained, monkeypatch, capsys)
    assert a[0] == 0 and a[1] == b[1]


BAD_TRAIN = [
    (["--data", "missing.txt"], "does not exist"),
    (["--data", "empty.txt"], "is empty"),
    (["--data", "adir"], "is a directory"),
    (["--data", "binary.txt"], "looks binary"),
    (["--data", "latin1.txt"], "not UTF-8"),
    (["--data", "blank.txt"], "only whitespace"),
    (["--data", "/proc/self/mem"], "cannot read data file '/proc/self/mem'"),
    (["--data", "ok.txt", "--epochs", "0"], "epochs must be between 1"),
    (["--data", "ok.txt", "--epochs", "-3"], "epochs must be between 1"),
    (["--data", "ok.txt", "--epochs", "ten"], "invalid int value"),
    (["--data", "ok.txt", "--lr", "nan"], "lr must be a finite number"),
    (["--data", "ok.txt", "--lr", "-0.1"], "lr must be in"),
    (["--data", "ok.txt", "--batch_size", "-4"], "batch_size must be between"),
    (["--data", "ok.txt", "--dropout", "1.5"], "dropout must be in"),
    (["--data", "ok.txt", "--val_fraction", "0.9"], "val_fraction must be in"),
    (["--data", "ok.txt", "--d_model", "30", "--n_heads", "8"], "divisible by n_heads"),
    (["--data", "ok.txt", "--context_length", "0"], "context_length must be between"),
    (["--data", "ok.txt", "--d_model", "99999999"], "d_model must be between"),
    (["--data", "ok.txt", "--device", "cuda"], "no CUDA GPU"),
    (["--data", "ok.txt", "--device", "tpu"], "choose one of auto"),
    (["--data", "ok.txt", "--device", "cpu", "--dtype", "fp16"], "--dtype fp16 on cpu: fp16 needs a gradient scaler"),
    (["--data", "ok.txt", "--out_dir", "afile"], "is a file, not a directory"),
    (["--data", "ok.txt", "--pos_encoding", "rotary"], "invalid choice"),
    (["--data", "ok.txt", "--norm", "batchnorm"], "invalid choice: 'batchnorm'"),
    (["--data", "ok.txt", "--mlp", "tanh"], "invalid choice: 'tanh'"),
    (["--data", "ok.txt", "--logit_softcap", "-1"], "logit_softcap must be in"),
    (["--data", "ok.txt", "--pos_encoding", "rope", "--d_model", "36", "--n_heads", "4"], "must be even"),
    (["--data", "ok.txt", "--resume", "checkpoint.pt", "--no_bias"], "--bias False contradicts the checkpoint"),
    (["--data", "ok.txt", "--optimizer", "sgd"], "invalid choice: 'sgd'"),
    (["--data", "ok.txt", "--time_budget", "-5"], "time_budget must be in"),
    (["--data", "ok.txt", "--preset", "huge"], "invalid choice: 'huge'"),
    (["--data", "ok.txt", "--config", "missing.toml"], "config file 'missing.toml' does not exist"),
    (["--data", "ok.txt", "--config", "ok.txt"], "give a .toml or .json file"),
    (["--data", "ok.txt", "--config", "typo.toml"], "unknown setting 'n_layer' (did you mean 'n_layers'?)"),
    (["--data", "ok.txt", "--config", "wrongtype.toml"], "epochs must be a whole number, got 'ten'"),
    (["--data", "ok.txt", "--config", "broken.toml"], "is not valid TOML"),
    (["--data", "ok.txt", "--resume", "checkpoint.pt", "--time_budget", "0.001"], "ask for --time_budget above"),
    (["--data", "ok.txt", "--schedule", "linear"], "invalid choice: 'linear'"),
    (["--data", "ok.txt", "--resume", "checkpoint.pt", "--optimizer", "muon"], "trained with adamw"),
    (["--data", "ok.txt", "--bogus", "1"], "unrecognized arguments: --bogus"),
    (["--epochs", "2"], "needs --data"),
    (["--data", "ok.txt", "--resume", "nothere.pt"], "looked for nothere.pt and checkpoints/nothere.pt"),
    (["--data", "ok.txt", "--resume", "ok.txt"], "not a checkpoint file"),
    (["--data", "ok.txt", "--resume", "checkpoint.pt", "--d_model", "64"], "contradicts the checkpoint"),
    (["--data", "ok.txt", "--resume", "checkpoint.pt", "--epochs", "1"], "already at epoch 1"),
    (["--data", "unseen.txt", "--resume", "checkpoint.pt", "--epochs", "3"], "vocabulary lacks"),
    (["--data", "ok.txt", "--tokenizer", "wordpiece"], "invalid choice: 'wordpiece'"),
    (["--data", "ok.txt", "--tokenizer", "bpe", "--vocab_size", "100"], "vocab_size must be between 256"),
    (["--data", "ok.txt", "--tokenizer", "bpe", "--vocab-size", "99999999999"], "vocab_size must be between 256"),
    (["--data", "ok.txt", "--vocab_size", "512"], "--vocab_size is for --tokenizer bpe"),
    (
        ["--data", "ok.txt", "--resume", "checkpoint.pt", "--tokenizer", "bpe", "--epochs", "3"],
        "contradicts the checkpoint, whose tokenizer is char",
    ),
]

BAD_GENERATE = [
    (["--checkpoint", "checkpoint.pt", "--prompt_file", "missing.txt"], "prompt file 'missing.txt' does not exist"),
    (["--checkpoint", "checkpoint.pt", "--prompt_file", "empty.txt"], "prompt file 'empty.txt' is empty"),
    (["--checkpoint", "checkpoint.pt", "--prompt_file", "latin1.txt"], "not UTF-8"),
    (["--checkpoint", "checkpoint.pt", "--prompt_file", "ok.txt", "--prompt", "x"], "not both"),
    (["--checkpoint", "checkpoint.pt", "--interactive", "--prompt", "x"], "--interactive reads its prompts"),
    (["--checkpoint", "checkpoint.pt", "--stop", ""], "--stop needs a non-empty string"),
    (["--checkpoint", "missing.pt"], "not found"),
    (["--checkpoint", "ok.txt"], "not a checkpoint file"),
    (["--checkpoint", "empty.txt"], "is empty"),
    (["--checkpoint", "adir"], "is a directory"),
    (["--checkpoint", "checkpoint.pt", "--prompt", "Zebra ✨"], "not in the model's vocabulary: 'Z'"),
    (["--checkpoint", "checkpoint.pt", "--temperature", "-1"], "--temperature must be"),
    (["--checkpoint", "checkpoint.pt", "--top_p", "0"], "--top_p must be in (0, 1]"),
    (["--checkpoint", "checkpoint.pt", "--top_p", "1.5"], "--top_p must be in (0, 1]"),
    (["--checkpoint", "checkpoint.pt", "--top_k", "-2"], "--top_k must be"),
    (["--checkpoint", "checkpoint.pt", "--max_new_tokens", "-1"], "--max_new_tokens must be"),
    (["--checkpoint", "checkpoint.pt", "--num_samples", "0"], "--num_samples must be"),
    (["--checkpoint", "checkpoint.pt", "--device", "mps"], "MPS backend is not available"),
    (["--prompt", "hi"], "the following arguments are required: --checkpoint"),
]


BAD_OTHER = [
    ("info", ["--checkpoint", "missing.pt"], "not found"),
    ("info", ["--checkpoint", "ok.txt"], "not a checkpoint file"),
    ("eval", ["--checkpoint", "checkpoint.pt", "--data", "missing.txt"], "does not exist"),
    ("eval", ["--checkpoint", "checkpoint.pt", "--data", "unseen.txt"], "not in the model's vocabulary"),
    ("eval", ["--checkpoint", "checkpoint.pt", "--data", "ok.txt", "--val_fraction", "0"], "--val_fraction must be"),
    ("eval", ["--checkpoint", "checkpoint.pt", "--data", "ok.txt", "--batch_size", "0"], "--batch_size must be"),
    ("export", ["--checkpoint", "checkpoint.pt", "--out", "afile"], "is a file, not a directory"),
    ("export", ["--checkpoint", "empty.txt", "--out", "new_export"], "is empty"),
    ("export", ["--checkpoint", "checkpoint.pt", "--out", "m.gguf", "--format", "gguf"], "mlp='gelu' has no exact"),
    ("export", ["--checkpoint", "checkpoint.pt", "--out", "new_export", "--dtype", "float16"], "--dtype is for"),
    ("import", ["--from", "adir", "--out", "gpt2.pt"], "'adir' has no config.json"),
    ("import", ["--from", "missing_dir", "--out", "gpt2.pt"], "'missing_dir' is not a directory"),
    ("import", ["--from", "adir", "--out", "ok.txt"], "'ok.txt' already exists"),
    ("prepare", ["--data", "ok.txt", "--out", "new_prep", "--tokenizer", "bpe", "--vocab_size", "10"], "between 256"),
    (
        "prepare",
        ["--data", "ok.txt", "--out", "new_prep", "--vocab_size", "512"],
        "--vocab_size is for --tokenizer bpe",
    ),
    ("prepare", ["--data", "ok.txt", "--out", "new_prep", "--tokenizer", "unigram"], "invalid choice: 'unigram'"),
    ("attention", ["--checkpoint", "checkpoint.pt", "--prompt", "The", "--out", "a.jpg"], "ending in .png"),
    ("attention", ["--checkpoint", "checkpoint.pt", "--prompt", "The", "--out", "nodir/a.png"], "does not exist"),
    ("attention", ["--checkpoint", "checkpoint.pt", "--prompt", "The", "--out", "a.png", "--layer", "1"], "together"),
    (
        "attention",
        ["--checkpoint", "checkpoint.pt", "--prompt", "The", "--out", "a.png", "--layer", "5", "--head", "0"],
        "this model has layers 0..1 and heads 0..3",
    ),
    ("attention", ["--checkpoint", "checkpoint.pt", "--prompt", "", "--out", "a.png"], "at least one character"),
    ("attention", ["--checkpoint", "checkpoint.pt", "--prompt", "Zed", "--out", "a.png"], "not in the model's vocab"),
    ("attention", ["--checkpoint", "checkpoint.pt", "--prompt", "e" * 40, "--out", "a.png"], "attends over at most 32"),
    ("compare", ["missing_run"], "run directory 'missing_run' does not exist"),
    ("compare", ["adir"], "'adir' is not a run directory (it has no config.json)"),
    ("compare", ["afile"], "'afile' is not a directory"),
    ("compare", ["nothing*"], "'nothing*' matches no run directory"),
    ("compare", ["adir", "--out", "cmp.jpg"], "give a file name ending in .png"),
    ("compare", [], "the following arguments are required: RUN_DIR"),
    ("serve", ["--experiments", "missing_dir"], "--experiments folder 'missing_dir' does not exist"),
    ("serve", ["--experiments", "adir", "--checkpoints", "afile"], "--checkpoints 'afile' is not a directory"),
    ("serve", ["--experiments", "adir", "--port", "70000"], "--port must be between 0 and 65535"),
    ("serve", ["--experiments", "adir", "--port", "http"], "invalid int value: 'http'"),
    ("lens", ["--checkpoint", "missing.pt", "--prompt", "The"], "not found"),
    ("lens", ["--checkpoint", "checkpoint.pt", "--prompt", "Zed"], "not in the model's vocabulary"),
    ("lens", ["--checkpoint", "checkpoint.pt", "--prompt", "T"], "--prompt needs at least 2 tokens"),
    ("lens", ["--checkpoint", "checkpoint.pt", "--prompt", "e" * 40], "attends over at most 32"),
    ("lens", ["--checkpoint", "checkpoint.pt", "--prompt", "The", "--out", "a.jpg"], "ending in .png"),
    ("ablate", ["--checkpoint", "checkpoint.pt", "--data", "empty.txt"], "is empty"),
    ("ablate", ["--checkpoint", "checkpoint.pt", "--data", "unseen.txt"], "not in the model's vocabulary"),
    ("ablate", ["--checkpoint", "checkpoint.pt", "--data", "ok.txt", "--max_tokens", "0"], "--max_tokens must be"),
    ("embeddings", ["--checkpoint", "checkpoint.pt", "--token", "Th"], "--token 'Th' is 2 tokens"),
    ("embeddings", ["--checkpoint", "checkpoint.pt", "--token", "Z"], "not in the model's vocabulary"),
    ("neurons", ["--checkpoint", "checkpoint.pt", "--data", "ok.txt", "--layer", "2"], "this model has layers 0..1"),
    ("neurons", ["--checkpoint", "checkpoint.pt", "--data", "missing.txt", "--layer", "0"], "does not exist"),
    ("induction", ["--steps", "0"], "--steps, --eval_every and --batch_size must be at least 1"),
    ("induction", ["--out", "nodir/a.png"], "does not exist"),
    ("finetune", ["--from", "missing.pt", "--data", "ok.txt"], "not found"),
    ("finetune", ["--from", "checkpoint.pt", "--data", "badjson.jsonl"], "badjson.jsonl line 1: not valid JSON"),
    ("finetune", ["--from", "checkpoint.pt", "--data", "noanswer.jsonl"], "line 1: the conversation has no assistant"),
    ("finetune", ["--from", "checkpoint.pt", "--data", "role.jsonl"], "line 1: message 1 has unknown role 'bot'"),
    ("finetune", ["--from", "checkpoint.pt", "--data", "unseen.txt"], "the checkpoint's vocabulary lacks"),
    ("chat", ["--checkpoint", "missing.pt"], "not found"),
    ("score", ["--checkpoint", "checkpoint.pt", "--data", "missing.jsonl"], "does not exist"),
    ("frobnicate", [], "invalid choice: 'frobnicate'"),
]


@pytest.fixture
def bad_inputs_dir(trained, tmp_path):
    """A working directory with a real run in it plus one file of every kind of bad input."""
    shutil.copytree(trained / "checkpoints", tmp_path / "checkpoints")
    make_bad_inputs(tmp_path)
    return tmp_path


@pytest.mark.parametrize(
    ("command", "args", "message"),
    [("train", *case) for case in BAD_TRAIN] + [("generate", *case) for case in BAD_GENERATE] + BAD_OTHER,
)
def test_bad_input_is_one_clean_line_and_changes_nothing(bad_inputs_dir, monkeypatch, capsys, command, args, message):
    before = snapshot(bad_inputs_dir)
    code, out, err = cli([command, *args], bad_inputs_dir, monkeypatch, capsys)
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err + out
    assert snapshot(bad_inputs_dir) == before
    assert not (bad_inputs_dir / "experiments").exists()


@pytest.mark.slow
def test_bad_input_in_a_real_process_has_no_traceback(bad_inputs_dir):
    for args in (["train", "--data", "latin1.txt"], ["generate", "--checkpoint", "ok.txt"]):
        r = run_cli(*args, cwd=bad_inputs_dir)
        assert r.returncode == 2 and "Traceback" not in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1


def test_stop_and_prompt_file(trained, monkeypatch, capsys):
    (trained / "prompt.txt").write_text("Training even")
    base = [
        "generate",
        "--checkpoint",
        "checkpoint.pt",
        "--prompt_file",
        "prompt.txt",
        "--max_new_tokens",
        "60",
        "--seed",
        "3",
    ]
    code, full, err = cli(base, trained, monkeypatch, capsys)
    assert code == 0, err and full.startswith("Training even")
    continuation = full[len("Training even") : -1]
    stop = continuation[10:12]
    code, out, err = cli([*base, "--stop", stop], trained, monkeypatch, capsys)
    assert code == 0, err
    assert out == "Training even" + continuation[: continuation.find(stop)] + "\n"


@pytest.mark.slow
def test_interactive_session(trained):
    """Prompts typed one per line, a setting changed in between, /quit leaves; unseen characters are reported."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    script = "The\n/temperature 0\n/max_new_tokens 15\nThe\nThe\nZ~\n/bogus\n/quit\nnever read\n"
    r = subprocess.run(
        [
            sys.executable,
            str(ROOT / "mini-transformer-lab.py"),
            "generate",
            "--checkpoint",
            "checkpoint.pt",
            "--interactive",
            "--max_new_tokens",
            "5",
            "--seed",
            "1",
        ],
        input=script,
        capture_output=True,
        text=True,
        cwd=trained,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    out = r.stdout  # answers may hold newlines themselves, so read them by length
    assert len(out) == (3 + 5 + 1) + 2 * (3 + 15 + 1), out  # 5 new characters, then 15 twice
    assert out[9:28] == out[28:47] and out[9:12] == "The"  # greedy after /temperature 0: same answer twice
    assert "temperature = 0.0" in r.stderr and "max_new_tokens = 15" in r.stderr
    assert "not in the model's vocabulary" in r.stderr and "unknown command /bogus" in r.stderr
    assert "never read" not in r.stdout


def test_info_eval_export_on_a_trained_run(trained, tmp_path, monkeypatch, capsys):
    code, out, err = cli(["info", "--checkpoint", "checkpoint.pt"], trained, monkeypatch, capsys)
    assert code == 0, err
    assert "parameters:" in out and "epoch 1 of 1" in out and "best validation loss" in out
    code, out, err = cli(
        ["eval", "--checkpoint", "best_model.pt", "--data", "my_data.txt"], trained, monkeypatch, capsys
    )
    assert code == 0, err and out.startswith("loss ")
    best = load_checkpoint(trained / "checkpoints" / "best_model.pt")["best_val_loss"]
    assert float(out.split()[1]) == pytest.approx(best, abs=1e-4)  # eval scores exactly the training run's val split
    code, out, err = cli(
        ["export", "--checkpoint", "best_model.pt", "--out", str(tmp_path / "shared")], trained, monkeypatch, capsys
    )
    assert code == 0, err
    for command in (["generate", "--max_new_tokens", "5"], ["info"], ["eval", "--data", "my_data.txt"]):
        code, out, err = cli(
            [command[0], "--checkpoint", str(tmp_path / "shared"), *command[1:]], trained, monkeypatch, capsys
        )
        assert code == 0, (command, err)


def test_errors_catalogue_lists_every_case():
    """docs/errors.md is generated from these cases (tests/support/make_errors_doc.py); it must not fall behind."""
    from tests.conftest import ROOT

    doc = (ROOT / "docs" / "errors.md").read_text()
    for command, args, message in (
        [("train", *c) for c in BAD_TRAIN] + [("generate", *c) for c in BAD_GENERATE] + BAD_OTHER
    ):
        assert message in doc, (command, args)
