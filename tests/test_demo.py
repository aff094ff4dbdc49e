"""make demo: text before and after, the loss curve, and three next steps whose commands work."""

import shlex

import pytest

from minilab.app import demo
from minilab.app.cli import main
from tests.conftest import ROOT


@pytest.mark.slow
def test_the_demo_trains_shows_before_and_after_and_its_next_commands_work(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    text = (ROOT / "example_data" / "tinyshakespeare.txt").read_text(encoding="utf-8")[:20_000]
    (tmp_path / "shakespeare.txt").write_text(text, encoding="utf-8")
    assert demo.main(["--data", "shakespeare.txt", "--out", "out", "--time_budget", "12"]) == 0
    printed = capsys.readouterr().out
    before = printed.split("Before training (random weights), the model writes:")[1].split("Training the")[0]
    after = printed.split("of training (")[1].split("The loss curve: ")[0]
    assert len(before.strip()) > 100 and len(after.strip()) > 100 and before != after
    curve = printed.split("The loss curve: ")[1].splitlines()[0]
    assert (tmp_path / curve).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    lines = printed.split("Next, try:")[1].strip().splitlines()
    commands = {}
    for line in lines[1::2]:  # each step: a line saying what, then the command
        words = shlex.split(line)
        at = next(i for i, w in enumerate(words) if w in ("generate", "serve", "attention"))
        commands[words[at]] = words[at:]
    assert commands["generate"][-1] == "--interactive"
    assert main([*commands["generate"][:-1], "--prompt", "ROMEO:", "--max_new_tokens", "5", "--seed", "0"]) == 0
    assert main(commands["attention"]) == 0 and (tmp_path / "out" / "attention.png").exists()
    serve = commands["serve"]
    assert (tmp_path / serve[serve.index("--experiments") + 1]).is_dir()
    assert (tmp_path / serve[serve.index("--checkpoints") + 1] / "checkpoint.pt").is_file()


def test_a_budget_too_short_for_one_step_is_a_clear_error(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "t.txt").write_text("To be, or not to be, that is the question.\n" * 40)
    assert demo.main(["--data", "t.txt", "--out", "out", "--time_budget", "0.001"]) == 2
    assert "ran out before the first training step" in capsys.readouterr().err
