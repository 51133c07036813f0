"""genesae_fast.threads.ThreadTuner: the thread count follows the measured step times."""
from __future__ import annotations

import time

import pytest

from genesae_fast import threads as threads_mod
from genesae_fast.threads import ThreadTuner


def test_thread_tuner_keeps_the_faster_count(monkeypatch):
    import torch

    calls = []
    monkeypatch.setattr(torch, "set_num_threads", calls.append)
    monkeypatch.setattr(threads_mod, "usable_cores", lambda: 2)
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


def test_busy_cores_is_the_non_idle_share_of_the_sample(monkeypatch):
    from genesae_fast import threads

    samples = iter([(100.0, 1000.0), (150.0, 1200.0)])  # 50 of 200 jiffies idle: 3/4 busy
    monkeypatch.setattr(threads, "_cpu_times", lambda: next(samples))
    assert threads.busy_cores(sample_seconds=0, cores=4) == pytest.approx(3.0)


def test_busy_cores_falls_back_to_the_load_average(monkeypatch):
    import os

    from genesae_fast import threads

    monkeypatch.setattr(threads, "_cpu_times", lambda: None)
    monkeypatch.setattr(os, "getloadavg", lambda: (5.5, 1.0, 1.0))
    assert threads.busy_cores(sample_seconds=0, cores=2) == 5.5


def test_busy_cores_sees_a_spinning_process():
    import subprocess
    import sys

    from genesae_fast import threads

    # this process sleeps while it samples; a child that spins keeps about one core busy
    spin = subprocess.Popen([sys.executable, "-c", "import time\nt = time.time()\nwhile time.time() - t < 5: pass"])
    try:
        time.sleep(0.3)
        assert threads.busy_cores(sample_seconds=0.5) >= 0.6
    finally:
        spin.kill()
        spin.wait()


def test_cpu_times_reads_proc_stat_when_there_is_one():
    import os

    from genesae_fast import threads

    got = threads._cpu_times()
    if not os.path.exists("/proc/stat"):
        assert got is None
    else:
        idle, total = got
        assert 0 <= idle <= total


def _cores_under_affinity(cpus, queue):
    """In a child process: pin to ``cpus``, then report what the library would use."""
    import os

    from genesae_fast.models.lm_train import default_workers
    from genesae_fast.scan import effective_threads
    from genesae_fast.threads import usable_cores

    os.sched_setaffinity(0, cpus)
    queue.put((usable_cores(), effective_threads(None), default_workers(32, load=0.0)))


@pytest.mark.skipif(not hasattr(__import__("os"), "sched_setaffinity"), reason="no CPU affinity on this OS")
def test_usable_cores_follow_the_process_cpu_affinity():
    # as under `taskset -c 0` or a scheduler's cpuset: one usable core, whatever the machine has
    import multiprocessing as mp
    import os

    first = min(os.sched_getaffinity(0))
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_cores_under_affinity, args=({first}, q))
    p.start()
    got = q.get(timeout=60)
    p.join(60)
    assert got == (1, 1, 1)  # lm train's workers counted the machine's cores before


def test_usable_cores_without_affinity_is_the_cpu_count(monkeypatch):
    import os

    from genesae_fast import threads

    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 7)
    assert threads.usable_cores() == 7
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    assert threads.usable_cores() == 1
