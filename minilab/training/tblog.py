"""Optional TensorBoard logging of a training run (``train --tensorboard``); tensorboard is not a dependency.

The scalars go to ``<experiment folder>/tensorboard``: ``tensorboard --logdir experiments`` shows
every run. Without the package installed, training goes on and says so in one line.
"""

from pathlib import Path


class TensorBoardLog:
    """Writes train/val loss, lr and tokens/s as TensorBoard scalars; with no writer it does nothing."""

    def __init__(self, writer=None):
        self.writer = writer

    def step(self, row: dict) -> None:
        """One optimizer step's metrics row (see runlog.METRIC_FIELDS)."""
        if self.writer is not None:
            step = row["step"]
            self.writer.add_scalar("loss/train", row["train_loss"], step)
            self.writer.add_scalar("lr", row["lr"], step)
            self.writer.add_scalar("tokens_per_sec", row["tokens_per_sec"], step)

    def val(self, step: int, loss: float) -> None:
        if self.writer is not None:
            self.writer.add_scalar("loss/val", loss, step)
            self.writer.flush()  # once an epoch, so a running TensorBoard sees the curves grow

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def open_tensorboard(run_dir: str | Path, log=print) -> TensorBoardLog:
    """A log writing under ``run_dir/tensorboard``, or one that does nothing if tensorboard is missing."""
    try:
        from torch.utils.tensorboard import SummaryWriter  # imports the tensorboard package
    except ImportError:
        log("note: --tensorboard needs the tensorboard package (pip install tensorboard); training without it")
        return TensorBoardLog()
    return TensorBoardLog(SummaryWriter(log_dir=str(Path(run_dir) / "tensorboard")))
