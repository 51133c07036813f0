"""FASTA parsing and k-mer counting on the bundled genome, against numpy and Jellyfish 2.

Run: pytest benchmarks/bench_kmers.py --benchmark-only --benchmark-columns=mean,min,rounds
Every test reports Mbp/s in ``extra_info``; ratios come from tests of the same run.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from genesae_fast import data
from genesae_fast.kmers import count_kmers
from genesae_fast.sequences import parse_fasta_bytes, read_bytes, read_fasta

GENOME = read_fasta(data.genome_path())
TOTAL_BP = sum(len(r) for r in GENOME)
# pyjellyfish installs `jellyfish` beside the interpreter, which may not be on PATH.
JELLYFISH = shutil.which("jellyfish") or shutil.which("jellyfish", path=str(Path(sys.executable).parent))


def numpy_canonical_counts(codes: np.ndarray, k: int) -> np.ndarray:
    """Reference counter: 2-bit rolling codes by strided windows, then bincount (k <= 13)."""
    windows = np.lib.stride_tricks.sliding_window_view(codes.astype(np.int64), k)
    weights = 4 ** np.arange(k - 1, -1, -1, dtype=np.int64)
    fwd = windows @ weights
    rev = (3 - windows[:, ::-1]) @ weights
    return np.bincount(np.minimum(fwd, rev), minlength=4**k)


def _mbps(benchmark):
    benchmark.extra_info["Mbp_per_s"] = TOTAL_BP / benchmark.stats.stats.mean / 1e6


def test_parse_fasta(benchmark):
    raw = read_bytes(data.genome_path())
    benchmark(parse_fasta_bytes, raw, "genome")
    _mbps(benchmark)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("k", [11, 13, 21])
def test_count_canonical(benchmark, k, threads):
    benchmark(count_kmers, GENOME, k, canonical=True, threads=threads)
    _mbps(benchmark)


def test_numpy_reference_k11(benchmark):
    benchmark(numpy_canonical_counts, GENOME[0].codes, 11)
    _mbps(benchmark)


@pytest.mark.skipif(JELLYFISH is None, reason="jellyfish (pyjellyfish, bench extra) not installed")
@pytest.mark.parametrize("k", [11, 21])
def test_jellyfish(benchmark, tmp_path, k):
    fasta = tmp_path / "genome.fa"
    fasta.write_bytes(read_bytes(data.genome_path()))
    out = tmp_path / "counts.jf"
    cmd = [JELLYFISH, "count", "-C", "-m", str(k), "-s", "10M", "-t", "1", "-o", str(out), str(fasta)]
    benchmark.pedantic(subprocess.run, args=(cmd,), kwargs={"check": True}, rounds=3, iterations=1)
    _mbps(benchmark)
