"""Named recipes (``--preset``) and settings files (``--config``), merged with the flags typed.

Precedence, highest first: flags on the command line > the config file > the preset > the
defaults in the config dataclasses; ``run_configs`` is the one place that carries it out. A config
file is TOML or JSON holding a flat table of any training or model setting (the same names as the
flags, with underscores), and may name a ``preset`` itself. An unknown name or a value of the wrong
type is an error that names the file and the key. A resumed run takes its settings from the
checkpoint instead of the preset and the defaults (``resume_configs``).
"""

import difflib
import json
from dataclasses import fields
from pathlib import Path

from minilab.errors import LabError
from minilab.model.config import ModelConfig
from minilab.tokenizers.char import tokenizer_from_dict
from minilab.training.config import TrainConfig

# tinyshakespeare on a 2-core CPU in two minutes or less (the speedrun, docs/speedrun.md): the
# modern switches on a 0.45M-parameter model (smaller beat nanoGPT's 0.8M size at this budget),
# short windows in small batches (more updates per second), no dropout, no samples, a cheap
# in-training evaluation. Run it with --time_budget: the lr schedule is laid out over the budget.
SHAKESPEARE_CPU = dict(
    context_length=64,
    d_model=96,
    n_heads=3,
    n_layers=4,
    d_ff=384,
    dropout=0.0,
    pos_encoding="rope",
    norm="rmsnorm",
    qk_norm=True,
    mlp="relu2",
    optimizer="muon",
    batch_size=16,
    steps_per_epoch=200,
    epochs=20,
    lr=3e-3,
    eval_tokens=16384,
    sample_length=0,
)

# On a CPU with bf16 matrix units (AMX or AVX512-BF16): 128 wide, which --dtype auto trains in bf16
# there; compiled (inductor fuses the elementwise work, the casts, norms and rotations, that took
# most of the eager bf16 step: 1.5x to 2x the tokens/s); batches of 64 (bf16 products pay in large
# matrices) at twice the lr; a warmup of 100 steps, since the first step's compilation would use up
# a warmup counted in the budget's time. Elsewhere it runs in fp32 (or eager, without a C++
# compiler) and is simply a slower recipe.
SHAKESPEARE_BF16 = {
    **SHAKESPEARE_CPU,
    **dict(d_model=128, n_heads=4, d_ff=512, batch_size=64, lr=6e-3, warmup_steps=100, compile=True),
}

# The induction-head experiment (minilab/inside/induction.py, `mini-transformer-lab induction`): two
# attention-only layers, the smallest model in which induction heads form; no dropout.
INDUCTION = dict(
    context_length=64,
    d_model=64,
    n_heads=4,
    n_layers=2,
    mlp="none",
    dropout=0.0,
    pos_encoding="learned",
    tie_embeddings=False,  # tied, the model sat on its plateau for 1,500 steps and more
    batch_size=64,
    steps_per_epoch=1000,
    epochs=2,
    lr=1e-3,
    warmup_steps=100,
    weight_decay=0.0,
    sample_length=0,
)

