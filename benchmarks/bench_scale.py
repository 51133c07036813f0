"""Scale benchmark of `genesae run`: seconds, CPU and peak memory per stage at 1x, 4x, 10x
the bundled genome, a linear fit of time and memory against genome length, and the
extrapolation to 1 Gbp.

    python benchmarks/bench_scale.py                        # sizes 1,4,10, every stage
    python benchmarks/bench_scale.py --sizes 1,4 --stages extract,train --out scale.md

Genome of size N: N copies of the bundled genome's records, copy j > 0 with 3% random
substitutions (fixed seed), so no record repeats another and the k-mer, motif and LM
statistics stay genome-like. Each stage runs as its own process, `genesae run --stages
STAGE` into one folder per size, under `/usr/bin/time -v` (wall seconds, CPU%, the largest
process's peak RSS) while a poller sums the RSS of the whole process tree (worker
processes included) every 0.2 s. Results: a markdown table (stdout or --out) and the raw
figures as JSON beside it. Stages run in order, so `--stages annotate` needs the earlier
stages' outputs in --workdir (use --keep on a first run).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

STAGES = ("layers", "extract", "train", "annotate", "causal", "report")  # genesae run's default stages, in order
SUBSTITUTION_RATE = 0.03
GBP = 1_000_000_000


def build_genome(factor: int, path: Path, seed: int = 0, base_bp: int | None = None) -> int:
    """Write ``factor`` copies of the bundled genome's records (copies after the first with
    3% substitutions) to ``path``; returns the genome length in bp. ``base_bp``: use only
    the first ``base_bp`` bases of the bundled genome as the 1x genome (a smaller scale
    for a loaded machine)."""
    from genesae_fast.data import genome_path
    from genesae_fast.sequences import decode, read_fasta, write_fasta

    records, left = [], base_bp
    for rec in read_fasta(genome_path()):
        codes = np.asarray(rec.codes, dtype=np.uint8)
        if left is not None:
            codes, left = codes[:left], left - min(left, len(codes))
        if len(codes):
            records.append((rec.name, codes))
    rng = np.random.default_rng(seed)
    out, total = [], 0
    for j in range(factor):
        for name, base in records:
            codes = base.copy()
            if j > 0:
                hit = (rng.random(len(codes)) < SUBSTITUTION_RATE) & (codes < 4)
                codes[hit] = (codes[hit] + rng.integers(1, 4, int(hit.sum()), dtype=np.uint8)) % 4
            out.append((f"{name}_copy{j}", decode(codes)))
            total += len(codes)
    write_fasta(out, path)
    return total


def _children(pid: int) -> list[int]:
    """pid and all its descendants, from /proc."""
    parent = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as fh:
                    parent[int(d)] = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(c for c, pp in parent.items() if pp == p)
    return out


def _rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class TreePeak:
    """Polls the summed RSS of a process tree until stopped; ``peak_kib`` is the maximum."""

    def __init__(self, pid: int, interval: float = 0.2):
        self.pid, self.interval, self.peak_kib = pid, interval, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self):
        while not self._stop.is_set():
            self.peak_kib = max(self.peak_kib, sum(_rss_kib(p) for p in _children(self.pid)))
            self._stop.wait(self.interval)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak_kib


def _time_v(stderr: str) -> dict:
    def field(name):
        m = re.search(rf"^\s*{re.escape(name)}: (.+)$", stderr, re.M)
        return m.group(1).strip() if m else None

    wall = field("Elapsed (wall clock) time (h:mm:ss or m:ss)") or "0:0"
    secs = sum(float(x) * 60 ** i for i, x in enumerate(reversed(wall.split(":"))))
    # CPU seconds (user + system, workers included) depend far less on other jobs than wall time
    cpu = float(field("User time (seconds)") or 0) + float(field("System time (seconds)") or 0)
    return {"seconds": round(secs, 2), "cpu_percent": int((field("Percent of CPU this job got") or "0%").rstrip("%")),
            "cpu_seconds": round(cpu, 1),
            "max_rss_mib": round(int(field("Maximum resident set size (kbytes)") or 0) / 1024, 1)}


def run_stage(genome: Path, out: Path, stage: str, extra: list[str]) -> dict:
    """One stage of ``genesae run`` under /usr/bin/time -v; its figures."""
    cmd = ["/usr/bin/time", "-v", sys.executable, "-c", "from genesae_fast.cli import main; main()", "run",
           "--genome", str(genome),
           "--out", str(out), "--stages", stage, "-q", *extra]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    poll = TreePeak(p.pid)
    stdout, stderr = p.communicate()
    tree = poll.stop()
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({p.returncode}):\n{stderr[-3000:]}")
    res = _time_v(stderr)
    res["tree_peak_rss_mib"] = round(tree / 1024, 1)
    res["plan"] = "\n".join(ln for ln in stderr.splitlines() if ln.startswith(("plan:", "  ")))[:2000]
    return res


def fit(lengths: list[float], values: list[float]) -> tuple[float, float]:
    """Least-squares ``value = a + b * length``; (a, b). One point: (0, value/length)."""
    if len(lengths) < 2:
        return 0.0, values[0] / lengths[0]
    b, a = np.polyfit(np.asarray(lengths, float), np.asarray(values, float), 1)
    return float(a), float(b)


def table(results: list[dict], stages: list[str]) -> str:
    """The markdown tables: per size and stage, then the fits and the 1 Gbp extrapolation."""
    lines = ["| genome | Mbp | stage | seconds | CPU % | CPU seconds | peak RSS, largest process (MiB) | "
             "peak RSS, all processes (MiB) |", "|---|---|---|---|---|---|---|---|"]
    for r in results:
        for st in stages:
            f = r["stages"][st]
            lines.append(f"| {r['factor']}x | {r['bp'] / 1e6:.2f} | {st} | {f['seconds']:.1f} | {f['cpu_percent']} | "
                         f"{f.get('cpu_seconds', float('nan')):.1f} | {f['max_rss_mib']:.0f} | {f['tree_peak_rss_mib']:.0f} |")
    lines += ["", "| stage | time fit a + b*Mbp (s) | seconds at 1 Gbp | time vs linear from smallest | "
              "peak RSS max/min over sizes | peak RSS fit at 1 Gbp (MiB) |", "|---|---|---|---|---|---|"]
    mbp = [r["bp"] / 1e6 for r in results]
    for st in stages:
        secs = [r["stages"][st]["seconds"] for r in results]
        rss = [r["stages"][st]["tree_peak_rss_mib"] for r in results]
        a, b = fit(mbp, secs)
        ra, rb = fit(mbp, rss)
        lin = (secs[-1] / secs[0]) / (mbp[-1] / mbp[0]) if len(secs) > 1 and secs[0] > 0 else float("nan")
        lines.append(f"| {st} | {a:.1f} + {b:.2f}*Mbp | {a + b * 1000:.0f} ({(a + b * 1000) / 3600:.2f} h) | "
                     f"{lin:.2f}x | {max(rss) / max(min(rss), 1e-9):.2f} | {ra + rb * 1000:.0f} |")
    total = [sum(r["stages"][st]["seconds"] for st in stages) for r in results]
    a, b = fit(mbp, total)
    lines.append(f"| all | {a:.1f} + {b:.2f}*Mbp | {a + b * 1000:.0f} ({(a + b * 1000) / 3600:.2f} h) | "
                 f"{(total[-1] / total[0]) / (mbp[-1] / mbp[0]) if len(total) > 1 else float('nan'):.2f}x | | |")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1,4,10", help="genome sizes as multiples of the bundled genome")
    ap.add_argument("--stages", default=",".join(STAGES), help="comma-separated stages of genesae run")
    ap.add_argument("--workdir", default=None, help="folder for genomes and runs (default: a temporary one)")
    ap.add_argument("--keep", action="store_true", help="keep --workdir's genomes and outputs")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--base-kbp", type=int, default=None,
                    help="1x = the first N kbp of the bundled genome (default: all of it, 2.46 Mbp)")
    ap.add_argument("--out", default=None, help="markdown file to write (JSON beside it); default stdout")
    ap.add_argument("--run-args", default="", help="extra arguments for genesae run, e.g. '--workers 2'")
    args = ap.parse_args(argv)
    sizes = [int(x) for x in args.sizes.split(",")]
    stages = [s.strip() for s in args.stages.split(",")]
    bad = [s for s in stages if s not in STAGES]
    if bad:
        ap.error(f"--stages: unknown stage {bad[0]}")
    work = Path(args.workdir or tempfile.mkdtemp(prefix="genesae-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    results = []
    try:
        for n in sizes:
            genome = work / f"genome_{n}x.fa"
            base = None if args.base_kbp is None else args.base_kbp * 1000
            bp = build_genome(n, genome, seed=args.seed, base_bp=base) if not genome.exists() else _fasta_bp(genome)
            res = {"factor": n, "bp": bp, "stages": {}}
            for st in stages:
                t0 = time.perf_counter()
                res["stages"][st] = run_stage(genome, work / f"run_{n}x", st, args.run_args.split())
                print(f"{n}x {st}: {res['stages'][st]} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
            results.append(res)
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    text = table(results, stages)
    if args.out:
        Path(args.out).write_text(text + "\n")
        Path(args.out).with_suffix(".json").write_text(json.dumps(results, indent=2))
    print(text)


def _fasta_bp(path: Path) -> int:
    from genesae_fast.pipeline import genome_size

    return genome_size(path)[0]


if __name__ == "__main__":
    main()
