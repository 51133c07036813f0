"""Whole-genome ``genesae scan`` at growing genome sizes: time, peak RSS, CPU%, and the human-genome extrapolation.

Genomes: the bundled genome (1x, 2.46 Mbp), and 5x / 10x genomes made of that many copies of
its record, each with 3% random substitutions (seeded; gzip files in ``--workdir``). Every run
is a separate process measured with GNU time (wall time, user + system CPU, peak RSS):

* ``genesae scan --threads T -o hits.tsv``: the streaming command (879 JASPAR motifs, p < 1e-4);
* ``in-memory``: the previous path (read the whole genome, ``scan_motifs``, ``write_tsv``), the
  reference the ratios are taken against, at the sizes where it fits (1x, 5x by default);
* ``memelite`` (when installed): ``memelite.fimo`` on the same probabilities, NUMBA_NUM_THREADS=T,
  its numba JIT included (it holds the one-hot genome and every hit in memory).

Run: ``python benchmarks/bench_scan_scale.py [--threads 2] [--scales 1 5 10]``; it prints a
markdown table (copied to benchmarks/RESULTS.md by hand) and the extrapolation to 3.1 Gbp.
"""
from __future__ import annotations

import argparse
import gzip
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HUMAN_MBP = 3100.0

_IN_MEMORY = """
import sys
from genesae_fast.motifs import load_motifs
from genesae_fast.scan import scan_motifs, write_tsv
from genesae_fast.sequences import read_fasta
recs = read_fasta(sys.argv[1]); motifs = load_motifs()
hits = scan_motifs(recs, motifs, pvalue=1e-4, threads=int(sys.argv[3]))
with open(sys.argv[2], "w") as fh:
    write_tsv(hits, recs, motifs, fh)
"""

_STARTUP = """
from genesae_fast.motifs import load_motifs
from genesae_fast.scan import nrdb_background, prepare_motifs
import genesae_fast.cli, genesae_fast.scan_output
prepare_motifs(load_motifs(), nrdb_background(), threads=1)
"""

_MEMELITE = """
import sys
import numpy as np
from memelite import fimo
from genesae_fast.fimo_pvalues import apply_pseudocount, nrdb_background
from genesae_fast.motifs import load_motifs
from genesae_fast.sequences import read_fasta
bg = nrdb_background()
pwms = {str(i): apply_pseudocount(m.probs, m.nsites, bg, 0.1).T.copy() for i, m in enumerate(load_motifs())}
n = 0
for rec in read_fasta(sys.argv[1]):
    onehot = np.zeros((1, 4, rec.codes.size), dtype=np.int8)
    ok = rec.codes < 4
    onehot[0, rec.codes[ok], np.flatnonzero(ok)] = 1
    n += sum(len(df) for df in fimo(pwms, onehot, threshold=1e-4, eps=0.0, reverse_complement=True))
print(n)
"""


def make_genome(path: Path, copies: int, rate: float = 0.03) -> Path:
    """``copies`` records: the bundled genome's record with ``rate`` random substitutions each."""
    if path.exists():
        return path
    from genesae_fast.data import genome_path
    from genesae_fast.sequences import read_fasta

    rec = read_fasta(genome_path())[0]
    letters = np.frombuffer(b"ACGTN", np.uint8)
    tmp = path.with_suffix(".tmp")
    with gzip.open(tmp, "wb", compresslevel=1) as fh:
        for i in range(copies):
            rng = np.random.default_rng(1000 + i)
            codes = rec.codes.copy()
            sites = np.flatnonzero(rng.random(codes.size) < rate)
            codes[sites] = (codes[sites] + rng.integers(1, 4, sites.size)) % 4  # a different base
            text = letters[codes].tobytes()
            fh.write(f">{rec.name}_copy{i} 3% substitutions\n".encode())
            fh.write(b"\n".join(text[j:j + 80] for j in range(0, len(text), 80)) + b"\n")
    tmp.rename(path)
    return path


