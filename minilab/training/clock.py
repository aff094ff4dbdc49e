"""A training run's wall clock: its time across resumed sessions, and its share of a --time_budget.

A budgeted run must end, evaluation, checkpoints and exit included, within the budget. So the clock
starts with the process (Python's start-up and ``import torch`` count too), carries the time of
earlier sessions from the checkpoint, and keeps back what the run's end will take: the measured cost
of the last epoch's end, plus a second for the exit.
"""

import os
import time

EXIT_SECONDS = 1.0  # kept back for the exit: unloading torch and matplotlib took 0.7-0.9 s here


def process_start() -> float:
    """The time.perf_counter() reading at which this process started (Linux), else now.

    Python's start-up and ``import torch`` take a second or two before any training code runs; a
    --time_budget run from the command line counts them too. Read from /proc (the process's start
    in clock ticks since boot, against the seconds since boot).
    """
    now = time.perf_counter()
    try:
        with open("/proc/self/stat") as f, open("/proc/uptime") as g:
            age = process_age(f.read(), g.read(), os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError, AttributeError):
        return now
    return now - age if 0 <= age < 600 else now  # a clock that disagrees: count from now


def process_age(stat: str, uptime: str, ticks_per_second: int) -> float:
    """Seconds since a process started, from its /proc/PID/stat line and /proc/uptime."""
    start_ticks = int(stat.rsplit(")", 1)[1].split()[19])  # field 22, 'starttime' (the name may hold spaces)
    return float(uptime.split()[0]) - start_ticks / ticks_per_second


class RunClock:
    """Seconds a run has taken, from ``started`` (a time.perf_counter() reading; default now) plus ``prior``."""

    now = staticmethod(time.perf_counter)  # the time source; a test puts a fake clock here

    def __init__(self, started: float | None = None, prior: float = 0.0):
        self.t0 = self.now() if started is None else started
        self.prior = prior  # wall time of the run's earlier sessions (from the checkpoint)
        self.end_cost = 0.0  # seconds the last epoch's end (evaluation, checkpoints, logs) took
        self.final_cost = 0.0  # seconds the final whole-split evaluation will take (when epochs score a prefix)

    def wall(self) -> float:
        return self.prior + self.now() - self.t0

    def reserve(self) -> float:
        """Seconds kept back from a time budget for the run's end: the last epoch end's cost, the final
        evaluation's and the exit."""
        return self.end_cost + self.final_cost + EXIT_SECONDS

    def budget_share(self, budget: float) -> float:
        """The share of ``budget``'s training time spent: the budget less the reserve, so that the end fits."""
        return self.wall() / max(1e-9, budget - self.reserve())
