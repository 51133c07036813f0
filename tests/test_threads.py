"""genesae_fast.threads.ThreadTuner: the thread count follows the measured step times."""
from __future__ import annotations

from genesae_fast.threads import ThreadTuner


def test_thread_tuner_keeps_the_faster_count(monkeypatch):
    import os

    import torch

    calls = []
    monkeypatch.setattr(torch, "set_num_threads", calls.append)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    tuner = ThreadTuner(None, probe_steps=2, recheck_seconds=10)
    step_time = {1: 0.5, 2: 2.0}  # a loaded machine: one thread is faster
    elapsed = 0.0
    seen = []
    for _ in range(6):
        tuner.before_step(elapsed)
        seen.append(tuner.current)
        elapsed += step_time[tuner.current]
        tuner.after_step(step_time[tuner.current], elapsed)
    assert seen[:4] == [1, 1, 2, 2] and seen[4:] == [1, 1]
    step_time = {1: 0.5, 2: 0.2}  # the machine became quiet: the re-check moves to 2
    for _ in range(30):
        tuner.before_step(elapsed)
        elapsed += step_time[tuner.current]
        tuner.after_step(step_time[tuner.current], elapsed)
    assert tuner.current == 2 and calls[-1] == 2
    assert ThreadTuner(3).candidates == [3]
