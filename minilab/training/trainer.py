"""The training loop: sample batches, forward, loss, backward, optimizer step, evaluate, checkpoint.

What an epoch is: the text is not walked through in order. Each step draws ``batch_size`` random
windows of ``context_length`` tokens from the training split, and an epoch is ``steps_per_epoch``
such steps: by default enough to draw as many tokens as the training split holds, and at least 50,
so that a tiny text still gets a useful amount of training per epoch. By default a batch has 32
sequences, or fewer when the training text is shorter than 8 windows (a step would otherwise see the
same few hundred characters dozens of times over; smaller batches give more updates for the same
time, which is what a tiny text needs). After each epoch the model is scored on the whole validation
split and the checkpoints are written.

Nothing is lost: every checkpoint write is atomic; Ctrl-C or SIGTERM saves checkpoint.pt where the
run stands (mid-epoch too) and says how to resume; ``--save_every_steps`` saves it regularly; a
failed write or a NaN loss stops the run with a clear message and leaves earlier files intact.

With ``--time_budget SECONDS`` the run's length is wall-clock time instead of epochs: the learning
rate schedule is laid out over the budget (its progress is the share of the budget spent, not of
the steps), epochs of ``steps_per_epoch`` steps still mark the evaluations, and when the budget is
spent the epoch in progress ends early, is evaluated and saved, and the run exits normally. The
budget counts the run's whole wall clock, evaluation and earlier sessions included: resuming a
budgeted run continues toward the same budget, and a larger --time_budget stretches the schedule.
"""

import contextlib
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from minilab.device import resolve_device
from minilab.errors import LabError
from minilab.model.config import ModelConfig
from minilab.model.flops import flops_per_token, measured_peak_flops
from minilab.model.gpt import GPT
from minilab.tokenizers.char import tokenizer_from_dict
from minilab.training import distributed
from minilab.training.clock import RunClock
from minilab.training.config import TrainConfig
from minilab.training.data import draw_starts, load_training_data, windows
from minilab.training.evaluate import evaluate_loss
from minilab.training.optim import auto_warmup_steps, lr_at, make_optimizers
from minilab.training.runfiles import RunFiles
from minilab.training.runlog import RunLog, new_run_name
from minilab.training.signals import EXIT_CODES, StopSignals, TrainingInterrupted
from minilab.training.smalltext import small_text_context
from minilab.training.tblog import TensorBoardLog, open_tensorboard

MIN_STEPS_PER_EPOCH = 50
DEFAULT_BATCH_SIZE = 32
MIN_AUTO_BATCH_SIZE = 8
# The run's final evaluation scores the whole validation split up to this many tokens (a prepared
# corpus of gigabytes has a split too long to score in passing; then its first 10M tokens).
FINAL_EVAL_TOKENS = 10_000_000


def _as_tensor(tokens) -> torch.Tensor:
    """Token ids as an int64 tensor (a prepared dataset's are a numpy memmap)."""
    return tokens if isinstance(tokens, torch.Tensor) else torch.from_numpy(np.asarray(tokens, dtype=np.int64))


def auto_batch_size(n_train: int, window: int) -> int:
    """32 sequences, or as many windows as the training text holds (at least 8) if that is fewer."""
    return max(MIN_AUTO_BATCH_SIZE, min(DEFAULT_BATCH_SIZE, math.ceil(n_train / window)))


@dataclass
class TrainResult:
    """What a finished run reports."""

    best_val_loss: float  # the best in-training evaluation (of the first val_prefix tokens, if val_prefix)
    final_train_loss: float
    final_val_loss: float  # the final model on the whole validation split: the run's figure
    epochs: int
    steps: int
    wall_time: float
    tokens_per_sec: float
    run_dir: Path
    out_dir: Path
    val_prefix: int = 0  # tokens each in-training evaluation scored, when fewer than the split (--eval_tokens)


