"""Choosing torch's CPU thread count by measurement (the LM and SAE trainers use it).

On a shared machine two threads that wait on each other can be several times slower
than one (measured on a loaded 2-core VM: 5 s against 1.2 s an LM step; 4.2k against
32k SAE tokens/s), while on a quiet machine all cores are faster. So a few steps are
timed with each candidate (1 thread and all cores), the fastest is kept, and the probe
repeats every ``recheck_seconds`` of training time. The caller measures the steps with
its own clock, so tests can drive the tuner with made-up durations.

:func:`busy_cores` tells how many cores other work keeps busy right now (``lm train``
starts one worker per free core).
"""
from __future__ import annotations

import os
from statistics import median


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity (taskset, a cgroup cpuset, a batch
    scheduler's allocation) where the OS reports one, else ``os.cpu_count()``. Counting the
    machine's cores instead would start more threads and workers than the process can use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


class ThreadTuner:
    """Sets ``torch.set_num_threads`` before each step from the timings reported after it.

    Parameters
    ----------
    fixed : int or None
        A thread count to keep (no probing); None probes 1 and all cores.
    probe_steps : int
        Steps timed per candidate in a probe.
    recheck_seconds : float
        Training time between two probes.
    """

    def __init__(self, fixed: int | None, probe_steps: int = 3, recheck_seconds: float = 120.0):
        import torch

        self._torch = torch
        cores = usable_cores()
        self.candidates = [int(fixed)] if fixed else sorted({1, cores})
        self.probe_steps = probe_steps
        self.recheck_seconds = recheck_seconds
        self.current = self.candidates[-1]
        self._times: dict[int, list[float]] = {}
        self._probing = len(self.candidates) > 1
        self._next_probe = 0.0
        torch.set_num_threads(self.current)

    def before_step(self, elapsed: float) -> None:
        """Set the thread count for the next step (``elapsed``: training seconds so far)."""
        if not self._probing and len(self.candidates) > 1 and elapsed >= self._next_probe:
            self._probing, self._times = True, {}
        if self._probing:
            for c in self.candidates:
                if len(self._times.get(c, [])) < self.probe_steps:
                    self.current = c
                    break
            self._torch.set_num_threads(self.current)

    def after_step(self, seconds: float, elapsed: float) -> None:
        """Record a step's duration; end a probe once every candidate has its steps."""
        if not self._probing:
            return
        self._times.setdefault(self.current, []).append(seconds)
        if all(len(self._times.get(c, [])) >= self.probe_steps for c in self.candidates):
            # the first step after a change pays for thread start-up: judge by the median
            self.current = min(self.candidates, key=lambda c: median(self._times[c]))
            self._torch.set_num_threads(self.current)
            self._probing = False
            self._next_probe = elapsed + self.recheck_seconds


def _cpu_times() -> tuple[float, float] | None:
    """(idle, total) jiffies of all CPUs from ``/proc/stat``; None where there is none."""
    try:
        with open("/proc/stat") as fh:
            fields = [float(x) for x in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    if len(fields) < 4:
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)  # idle + iowait
    return idle, sum(fields[:8])  # guest time is already counted in user time


def busy_cores(sample_seconds: float = 0.3, cores: int | None = None) -> float:
    """Cores other work keeps busy now: the non-idle share of CPU time over ``sample_seconds``
    (this process sleeps meanwhile, so it counts nothing of its own) times ``cores``.

    Why not the load average: it trails by a minute, so a job that has just finished (or
    this process's own set-up work) still counts as busy. Falls back to the 1-minute load
    average where ``/proc/stat`` is missing (macOS)."""
    import time

    cores = cores or usable_cores()
    a = _cpu_times()
    if a is None:
        return float(os.getloadavg()[0]) if hasattr(os, "getloadavg") else 0.0
    time.sleep(sample_seconds)
    b = _cpu_times()
    if b is None or b[1] <= a[1]:
        return float(os.getloadavg()[0])
    return cores * (1.0 - (b[0] - a[0]) / (b[1] - a[1]))


__all__ = ["ThreadTuner", "busy_cores", "usable_cores"]
