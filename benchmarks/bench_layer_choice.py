"""Where a layer choice (`genesae run --layer auto`) spends its time, per candidate layer.

Runs the choice's three steps for one layer of the built-in model on the select slice of
the bundled genome (extract, train a small SAE, annotate with the light settings) and
prints each step's wall and CPU seconds and the extraction's share. The share is what
capturing several layers in one forward pass could save at most.

    python benchmarks/bench_layer_choice.py --bp 100000 --layer 2
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path


def timed(fn) -> tuple[float, float]:
    """(wall, CPU of this process and its children) seconds of ``fn()``."""
    t0, c0 = time.perf_counter(), os.times()
    fn()
    c1 = os.times()
    cpu = (c1.user - c0.user) + (c1.system - c0.system) + (c1.children_user - c0.children_user)
    return time.perf_counter() - t0, cpu


def main() -> None:
    from genesae_fast.annotate import annotate
    from genesae_fast.data import genome_path
    from genesae_fast.extract import extract_to_store
    from genesae_fast.layer_choice import light_config, select_pieces, write_select_genome
    from genesae_fast.train import train_sae

    ap = argparse.ArgumentParser()
    ap.add_argument("--bp", type=int, default=100_000)
    ap.add_argument("--layer", type=int, default=2)
    ap.add_argument("--motifs", default="jaspar2024:CORE:vertebrates")
    args = ap.parse_args()
    d = Path(tempfile.mkdtemp(prefix="bench_layer_choice_"))
    try:
        pieces = select_pieces(str(genome_path()), split_block=200_000, covered_bp=10**12, budget_bp=args.bp)
        fa = d / "select.fa"
        write_select_genome(str(genome_path()), fa, pieces)
        steps = {
            "extract": lambda: extract_to_store(fa, "builtin", args.layer, d / "s.zarr", progress=False, workers=1),
            "train": lambda: train_sae(d / "s.zarr", d / "sae", expansion=16, k=8, batch_size=1024, tokens=args.bp,
                                       progress=False, lm_loss=False),
            "annotate": lambda: annotate(d / "s.zarr", d / "sae", d / "ann", genome=fa, motifs=args.motifs,
                                         cfg=light_config(0, 1), progress=False, workers=1),
        }
        res = {k: timed(fn) for k, fn in steps.items()}
        for k, (wall, cpu) in res.items():
            print(f"{k:<9} wall {wall:7.1f} s  cpu {cpu:7.1f} s")
        total_wall = sum(w for w, _ in res.values())
        total_cpu = sum(c for _, c in res.values())
        print(f"extraction share: wall {res['extract'][0] / total_wall:.1%}, cpu {res['extract'][1] / total_cpu:.1%}"
              f"  (load average {os.getloadavg()[0]:.1f}, {os.cpu_count()} cores)")
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
