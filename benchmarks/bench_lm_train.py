"""``genesae lm train`` throughput: data-parallel workers vs the old single-process path.

Every configuration trains the default built-in LM (d 48, 6 blocks, batch 32 x 512 bp) for
the same number of steps on the bundled genome, in this one run, so the machine's load is
shared alike; steps/s counts training time only (``metrics.json``'s ``train_seconds``, held-
out checks included), start-up (process spawn, data loading) is reported apart.

* ``old-all-cores``: one process with all cores as torch threads: what the old tuner ran for
  its first two minutes.
* ``old-1-thread``: one process, one thread: where the old tuner settled on a busy machine.
* ``workers``: one process per core, one torch thread each, gradients summed with gloo (new default).

Run::

    python benchmarks/bench_lm_train.py [--steps 40] [--workers 2]

It prints one JSON line per configuration and the ratios of ``workers`` to both old paths.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path


def measure(name: str, workers: int, threads: int, steps: int, genome: str) -> dict:
    """Train ``steps`` steps; steps/s and tokens/s of the training time."""
    from genesae_fast.models.lm_train import train_lm

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        m = train_lm(genome, Path(tmp) / "lm", steps=steps, minutes=1e6, workers=workers, threads=threads,
                     eval_every=max(steps // 2, 1), patience=0, progress=False, max_markov_order=2)
        wall = time.perf_counter() - t0
    rate = m["steps"] / m["train_seconds"]
    return {"config": name, "workers": workers, "threads": threads, "steps": m["steps"],
            "steps_per_s": round(rate, 3), "tokens_per_s": round(rate * 32 * 512), "train_s": round(m["train_seconds"], 2),
            "wall_s": round(wall, 2)}


def main() -> None:
    from genesae_fast.data import genome_path

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()
    cores = os.cpu_count() or 1
    genome = str(genome_path())
    rows = [measure("old-all-cores", 1, cores, args.steps, genome), measure("old-1-thread", 1, 1, args.steps, genome),
            measure("workers", args.workers, 1, args.steps, genome)]
    for r in rows:
        print(json.dumps(r))
    new = rows[2]["steps_per_s"]
    print(json.dumps({"workers_vs_old_all_cores": round(new / rows[0]["steps_per_s"], 2),
                      "workers_vs_old_1_thread": round(new / rows[1]["steps_per_s"], 2),
                      "load_average": os.getloadavg()[0], "cores": cores}))


if __name__ == "__main__":
    main()
