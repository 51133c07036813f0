"""Stopping a training run cleanly on SIGINT/SIGTERM (checkpoint first, then stop)."""
from __future__ import annotations

import signal
import threading


class TrainingInterrupted(Exception):
    """Training stopped by SIGINT/SIGTERM after saving a checkpoint; rerunning resumes it.

    ``signum`` is the signal's number (the CLI exits with 128 + signum).
    """

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum


class StopSignals:
    """Turn the first SIGINT/SIGTERM into a flag checked between steps (a second SIGINT
    interrupts at once). Only the main thread can install handlers; elsewhere a no-op."""

    def __init__(self):
        self.signum = 0
        self._old = {}

    def _handler(self, signum, frame):
        if self.signum and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self._old[s] = signal.signal(s, self._handler)
        return self

    def __exit__(self, *exc):
        for s, h in self._old.items():
            signal.signal(s, h)
        return False


__all__ = ["StopSignals", "TrainingInterrupted"]
