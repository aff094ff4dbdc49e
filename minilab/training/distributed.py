"""Data-parallel training across processes with torch.distributed, started by torchrun.

    torchrun --nproc_per_node=2 mini-transformer-lab.py train --data my_data.txt

torchrun sets RANK, LOCAL_RANK and WORLD_SIZE; each process trains a copy of the model on its own
slice of every batch, gradients are averaged (DistributedDataParallel), and only rank 0 writes
files. CPUs talk through the gloo backend, GPUs through NCCL.
"""

import datetime
import os
import time
from dataclasses import dataclass

import torch
import torch.distributed as dist

from minilab.errors import LabError


@dataclass
class DistInfo:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def setup(device: torch.device, timeout_s: float = 300.0) -> DistInfo:
    """Join the process group if torchrun started us; otherwise a single process (rank 0 of 1)."""
    if not launched_by_torchrun():
        return DistInfo()
    info = DistInfo(int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", 0)), int(os.environ["WORLD_SIZE"]))
    if info.world_size == 1:
        return info
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        # A bounded timeout: if another rank dies, the collectives here fail instead of hanging forever.
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
    return info


def local_device(device: torch.device, info: DistInfo) -> torch.device:
    """On GPUs, rank r uses the GPU numbered by its LOCAL_RANK on its machine."""
    if device.type == "cuda" and info.enabled:
        if info.local_rank >= torch.cuda.device_count():
            raise LabError(f"LOCAL_RANK {info.local_rank} but this machine has {torch.cuda.device_count()} GPU(s)")
        torch.cuda.set_device(info.local_rank)
        return torch.device("cuda", info.local_rank)
    return device


def mean_across_ranks(value: float, info: DistInfo, device: torch.device) -> float:
    """The average of a number over all ranks (for logging the global loss)."""
    if not info.enabled:
        return value
    return _one_number(value, device, dist.all_reduce) / info.world_size


def max_across_ranks(value: float, info: DistInfo, device: torch.device) -> float:
    """The largest value of a number over all ranks (so that every rank takes the same decision)."""
    if not info.enabled:
        return value
    return _one_number(value, device, lambda t: dist.all_reduce(t, op=dist.ReduceOp.MAX))


def from_main(value: float, info: DistInfo, device: torch.device) -> float:
    """Rank 0's value of a number, on every rank (so that every rank takes the same decision)."""
    if not info.enabled:
        return value
    return _one_number(value, device, lambda t: dist.broadcast(t, src=0))


def _one_number(value: float, device: torch.device, collective, wait_s: float = 1.0) -> float:
    """Run ``collective`` on a one-element tensor holding ``value`` and return the result.

    gloo's worker thread lets go of the tensor a moment *after* the call has returned, and letting
    go of a tensor Python made takes Python's lock. If this was a rank's last collective, the rank
    could reach interpreter shutdown first, and the process would then abort ("terminate called
    without an active exception"). So wait, with the lock free, until this tensor is ours alone.
    (NCCL's works are let go by a watchdog thread on its own schedule: on GPUs there is no wait.)
    """
    t = torch.tensor([value], dtype=torch.float64, device=device)
    collective(t)
    deadline = time.monotonic() + (wait_s if device.type == "cpu" else 0.0)
    while t._use_count() > 1 and time.monotonic() < deadline:
        time.sleep(1e-4)
    return t.item()


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
