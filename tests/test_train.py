import csv
import json
import math

import pytest
import torch

from minilab.app.settings import resume_configs
from minilab.checkpoint import load_checkpoint
from minilab.errors import LabError
from minilab.training.data import split_tokens
from minilab.training.optim import lr_at
from minilab.training.trainer import Trainer
from tests.conftest import tiny_model_config, tiny_train_config


def _model_cfg(**kw):
    return tiny_model_config(context_length=32, dropout=0.1, **kw)


def test_lr_schedule_warmup_then_cosine():
    lrs = [lr_at(s, 100, 10, 1.0, 0.1) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:]))
    assert lrs[-1] == pytest.approx(0.1, abs=1e-3)
    # halfway through the decay: exactly between peak and floor
    assert lr_at(55, 100, 10, 1.0, 0.1) == pytest.approx(0.55)


def test_lr_schedule_wsd_and_constant():
    wsd = [lr_at(s, 110, 10, 1.0, 0.1, "wsd") for s in range(111)]
    assert wsd[0] == pytest.approx(0.1) and wsd[9] == pytest.approx(1.0)
    assert wsd[10:91] == pytest.approx([1.0] * 81) and wsd[91] < 0.99  # stable for 80% of the steps after warmup
    assert wsd[100] == pytest.approx(0.1 + 0.9 * 0.5)  # linear: half way down at 90%
    assert wsd[110] == pytest.approx(0.1) and all(a > b for a, b in zip(wsd[90:], wsd[91:]))
    const = [lr_at(s, 100, 10, 1.0, 0.1, "constant") for s in range(100)]
    assert const[0] == pytest.approx(0.1) and const[10:] == pytest.approx([1.0] * 90)


def test_auto_warmup_without_progress_is_10_percent_of_the_steps_at_most_100():
    assert [lr_at(s, 50, -1, 1.0, 0.1) for s in range(6)] == pytest.approx(
        [lr_at(s, 50, 5, 1.0, 0.1) for s in range(6)]
    )
    assert lr_at(0, 5000, -1, 1.0, 0.1) == pytest.approx(1 / 100)


def test_lr_schedule_follows_progress_when_given():
    """A time budget passes the share of the budget spent: the step count no longer matters."""
    assert lr_at(50, 100, 10, 1.0, 0.0, "cosine", progress=0.0) == pytest.approx(1.0)
    assert lr_at(3, 100, 10, 1.0, 0.0, "cosine", progress=0.9) == pytest.approx(0.4)  # still warming up
    assert lr_at(500, 100, 10, 1.0, 0.0, "wsd", progress=0.9) == pytest.approx(0.5)
    assert lr_at(500, 100, 10, 1.0, 0.0, "cosine", progress=1.7) == pytest.approx(0.0)


def test_muon_takes_the_hidden_matrices_and_adamw_the_rest(tmp_path):
    quiet = dict(log=lambda *_: None, progress=False)
    trainer = Trainer(tiny_train_config(tmp_path, optimizer="muon"), _model_cfg(tie_embeddings=False), **quiet)
    adamw, muon = trainer.optimizers
    assert isinstance(adamw, torch.optim.AdamW) and isinstance(muon, torch.optim.Muon)
    names = {id(p): n for n, p in trainer.model.named_parameters()}
    in_muon = {names[id(p)] for g in muon.param_groups for p in g["params"]}
    in_adamw = {names[id(p)] for g in adamw.param_groups for p in g["params"]}
    assert in_muon == {
        f"blocks.{i}.{m}.weight" for i in range(2) for m in ("attn.qkv", "attn.proj", "mlp.fc", "mlp.proj")
    }
    assert in_adamw == set(names.values()) - in_muon  # every parameter once, nothing twice
    assert {"tok_emb.weight", "lm_head.weight", "ln_f.weight", "blocks.0.attn.qkv.bias"} <= in_adamw
    result = trainer.fit()
    assert math.isfinite(result.final_val_loss)


