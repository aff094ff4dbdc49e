"""Ctrl-C and SIGTERM during training: ask the loop to stop cleanly; a second Ctrl-C stops at once."""

import signal
import threading

from minilab.errors import LabError

EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


class TrainingInterrupted(LabError):
    """Training stopped on a signal after saving; ``exit_code`` is 130 (SIGINT) or 143 (SIGTERM)."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


class StopSignals:
    """While active, SIGINT/SIGTERM set ``requested`` instead of killing the process.

    The training loop looks at ``requested`` between steps, saves and leaves. A second signal raises
    KeyboardInterrupt at once: checkpoint writes are atomic, so no file is left half written.
    """

    def __init__(self):
        self.requested: int | None = None
        self._previous = {}

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():  # signals only reach the main thread
            for sig in EXIT_CODES:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum, frame) -> None:
        if self.requested is not None:
            raise KeyboardInterrupt
        self.requested = signum