def measure(cmd: list[str], env=None) -> dict:
    """Wall seconds, CPU seconds, CPU% and peak RSS (MB) of one child process.

    Through GNU time: a child forked from this (larger) process would report the parent's
    pages in its peak RSS until it execs."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as tf:
        t0 = time.perf_counter()
        proc = subprocess.run(["/usr/bin/time", "-f", "%e %U %S %M", "-o", tf.name, *cmd], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"{cmd[:4]} failed ({proc.returncode}): {proc.stderr.decode()[-500:]}")
        _, user, system, rss_kb = tf.read().split()[-4:]
    cpu = float(user) + float(system)
    return {"wall": wall, "cpu": cpu, "cpu_pct": 100 * cpu / wall, "rss_mb": int(rss_kb) / 1024}


def run_all(genomes: dict, threads: int, workdir: Path, in_memory_scales, memelite_scales) -> list[dict]:
    rows = []
    out = workdir / "hits.tsv"
    scan = [sys.executable, "-c", "from genesae_fast.cli import main; main()", "scan"]
    env = dict(os.environ, NUMBA_NUM_THREADS=str(threads))
    for scale, (path, mbp) in genomes.items():
        rows.append({"tool": "genesae scan (streaming)", "scale": scale, "mbp": mbp,
                     **measure(scan + ["--genome", str(path), "--threads", str(threads), "-o", str(out)])})
        rows[-1]["hits"] = sum(1 for _ in open(out, "rb")) - 1
        if scale in in_memory_scales:
            rows.append({"tool": "in-memory path (previous)", "scale": scale, "mbp": mbp,
                         **measure([sys.executable, "-c", _IN_MEMORY, str(path), str(out), str(threads)])})
        if scale in memelite_scales:
            rows.append({"tool": "memelite 0.5 (numba)", "scale": scale, "mbp": mbp,
                         **measure([sys.executable, "-c", _MEMELITE, str(path)], env=env)})
        print(rows[-1], file=sys.stderr, flush=True)
    return rows


def table(rows: list[dict]) -> str:
    base = {r["tool"]: r for r in rows if r["scale"] == 1}
    lines = ["| tool | genome | wall s | CPU s | CPU% | peak RSS MB | time / 1x | RSS / 1x |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        b = base.get(r["tool"])
        ratio = (f"{r['wall'] / b['wall']:.2f} | {r['rss_mb'] / b['rss_mb']:.2f}") if b else "- | -"
        lines.append(f"| {r['tool']} | {r['scale']}x ({r['mbp']:.1f} Mbp) | {r['wall']:.2f} | {r['cpu']:.2f} | "
                     f"{r['cpu_pct']:.0f}% | {r['rss_mb']:.0f} | {ratio} |")
    return "\n".join(lines)


def cpu_bound(rows: list[dict], startup: dict, threads: int) -> str:
    """The CPU% each streamed run would reach on idle cores: everything but the serial startup
    (imports, motif loading, p-value tables) runs on ``threads`` cores (Amdahl)."""
    out = [f"Serial startup (imports, 879 motifs, p-value tables): {startup['cpu']:.2f} CPU-s."]
    for r in rows:
        if r["tool"].startswith("genesae"):
            par = max(r["cpu"] - startup["cpu"], 0.0)
            bound = 100 * r["cpu"] / (startup["cpu"] + par / threads)
            out.append(f"{r['scale']}x: {r['cpu']:.2f} CPU-s -> at most {bound:.0f}% CPU on {threads} idle cores.")
    return " ".join(out)


def extrapolate(rows: list[dict], threads: int) -> str:
    ours = sorted((r for r in rows if r["tool"].startswith("genesae")), key=lambda r: r["mbp"])
    if len(ours) < 2:
        return ""
    a, b = ours[-2], ours[-1]
    slope = (b["wall"] - a["wall"]) / (b["mbp"] - a["mbp"])
    cpu_slope = (b["cpu"] - a["cpu"]) / (b["mbp"] - a["mbp"])
    hits_per_mbp = b["hits"] / b["mbp"]
    t = b["wall"] + slope * (HUMAN_MBP - b["mbp"])
    cpu_min = (b["cpu"] + cpu_slope * (HUMAN_MBP - b["mbp"])) / 60
    return (f"Extrapolation to {HUMAN_MBP:.0f} Mbp from the {a['scale']}x -> {b['scale']}x step: "
            f"{cpu_slope:.3f} CPU-s/Mbp -> {cpu_min:.0f} CPU-min, about {cpu_min / threads:.0f} min on "
            f"{threads} idle cores ({slope:.3f} s/Mbp wall in this run -> {t / 60:.0f} min); "
            f"peak RSS stays near {b['rss_mb']:.0f} MB; about {hits_per_mbp * HUMAN_MBP / 1e6:.0f}M hits, "
            f"{16 * hits_per_mbp * HUMAN_MBP / 1e9:.1f} GB of temporary hit file.")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--scales", type=int, nargs="+", default=[1, 5, 10])
    ap.add_argument("--in-memory-scales", type=int, nargs="*", default=[1, 5])
    ap.add_argument("--memelite-scales", type=int, nargs="*", default=[1, 5])
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "genesae_scan_scale")
    args = ap.parse_args(argv)
    from genesae_fast.data import genome_path

    args.workdir.mkdir(parents=True, exist_ok=True)
    try:
        import memelite  # noqa: F401
    except ImportError:
        print("memelite is not installed: skipped (pip install memelite)", file=sys.stderr)
        args.memelite_scales = []
    genomes = {}
    for s in args.scales:
        path = Path(genome_path()) if s == 1 else make_genome(args.workdir / f"genome_{s}x.fa.gz", s)
        genomes[s] = (path, 2.463666 * s)
    startup = measure([sys.executable, "-c", _STARTUP])
    rows = run_all(genomes, args.threads, args.workdir, args.in_memory_scales, args.memelite_scales)
    print(f"threads={args.threads}, load average {os.getloadavg()[0]:.1f} at the end\n")
    print(table(rows))
    print()
    print(cpu_bound(rows, startup, args.threads))
    print()
    print(extrapolate(rows, args.threads))


if __name__ == "__main__":
    main()
