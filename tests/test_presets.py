"""--preset and --config: named recipes and settings files, and which one wins."""

import json

import pytest

from minilab.app.cli import main
from minilab.app.settings import PRESETS, read_config_file, resolve_settings
from minilab.checkpoint import load_checkpoint
from minilab.errors import LabError
from minilab.model.config import ModelConfig
from minilab.training.config import TrainConfig
from tests.conftest import EXAMPLE


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_makes_valid_configs(name):
    train, model = resolve_settings({}, preset=name)
    TrainConfig(**train)
    ModelConfig(**model)
    assert set(train) | set(model) == set(PRESETS[name])


def test_presets_say_what_they_promise():
    assert resolve_settings({}, preset="seed") == ({}, {})
    train, model = resolve_settings({}, preset="modern")
    assert model == {"pos_encoding": "rope", "norm": "rmsnorm", "qk_norm": True, "mlp": "relu2"}
    assert train == {"optimizer": "muon"}


def test_precedence_flags_over_file_over_preset_over_defaults(tmp_path):
    cfg = tmp_path / "run.toml"
    cfg.write_text('lr = 0.002\nd_model = 64\nmlp = "swiglu"\n')
    # tiny sets lr 3e-3, d_model 32, n_layers 2, batch_size 8; the file and the flag override some of it
    train, model = resolve_settings({"lr": 0.005}, str(cfg), "tiny")
    assert train["lr"] == 0.005  # flag > file > preset
    assert model["d_model"] == 64 and model["mlp"] == "swiglu"  # file > preset
    assert model["n_layers"] == 2 and train["batch_size"] == 8  # preset > defaults
    assert "weight_decay" not in train  # untouched: the default applies
    assert TrainConfig(**train).weight_decay == TrainConfig().weight_decay


def test_a_file_may_name_a_preset_and_the_flag_wins(tmp_path):
    cfg = tmp_path / "run.json"
    cfg.write_text(json.dumps({"preset": "modern", "epochs": 3}))
    train, model = resolve_settings({}, str(cfg))
    assert model["pos_encoding"] == "rope" and train["epochs"] == 3
    train, model = resolve_settings({}, str(cfg), "tiny")
    assert "pos_encoding" not in model and model["d_model"] == 32 and train["epochs"] == 3


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("lrr = 0.1\n", "unknown setting 'lrr' (did you mean 'lr'?)"),
        ("vocab_size = 10\n", "unknown setting 'vocab_size'"),
        ("[model]\nd_model = 64\n", "unknown setting 'model'"),
        ("lr = 'fast'\n", "lr must be a number, got 'fast'"),
        ("epochs = 2.5\n", "epochs must be a whole number, got 2.5"),
        ("qk_norm = 1\n", "qk_norm must be true or false, got 1"),
        ("pos_encoding = 3\n", "pos_encoding must be a string, got 3"),
        (
            "preset = 'huge'\n",
            "preset 'huge': choose one of tiny, seed, modern, shakespeare-cpu, shakespeare-bf16, "
            "shakespeare-bf16-long, shakespeare-cpu-long",
        ),
        ("lr = = 1\n", "is not valid TOML"),
    ],
)
def test_bad_config_files_name_the_file_and_the_key(tmp_path, text, message):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    with pytest.raises(LabError) as e:
        read_config_file(cfg)
    assert message in str(e.value) and "bad.toml" in str(e.value) and "\n" not in str(e.value)


def test_json_must_hold_a_table(tmp_path):
    cfg = tmp_path / "list.json"
    cfg.write_text("[1, 2]")
    with pytest.raises(LabError, match="must hold a table of settings"):
        read_config_file(cfg)


def test_preset_config_and_flags_reach_the_checkpoint(tmp_path, monkeypatch, capsys):
    (tmp_path / "t.txt").write_text(EXAMPLE.read_text())
    (tmp_path / "lab.toml").write_text('pos_encoding = "rope"\nsteps_per_epoch = 3\nlr = 0.002\nepochs = 1\n')
    monkeypatch.chdir(tmp_path)
    args = ["train", "--data", "t.txt", "--preset", "tiny", "--config", "lab.toml", "--lr", "0.001"]
    assert main([*args, "--sample_length", "0", "--device", "cpu"]) == 0, capsys.readouterr().err
    ckpt = load_checkpoint(tmp_path / "checkpoints" / "checkpoint.pt")
    assert ckpt["model_config"]["pos_encoding"] == "rope" and ckpt["model_config"]["d_model"] == 32
    assert ckpt["train_args"]["lr"] == 0.001 and ckpt["train_args"]["steps_per_epoch"] == 3
    assert ckpt["step"] == 3


def test_the_ablation_base_is_the_old_shakespeare_recipe():
    """docs/experiments.md's ablation stays reproducible now that shakespeare-cpu is the speedrun recipe."""
    from tests.conftest import ROOT

    base = read_config_file(ROOT / "benchmarks" / "ablation_base.json")
    train, model = resolve_settings({}, str(ROOT / "benchmarks" / "ablation_base.json"))
    assert ModelConfig(**model).pos_encoding == "sinusoidal" and TrainConfig(**train).optimizer == "adamw"
    assert base["lr"] == 0.003 and base["batch_size"] == 16 and base["context_length"] == 64


SPEEDRUN_PRESETS = ["shakespeare-cpu", "shakespeare-bf16", "shakespeare-bf16-long", "shakespeare-cpu-long"]


@pytest.mark.parametrize("name", SPEEDRUN_PRESETS)
def test_the_speedrun_presets_are_built_for_a_time_budget(name):
    train, model = resolve_settings({}, preset=name)
    model, train = ModelConfig(**model), TrainConfig(**train)
    assert (model.pos_encoding, model.norm, model.qk_norm, model.mlp, train.optimizer) == (
        "rope",
        "rmsnorm",
        True,
        "relu2",
        "muon",
    )
    assert train.sample_length == 0  # nothing that costs time without helping
    # no dropout (its random masks cost time) but where ten minutes of tokens overfit a small model
    assert model.dropout == (0.1 if name == "shakespeare-bf16-long" else 0)
    if train.compile:  # the first step compiles: a warmup in steps, not in the budget's time it would use up
        assert name.startswith("shakespeare-bf16") and train.warmup_steps == 100
    else:
        assert train.warmup_steps == -1  # auto: a share of the budget (minilab/training/optim.py)
    assert 0 < train.eval_tokens <= 32768  # in-training evaluation is cheap; `eval` scores the whole split
