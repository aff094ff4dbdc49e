"""compare: two tiny runs side by side; the table must report exactly what each run wrote about itself."""

import json
import shutil

import pytest

from minilab.app.cli import main
from minilab.app.compare import compare_table, differences, load_run, short_name
from minilab.errors import LabError
from minilab.training.trainer import Trainer
from tests.conftest import tiny_model_config, tiny_train_config


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    d = tmp_path_factory.mktemp("runs")
    quiet = dict(log=lambda *_: None, progress=False)
    model = dict(context_length=32, dropout=0.0)
    # b scores only the first 64 of its 152 validation tokens during training (--eval_tokens).
    for name, pos, lr, cap in (("a", "sinusoidal", 3e-3, 0), ("b", "rope", 1e-3, 64)):
        cfg = tiny_train_config(
            d, run_name=name, lr=lr, sample_length=0, out_dir=str(d / f"ck_{name}"), eval_tokens=cap
        )
        Trainer(cfg, tiny_model_config(pos_encoding=pos, **model), **quiet).fit()
    return d / "experiments"


def _cells(table: str) -> dict[str, list[str]]:
    rows = [line for line in table.splitlines() if line.startswith("| ")]
    head = [c.strip() for c in rows[0].strip("|").split("|")]
    return {r[0]: dict(zip(head, r)) for r in ([c.strip() for c in line.strip("|").split("|")] for line in rows[2:])}


def test_table_values_are_the_runs_own_summaries(runs):
    loaded = [load_run(runs / "a"), load_run(runs / "b")]
    cells = _cells(compare_table(loaded))
    for name in ("a", "b"):
        s = json.loads((runs / name / "summary.json").read_text())
        row = cells[name]
        best = s["best_val_loss"] if name == "a" else s["best_val_loss_prefix"]
        assert float(row["best val"].rstrip("*")) == pytest.approx(best, abs=5e-5)
        assert row["best val"].endswith("*") == (name == "b")  # a prefix figure is marked
        assert float(row["val loss"]) == pytest.approx(s["final_val_loss"], abs=5e-5)
        assert int(row["params"].replace(",", "")) == s["parameters"]
        assert int(row["steps"]) == s["steps"] == 10
        assert float(row["wall s"]) == pytest.approx(s["wall_time_sec"], abs=0.05)
        assert float(row["tok/s"].replace(",", "")) == pytest.approx(s["tokens_per_sec"], abs=0.5)
    assert "* scored during training on the first 64 validation tokens only" in compare_table(loaded)
    varying, per_run = differences(loaded)
    assert varying == ["model.pos_encoding", "train.eval_tokens", "train.lr"]  # names and dirs are no differences
    # With a tie, the first run's values count as the baseline; the other run lists where it departs.
    assert cells["a"]["differs"] == "-" and cells["b"]["differs"] == "pos_encoding=rope, eval_tokens=64, lr=0.001"


def test_summaries_from_before_the_final_evaluation_still_compare(runs, tmp_path):
    shutil.copytree(runs / "b", tmp_path / "old")
    summary = json.loads((tmp_path / "old" / "summary.json").read_text())
    for key in ("best_val_loss_prefix", "final_val_loss_prefix", "val_prefix_tokens", "val_split_tokens"):
        summary.pop(key)
    summary.update(best_val_loss=1.25, final_val_loss=1.5)  # the keys older runs wrote
    (tmp_path / "old" / "summary.json").write_text(json.dumps(summary))
    row = _cells(compare_table([load_run(tmp_path / "old")]))["b"]
    assert row["best val"] == "1.2500" and row["val loss"] == "1.5000"


def test_a_value_shared_by_most_runs_is_the_baseline(runs, tmp_path):
    shutil.copytree(runs / "a", tmp_path / "a2")  # now two runs with a's settings, one with b's
    loaded = [load_run(runs / "a"), load_run(tmp_path / "a2"), load_run(runs / "b")]
    _, per_run = differences(loaded)
    assert per_run == [{}, {}, {"pos_encoding": "rope", "eval_tokens": 64, "lr": 0.001}]


def test_compare_command_with_a_glob_writes_a_png(runs, tmp_path, capsys):
    import matplotlib.image

    out = tmp_path / "cmp.png"
    assert main(["compare", str(runs / "*"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| a " in printed and "| b " in printed and f"wrote {out}" in printed
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert matplotlib.image.imread(out).shape[0] > 100  # decodes as an image


def test_val_points_carry_step_and_wall_clock(runs):
    run = load_run(runs / "a")
    assert [step for step, _, _ in run.val] == [5, 10]
    assert all(wall is not None and wall > 0 for _, _, wall in run.val)


def test_a_run_without_metrics_is_one_clean_error(runs, tmp_path, capsys):
    d = tmp_path / "fresh"
    d.mkdir()
    for name in ("config.json", "summary.json"):
        shutil.copy(runs / "a" / name, d / name)
    (d / "metrics.csv").write_text("step,epoch,train_loss,val_loss\n1,1,4.0,\n")
    assert main(["compare", str(runs / "a"), str(d), "--out", str(tmp_path / "c.png")]) == 2
    err = capsys.readouterr().err
    assert "has no metrics yet" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "c.png").exists()  # nothing is written before every run has been read
    (d / "summary.json").write_text("[1]")
    with pytest.raises(LabError, match="does not hold a JSON object"):
        load_run(d)


def test_names_keep_their_prefix_only_where_both_configs_use_them():
    keys = {"model.vocab_size", "train.vocab_size", "model.d_model", "train.lr"}
    assert short_name("model.vocab_size", keys) == "model.vocab_size"
    assert short_name("train.vocab_size", keys) == "train.vocab_size"
    assert short_name("model.d_model", keys) == "d_model" and short_name("train.lr", keys) == "lr"