PRESETS: dict[str, dict] = {
    # Seconds on a CPU: for tests, demos and trying a flag out.
    "tiny": dict(
        context_length=32,
        d_model=32,
        n_heads=4,
        n_layers=2,
        d_ff=64,
        dropout=0.0,
        batch_size=8,
        steps_per_epoch=20,
        epochs=2,
        lr=3e-3,
        sample_length=50,
    ),
    # The seed's model and training: every default as it is.
    "seed": {},
    # The seed's size with the switches current small GPTs use (modded-nanoGPT, LLaMA-style):
    # rotary positions, RMSNorm, QK-norm, squared-ReLU MLP, and Muon for the hidden matrices.
    "modern": dict(pos_encoding="rope", norm="rmsnorm", qk_norm=True, mlp="relu2", optimizer="muon"),
    "shakespeare-cpu": SHAKESPEARE_CPU,
    # The same on a CPU with bf16 matrix units (AMX or AVX512-BF16), docs/speedrun.md's Intel table.
    "shakespeare-bf16": SHAKESPEARE_BF16,
    # The same for about ten minutes on a CPU with bf16 units: ten minutes of compiled training show
    # this 0.8M-parameter model the text some 20 times, and without dropout it overfits; a context of
    # 128 (in batches of 32: the same tokens a step) scored better than 64 (docs/speedrun.md).
    "shakespeare-bf16-long": {
        **SHAKESPEARE_BF16,
        **dict(context_length=128, batch_size=32, dropout=0.1, steps_per_epoch=550),
    },
    # The same for about ten minutes: a wider model with a longer context, which pays off only with
    # more training time (chosen from the shorter runs; not tuned at 600 s).
    "shakespeare-cpu-long": {
        **SHAKESPEARE_CPU,
        **dict(context_length=128, d_model=192, n_heads=6, d_ff=768, steps_per_epoch=500),
    },
    "induction": INDUCTION,
}

MODEL_KEYS = tuple(f.name for f in fields(ModelConfig) if f.name != "vocab_size")  # vocab comes from the data
TRAIN_KEYS = tuple(f.name for f in fields(TrainConfig))
_FIELDS = {f.name: f for f in fields(ModelConfig) + fields(TrainConfig)}


def read_config_file(path: str | Path) -> dict:
    """The settings in a .toml or .json file, checked for unknown names and wrong types."""
    p = Path(path)
    what = f"config file {str(p)!r}"
    if p.suffix not in (".toml", ".json"):
        raise LabError(f"{what}: give a .toml or .json file")
    if not p.exists():
        raise LabError(f"{what} does not exist")
    if not p.is_file():
        raise LabError(f"{what} is not a file")
    try:
        import tomllib  # Python 3.11+
    except ImportError:
        if p.suffix == ".toml":
            raise LabError(f"{what}: reading TOML needs Python 3.11 or newer; write the settings as JSON") from None
        tomllib = None
    try:
        text = p.read_text(encoding="utf-8")
        settings = tomllib.loads(text) if p.suffix == ".toml" else json.loads(text)
    except UnicodeDecodeError:
        raise LabError(f"{what} is not UTF-8 text") from None
    except ValueError as e:  # tomllib.TOMLDecodeError and json.JSONDecodeError are both ValueErrors
        raise LabError(f"{what} is not valid {p.suffix[1:].upper()}: {str(e).splitlines()[0]}") from None
    except OSError as e:
        raise LabError(f"cannot read {what}: {e.strerror or e}") from None
    if not isinstance(settings, dict):
        raise LabError(f"{what} must hold a table of settings (name = value), not a {type(settings).__name__}")
    check_settings(settings, what)
    return settings