def test_run_writes_checkpoints_and_experiment_files(tmp_path):
    result = Trainer(tiny_train_config(tmp_path), _model_cfg(), log=lambda *_: None, progress=False).fit()
    ck = tmp_path / "checkpoints"
    assert {p.name for p in ck.iterdir()} == {
        "checkpoint_epoch_1.pt",
        "checkpoint_epoch_2.pt",
        "checkpoint.pt",
        "best_model.pt",
    }
    ckpt = load_checkpoint(ck / "checkpoint.pt")
    for key in (
        "model_state",
        "model_config",
        "tokenizer",
        "optimizer_state",
        "scheduler",
        "epoch",
        "step",
        "best_val_loss",
        "rng",
        "train_args",
    ):
        assert key in ckpt
    assert ckpt["epoch"] == 2 and ckpt["step"] == 10
    run = tmp_path / "experiments" / "run"
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    assert [int(r["step"]) for r in rows] == list(range(1, 11))
    assert {r["val_loss"] != "" for r in rows} == {True, False}
    assert rows[4]["val_loss"] and rows[9]["val_loss"]  # end of each epoch
    summary = json.loads((run / "summary.json").read_text())
    assert summary["best_val_loss"] == pytest.approx(result.best_val_loss)
    assert summary["parameters"] > 0 and summary["tokens_per_sec"] > 0
    assert (run / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (run / "samples.txt").read_text().count("=== epoch") == 2
    assert json.loads((run / "config.json").read_text())["model"]["d_model"] == 32


def test_loss_goes_down(tmp_path):
    cfg = tiny_train_config(tmp_path, epochs=3, steps_per_epoch=20)
    result = Trainer(cfg, _model_cfg(), log=lambda *_: None, progress=False).fit()
    rows = list(csv.DictReader(open(result.run_dir / "metrics.csv")))
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"]) - 0.5


@pytest.mark.parametrize(("pos", "optimizer"), [("sinusoidal", "adamw"), ("learned", "adamw"), ("rope", "muon")])
def test_resume_gives_identical_weights(tmp_path, pos, optimizer):
    """2 epochs straight == resume from the epoch-1 checkpoint for the 2nd epoch (dropout on: RNG matters)."""
    quiet = dict(log=lambda *_: None, progress=False)
    Trainer(tiny_train_config(tmp_path / "a", optimizer=optimizer), _model_cfg(pos_encoding=pos), **quiet).fit()
    straight = load_checkpoint(tmp_path / "a" / "checkpoints" / "checkpoint.pt")
    mid = load_checkpoint(tmp_path / "a" / "checkpoints" / "checkpoint_epoch_1.pt")
    flags = {"out_dir": str(tmp_path / "b" / "checkpoints"), "experiments_dir": str(tmp_path / "b" / "exp")}
    train_cfg, _ = resume_configs(mid, flags, {})
    Trainer(train_cfg, resume=mid, **quiet).fit()
    resumed = load_checkpoint(tmp_path / "b" / "checkpoints" / "checkpoint.pt")
    assert resumed["epoch"] == 2 and resumed["step"] == straight["step"]
    for name, tensor in straight["model_state"].items():
        assert torch.equal(tensor, resumed["model_state"][name]), name
    rows = list(csv.DictReader(open(tmp_path / "b" / "exp" / "run" / "metrics.csv")))
    assert [int(r["step"]) for r in rows] == list(range(6, 11))


def test_resume_continues_metrics_without_duplicates(tmp_path):
    quiet = dict(log=lambda *_: None, progress=False)
    Trainer(tiny_train_config(tmp_path, epochs=2), _model_cfg(), **quiet).fit()
    mid = load_checkpoint(tmp_path / "checkpoints" / "checkpoint_epoch_1.pt")
    train_cfg, _ = resume_configs(mid, {"epochs": 3}, {})
    Trainer(train_cfg, resume=mid, **quiet).fit()
    rows = list(csv.DictReader(open(tmp_path / "experiments" / "run" / "metrics.csv")))
    assert [int(r["step"]) for r in rows] == list(range(1, 16))


def test_resume_refuses_contradicting_architecture_and_finished_runs(tmp_path):
    quiet = dict(log=lambda *_: None, progress=False)
    Trainer(tiny_train_config(tmp_path, epochs=1), _model_cfg(), **quiet).fit()
    ckpt = load_checkpoint(tmp_path / "checkpoints" / "checkpoint.pt")
    with pytest.raises(LabError, match="--d_model 64 contradicts the checkpoint"):
        resume_configs(ckpt, {}, {"d_model": 64})
    with pytest.raises(LabError, match="--optimizer muon contradicts the checkpoint, which was trained with adamw"):
        resume_configs(ckpt, {"optimizer": "muon"}, {})
    resume_configs(ckpt, {}, {"d_model": 32})  # agreeing is fine
    train_cfg, _ = resume_configs(ckpt, {"epochs": 1}, {})
    with pytest.raises(LabError, match="already at epoch 1"):
        Trainer(train_cfg, resume=ckpt, **quiet)


def test_same_seed_same_run(tmp_path):
    quiet = dict(log=lambda *_: None, progress=False)
    a = Trainer(tiny_train_config(tmp_path / "a", epochs=1), _model_cfg(), **quiet).fit()
    b = Trainer(tiny_train_config(tmp_path / "b", epochs=1), _model_cfg(), **quiet).fit()
    assert a.final_train_loss == b.final_train_loss and a.final_val_loss == b.final_val_loss


def test_tiny_text_is_adjusted_with_notes(tmp_path):
    data = tmp_path / "tiny.txt"
    data.write_text("abcabcabd")
    notes = []
    cfg = tiny_train_config(tmp_path, data=str(data), epochs=1, batch_size=0)
    Trainer(cfg, _model_cfg(), log=notes.append, progress=False).fit()
    text = "\n".join(notes)
    assert "too short for a 0.1 validation split" in text
    assert "training on windows of 8 tokens" in text
    assert (tmp_path / "checkpoints" / "best_model.pt").exists()


def test_split_tokens_rules():
    s = split_tokens(list(range(100)), 0.1, 32)
    assert len(s.train) == 90 and len(s.val) == 10 and s.window == 32 and not s.notes
    with pytest.raises(LabError, match="at least 3"):
        split_tokens([1, 2], 0.1, 32)


def test_nan_loss_stops_with_the_step(tmp_path):
    cfg = tiny_train_config(tmp_path, lr=1e-3)
    trainer = Trainer(cfg, _model_cfg(), log=lambda *_: None, progress=False)
    with torch.no_grad():
        trainer.model.ln_f.weight.fill_(math.nan)
    with pytest.raises(LabError, match="at step 1;.*lower --lr"):
        trainer.fit()
    assert not (tmp_path / "checkpoints" / "best_model.pt").exists()


def test_grad_accum_equals_one_larger_batch(tmp_path):
    """4 micro-batches of 2 per step == batches of 8 (same windows, same averaged gradient)."""
    cfg = tiny_model_config(context_length=32, dropout=0.0)
    quiet = dict(log=lambda *_: None, progress=False)
    a = Trainer(tiny_train_config(tmp_path / "a", batch_size=2, grad_accum=4, epochs=1), cfg, **quiet)
    a.fit()
    b = Trainer(tiny_train_config(tmp_path / "b", batch_size=8, epochs=1), cfg, **quiet)
    b.fit()
    for name, tensor in a.model.state_dict().items():
        assert torch.allclose(tensor, b.model.state_dict()[name], atol=1e-5), name
    rows_a = list(csv.DictReader(open(a.run_dir / "metrics.csv")))
    rows_b = list(csv.DictReader(open(b.run_dir / "metrics.csv")))
    assert [float(r["train_loss"]) for r in rows_a] == pytest.approx([float(r["train_loss"]) for r in rows_b], abs=1e-5)
    assert all(0 < float(r["mfu"]) < 1.5 for r in rows_a)


def _clocked(trainer: Trainer, seconds_per_step: float = 1.0) -> Trainer:
    """Replace the trainer's wall clock by one that advances exactly per step, so budgets are deterministic."""
    clock = trainer.clock
    clock.wall = lambda: clock.prior + (trainer.step - trainer.start_step) * seconds_per_step
    clock.reserve = lambda: 0.0  # nothing kept back for the run's end (tested on its own below)
    trainer.start_step = trainer.step
    return trainer


def test_auto_warmup_under_a_time_budget_is_a_share_of_the_budget(tmp_path):
    """Auto warmup with a budget: 10% of the budget's time (or 100 steps), not 10% of epochs x steps."""
    quiet = dict(log=lambda *_: None, progress=False)
    # epochs x steps_per_epoch = 5 would make the old rule's warmup 0 steps: the first step at full lr.
    cfg = tiny_train_config(tmp_path, time_budget=20, epochs=1, steps_per_epoch=5, sample_length=0)
    result = _clocked(Trainer(cfg, _model_cfg(), **quiet)).fit()
    lrs = [float(r["lr"]) for r in csv.DictReader(open(result.run_dir / "metrics.csv"))]
    assert lrs[0] == pytest.approx(3e-3 / 100)  # step 0, no time spent yet: 1 of the 100-step cap
    assert lrs[1] == pytest.approx(3e-3 / 2)  # 1 s of 20: half of the 2-second warmup
    assert lrs[2] == pytest.approx(lr_at(2, 0, 0, 3e-3, 3e-4, "cosine", progress=0.1), rel=1e-5)  # warm: the schedule
    assert load_checkpoint(tmp_path / "checkpoints" / "checkpoint.pt")["train_args"]["warmup_steps"] == -1
    # Without a budget the auto warmup is still resolved from the planned steps, and stored.
    Trainer(tiny_train_config(tmp_path / "b", epochs=3, steps_per_epoch=10), _model_cfg(), **quiet).fit()
    assert load_checkpoint(tmp_path / "b" / "checkpoints" / "checkpoint.pt")["train_args"]["warmup_steps"] == 3


def test_a_time_budget_keeps_time_back_for_the_final_evaluation(tmp_path):
    """Training stops early enough for the last evaluation and save to fit, and the schedule ends there."""
    quiet = dict(log=lambda *_: None, progress=False)
    trainer = _clocked(Trainer(tiny_train_config(tmp_path, time_budget=10, warmup_steps=0), _model_cfg(), **quiet))
    trainer.clock.reserve = lambda: 2.5  # as if the end of an epoch took 1.5 s (+ 1 s for the exit)
    result = trainer.fit()
    assert result.steps == 8  # 7.5 s of training time: steps at 0..7 s
    lrs = [float(r["lr"]) for r in csv.DictReader(open(result.run_dir / "metrics.csv"))]
    assert lrs == pytest.approx([lr_at(s, 0, 0, 3e-3, 3e-4, "cosine", progress=s / 7.5) for s in range(8)], rel=1e-5)
    # The estimate is the last epoch end's measured cost.
    real = Trainer(tiny_train_config(tmp_path / "b", epochs=1), _model_cfg(), **quiet)
    assert real.clock.reserve() == pytest.approx(1.0)
    real.fit()
    assert real.clock.end_cost > 0 and real.clock.reserve() == pytest.approx(real.clock.end_cost + 1.0)


def test_the_clock_of_a_command_line_run_starts_with_the_process():
    import os

    from minilab.training.clock import process_age

    # A process named with a space and a parenthesis, started 250 ticks (2.5 s) after boot, read at 12.5 s.
    stat = "4242 (my (odd) name) S " + " ".join(["0"] * 18) + " 250 0 0"
    assert process_age(stat, "12.50 40.00", 100) == pytest.approx(10.0)
    with open("/proc/self/stat") as f, open("/proc/uptime") as g:  # this test process, read the same way
        age = process_age(f.read(), g.read(), os.sysconf("SC_CLK_TCK"))
    assert 0.05 < age  # this test process started (and imported torch) before now


def test_time_budget_ends_the_run_mid_epoch_with_an_evaluation(tmp_path):
    quiet = dict(log=lambda *_: None, progress=False)
    cfg = tiny_train_config(tmp_path, time_budget=7.5, warmup_steps=2, epochs=1)  # epochs: no longer the limit
    result = _clocked(Trainer(cfg, _model_cfg(), **quiet)).fit()
    assert result.steps == 8 and result.epochs == 2  # 5 steps, then 3 of the next 5 when the budget runs out
    rows = list(csv.DictReader(open(result.run_dir / "metrics.csv")))
    assert [r["val_loss"] != "" for r in rows] == [False] * 4 + [True] + [False] * 2 + [True]
    # The schedule runs over the budget: progress = seconds spent / budget, not steps / planned steps.
    expected = [lr_at(s, 0, 2, 3e-3, 3e-4, "cosine", progress=s / 7.5) for s in range(8)]
    assert [float(r["lr"]) for r in rows] == pytest.approx(expected, rel=1e-5)
    ckpt = load_checkpoint(tmp_path / "checkpoints" / "checkpoint.pt")
    assert ckpt["step"] == 8 and ckpt["epoch"] == 2 and ckpt["epoch_steps"] == 0
    assert math.isfinite(result.final_val_loss) and (tmp_path / "checkpoints" / "checkpoint_epoch_2.pt").exists()
    assert json.loads((result.run_dir / "summary.json").read_text())["steps"] == 8


def test_time_budget_resume_continues_toward_a_larger_budget(tmp_path):
    quiet = dict(log=lambda *_: None, progress=False)
    _clocked(Trainer(tiny_train_config(tmp_path, time_budget=7.5, warmup_steps=2), _model_cfg(), **quiet)).fit()
    ckpt = load_checkpoint(tmp_path / "checkpoints" / "checkpoint.pt")
    assert ckpt["run"]["wall_time"] == 8.0
    with pytest.raises(LabError, match="already trained for 8.0s; ask for --time_budget above 8"):
        Trainer(resume_configs(ckpt, {}, {})[0], resume=ckpt, **quiet)
    train_cfg, _ = resume_configs(ckpt, {"time_budget": 12.0}, {})
    result = _clocked(Trainer(train_cfg, resume=ckpt, **quiet)).fit()
    assert result.steps == 12 and result.epochs == 3  # a new epoch after the short one, cut at 12 s
    rows = list(csv.DictReader(open(result.run_dir / "metrics.csv")))
    assert [int(r["step"]) for r in rows] == list(range(1, 13))
    assert float(rows[-1]["lr"]) == pytest.approx(lr_at(11, 0, 2, 3e-3, 3e-4, "cosine", progress=11 / 12))


def test_a_checkpoint_from_before_the_switches_loads_and_resumes(tmp_path):
    """Strip every key this version added; the file must load with the seed's defaults and resume exactly."""
    from minilab.checkpoint import load_model, save_checkpoint

    quiet = dict(log=lambda *_: None, progress=False)
    Trainer(tiny_train_config(tmp_path / "a"), _model_cfg(), **quiet).fit()
    new = load_checkpoint(tmp_path / "a" / "checkpoints" / "checkpoint_epoch_1.pt")
    old = {k: v for k, v in new.items() if k not in ("format", "format_version", "epoch_steps")}
    for key in ("norm", "qk_norm", "mlp", "tie_embeddings", "bias", "logit_softcap"):
        del old["model_config"][key]
    for key in ("optimizer", "schedule", "time_budget"):
        del old["train_args"][key]
    save_checkpoint(tmp_path / "old.pt", old)
    model, _, ckpt = load_model(tmp_path / "old.pt")
    assert model.cfg.mlp == "gelu" and model.cfg.tie_embeddings and model.lm_head.weight is model.tok_emb.weight
    flags = {"out_dir": str(tmp_path / "b" / "checkpoints"), "experiments_dir": str(tmp_path / "b" / "exp")}
    Trainer(resume_configs(ckpt, flags, {})[0], resume=ckpt, **quiet).fit()
    straight = load_checkpoint(tmp_path / "a" / "checkpoints" / "checkpoint.pt")
    resumed = load_checkpoint(tmp_path / "b" / "checkpoints" / "checkpoint.pt")
    for name, tensor in straight["model_state"].items():
        assert torch.equal(tensor, resumed["model_state"][name]), name


def test_threads_sets_the_processes_cpu_threads(tmp_path):
    quiet = dict(log=lambda *_: None, progress=False)
    try:
        Trainer(tiny_train_config(tmp_path, threads=2, epochs=1), _model_cfg(), **quiet)
        assert torch.get_num_threads() == 2
        Trainer(tiny_train_config(tmp_path / "b", threads=0, epochs=1), _model_cfg(), **quiet)
        assert torch.get_num_threads() == 2  # 0 leaves the setting alone
    finally:
        torch.set_num_threads(1)  # as tests/conftest.py has it
    with pytest.raises(LabError, match="threads must be between 0 and 1024"):
        tiny_train_config(tmp_path, threads=-1)


def test_the_runs_settings_are_finished_before_it_starts(tmp_path):
    """After set-up no automatic setting is left: batch size, steps per epoch and warmup are numbers."""
    from minilab.training.optim import AUTO_WARMUP_MAX_STEPS, AUTO_WARMUP_SHARE

    quiet = dict(log=lambda *_: None, progress=False)
    auto = dict(batch_size=0, steps_per_epoch=0, warmup_steps=-1)
    trainer = Trainer(tiny_train_config(tmp_path / "a", **auto), _model_cfg(), **quiet)
    cfg, n_train, window = trainer.cfg, len(trainer.splits.train), trainer.splits.window
    assert cfg.batch_size == min(32, math.ceil(n_train / window)) >= 8  # a text of fewer than 32 windows
    assert cfg.steps_per_epoch == max(50, math.ceil(n_train / (cfg.batch_size * window)))
    assert cfg.warmup_steps == trainer.schedule.warmup_steps == min(100, cfg.epochs * cfg.steps_per_epoch // 10)
    assert trainer.schedule.warmup_share == 0
    # A budgeted run's warmup is a share of its time (or 100 steps): its schedule holds both, no -1.
    budgeted = Trainer(tiny_train_config(tmp_path / "b", time_budget=30, **auto), _model_cfg(), **quiet)
    assert budgeted.schedule.warmup_steps == AUTO_WARMUP_MAX_STEPS
    assert budgeted.schedule.warmup_share == AUTO_WARMUP_SHARE
