"""FASTA parsing and k-mer counting on the bundled genome, against numpy and Jellyfish 2.

Speed (pytest-benchmark; ratios come from tests of the same run):

    pytest benchmarks/bench_kmers.py --benchmark-only --benchmark-columns=mean,min,rounds

Scale (whole commands under /usr/bin/time -v: wall, peak RSS, CPU%; 1x, 5x, 10x genomes
made of copies of the bundled genome with 3% random substitutions each):

    python benchmarks/bench_kmers.py --scale 1,5,10 --memory 300M

Per-thread speed on a shared machine (process CPU time of 1-thread counts, best and median
of 9, with the numpy reference timed the same way in the same run):

    python benchmarks/bench_kmers.py --speed 11,13,21
"""
from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from genesae_fast import data
from genesae_fast.kmers import count_kmers
from genesae_fast.sequences import decode, parse_fasta_bytes, read_bytes, read_fasta

GENOME = read_fasta(data.genome_path())
TOTAL_BP = sum(len(r) for r in GENOME)
# pyjellyfish installs `jellyfish` beside the interpreter, which may not be on PATH.
JELLYFISH = shutil.which("jellyfish") or shutil.which("jellyfish", path=str(Path(sys.executable).parent))
GENESAE = shutil.which("genesae") or shutil.which("genesae", path=str(Path(sys.executable).parent))


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


@pytest.mark.parametrize("k", [11, 13])
def test_count_canonical_dense(benchmark, k):
    benchmark(count_kmers, GENOME, k, canonical=True, threads=1, method="dense")
    _mbps(benchmark)


@pytest.mark.parametrize("k", [11, 13])
def test_numpy_reference(benchmark, k):
    benchmark(numpy_canonical_counts, GENOME[0].codes, k)
    _mbps(benchmark)


@pytest.mark.skipif(JELLYFISH is None, reason="jellyfish (pyjellyfish, bench extra) not installed")
@pytest.mark.parametrize("k", [11, 13, 21])
def test_jellyfish(benchmark, tmp_path, k):
    fasta = tmp_path / "genome.fa"
    fasta.write_bytes(read_bytes(data.genome_path()))
    out = tmp_path / "counts.jf"
    cmd = [JELLYFISH, "count", "-C", "-m", str(k), "-s", "10M", "-t", "1", "-o", str(out), str(fasta)]
    benchmark.pedantic(subprocess.run, args=(cmd,), kwargs={"check": True}, rounds=3, iterations=1)
    _mbps(benchmark)


# --- scale: whole commands on 1x, 5x, 10x genomes --------------------------------------


def write_mutated_genome(path: Path, copies: int, rate: float = 0.03, seed: int = 0) -> int:
    """Write ``copies`` records of the bundled genome, each with ``rate`` random substitutions.

    Returns the number of bases written.
    """
    rng = np.random.default_rng(seed)
    base = GENOME[0].codes
    with open(path, "w") as fh:
        for i in range(copies):
            codes = base.copy()
            hit = rng.random(len(codes)) < rate
            codes[hit] = (codes[hit] + rng.integers(1, 4, int(hit.sum()))) % 4  # always a different base
            seq = decode(codes)
            fh.write(f">copy{i}\n")
            fh.writelines(seq[j : j + 80] + "\n" for j in range(0, len(seq), 80))
    return copies * len(base)


def timed(cmd: list[str]) -> dict:
    """Run ``cmd`` under /usr/bin/time -v: wall seconds, peak RSS (MiB), CPU %."""
    res = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True, check=True)
    err = res.stderr
    wall = re.search(r"Elapsed \(wall clock\) time.*: (?:(\d+):)?(\d+):([\d.]+)", err)
    secs = float(wall.group(3)) + 60 * int(wall.group(2)) + 3600 * int(wall.group(1) or 0)
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", err).group(1)) / 1024
    cpu = re.search(r"Percent of CPU this job got: (\d+)%", err).group(1)
    return {"wall_s": secs, "rss_mib": rss, "cpu": f"{cpu}%"}


def scale_rows(copies_list: list[int], k: int, memory: str, threads: int) -> list[str]:
    """Markdown rows: genesae (unbudgeted, budgeted) and Jellyfish per genome size."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for copies in copies_list:
            fasta = Path(tmp) / f"g{copies}.fa"
            bp = write_mutated_genome(fasta, copies)
            outs = {}
            runs = [("genesae kmers", []), (f"genesae kmers --memory {memory}", ["--memory", memory])]
            for label, extra in runs:
                out = Path(tmp) / f"{copies}{len(extra)}.tsv"
                cmd = [GENESAE, "kmers", "--genome", str(fasta), "-k", str(k), "--canonical",
                       "--threads", str(threads), "-o", str(out), *extra]
                t = timed(cmd)
                outs[label] = out.read_bytes()
                rows.append(f"| {bp / 1e6:.1f} | {label} | {t['wall_s']:.2f} | {t['rss_mib']:.0f} | {t['cpu']} |")
            assert len(set(outs.values())) == 1, "budgeted output differs"
            if JELLYFISH:
                jf = Path(tmp) / "c.jf"
                t = timed([JELLYFISH, "count", "-C", "-m", str(k), "-s", "100M", "-t", str(threads), "-o", str(jf),
                           str(fasta)])
                label = "jellyfish count"
                rows.append(f"| {bp / 1e6:.1f} | {label} | {t['wall_s']:.2f} | {t['rss_mib']:.0f} | {t['cpu']} |")
    return rows


def cpu_speed_rows(ks: list[int], repeats: int = 9) -> list[str]:
    """Markdown rows: Mbp per CPU-second of 1-thread canonical counts (best, median)."""
    import time

    def speeds(fn) -> tuple[float, float]:
        times = []
        for _ in range(repeats):
            start = time.process_time()
            fn()
            times.append(time.process_time() - start)
        times.sort()
        return TOTAL_BP / times[0] / 1e6, TOTAL_BP / times[len(times) // 2] / 1e6

    rows = []
    for k in ks:
        runs = [("genesae (auto)", lambda k=k: count_kmers(GENOME, k, canonical=True, threads=1))]
        if k <= 13:
            runs.append(("genesae dense", lambda k=k: count_kmers(GENOME, k, canonical=True, method="dense")))
            runs.append(("numpy reference", lambda k=k: numpy_canonical_counts(GENOME[0].codes, k)))
        for label, fn in runs:
            best, median = speeds(fn)
            rows.append(f"| {k} | {label} | {best:.1f} | {median:.1f} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="", help="genome copies, comma-separated (e.g. 1,5,10)")
    parser.add_argument("--speed", default="", help="k values for the per-thread CPU-time speed table")
    parser.add_argument("-k", type=int, default=21)
    parser.add_argument("--memory", default="300M")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if args.speed:
        print("| k | counter | Mbp/CPU-s best | median |\n|---|---|---|---|")
        for row in cpu_speed_rows([int(k) for k in args.speed.split(",")]):
            print(row, flush=True)
    if args.scale:
        print("| Mbp | command | wall s | peak RSS MiB | CPU |\n|---|---|---|---|---|")
        for row in scale_rows([int(c) for c in args.scale.split(",")], args.k, args.memory, args.threads):
            print(row, flush=True)


if __name__ == "__main__":
    main()