def check_settings(settings: dict, where: str) -> None:
    """Every key a known setting (or 'preset'), every value of the setting's type."""
    for key, value in settings.items():
        if key == "preset":
            if value not in PRESETS:
                raise LabError(f"{where}: preset {value!r}: choose one of {', '.join(PRESETS)}")
            continue
        if key not in _FIELDS or key == "vocab_size":
            close = difflib.get_close_matches(key, [*MODEL_KEYS, *TRAIN_KEYS], n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise LabError(f"{where}: unknown setting {key!r}{hint}")
        kind = type(_FIELDS[key].default)  # every setting has a default of its own type
        ok = {
            bool: isinstance(value, bool),
            int: isinstance(value, int) and not isinstance(value, bool),
            float: isinstance(value, (int, float)) and not isinstance(value, bool),
            str: isinstance(value, str),
        }[kind]
        if not ok:
            wanted = {bool: "true or false", int: "a whole number", float: "a number", str: "a string"}[kind]
            raise LabError(f"{where}: {key} must be {wanted}, got {value!r}")


def resolve_settings(flags: dict, config_file: str | None = None, preset: str | None = None) -> tuple[dict, dict]:
    """Merge preset < config file < flags; returns (training settings, model settings) as dicts.

    ``preset`` is the --preset flag; a config file may name one too (the flag wins).
    """
    from_file = read_config_file(config_file) if config_file is not None else {}
    name = preset if preset is not None else from_file.pop("preset", None)
    from_file.pop("preset", None)
    if name is not None and name not in PRESETS:
        raise LabError(f"preset {name!r}: choose one of {', '.join(PRESETS)}")
    merged = {**PRESETS.get(name, {}), **from_file, **flags}
    train = {k: v for k, v in merged.items() if k in TRAIN_KEYS}
    model = {k: v for k, v in merged.items() if k in MODEL_KEYS}
    return train, model


def run_configs(
    flags: dict, config_file: str | None = None, preset: str | None = None, ckpt: dict | None = None
) -> tuple[TrainConfig, ModelConfig]:
    """The settings of a training run: flags > config file > preset > defaults, or, resuming ``ckpt``, > its own."""
    train, model = resolve_settings(flags, config_file, preset)
    if ckpt is not None:
        return resume_configs(ckpt, train, model)
    if "data" not in train:
        raise LabError("train needs --data FILE (the text to learn from)")
    ignored = [*model, *(k for k in ("tokenizer", "vocab_size") if k in train)] if train.get("init_from") else []
    if ignored:  # a fine-tuning run's model and tokenizer are its checkpoint's (minilab/training/finetune.py)
        raise LabError(
            f"--init_from starts from the checkpoint's model and tokenizer; drop {', '.join(ignored)} "
            "(from the flags, --config or --preset)"
        )
    return TrainConfig(**train), ModelConfig(**model)


def resume_configs(ckpt: dict, train_flags: dict, model_flags: dict) -> tuple[TrainConfig, ModelConfig]:
    """Settings for resuming: the checkpoint's, with the given training flags on top.

    Model flags must agree with the checkpoint: a different architecture cannot load its weights.
    """
    model_cfg = ModelConfig.from_dict(ckpt["model_config"])
    for key, value in model_flags.items():
        saved = getattr(model_cfg, key)
        if value != saved:
            raise LabError(f"--{key} {value} contradicts the checkpoint, which has {key} = {saved}")
    saved_args = dict(ckpt.get("train_args") or {})
    saved_args.setdefault("dtype", "fp32")  # checkpoints from before --dtype trained in fp32 (on a CPU)
    # The tokenizer comes from the checkpoint; asking for another one cannot be honoured.
    saved_tok = tokenizer_from_dict(ckpt["tokenizer"])
    bpe = saved_tok.kind == "bpe"
    saved_size = saved_args.get("vocab_size") if bpe else None  # the size asked for (BPE may have made fewer)
    allowed = {"tokenizer": (saved_tok.kind,), "vocab_size": (saved_size, saved_tok.vocab_size) if bpe else (None,)}
    for key, saved in allowed.items():
        if key in train_flags and train_flags[key] not in saved:
            raise LabError(
                f"--{key} {train_flags[key]} contradicts the checkpoint, whose tokenizer is "
                f"{saved_tok.kind} with {saved_tok.vocab_size} tokens (a resumed run keeps its tokenizer)"
            )
    saved_args.update(tokenizer=saved_tok.kind, vocab_size=saved_size)
    saved_opt = saved_args.get("optimizer", "adamw")  # checkpoints from before --optimizer used AdamW
    if train_flags.get("optimizer", saved_opt) != saved_opt:
        raise LabError(
            f"--optimizer {train_flags['optimizer']} contradicts the checkpoint, which was trained with {saved_opt} "
            f"(its optimizer state cannot carry over)"
        )
    return TrainConfig.from_dict({**saved_args, **train_flags}), model_cfg