class Trainer(RunFiles):
    """One training run. Everything is checked in ``__init__`` before any file is written."""

    def __init__(
        self,
        cfg: TrainConfig,
        model_cfg: ModelConfig | None = None,
        resume: dict | None = None,
        log=print,
        progress: bool = True,
        started: float | None = None,
        auto_context: bool = False,
    ):
        # The run's clock: from ``started`` (a time.perf_counter() reading; the CLI passes the
        # process's start, so a --time_budget covers Python's start-up and imports too), else now.
        self.clock = RunClock(started)
        self.log, self.progress = log, progress
        self.device = resolve_device(cfg.device)
        self.dist = distributed.setup(self.device)
        self.device = distributed.local_device(self.device, self.dist)
        out_dir, exp_dir = Path(cfg.out_dir), Path(cfg.experiments_dir)
        for d, flag in ((out_dir, "--out_dir"), (exp_dir, "--experiments_dir")):
            if d.exists() and not d.is_dir():
                raise LabError(f"{flag} {str(d)!r} is a file, not a directory")
        if resume is not None:
            model_cfg = ModelConfig.from_dict(resume["model_config"])
        saved = tokenizer_from_dict(resume["tokenizer"]) if resume is not None else None
        self.tokenizer, self.splits = load_training_data(
            cfg.data,
            cfg.val_fraction,
            (model_cfg or ModelConfig()).context_length,
            saved,
            cfg.tokenizer,
            cfg.vocab_size,
        )
        if resume is None:  # the model's vocabulary is the tokenizer's
            model_cfg = replace(model_cfg or ModelConfig(), vocab_size=self.tokenizer.vocab_size)
        if auto_context and resume is None:  # the user left --context_length to us: fit it to a tiny text
            model_cfg = self._fit_context(model_cfg)
        # Record the tokenizer used (a prepared dataset brings its own): the size asked for, else the size made.
        size = (cfg.vocab_size or self.tokenizer.vocab_size) if self.tokenizer.kind == "bpe" else None
        cfg = replace(cfg, tokenizer=self.tokenizer.kind, vocab_size=size)
        window = self.splits.window
        batch_size = cfg.batch_size or auto_batch_size(len(self.splits.train), window)
        if batch_size != (cfg.batch_size or DEFAULT_BATCH_SIZE):
            self.splits.notes.append(
                f"the training text holds only {len(self.splits.train) / window:.1f} "
                f"windows of {window} tokens; using batches of {batch_size}"
            )
        steps_per_epoch = cfg.steps_per_epoch or max(
            MIN_STEPS_PER_EPOCH, math.ceil(len(self.splits.train) / (batch_size * window))
        )
        # Auto warmup: 10% of the steps, at most 100. Under a time budget the step count is unknown,
        # so it stays -1 and lr_at warms up over 10% of the budget (or 100 steps) instead.
        warmup = cfg.warmup_steps
        if warmup < 0 and not cfg.time_budget:
            warmup = auto_warmup_steps(cfg.epochs * steps_per_epoch)
        # Store the resolved values so that a resume continues with exactly these.
        self.cfg = cfg = replace(cfg, batch_size=batch_size, steps_per_epoch=steps_per_epoch, warmup_steps=warmup)
        self.model_cfg = model_cfg

        if cfg.threads:  # for the whole process: small models often step faster on one thread than on two
            torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)  # the same initial weights on every rank
        self.model = GPT(model_cfg).to(self.device)
        self.optimizers = make_optimizers(self.model, cfg, self.device)  # [AdamW] or [AdamW, Muon]
        # The data order: every rank draws the same global batch and trains on its own slice of it,
        # so the run does not depend on how many processes share it. Saved for resume.
        self.batch_gen = torch.Generator().manual_seed(cfg.seed)
        self.train_model = self._wrap_for_training()
        self.epoch, self.step, self.best_val = 0, 0, math.inf  # epoch = completed epochs
        self.epoch_loss_sum = 0.0  # training losses of the epoch in progress, for its mean
        self.epoch_steps = 0  # steps done in the epoch in progress
        self.tokens_seen = 0
        self.run_name = cfg.run_name or new_run_name(cfg.data)
        if resume is not None:
            self._restore(resume)
        self.run_dir = exp_dir / self.run_name
        if self.run_dir.exists() and not self.run_dir.is_dir():
            raise LabError(f"experiment path {str(self.run_dir)!r} is a file, not a directory")
        if resume is None and self.run_dir.exists() and any(self.run_dir.iterdir()):
            raise LabError(f"experiment folder {str(self.run_dir)!r} already holds a run; choose another --run_name")
        if cfg.time_budget and self.clock.prior >= cfg.time_budget:
            raise LabError(
                f"the checkpoint has already trained for {self.clock.prior:.1f}s; ask for --time_budget above "
                f"{self.clock.prior:.0f} to train further"
            )
        if not cfg.time_budget and self.epoch >= cfg.epochs:
            raise LabError(
                f"the checkpoint is already at epoch {self.epoch}; ask for --epochs above {self.epoch} to train further"
            )
        self.out_dir = out_dir

    def _fit_context(self, model_cfg: ModelConfig) -> ModelConfig:
        """A shorter context for a text that holds few windows of the default one (training/smalltext.py)."""
        n_train, asked = len(self.splits.train), model_cfg.context_length
        context = small_text_context(n_train, asked)
        if context == asked:
            return model_cfg
        self.splits.window = min(context, n_train - 1)
        self.splits.notes.append(
            f"the training text holds only {n_train / asked:.1f} windows of {asked} tokens; using a context of "
            f"{context} (--context_length chooses another)"
        )
        return replace(model_cfg, context_length=context)

    def _wrap_for_training(self):
        """The module the training step calls: compiled and/or DistributedDataParallel around the model."""
        model = self.model
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True  # TF32 tensor cores for any fp32 matmul left
            torch.backends.cudnn.allow_tf32 = True
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            model = self.ddp = DistributedDataParallel(model, device_ids=ids)
        if self.cfg.compile:
            model = torch.compile(model)
        # Mixed precision on CUDA: bf16 where the GPU has it, else fp16 with a gradient scaler.
        self.amp_dtype = None
        if self.device.type == "cuda":
            self.amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        return model

    def _restore(self, ckpt: dict) -> None:
        try:
            self.model.load_state_dict(ckpt["model_state"])
            self.optimizers[0].load_state_dict(ckpt["optimizer_state"])
            if len(self.optimizers) > 1:
                self.optimizers[1].load_state_dict(ckpt["muon_state"])
        except (RuntimeError, KeyError, ValueError) as e:
            raise LabError(
                f"cannot resume: the checkpoint's state does not fit its config ({str(e).splitlines()[0][:160]})"
            ) from None
        self.epoch, self.step = int(ckpt["epoch"]), int(ckpt["step"])
        self.epoch_loss_sum = float(ckpt.get("epoch_loss_sum", 0.0))
        # Checkpoints from before time budgets: every epoch was full, so this is where the step stands.
        self.epoch_steps = int(ckpt.get("epoch_steps", self.step - self.epoch * self.cfg.steps_per_epoch))
        self.best_val = float(ckpt.get("best_val_loss", math.inf))
        run = ckpt.get("run") or {}
        self.run_name = self.cfg.run_name or run.get("name") or self.run_name
        self.clock.prior = float(run.get("wall_time", 0.0))
        self.tokens_seen = int(run.get("tokens_seen", 0))
        rng = ckpt["rng"]
        torch.set_rng_state(rng["torch"])
        self.batch_gen.set_state(rng["batch"])
        if self.device.type == "cuda" and rng.get("cuda") is not None:
            torch.cuda.set_rng_state(rng["cuda"], self.device)

    # ---------------------------------------------------------------- the loop

    def fit(self) -> TrainResult:
        """Train from the current epoch to ``cfg.epochs``, writing checkpoints and the experiment log."""
        cfg, model, splits = self.cfg, self.model, self.splits
        resumed = self.step > 0
        if not self.dist.is_main:
            self.log = lambda *_: None  # only rank 0 speaks and writes
        for note in splits.notes:
            self.log(f"note: {note}")
        if self.dist.enabled:  # the same weights everywhere, but different dropout masks per rank
            torch.manual_seed(cfg.seed + self.step + 1000 * self.dist.rank)
        self.peak_flops = measured_peak_flops(self.device.type) * self.dist.world_size
        self.flops_per_token = flops_per_token(model)
        self.tb = TensorBoardLog()  # does nothing unless --tensorboard opens a real one (rank 0 only)
        if self.dist.is_main:
            self._prepare_outputs()
        self.log(
            f"{'resuming' if resumed else 'training'} a {model.num_params() / 1e6:.2f}M-parameter model on "
            f"{self.device}{f' x {self.dist.world_size} processes' if self.dist.enabled else ''}: "
            f"{len(splits.train):,} training and {len(splits.val):,} validation tokens, "
            f"vocabulary {self.tokenizer.vocab_size}; "
            + (
                f"for {cfg.time_budget:g}s of wall clock in all, epochs of "
                if cfg.time_budget
                else f"epochs {self.epoch + 1}..{cfg.epochs}, "
            )
            + f"{cfg.steps_per_epoch} steps of {self.tokens_per_step // splits.window} x {splits.window} tokens each"
        )
        self.log(f"checkpoints -> {self.out_dir}/   experiment log -> {self.run_dir}/")
        self.val_tokens = self._val_tokens()
        self.train_time, self.session_tokens = 0.0, 0  # this process only, for tokens/s
        self.last_val, self.last_train = math.nan, math.nan
        model.train()
        try:
            with StopSignals() as signals:
                while self._budget_share() < 1 if cfg.time_budget else self.epoch < cfg.epochs:
                    self._run_epoch(signals)
            self._final_eval()
        finally:
            self.tb.close()
            distributed.teardown()
        return TrainResult(
            best_val_loss=self.best_val,
            final_train_loss=self.last_train,
            final_val_loss=self.final_val,
            epochs=self.epoch,
            steps=self.step,
            wall_time=self.clock.wall(),
            tokens_per_sec=self._tokens_per_sec(),
            run_dir=self.run_dir,
            out_dir=self.out_dir,
            val_prefix=self.val_prefix,
        )

    def _val_tokens(self) -> torch.Tensor:
        """The validation tokens scored each epoch: the whole split, or its first eval_tokens if that is set."""
        val, cap = self.splits.val, self.cfg.eval_tokens
        self.val_prefix = 0  # 0: every evaluation covers the whole split
        if cap and len(val) > cap:
            self.val_prefix = cap
            final = "the whole split" if len(val) <= FINAL_EVAL_TOKENS else f"the first {FINAL_EVAL_TOKENS:,}"
            self.log(
                f"note: scoring the first {cap:,} of {len(val):,} validation tokens each epoch (--eval_tokens), "
                f"and {final} once training ends"
            )
            val = val[:cap]
        return _as_tensor(val)

    def _final_eval(self) -> None:
        """The run's validation loss: the final model on the whole split (if the epochs scored only a prefix)."""
        self.final_val = self.last_val
        if self.val_prefix and self.epoch > 0:
            t = time.perf_counter()
            val = _as_tensor(self.splits.val[:FINAL_EVAL_TOKENS])
            if self.dist.is_main:
                self.final_val = evaluate_loss(self.model, val, self.splits.window, self.cfg.batch_size, self.device)
            self.final_val = distributed.from_main(self.final_val, self.dist, self.device)
            scope = "the whole validation split" if len(val) == len(self.splits.val) else "the first"
            self.log(
                f"the final model on {scope} ({len(val):,} tokens): val loss {self.final_val:.4f} "
                f"({time.perf_counter() - t:.1f}s)"
            )
        self._write(self._write_summary)

    @property
    def tokens_per_step(self) -> int:
        """Tokens per optimizer step over all processes and micro-batches."""
        return self.cfg.batch_size * self.cfg.grad_accum * self.dist.world_size * self.splits.window

    def _prepare_outputs(self) -> None:
        cfg = self.cfg
        self.out_dir.mkdir(parents=True, exist_ok=True)
        for stale in self.out_dir.glob(".*.pt.*.tmp"):  # left by a process killed mid-write
            stale.unlink(missing_ok=True)
        self.runlog = RunLog(self.run_dir, resume_step=self.step if self.step > 0 else None)
        if cfg.tensorboard:
            self.tb = open_tensorboard(self.run_dir, self.log)
        self.runlog.write_json(
            "config.json",
            {
                "model": self.model_cfg.to_dict(),
                "train": cfg.to_dict(),
                "tokenizer": self.tokenizer.to_dict(),
                "parameters": self.model.num_params(),
                "device": str(self.device),
            },
        )

    def _run_epoch(self, signals: StopSignals) -> None:
        """Train the rest of the epoch in progress (all of it, unless resuming mid-epoch), then evaluate and save."""
        cfg, splits = self.cfg, self.splits
        epoch, spe = self.epoch + 1, cfg.steps_per_epoch
        total_steps, share, lr, done = cfg.epochs * spe, None, math.nan, 0  # done: steps in this call
        t_epoch, n_tokens = time.perf_counter(), self.tokens_per_step
        bar = tqdm(
            total=spe,
            initial=self.epoch_steps,
            desc=f"epoch {epoch}" + ("" if cfg.time_budget else f"/{cfg.epochs}"),
            unit="step",
            leave=False,
            dynamic_ncols=True,
            disable=None if self.progress and self.dist.is_main else True,
        )
        while self.epoch_steps < spe:
            if signals.requested is not None:
                bar.close()
                self._interrupted(signals.requested)
            if cfg.time_budget:
                share = self._budget_share()
                if share >= 1:
                    break  # the budget is spent: this epoch ends here
            t = time.perf_counter()
            lr = lr_at(self.step, total_steps, cfg.warmup_steps, cfg.lr, cfg.lr * cfg.min_lr_ratio, cfg.schedule, share)
            loss = self._train_step(lr)
            self.step += 1
            self.epoch_steps += 1
            done += 1
            dt = time.perf_counter() - t
            self.train_time += dt
            self.session_tokens += n_tokens
            self.tokens_seen += n_tokens
            self.epoch_loss_sum += loss
            mfu = self.flops_per_token * n_tokens / dt / self.peak_flops
            row = {
                "step": self.step,
                "epoch": epoch,
                "train_loss": loss,
                "lr": lr,
                "tokens_per_sec": n_tokens / dt,
                "mfu": mfu,
                "wall_time": self.clock.wall(),
            }
            self._write(lambda row=row: self.runlog.log_step(row))
            self.tb.step(row)
            bar.set_postfix(loss=f"{loss:.4f}", tok_s=f"{n_tokens / dt:,.0f}", mfu=f"{100 * mfu:.0f}%", refresh=False)
            bar.update()
            if cfg.save_every_steps and self.step % cfg.save_every_steps == 0 and self.epoch_steps < spe:
                self._save(["checkpoint.pt"])
        bar.close()
        if self.epoch_steps == 0:  # the budget ran out before this epoch began: nothing to evaluate
            return
        t_end = time.perf_counter()
        self.epoch = epoch
        self.last_train = self.epoch_loss_sum / self.epoch_steps
        self.epoch_loss_sum, self.epoch_steps = 0.0, 0
        self.last_val = math.nan  # only rank 0 evaluates (every rank holds the same weights) ...
        if self.dist.is_main:
            t_eval = time.perf_counter()
            self.last_val = evaluate_loss(self.model, self.val_tokens, splits.window, cfg.batch_size, self.device)
            if self.val_prefix:  # keep back the time the final whole-split evaluation will take
                share = min(len(splits.val), FINAL_EVAL_TOKENS) / len(self.val_tokens)
                self.clock.final_cost = (time.perf_counter() - t_eval) * share
        self.last_val = distributed.from_main(self.last_val, self.dist, self.device)  # ... and tells the others
        self.model.train()
        score = self.last_train if math.isnan(self.last_val) else self.last_val
        is_best = score < self.best_val
        if is_best:
            self.best_val = score
        if not math.isnan(self.last_val):
            self._write(lambda: self.runlog.set_val(self.last_val, self.clock.wall()))
            self.tb.val(self.step, self.last_val)
        self._save([f"checkpoint_epoch_{epoch}.pt", "checkpoint.pt"] + (["best_model.pt"] if is_best else []))
        self._prune_epoch_checkpoints()
        self._write(self._write_epoch_logs)
        val = self.last_val
        name = "prefix val loss" if self.val_prefix else "val loss"  # the first --eval_tokens of the split
        val_part = "" if math.isnan(val) else f" | {name} {val:.4f} | val ppl {math.exp(val):.2f}"
        took = time.perf_counter() - t_epoch
        of = "" if cfg.time_budget else f"/{cfg.epochs}"
        self.log(
            f"epoch {epoch}{of} | train loss {self.last_train:.4f}{val_part} | lr {lr:.2e} | "
            f"{done * n_tokens / max(took, 1e-9):,.0f} tok/s | {took:.1f}s{' | best' if is_best else ''}"
        )
        self.clock.end_cost = time.perf_counter() - t_end

    def _interrupted(self, signum: int) -> None:
        """Save where the run stands and leave with the signal's exit status."""
        self._save(["checkpoint.pt"])
        path = self.out_dir / "checkpoint.pt"
        length = f"--time_budget {self.cfg.time_budget:g}" if self.cfg.time_budget else f"--epochs {self.cfg.epochs}"
        raise TrainingInterrupted(
            f"stopped by signal at step {self.step} (epoch {self.epoch + 1}, "
            f"{self.epoch_steps}/{self.cfg.steps_per_epoch} steps in); saved "
            f"{path}. Resume with: mini-transformer-lab train --data {self.cfg.data} --resume {path} {length}",
            EXIT_CODES.get(signum, 130),
        )

    def _train_step(self, lr: float) -> float:
        """One optimizer step over grad_accum micro-batches on each rank; returns the mean loss of the step."""
        cfg, splits, world, rank = self.cfg, self.splits, self.dist.world_size, self.dist.rank
        for opt in self.optimizers:
            for group in opt.param_groups:
                group["lr"] = lr
        B = cfg.batch_size
        # The whole step's windows are drawn at once, the same on every rank: micro-batch m of rank r
        # is slice m * world + r. So 1 process x grad_accum 4 sees what 4 processes x 1 would.
        starts = draw_starts(len(splits.train), B * world * cfg.grad_accum, splits.window, self.batch_gen)
        total = torch.zeros((), device=self.device)
        for micro in range(cfg.grad_accum):
            first = (micro * world + rank) * B
            x, y = windows(splits.train, starts[first : first + B], splits.window)
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            last = micro == cfg.grad_accum - 1
            # DDP averages gradients across ranks on backward; only the last micro-batch needs to.
            sync = contextlib.nullcontext() if last or not self.dist.enabled else self.ddp.no_sync()
            with sync:
                with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
                    _, loss = self.train_model(x, y)
                self.scaler.scale(loss / cfg.grad_accum).backward()
            total += loss.detach()
        if self.scaler.is_enabled():
            for opt in self.optimizers:
                self.scaler.unscale_(opt)  # clip the true gradients, not the scaled ones
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        value = distributed.mean_across_ranks(total.item() / cfg.grad_accum, self.dist, self.device)
        if not math.isfinite(value):
            raise LabError(
                f"the loss became {value} at step {self.step + 1}; training stopped before that "
                f"update (try a lower --lr than {cfg.lr:g})"
            )
        for opt in self.optimizers:
            self.scaler.step(opt)
        self.scaler.update()
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=True)
        return value

    def _budget_share(self) -> float:
        """The share of --time_budget spent so far (the slowest rank's, so that all ranks stop together)."""
        share = self.clock.budget_share(self.cfg.time_budget)
        return distributed.max_across_ranks(share, self.dist, self.device)

    def _tokens_per_sec(self) -> float:
        return self.session_tokens / self.train_time if self.train_time else 0.0


def train(data: str, model_config: ModelConfig | None = None, **settings) -> TrainResult:
    """Notebook entry point: ``train("my_data.txt", ModelConfig(n_layers=2), epochs=3)``."""
    return Trainer(TrainConfig(data=str(data), **settings), model_config).fit()
