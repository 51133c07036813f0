"""Estimate the CPU% a command would reach on N idle cores while the machine is loaded.

GNU time's CPU% on a shared machine measures the scheduler, not the command. This runs the
command and, every ``--interval`` seconds, reads the state of each of its threads from
/proc (Linux only): a thread is busy when it is running or waiting for a core ("R"). The
estimate is the mean of min(busy threads, cores) over the samples, x 100. Under an even
load every phase of the command stretches by about the same factor, so the fraction of
samples in each phase, and the estimate, are roughly what an idle machine would show.
Serial phases (one busy thread) count 100%, phases blocked on I/O count less.

    python benchmarks/idle_cpu_estimate.py --cores 2 -- genesae scan --genome g.fa.gz --threads 2 -o hits.tsv

Prints one line per run: samples, the histogram of busy-thread counts and the estimate.
"""
from __future__ import annotations

import argparse
import collections
import glob
import subprocess
import sys
import time


def busy_threads(pid: int) -> int:
    """Threads of ``pid`` running or runnable now (0 once it has exited)."""
    busy = 0
    for stat in glob.glob(f"/proc/{pid}/task/*/stat"):
        try:
            with open(stat) as fh:
                state = fh.read().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue  # the thread ended between the listing and the read
        busy += state == "R"
    return busy


def estimate(cmd: list[str], cores: int, interval: float) -> tuple[float, dict[int, int]]:
    """(estimated idle CPU%, histogram of busy-thread counts) of one run of ``cmd``."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    samples: collections.Counter = collections.Counter()
    while proc.poll() is None:
        samples[busy_threads(proc.pid)] += 1
        time.sleep(interval)
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed with status {proc.returncode}")
    total = sum(samples.values()) or 1
    return 100.0 * sum(min(k, cores) * n for k, n in samples.items()) / total, dict(sorted(samples.items()))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--interval", type=float, default=0.002, help="seconds between samples")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("cmd", nargs=argparse.REMAINDER, help="the command, after --")
    args = ap.parse_args(argv)
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        ap.error("give the command after --")
    if not sys.platform.startswith("linux"):
        raise SystemExit("needs Linux /proc")
    for _ in range(args.repeats):
        pct, hist = estimate(cmd, args.cores, args.interval)
        print(f"samples {sum(hist.values())} busy-thread histogram {hist} estimated idle CPU% {pct:.0f}")


if __name__ == "__main__":
    main()
