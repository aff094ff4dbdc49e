"""Typed settings for the model and for a training run, validated once when they are made.

Both are plain dataclasses that turn into JSON-ready dicts (``to_dict``) and back (``from_dict``),
so a checkpoint and an experiment folder carry exactly the settings that made them.
"""

import math
from dataclasses import asdict, dataclass, fields

from minilab.errors import LabError
from minilab.tokenizer import check_tokenizer_settings

POS_ENCODINGS = ("sinusoidal", "learned", "rope", "none")
NORMS = ("layernorm", "rmsnorm")
MLPS = ("gelu", "relu2", "swiglu")
OPTIMIZERS = ("adamw", "muon")
SCHEDULES = ("cosine", "wsd", "constant")


@dataclass
class ModelConfig:
    """The shape of the transformer. Defaults are the seed's: 256 context, 256 wide, 8 heads, 4 layers."""

    vocab_size: int = 65
    context_length: int = 256  # longest sequence the model attends over (block_size in nanoGPT)
    d_model: int = 256  # width of the residual stream (n_embd)
    n_heads: int = 8  # attention heads per layer; each is d_model // n_heads wide
    n_layers: int = 4  # transformer blocks
    d_ff: int = 1024  # hidden width of the feed-forward network
    dropout: float = 0.1  # dropout on embeddings and on each residual branch, during training only
    pos_encoding: str = "sinusoidal"  # 'sinusoidal' (fixed, as the seed draws it), 'learned', 'rope' or 'none'
    # Architecture switches, one per idea; the defaults are the seed's classic GPT. A checkpoint
    # saved before a switch existed lacks its key and so loads with the default, as it was trained.
    norm: str = "layernorm"  # 'layernorm' or 'rmsnorm' (scale only: no mean subtraction, no bias)
    qk_norm: bool = False  # normalise queries and keys per head before attention
    mlp: str = "gelu"  # 'gelu', 'relu2' (relu squared) or 'swiglu' (gated; hidden ~2/3 of d_ff)
    tie_embeddings: bool = True  # the output head shares the token embedding matrix
    bias: bool = True  # biases in the linear layers and layer norms
    logit_softcap: float = 0.0  # logits = C * tanh(logits / C); 0 = off

    def __post_init__(self) -> None:
        for name in ("vocab_size", "context_length", "d_model", "n_heads", "n_layers", "d_ff"):
            _check_int(name, getattr(self, name), low=1, high=1 << 20)
        _check_float("dropout", self.dropout, low=0.0, high=1.0, high_open=True)
        if self.d_model % self.n_heads:
            raise LabError(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")
        _check_choice("pos_encoding", self.pos_encoding, POS_ENCODINGS)
        _check_choice("norm", self.norm, NORMS)
        _check_choice("mlp", self.mlp, MLPS)
        for name in ("qk_norm", "tie_embeddings", "bias"):
            _check_bool(name, getattr(self, name))
        _check_float("logit_softcap", self.logit_softcap, low=0.0, high=1e6)
        if self.pos_encoding == "rope" and self.head_dim % 2:
            raise LabError(f"rope rotates pairs of channels: d_model/n_heads ({self.head_dim}) must be even")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        return _from_dict(cls, d, "model config")


@dataclass
class TrainConfig:
    """How to train: data, length, batch, optimizer, schedule, evaluation and where files go."""

    data: str = ""  # path of the training text
    tokenizer: str = "char"  # 'char' (one token per character) or 'bpe' (byte-level BPE, minilab/bpe.py)
    vocab_size: int | None = None  # BPE only: tokens to learn, 256 bytes + merges (None = 512)
    epochs: int = 10  # train until this epoch number (on resume: the epoch to reach)
    batch_size: int = 0  # sequences per optimizer step; 0 = auto: 32, fewer for a text smaller than that
    steps_per_epoch: int = 0  # 0 = auto: enough batches to cover the training text once, at least 50
    lr: float = 1e-3  # peak learning rate, reached after warmup
    min_lr_ratio: float = 0.1  # cosine decay ends at lr * min_lr_ratio
    warmup_steps: int = -1  # -1 = auto: 10% of all steps (of a --time_budget: of its time), at most 100
    weight_decay: float = 0.1  # AdamW weight decay on the weight matrices (not on biases or norms)
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0  # clip the global gradient norm to this (0 = off)
    val_fraction: float = 0.1  # the last part of the text held out for validation
    seed: int = 1337
    device: str = "auto"
    out_dir: str = "checkpoints"
    experiments_dir: str = "experiments"
    run_name: str = ""  # '' = a name made from the time and the data file
    sample_length: int = 200  # characters generated into samples.txt after each epoch (0 = none)
    grad_accum: int = 1  # micro-batches per optimizer step: the step sees batch_size x grad_accum sequences
    compile: bool = False  # torch.compile the model for training (checkpoints still hold the plain module)
    eval_tokens: int = 1_000_000  # score at most this many validation tokens per epoch (0 = all)
    save_every_steps: int = 0  # also save checkpoint.pt every N steps within an epoch (0 = only per epoch)
    keep_last: int = 0  # keep only the newest K checkpoint_epoch_N.pt files (0 = keep all)
    optimizer: str = "adamw"  # 'adamw', or 'muon' for the blocks' weight matrices (AdamW for the rest)
    schedule: str = "cosine"  # lr after warmup: 'cosine' decay, 'wsd' (stable, then linear decay) or 'constant'
    time_budget: float = 0.0  # seconds of wall clock to train for (0 = off: train for --epochs)
    tensorboard: bool = False  # also log the scalars for TensorBoard, if the package is installed (minilab/tblog.py)
    threads: int = 0  # CPU threads for PyTorch's kernels (0 = PyTorch's default: one per core)

    def __post_init__(self) -> None:
        _check_int("epochs", self.epochs, low=1, high=1 << 24)
        _check_int("batch_size", self.batch_size, low=0, high=1 << 24)
        _check_int("steps_per_epoch", self.steps_per_epoch, low=0, high=1 << 30)
        _check_int("warmup_steps", self.warmup_steps, low=-1, high=1 << 30)
        _check_int("sample_length", self.sample_length, low=0, high=1 << 20)
        _check_int("grad_accum", self.grad_accum, low=1, high=1 << 16)
        _check_bool("compile", self.compile)
        _check_bool("tensorboard", self.tensorboard)
        _check_choice("optimizer", self.optimizer, OPTIMIZERS)
        _check_choice("schedule", self.schedule, SCHEDULES)
        _check_float("time_budget", self.time_budget, low=0.0, high=1e9)
        for name in ("data", "device", "out_dir", "experiments_dir", "run_name"):
            if not isinstance(getattr(self, name), str):
                raise LabError(f"{name} must be a string, got {getattr(self, name)!r}")
        _check_int("eval_tokens", self.eval_tokens, low=0, high=1 << 40)
        _check_int("save_every_steps", self.save_every_steps, low=0, high=1 << 30)
        _check_int("keep_last", self.keep_last, low=0, high=1 << 20)
        _check_int("threads", self.threads, low=0, high=1 << 10)
        _check_int("seed", self.seed, low=0, high=2**63 - 1)
        _check_float("lr", self.lr, low=0.0, high=10.0, low_open=True)
        _check_float("min_lr_ratio", self.min_lr_ratio, low=0.0, high=1.0)
        _check_float("weight_decay", self.weight_decay, low=0.0, high=10.0)
        _check_float("beta1", self.beta1, low=0.0, high=1.0, high_open=True)
        _check_float("beta2", self.beta2, low=0.0, high=1.0, high_open=True)
        _check_float("grad_clip", self.grad_clip, low=0.0, high=1e6)
        _check_float("val_fraction", self.val_fraction, low=0.0, high=0.5, high_open=True)
        check_tokenizer_settings(self.tokenizer, self.vocab_size)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        return _from_dict(cls, d, "training config")


def _from_dict(cls, d: dict, what: str):
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise LabError(f"unknown {what} key(s): {', '.join(unknown)}")
    return cls(**d)


def _check_choice(name: str, value, choices: tuple) -> None:
    if value not in choices:
        raise LabError(f"{name} {value!r}: choose one of {', '.join(choices)}")


def _check_bool(name: str, value) -> None:
    if not isinstance(value, bool):
        raise LabError(f"{name} must be true or false, got {value!r}")


def _check_int(name: str, value, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise LabError(f"{name} must be a whole number, got {value!r}")
    if not low <= value <= high:
        raise LabError(f"{name} must be between {low} and {high}, got {value}")


def _check_float(name, value, low, high, low_open=False, high_open=False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise LabError(f"{name} must be a finite number, got {value!r}")
    too_low = value <= low if low_open else value < low
    too_high = value >= high if high_open else value > high
    if too_low or too_high:
        lo, hi = ("(" if low_open else "["), (")" if high_open else "]")
        raise LabError(f"{name} must be in {lo}{low}, {high}{hi}, got {value}")
