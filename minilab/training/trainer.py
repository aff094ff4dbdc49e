"""The training loop: sample batches, forward, loss, backward, optimizer step, evaluate, checkpoint.

What an epoch is: the text is not walked through in order. Each step draws ``batch_size`` random
windows of ``context_length`` tokens from the training split, and an epoch is ``steps_per_epoch``
such steps: by default enough batches of ``batch_size`` windows to draw as many tokens as the training
split holds, and at least 50, so that a tiny text still gets a useful amount of training per epoch
(with --grad_accum N or N processes, a step draws N batches: such an epoch covers the text N times).
By default a batch has 32 sequences, or as many windows as the text holds (at least 8) when the
training text is shorter than 32 windows (a step would otherwise see the same few hundred characters
dozens of times over; smaller batches give more updates for the same time, which is what a tiny text
needs). Those automatic settings are decided once, before the run starts (training/setup.py). After
each epoch the model is scored on the validation split and the checkpoints are written.

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

import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from minilab.errors import LabError
from minilab.model.config import ModelConfig
from minilab.model.flops import flops_per_token, measured_peak_flops
from minilab.model.gpt import GPT
from minilab.precision import choose_precision, device_facts
from minilab.training import distributed
from minilab.training.clock import RunClock
from minilab.training.config import TrainConfig
from minilab.training.conversations import ConversationData
from minilab.training.finetune import load_weights, starting_point
from minilab.training.optim import make_optimizers, run_schedule
from minilab.training.runfiles import RunFiles, checkpoint_payload, epoch_sample, run_config
from minilab.training.runlog import new_run_name
from minilab.training.setup import (
    Progress,
    check_output_dirs,
    check_run_dir,
    finish_config,
    fit_context,
    restore,
    setup_devices,
    wrap_for_training,
)
from minilab.training.signals import EXIT_CODES, StopSignals, TrainingInterrupted
from minilab.training.validation import Validation


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


class Trainer:
    """One training run. Everything is set up and checked in ``__init__``, before any file is written."""

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
        self.device, self.dist = setup_devices(cfg.device)
        out_dir, exp_dir = check_output_dirs(cfg)
        model_cfg = ModelConfig.from_dict(resume["model_config"]) if resume else model_cfg or ModelConfig()
        # The data (text, or conversations with a loss mask), the tokenizer and the model's shape; with
        # cfg.init_from, the weights a fine-tuning run starts from (training/finetune.py).
        start = starting_point(cfg, model_cfg, resume)
        model_cfg, self.tokenizer, self.splits = start.model_cfg, start.tokenizer, start.data
        self.conversations = self.splits if isinstance(self.splits, ConversationData) else None
        new_text_model = resume is None and start.weights is None and self.conversations is None
        if auto_context and new_text_model:  # nobody chose --context_length: fit it to a tiny text
            model_cfg = fit_context(model_cfg, self.splits)
        self.cfg = cfg = finish_config(cfg, self.tokenizer, self.splits)  # no 'auto' setting after this line
        self.model_cfg = model_cfg
        self.schedule = run_schedule(cfg)

        if cfg.threads:  # for the whole process: small models often step faster on one thread than on two
            torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)  # the same initial weights on every rank
        self.model = GPT(model_cfg).to(self.device)
        if start.weights is not None:
            load_weights(self.model, start.weights, cfg.init_from)
        self.optimizers = make_optimizers(self.model, cfg, self.device)  # [AdamW] or [AdamW, Muon]
        # The data order: every rank draws the same global batch and trains on its own slice of it,
        # so the run does not depend on how many processes share it. Saved for resume.
        self.batch_gen = torch.Generator().manual_seed(cfg.seed)
        self.precision = choose_precision(cfg.dtype, device_facts(self.device), model_cfg.d_model)
        self.wrapped = wrap_for_training(self.model, self.device, self.dist, cfg.compile, self.precision)
        self.amp_dtype = self.wrapped.amp_dtype
        self.state = Progress()
        self.run_name = cfg.run_name or new_run_name(cfg.data)
        if resume is not None:
            self.state = restore(resume, self.model, self.optimizers, self.batch_gen, self.device, cfg.steps_per_epoch)
            run = resume.get("run") or {}
            self.run_name = cfg.run_name or run.get("name") or self.run_name
            self.clock.prior = float(run.get("wall_time", 0.0))
        self.run_dir = check_run_dir(exp_dir / self.run_name, resumed=resume is not None)
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
        self.files = RunFiles(out_dir, self.run_dir, writes=self.dist.is_main)

    @property
    def step(self) -> int:
        return self.state.step

    @property
    def epoch(self) -> int:
        return self.state.epoch

    @property
    def tokens_per_step(self) -> int:
        """Tokens per optimizer step over all processes and micro-batches."""
        return self.cfg.batch_size * self.cfg.grad_accum * self.dist.world_size * self.splits.window

    # ---------------------------------------------------------------- the loop

    def fit(self) -> TrainResult:
        """Train from the current epoch to ``cfg.epochs`` (or the time budget), writing checkpoints and the log."""
        cfg = self.cfg
        self._start()
        try:
            with StopSignals() as signals:
                while self._budget_share() < 1 if cfg.time_budget else self.epoch < cfg.epochs:
                    self._run_epoch(signals)
            self._final_eval()
        finally:
            self.files.close()
            distributed.teardown()
        return TrainResult(
            best_val_loss=self.state.best_val,
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

    def _run_epoch(self, signals: StopSignals) -> None:
        """Train the rest of the epoch in progress (all of it, unless resuming mid-epoch), then evaluate and save."""
        cfg, state, spe = self.cfg, self.state, self.cfg.steps_per_epoch
        epoch, lr, done, t_epoch = state.epoch + 1, math.nan, 0, time.perf_counter()
        bar = self._progress_bar(epoch)
        while state.epoch_steps < spe:
            if signals.requested is not None:
                bar.close()
                self._interrupted(signals.requested)
            share = self._budget_share() if cfg.time_budget else None
            if share is not None and share >= 1:
                break  # the budget is spent: this epoch ends here
            t = time.perf_counter()
            lr = self.schedule.lr_at(state.step, share)
            loss = self.train_step(lr)
            self._record_step(epoch, loss, lr, time.perf_counter() - t, bar)
            done += 1
            if cfg.save_every_steps and state.step % cfg.save_every_steps == 0 and state.epoch_steps < spe:
                self._save(["checkpoint.pt"])
        bar.close()
        if state.epoch_steps:  # else the budget ran out before this epoch began: nothing to evaluate
            self._end_epoch(epoch, lr, done * self.tokens_per_step, time.perf_counter() - t_epoch)

    def train_step(self, lr: float) -> float:
        """One optimizer step at ``lr`` over grad_accum micro-batches on each rank; returns the step's mean loss."""
        cfg, splits, world, rank, wrapped = self.cfg, self.splits, self.dist.world_size, self.dist.rank, self.wrapped
        for opt in self.optimizers:
            for group in opt.param_groups:
                group["lr"] = lr
        B = cfg.batch_size
        # The whole step's windows are drawn at once, the same on every rank: micro-batch m of rank r
        # is slice m * world + r. So 1 process x grad_accum 4 sees what 4 processes x 1 would.
        starts = splits.draw(B * world * cfg.grad_accum, self.batch_gen)
        total = torch.zeros((), device=self.device)
        for micro in range(cfg.grad_accum):
            first = (micro * world + rank) * B
            x, y = splits.batch(starts[first : first + B])  # (B, T) each; y = -100 where not trained on
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            with wrapped.no_sync(last=micro == cfg.grad_accum - 1):
                with wrapped.autocast(self.device):
                    _, loss = wrapped.module(x, y)
                wrapped.scaler.scale(loss / cfg.grad_accum).backward()
            total += loss.detach()
        if wrapped.scaler.is_enabled():
            for opt in self.optimizers:
                wrapped.scaler.unscale_(opt)  # clip the true gradients, not the scaled ones
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        value = distributed.mean_across_ranks(total.item() / cfg.grad_accum, self.dist, self.device)
        if not math.isfinite(value):
            raise LabError(
                f"the loss became {value} at step {self.step + 1}; training stopped before that "
                f"update (try a lower --lr than {cfg.lr:g})"
            )
        for opt in self.optimizers:
            wrapped.scaler.step(opt)
        wrapped.scaler.update()
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=True)
        return value

    # ---------------------------------------------------------------- around the loop

    def _start(self) -> None:
        """Before the first step of this session: notes, seeds, the output folders and the opening line."""
        cfg, splits, state = self.cfg, self.splits, self.state
        if not self.dist.is_main:
            self.log = lambda *_: None  # only rank 0 speaks and writes
        for note in splits.notes:
            self.log(f"note: {note}")
        if self.dist.enabled:  # the same weights everywhere, but different dropout masks per rank
            torch.manual_seed(cfg.seed + state.step + 1000 * self.dist.rank)
        if self.precision.warning:
            self.log(self.precision.warning)
        if self.wrapped.note:
            self.log(f"note: {self.wrapped.note}")
        # MFU against the peak of the format the products run in (bf16 units are 5-9x fp32's on AMX).
        peak = measured_peak_flops(self.device.type, dtype=self.precision.autocast_dtype)
        self.peak_flops = peak * self.dist.world_size
        self.flops_per_token = flops_per_token(self.model)
        parts = (self.model, self.model_cfg, cfg, self.tokenizer, self.device, self.precision, self.conversations)
        config = run_config(*parts)
        self.files.open(state.step if state.step > 0 else None, config, cfg.tensorboard, self.log)
        length = (
            f"for {cfg.time_budget:g}s of wall clock in all, epochs of "
            if cfg.time_budget
            else f"epochs {state.epoch + 1}..{cfg.epochs}, "
        )
        self.log(
            f"{'resuming' if state.step > 0 else 'training'} a {self.model.num_params() / 1e6:.2f}M-parameter model on "
            f"{self.device}{f' x {self.dist.world_size} processes' if self.dist.enabled else ''} "
            f"in {self.precision.describe()}: "
            f"{splits.describe()}, "
            f"vocabulary {self.tokenizer.vocab_size}; {length}"
            f"{cfg.steps_per_epoch} steps of {self.tokens_per_step // splits.window} x {splits.window} tokens each"
        )
        self.log(f"checkpoints -> {self.out_dir}/   experiment log -> {self.run_dir}/")
        self.validation = Validation(splits, cfg.eval_tokens, cfg.batch_size, self.device, self.log)
        self.train_time, self.session_tokens = 0.0, 0  # this process only, for tokens/s
        self.last_val, self.last_train = math.nan, math.nan
        self.model.train()

    def _final_eval(self) -> None:
        """The run's validation loss: the final model on the whole split (if the epochs scored only a prefix)."""
        self.final_val = self.last_val
        if self.validation.prefix and self.epoch > 0:
            t, scope = self.clock.now(), ""
            if self.dist.is_main:
                with self.wrapped.eager():
                    self.final_val, scope = self.validation.final_loss(self.model)
            self.final_val = distributed.from_main(self.final_val, self.dist, self.device)
            self.log(f"the final model on {scope}: val loss {self.final_val:.4f} ({self.clock.now() - t:.1f}s)")
        self.files.write_summary(self._summary())

    def _progress_bar(self, epoch: int) -> tqdm:
        return tqdm(
            total=self.cfg.steps_per_epoch,
            initial=self.state.epoch_steps,
            desc=f"epoch {epoch}" + ("" if self.cfg.time_budget else f"/{self.cfg.epochs}"),
            unit="step",
            leave=False,
            dynamic_ncols=True,
            disable=None if self.progress and self.dist.is_main else True,
        )

    def _record_step(self, epoch: int, loss: float, lr: float, dt: float, bar: tqdm) -> None:
        """Count a finished step and log its metrics row."""
        state, n_tokens = self.state, self.tokens_per_step
        state.step += 1
        state.epoch_steps += 1
        state.epoch_loss_sum += loss
        state.tokens_seen += n_tokens
        self.train_time += dt
        self.session_tokens += n_tokens
        mfu = self.flops_per_token * n_tokens / dt / self.peak_flops
        row = {
            "step": state.step,
            "epoch": epoch,
            "train_loss": loss,
            "lr": lr,
            "tokens_per_sec": n_tokens / dt,
            "mfu": mfu,
            "wall_time": self.clock.wall(),
        }
        self.files.log_step(row)
        bar.set_postfix(loss=f"{loss:.4f}", tok_s=f"{n_tokens / dt:,.0f}", mfu=f"{100 * mfu:.0f}%", refresh=False)
        bar.update()

    def _end_epoch(self, epoch: int, lr: float, tokens: int, took: float) -> None:
        """Evaluate, keep the best, save the checkpoints and logs, and print the epoch's line."""
        with self.wrapped.eager():  # compiled blocks (--compile) are for the training step only
            self._evaluate_and_save(epoch, lr, tokens, took)

    def _evaluate_and_save(self, epoch: int, lr: float, tokens: int, took: float) -> None:
        cfg, state = self.cfg, self.state
        t_end = self.clock.now()
        state.epoch = epoch
        self.last_train = state.epoch_loss_sum / state.epoch_steps
        state.epoch_loss_sum, state.epoch_steps = 0.0, 0
        self.last_val = math.nan  # only rank 0 evaluates (every rank holds the same weights) ...
        if self.dist.is_main:
            t_eval = self.clock.now()
            self.last_val = self.validation.loss(self.model)
            # keep back the time the final whole-split evaluation will take (0 without a prefix)
            self.clock.final_cost = (self.clock.now() - t_eval) * self.validation.final_share()
        self.last_val = distributed.from_main(self.last_val, self.dist, self.device)  # ... and tells the others
        self.model.train()
        score = self.last_train if math.isnan(self.last_val) else self.last_val
        is_best = score < state.best_val
        if is_best:
            state.best_val = score
        if not math.isnan(self.last_val):
            self.files.log_val(state.step, self.last_val, self.clock.wall())
        self._save([f"checkpoint_epoch_{epoch}.pt", "checkpoint.pt"] + (["best_model.pt"] if is_best else []))
        self.files.prune(epoch, cfg.keep_last)
        self.files.end_epoch(
            self._summary(), self._sample, f"{self.run_name}: {self.model.num_params() / 1e6:.2f}M parameters"
        )
        val = self.last_val
        name = "prefix val loss" if self.validation.prefix else "val loss"  # the first --eval_tokens of the split
        val_part = "" if math.isnan(val) else f" | {name} {val:.4f} | val ppl {math.exp(val):.2f}"
        of = "" if cfg.time_budget else f"/{cfg.epochs}"
        self.log(
            f"epoch {epoch}{of} | train loss {self.last_train:.4f}{val_part} | lr {lr:.2e} | "
            f"{tokens / max(took, 1e-9):,.0f} tok/s | {took:.1f}s{' | best' if is_best else ''}"
        )
        self.clock.end_cost = self.clock.now() - t_end

    def _sample(self) -> str | None:
        return epoch_sample(self.model, self.tokenizer, self.device, self.cfg, self.epoch, self.conversations)

    def _summary(self) -> dict:
        """summary.json: the run so far (``final_val_loss`` of the whole split once the final evaluation ran)."""
        val = self.validation.summary(self.state.best_val, self.last_val, getattr(self, "final_val", math.nan))
        return {
            "run": self.run_name,
            "epochs": self.epoch,
            "steps": self.step,
            "parameters": self.model.num_params(),
            **val,
            "val_split_tokens": len(self.splits.val),
            "final_train_loss": self.last_train,
            "tokens_seen": self.state.tokens_seen,
            "wall_time_sec": round(self.clock.wall(), 3),
            "tokens_per_sec": round(self._tokens_per_sec(), 1),
            "device": str(self.device),
            "checkpoint_dir": str(self.out_dir),
        }

    def checkpoint_payload(self) -> dict:
        """Everything needed to rebuild the model and continue training exactly where it stopped."""
        run = {
            "name": self.run_name,
            "wall_time": self.clock.wall(),
            "tokens_seen": self.state.tokens_seen,
            "val_prefix_tokens": self.val_prefix,  # best_val_loss is of this many val tokens (0: all)
        }
        parts = (self.model, self.model_cfg, self.tokenizer, self.optimizers, self.batch_gen, self.device)
        payload = checkpoint_payload(*parts, self.cfg, self.state, run)
        if self.conversations is not None:  # what the loss counts, for `info`
            payload["conversations"] = self.conversations.summary()
        return payload

    def _save(self, names: list[str]) -> None:
        self.files.save(names, self.checkpoint_payload, self.step)

    def _interrupted(self, signum: int) -> None:
        """Save where the run stands and leave with the signal's exit status."""
        self._save(["checkpoint.pt"])
        path = self.out_dir / "checkpoint.pt"
        length = f"--time_budget {self.cfg.time_budget:g}" if self.cfg.time_budget else f"--epochs {self.cfg.epochs}"
        raise TrainingInterrupted(
            f"stopped by signal at step {self.step} (epoch {self.epoch + 1}, "
            f"{self.state.epoch_steps}/{self.cfg.steps_per_epoch} steps in); saved "
            f"{path}. Resume with: mini-transformer-lab train --data {self.cfg.data} --resume {path} {length}",
            EXIT_CODES.get(signum, 130),
        )

    def _budget_share(self) -> float:
        """The share of --time_budget spent so far (the slowest rank's, so that all ranks stop together)."""
        share = self.clock.budget_share(self.cfg.time_budget)
        return distributed.max_across_ranks(share, self.dist, self.device)

    @property
    def val_prefix(self) -> int:
        """Validation tokens each epoch scored (0: the whole split); 0 before the run starts."""
        return self.validation.prefix if hasattr(self, "validation") else 0

    def _tokens_per_sec(self) -> float:
        return self.session_tokens / self.train_time if self.train_time else 0.0


def train(data: str, model_config: ModelConfig | None = None, **settings) -> TrainResult:
    """Notebook entry point: ``train("my_data.txt", ModelConfig(n_layers=2), epochs=3)``."""
    return Trainer(TrainConfig(data=str(data), **settings), model_config).fit()
