"""finetune, chat, score and eval on conversations from the command line, and their bad input."""

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch

from minilab.app.cli import main
from minilab.checkpoint import load_checkpoint, load_model
from minilab.generation.chat import ChatSession
from minilab.tokenizers.special import CHAT_TOKENS
from minilab.training.config import TrainConfig
from minilab.training.trainer import Trainer
from tests.conftest import ROOT, TINY_MODEL_FLAGS, run_cli, snapshot

FAST = ["--steps_per_epoch", "3", "--batch_size", "4", "--sample_length", "0", "--device", "cpu"]


def write_task(d: Path) -> None:
    """The lesson's task, small: pretrain.txt, train.jsonl, test.jsonl (example_data/make_addition.py)."""
    sys.path.insert(0, str(ROOT / "example_data"))
    try:
        import make_addition
    finally:
        sys.path.pop(0)
    make_addition.make(d, digits=1, test=10, chats=40, seed=0)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A base model pretrained on the sums as text, and one fine-tuned from it on conversations."""
    d = tmp_path_factory.mktemp("assistant")
    write_task(d)
    args = ["--epochs", "1", *TINY_MODEL_FLAGS, *FAST, "--out_dir", "base", "--run_name", "base"]
    assert cli_in(d, ["train", "--data", "pretrain.txt", *args]) == 0
    args = ["--epochs", "1", *FAST, "--out_dir", "chat", "--run_name", "chat"]
    assert cli_in(d, ["finetune", "--from", "base/best_model.pt", "--data", "train.jsonl", *args]) == 0
    return d


def cli_in(cwd: Path, args: list[str]) -> int:
    import os

    old = os.getcwd()
    os.chdir(cwd)
    try:
        return main([str(a) for a in args])
    except SystemExit as e:
        return e.code
    finally:
        os.chdir(old)


def test_finetune_writes_a_run_of_its_own_with_the_chat_tokens(lab):
    ckpt = load_checkpoint(lab / "chat" / "best_model.pt")
    assert ckpt["tokenizer"]["special_tokens"] == list(CHAT_TOKENS)
    assert ckpt["train_args"]["init_from"] == "base/best_model.pt" and ckpt["train_args"]["mask_loss"] is True
    assert ckpt["step"] == 3  # its own schedule, from step 0
    base = load_checkpoint(lab / "base" / "best_model.pt")
    assert ckpt["model_config"]["vocab_size"] == base["model_config"]["vocab_size"] + len(CHAT_TOKENS)
    assert (lab / "experiments" / "chat" / "config.json").is_file()
    assert base["step"] == 3 and base["train_args"]["init_from"] == ""  # the base's own run, untouched


@pytest.mark.parametrize("data", ["pretrain.txt", "train.jsonl"])
def test_finetune_starts_from_exactly_the_checkpoint_weights(lab, tmp_path, data):
    base = load_checkpoint(lab / "base" / "best_model.pt")
    cfg = TrainConfig(
        data=str(lab / data),
        init_from=str(lab / "base" / "best_model.pt"),
        device="cpu",
        out_dir=str(tmp_path / "ckpt"),
        experiments_dir=str(tmp_path / "exp"),
        run_name="ft",
        seed=7,  # another seed than the base's: the weights must not depend on it
    )
    trainer = Trainer(cfg, log=lambda *_: None, progress=False)
    got, want = trainer.model.state_dict(), base["model_state"]
    assert set(got) == set(want)
    n = base["model_config"]["vocab_size"]
    for name, w in want.items():
        if name in ("tok_emb.weight", "lm_head.weight") and data.endswith(".jsonl"):
            assert torch.equal(got[name][:n], w)  # the old rows as they were ...
            assert torch.allclose(got[name][n:], w.mean(0).expand(len(CHAT_TOKENS), -1))  # ... new ones: their mean
        else:
            assert torch.equal(got[name], w), name
    assert all(not s for s in (opt.state for opt in trainer.optimizers))  # a fresh optimizer
    assert trainer.step == 0 and not (tmp_path / "ckpt").exists()  # nothing written before fit()


@pytest.mark.slow
def test_chat_from_the_command_line(lab):
    args = ["chat", "--checkpoint", "chat/best_model.pt", "--temperature", "0", "--max_new_tokens", "6"]
    r = run_cli_input(lab, "3 + 4\n/reset\n2 + 2\n/quit\n5 + 5\n", *args)
    assert r.returncode == 0, r.stderr
    model, tokenizer, _ = load_model(lab / "chat" / "best_model.pt")
    session = ChatSession(model, tokenizer, max_new_tokens=6, temperature=0.0)
    first = "".join(session.reply("3 + 4"))
    session.reset()
    assert r.stdout == f"{first}\n{''.join(session.reply('2 + 2'))}\n"  # each answer, then nothing after /quit
    assert "(conversation forgotten)" in r.stderr
    base = run_cli_input(lab, "3 + 4\n", "chat", "--checkpoint", "base/best_model.pt")
    assert base.returncode == 2 and "no chat tokens" in base.stderr and "Traceback" not in base.stderr


def run_cli_input(cwd, stdin: str, *args):
    import subprocess

    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    cmd = [sys.executable, str(ROOT / "mini-transformer-lab.py"), *args]
    return subprocess.run(cmd, cwd=cwd, input=stdin, capture_output=True, text=True, timeout=300, env=env)


def test_score_and_eval_on_conversations(lab, capsys):
    assert cli_in(lab, ["score", "--checkpoint", "chat/best_model.pt", "--data", "test.jsonl", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "exact match" in out and "/10 = " in out and "chat template" in out
    assert cli_in(lab, ["score", "--checkpoint", "base/best_model.pt", "--data", "test.jsonl", "--device", "cpu"]) == 0
    assert "plain text (no chat tokens)" in capsys.readouterr().out
    assert cli_in(lab, ["eval", "--checkpoint", "chat/best_model.pt", "--data", "test.jsonl", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    n_answer_tokens = sum(len(json.loads(line)["messages"][1]["content"]) + 1 for line in open(lab / "test.jsonl"))
    assert f"over the {n_answer_tokens} assistant tokens of 10 conversations" in out


BAD = {
    "badjson.jsonl": ('{"messages": [{"role": "user", "content": "1 + 1"}]\n', "badjson.jsonl line 1: not valid JSON"),
    "noanswer.jsonl": ('{"messages": [{"role": "user", "content": "1 + 1"}]}\n', "line 1: the conversation has no"),
    "role.jsonl": ('{"messages": [{"role": "bot", "content": "2"}]}\n', "line 1: message 1 has unknown role 'bot'"),
    "unseen.jsonl": (
        '{"messages": [{"role": "user", "content": "what is 1 + 1?"}, {"role": "assistant", "content": "2"}]}\n',
        "character(s) the checkpoint's vocabulary lacks: 'w' 'h' 'a' 't' 'i' 's' '?'",
    ),
    "long.jsonl": (
        '{"messages": [{"role": "user", "content": "' + "1 + 1 " * 20 + '"}, {"role": "assistant", "content": "2"}]}\n',
        "every conversation is longer than the model's context (32 tokens)",
    ),
    "unseen.txt": ("hello\n", "unseen.txt has 4 character(s) the checkpoint's vocabulary lacks: 'h' 'e' 'l' 'o'"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_finetune_input_is_one_line_and_writes_nothing(lab, tmp_path, name, capsys):
    d = shutil.copytree(lab, tmp_path / "lab")
    text, message = BAD[name]
    (d / name).write_text(text)
    before = snapshot(d)
    assert cli_in(d, ["finetune", "--from", "base/best_model.pt", "--data", name, *FAST]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    assert snapshot(d) == before


def test_finetune_refuses_to_overwrite_the_checkpoint_it_starts_from(lab, tmp_path):
    d = shutil.copytree(lab, tmp_path / "lab")
    before = snapshot(d)
    r = run_cli("finetune", "--from", "base/best_model.pt", "--data", "train.jsonl", "--out_dir", "base", *FAST, cwd=d)
    assert r.returncode == 2 and "holds the checkpoint this run starts from" in r.stderr  # as a user meets it
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert snapshot(d) == before


def test_skipped_conversations_are_counted_before_training(lab, tmp_path, capsys):
    d = shutil.copytree(lab, tmp_path / "lab")
    long = {"messages": [{"role": "user", "content": "1 + 1 " * 20}, {"role": "assistant", "content": "2"}]}
    lines = (d / "train.jsonl").read_text() + json.dumps(long) + "\n"
    (d / "mixed.jsonl").write_text(lines)
    args = ["--from", "base/best_model.pt", "--data", "mixed.jsonl", "--epochs", "1", *FAST, "--out_dir", "ft2"]
    assert cli_in(d, ["finetune", *args]) == 0
    out = capsys.readouterr().out
    assert "note: skipped 1 of 41 conversation(s) longer than the context (32 tokens)" in out
    assert out.index("skipped") < out.index("epoch 1")
    assert "the loss counts" in out and "the assistant's tokens" in out


@pytest.mark.slow
def test_a_new_model_trains_on_conversations_and_resumes(tmp_path, capsys):
    write_task(tmp_path)
    args = ["--preset", "tiny", "--epochs", "1", *FAST, "--out_dir", "run", "--run_name", "run"]
    assert cli_in(tmp_path, ["train", "--data", "train.jsonl", *args]) == 0
    assert "the loss counts" in capsys.readouterr().out
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert ckpt["tokenizer"]["special_tokens"] == list(CHAT_TOKENS)  # a vocabulary from the messages, plus markers
    assert ckpt["conversations"]["trained"] < ckpt["conversations"]["targets"]
    resume = ["train", "--data", "train.jsonl", "--resume", "run/checkpoint.pt", "--epochs", "2", *FAST]
    assert cli_in(tmp_path, resume) == 0
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["step"] == 6


def test_train_init_from_refuses_model_settings_it_would_ignore(lab, capsys):
    args = ["train", "--data", "pretrain.txt", "--init_from", "base/best_model.pt", "--n_layers", "3", *FAST]
    assert cli_in(lab, args) == 2
    assert "--init_from starts from the checkpoint's model and tokenizer; drop n_layers" in capsys.readouterr().err


def test_conversations_need_a_model_with_chat_tokens(lab, tmp_path, capsys):
    d = shutil.copytree(lab, tmp_path / "lab")
    before = snapshot(d)
    assert cli_in(d, ["eval", "--checkpoint", "base/best_model.pt", "--data", "test.jsonl", "--device", "cpu"]) == 2
    assert "no chat tokens" in capsys.readouterr().err
    resume = ["train", "--data", "train.jsonl", "--resume", "base/checkpoint.pt", "--epochs", "2", *FAST]
    assert cli_in(d, resume) == 2
    assert "a resumed run cannot switch to conversations" in capsys.readouterr().err
    assert snapshot(d) == before


def test_a_run_on_conversations_samples_answers_to_validation_questions(tmp_path):
    write_task(tmp_path)
    args = ["--preset", "tiny", "--epochs", "1", *FAST, "--sample_length", "4", "--out_dir", "r", "--run_name", "r"]
    assert cli_in(tmp_path, ["train", "--data", "train.jsonl", *args]) == 0
    samples = (tmp_path / "experiments" / "r" / "samples.txt").read_text()
    chats = [json.loads(line)["messages"] for line in (tmp_path / "train.jsonl").read_text().splitlines()]
    assert len(chats) == 40  # the last 4 validate; the first 3 of those are asked after each epoch
    for i, (question, answer) in enumerate((m[0]["content"], m[1]["content"]) for m in chats[36:]):
        assert (f"{question!r} -> " in samples and f"(expected {answer!r})" in samples) == (i < 3)


@pytest.mark.slow
def test_a_bpe_model_learns_the_chat_format_too(tmp_path):
    write_task(tmp_path)
    tiny = ["--preset", "tiny", "--epochs", "1", *FAST, "--tokenizer", "bpe", "--vocab_size", "280"]
    assert cli_in(tmp_path, ["train", "--data", "pretrain.txt", *tiny, "--out_dir", "base", "--run_name", "b"]) == 0
    ft = ["--epochs", "1", *FAST, "--out_dir", "chat", "--run_name", "c"]
    assert cli_in(tmp_path, ["finetune", "--from", "base/best_model.pt", "--data", "train.jsonl", *ft]) == 0
    base, chat = (load_checkpoint(tmp_path / d / "best_model.pt") for d in ("base", "chat"))
    assert chat["tokenizer"]["merges"] == base["tokenizer"]["merges"]  # the same BPE, four markers after it
    assert chat["model_config"]["vocab_size"] == base["model_config"]["vocab_size"] + len(CHAT_TOKENS)
    model, tokenizer, _ = load_model(tmp_path / "chat" / "best_model.pt")
    session = ChatSession(model, tokenizer, max_new_tokens=4, temperature=0.0)
    answer = "".join(session.reply("3 + 4"))
    assert session.messages[-1] == {"role": "assistant", "content": answer}


def test_info_shows_the_markers_and_what_the_loss_counted(lab, capsys):
    assert cli_in(lab, ["info", "--checkpoint", "chat/best_model.pt"]) == 0
    out = capsys.readouterr().out
    assert "special tokens (4): " in out and "<|assistant|>" in out
    assert "fine-tuned from 'base/best_model.pt'" in out
    conv = load_checkpoint(lab / "chat" / "best_model.pt")["conversations"]
    counted = f"the loss counts the assistant's tokens only: {conv['trained']} of {conv['targets']} training targets"
    assert counted in out
