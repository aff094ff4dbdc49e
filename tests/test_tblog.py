"""`train --tensorboard`: scalars for TensorBoard when the package is there, a one-line note when not."""

import sys
import types

import pytest

from minilab.app.cli import main
from minilab.training.trainer import Trainer
from tests.conftest import tiny_model_config, tiny_train_config


class FakeWriter:
    """Stands in for torch.utils.tensorboard.SummaryWriter: records what it is given."""

    made = []

    def __init__(self, log_dir):
        self.log_dir, self.scalars, self.closed = log_dir, [], False
        FakeWriter.made.append(self)

    def add_scalar(self, tag, value, step):
        self.scalars.append((tag, value, step))

    def flush(self):
        pass

    def close(self):
        self.closed = True


def test_scalars_go_to_a_summary_writer_in_the_run_folder(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", types.SimpleNamespace(SummaryWriter=FakeWriter))
    FakeWriter.made.clear()
    cfg = tiny_train_config(tmp_path, epochs=2, steps_per_epoch=3, sample_length=0, tensorboard=True)
    Trainer(cfg, tiny_model_config(context_length=32), log=lambda *_: None, progress=False).fit()
    (writer,) = FakeWriter.made
    assert writer.log_dir == str(tmp_path / "experiments" / "run" / "tensorboard") and writer.closed
    by_tag = {}
    for tag, _value, step in writer.scalars:
        by_tag.setdefault(tag, []).append(step)
    assert by_tag["loss/train"] == by_tag["lr"] == by_tag["tokens_per_sec"] == [1, 2, 3, 4, 5, 6]
    assert by_tag["loss/val"] == [3, 6]  # the end of each epoch


def test_without_tensorboard_installed_training_goes_on_with_a_note(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails, as if not installed
    monkeypatch.chdir(tmp_path)
    (tmp_path / "t.txt").write_text("hello there, a tiny text to learn from. " * 30)
    code = main(["train", "--data", "t.txt", "--preset", "tiny", "--epochs", "1", "--tensorboard", "--device", "cpu"])
    out = capsys.readouterr().out
    assert code == 0
    assert "note: --tensorboard needs the tensorboard package (pip install tensorboard)" in out
    assert not list((tmp_path / "experiments").glob("*/tensorboard"))


def test_real_tensorboard_event_files(tmp_path):
    pytest.importorskip("tensorboard", reason="tensorboard is not installed (pip install tensorboard)")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = tiny_train_config(tmp_path, epochs=1, steps_per_epoch=3, sample_length=0, tensorboard=True)
    Trainer(cfg, tiny_model_config(context_length=32), log=lambda *_: None, progress=False).fit()
    events = EventAccumulator(str(tmp_path / "experiments" / "run" / "tensorboard")).Reload()
    assert {"loss/train", "loss/val", "lr", "tokens_per_sec"} <= set(events.Tags()["scalars"])
    assert [e.step for e in events.Scalars("loss/train")] == [1, 2, 3]
