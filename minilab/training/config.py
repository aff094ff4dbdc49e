"""How to train: the run's typed settings, validated once when they are made.

Each field carries its help text (``setting``): the train command's flags and their defaults in
``--help`` are generated from these fields (minilab/app/flags.py), so a default is written once.
"""

from dataclasses import dataclass

from minilab.checks import DictConfig, check_bool, check_choice, check_float, check_int, setting
from minilab.errors import LabError
from minilab.precision import DTYPE_CHOICES
from minilab.tokenizers.bpe import DEFAULT_VOCAB_SIZE
from minilab.tokenizers.char import TOKENIZERS, check_tokenizer_settings

OPTIMIZERS = ("adamw", "muon")
SCHEDULES = ("cosine", "wsd", "constant")


@dataclass
class TrainConfig(DictConfig):
    """How to train: data, length, batch, optimizer, schedule, evaluation and where files go."""

    what = "training config"

    data: str = setting("", "UTF-8 text file, or a directory made by `prepare` (required)", metavar="FILE")
    tokenizer: str = setting("char", "char (one token per character) or bpe (byte-level BPE)", choices=TOKENIZERS)
    vocab_size: int | None = setting(
        None, "with --tokenizer bpe: 256 bytes + merges to learn", shown=DEFAULT_VOCAB_SIZE
    )  # None = the default size; a char vocabulary's size is the text's
    epochs: int = setting(10, "train until this epoch (on resume: the epoch to reach)")
    batch_size: int = setting(0, "sequences per step, 0 = auto: 32, or as many windows as a shorter text holds (>= 8)")
    steps_per_epoch: int = setting(0, "steps per epoch, 0 = auto: enough to draw the training text once, at least 50")
    lr: float = setting(1e-3, "peak learning rate, reached after warmup")
    min_lr_ratio: float = setting(0.1, "the decay ends at lr x this")
    warmup_steps: int = setting(
        -1, "linear warmup steps, -1 = auto: 10% of all steps (of a --time_budget's time), <= 100"
    )
    weight_decay: float = setting(0.1, "AdamW weight decay on the weight matrices (not on biases or norms)")
    beta1: float = setting(0.9, "AdamW's first-moment decay")
    beta2: float = setting(0.95, "AdamW's second-moment decay")
    grad_clip: float = setting(1.0, "clip the global gradient norm to this, 0 = off")
    val_fraction: float = setting(0.1, "share of the text held out for validation (its last part)")
    seed: int = setting(1337, "random seed: the same seed gives the same run")
    device: str = setting("auto", "auto | cpu | cuda | mps (auto: cuda, then mps, then cpu)")
    out_dir: str = setting("checkpoints", "where checkpoints go", metavar="DIR")
    experiments_dir: str = setting("experiments", "where run logs go", metavar="DIR")
    run_name: str = setting("", "name of this run's experiment folder", shown="the time and the data file's name")
    sample_length: int = setting(200, "tokens generated into samples.txt after each epoch, 0 = none")
    grad_accum: int = setting(1, "micro-batches per optimizer step (a step sees batch_size x grad_accum sequences)")
    compile: bool = setting(False, "torch.compile the model for training (checkpoints still hold the plain module)")
    eval_tokens: int = setting(1_000_000, "validation tokens scored per epoch, 0 = all")
    save_every_steps: int = setting(0, "also save checkpoint.pt every N steps within an epoch, 0 = only per epoch")
    keep_last: int = setting(0, "keep only the newest K checkpoint_epoch_N.pt, 0 = keep all")
    optimizer: str = setting(
        "adamw", "adamw, or muon for the blocks' weight matrices (AdamW for the rest)", choices=OPTIMIZERS
    )
    schedule: str = setting(
        "cosine", "lr after warmup: cosine decay, wsd (stable, then linear decay) or constant", choices=SCHEDULES
    )
    time_budget: float = setting(
        0.0,
        "seconds of wall clock to train for instead of --epochs, the lr schedule laid out over them; 0 = off",
        metavar="SECONDS",
    )
    tensorboard: bool = setting(False, "also log losses, lr and tokens/s for TensorBoard, if the package is installed")
    threads: int = setting(0, "CPU threads for PyTorch's kernels, 0 = PyTorch's default (one per core)")
    dtype: str = setting(
        "auto",
        "what the products compute in (weights and optimizer stay fp32); auto: bf16 where measured to pay "
        "(a GPU with bf16, a CPU with AMX/AVX512-BF16 and d_model >= 128), else fp32 (docs/precision.md)",
        choices=DTYPE_CHOICES,
    )  # checkpoints from before --dtype resume as fp32 (app/settings.py)
    init_from: str = setting(
        "", "start from this checkpoint's weights and tokenizer: a fine-tuning run", metavar="CKPT", shown="off"
    )  # what `finetune --from` sets (minilab/training/finetune.py)
    mask_loss: bool = setting(True, "conversations (.jsonl): the loss counts the assistant's tokens only")

    def __post_init__(self) -> None:
        check_int("epochs", self.epochs, low=1, high=1 << 24)
        check_int("batch_size", self.batch_size, low=0, high=1 << 24)
        check_int("steps_per_epoch", self.steps_per_epoch, low=0, high=1 << 30)
        check_int("warmup_steps", self.warmup_steps, low=-1, high=1 << 30)
        check_int("sample_length", self.sample_length, low=0, high=1 << 20)
        check_int("grad_accum", self.grad_accum, low=1, high=1 << 16)
        check_bool("compile", self.compile)
        check_bool("tensorboard", self.tensorboard)
        check_bool("mask_loss", self.mask_loss)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_choice("schedule", self.schedule, SCHEDULES)
        check_choice("dtype", self.dtype, DTYPE_CHOICES)
        check_float("time_budget", self.time_budget, low=0.0, high=1e9)
        for name in ("data", "device", "out_dir", "experiments_dir", "run_name", "init_from"):
            if not isinstance(getattr(self, name), str):
                raise LabError(f"{name} must be a string, got {getattr(self, name)!r}")
        check_int("eval_tokens", self.eval_tokens, low=0, high=1 << 40)
        check_int("save_every_steps", self.save_every_steps, low=0, high=1 << 30)
        check_int("keep_last", self.keep_last, low=0, high=1 << 20)
        check_int("threads", self.threads, low=0, high=1 << 10)
        check_int("seed", self.seed, low=0, high=2**63 - 1)
        check_float("lr", self.lr, low=0.0, high=10.0, low_open=True)
        check_float("min_lr_ratio", self.min_lr_ratio, low=0.0, high=1.0)
        check_float("weight_decay", self.weight_decay, low=0.0, high=10.0)
        check_float("beta1", self.beta1, low=0.0, high=1.0, high_open=True)
        check_float("beta2", self.beta2, low=0.0, high=1.0, high_open=True)
        check_float("grad_clip", self.grad_clip, low=0.0, high=1e6)
        check_float("val_fraction", self.val_fraction, low=0.0, high=0.5, high_open=True)
        check_tokenizer_settings(self.tokenizer, self.vocab_size)
