"""How to train: the run's typed settings, validated once when they are made."""

from dataclasses import asdict, dataclass

from minilab.checks import check_bool, check_choice, check_float, check_int, from_dict
from minilab.errors import LabError
from minilab.tokenizers.char import check_tokenizer_settings

OPTIMIZERS = ("adamw", "muon")
SCHEDULES = ("cosine", "wsd", "constant")


@dataclass
class TrainConfig:
    """How to train: data, length, batch, optimizer, schedule, evaluation and where files go."""

    data: str = ""  # path of the training text
    tokenizer: str = "char"  # 'char' (one token per character) or 'bpe' (byte-level BPE, minilab/tokenizers/bpe.py)
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
    tensorboard: bool = False  # also log the scalars for TensorBoard, if the package is installed (training/tblog.py)
    threads: int = 0  # CPU threads for PyTorch's kernels (0 = PyTorch's default: one per core)
    init_from: str = ""  # start from this checkpoint's weights and tokenizer ('' = random weights; `finetune --from`)
    mask_loss: bool = True  # conversations (.jsonl): the loss counts the assistant's tokens only (False: every token)

    def __post_init__(self) -> None:
        check_int("epochs", self.epochs, low=1, high=1 << 24)
        check_int("batch_size", self.batch_size, low=0, high=1 << 24)
        check_int("steps_per_epoch", self.steps_per_epoch, low=0, high=1 << 30)
        check_int("warmup_steps", self.warmup_steps, low=-1, high=1 << 30)
        check_int("sample_length", self.sample_length, low=0, high=1 << 20)
        check_int("grad_accum", self.grad_accum, low=1, high=1 << 16)
        check_bool("compile", self.compile)
        check_bool("tensorboard", self.tensorboard)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_choice("schedule", self.schedule, SCHEDULES)
        check_float("time_budget", self.time_budget, low=0.0, high=1e9)
        check_bool("mask_loss", self.mask_loss)
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

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        return from_dict(cls, d, "training config")
