"""The figure a run ends with is the final model on the whole validation split; prefix figures say so."""

import csv
import json
import math

import pytest

from minilab.app.cli import final_report
from minilab.app.info import describe
from minilab.checkpoint import load_model
from minilab.training.evaluate import score_text
from minilab.training.trainer import Trainer
from tests.conftest import EXAMPLE, tiny_model_config, tiny_train_config

QUIET = dict(log=lambda *_: None, progress=False)


def _run(tmp_path, eval_tokens):
    cfg = tiny_train_config(tmp_path, eval_tokens=eval_tokens, sample_length=0)
    result = Trainer(cfg, tiny_model_config(), **QUIET).fit()
    summary = json.loads((tmp_path / "experiments" / "run" / "summary.json").read_text())
    return result, summary


def test_a_prefix_run_ends_with_the_whole_split_and_labels_the_prefix(tmp_path):
    result, summary = _run(tmp_path, eval_tokens=64)  # ai_intro.txt's validation split has 152 tokens
    assert result.val_prefix == 64 and summary["val_prefix_tokens"] == 64 and summary["val_split_tokens"] == 152
    # An independent score of the saved final model over the whole split (eval's own code path).
    model, tokenizer, _ = load_model(tmp_path / "checkpoints" / "checkpoint.pt")
    whole = score_text(model, tokenizer, EXAMPLE.read_text(encoding="utf-8"), 0.1).loss
    assert summary["final_val_loss"] == pytest.approx(whole, abs=1e-5)
    assert result.final_val_loss == pytest.approx(whole, abs=1e-5)
    # The in-training figures are of the prefix, and only under keys that say so.
    assert "best_val_loss" not in summary
    with open(tmp_path / "experiments" / "run" / "metrics.csv") as f:
        last_eval = [float(r["val_loss"]) for r in csv.DictReader(f) if r["val_loss"]][-1]
    assert summary["final_val_loss_prefix"] == pytest.approx(last_eval, rel=1e-5)
    assert summary["best_val_loss_prefix"] == pytest.approx(result.best_val_loss)
    assert abs(summary["final_val_loss_prefix"] - whole) > 1e-3  # the prefix really is another figure
    line = final_report(result)
    assert f"val loss {whole:.4f} (the final model, whole validation split)" in line
    assert f"best in-training val loss {result.best_val_loss:.4f} on the first 64 validation tokens" in line
    model, tokenizer, ckpt = load_model(tmp_path / "checkpoints" / "best_model.pt")
    assert "on the first 64 validation tokens" in describe(model, tokenizer, ckpt)


def test_a_whole_split_run_keeps_its_keys_and_needs_no_extra_pass(tmp_path):
    result, summary = _run(tmp_path, eval_tokens=0)
    assert result.val_prefix == 0 and "val_prefix_tokens" not in summary
    with open(tmp_path / "experiments" / "run" / "metrics.csv") as f:
        last_eval = [float(r["val_loss"]) for r in csv.DictReader(f) if r["val_loss"]][-1]
    assert summary["final_val_loss"] == pytest.approx(last_eval, rel=1e-5) == result.final_val_loss
    assert summary["best_val_loss"] == pytest.approx(result.best_val_loss)
    assert "on the first" not in final_report(result)


def test_a_run_without_validation_reports_its_training_loss(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("abcabcabcabc")  # 12 characters: a 0.1 split is under 2, so no validation
    cfg = tiny_train_config(tmp_path, data=str(text), sample_length=0)
    result = Trainer(cfg, tiny_model_config(), **QUIET).fit()
    assert math.isnan(result.final_val_loss)
    assert final_report(result).startswith(f"train loss {result.final_train_loss:.4f} after 2 epochs")
