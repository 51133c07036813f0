"""Long fuzzing campaign over every parser (the targets of tests/fuzz_targets.py).

Each target runs in its own child process (a native crash, such as an abort, is then a
finding rather than the end of the campaign) with hypothesis and many examples, and with
the wide ranges the CI tests leave out. Prints a table and writes a JSON summary.

Usage::

    python fuzz/run_fuzz.py --examples 3000 [--targets fasta,gff3] [--out fuzz/results.json]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))


def run_child(name: str, examples: int, seed: int | None) -> dict:
    """Run one target in this process; returns examples run and failures (text)."""
    from hypothesis import HealthCheck, given, seed as hseed, settings

    import fuzz_targets as ft

    strategy, check = ft.targets(wide=True)[name]
    count = {"n": 0}

    @settings(max_examples=examples, deadline=None, database=None, report_multiple_bugs=True,
              suppress_health_check=list(HealthCheck))
    @given(args=strategy)
    def run(args):
        count["n"] += 1
        check(*args)

    if seed is not None:
        run = hseed(seed)(run)
    failures = []
    t0 = time.perf_counter()
    try:
        run()
    except BaseException as exc:  # noqa: BLE001 - every failure is a finding to report
        failures.append("".join(traceback.format_exception(exc))[-4000:])
    return {"target": name, "examples": count["n"], "seconds": round(time.perf_counter() - t0, 1),
            "failures": failures}


def run_parent(names, examples: int, seed: int | None, timeout: float) -> list[dict]:
    results = []
    for name in names:
        cmd = [sys.executable, __file__, "--child", name, "--examples", str(examples)]
        if seed is not None:
            cmd += ["--seed", str(seed)]
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            results.append({"target": name, "examples": None, "seconds": timeout,
                            "failures": [f"timed out after {timeout} s"]})
            continue
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        if proc.returncode == 0 and lines:
            results.append(json.loads(lines[-1]))
        else:  # the child died: a native crash or a signal
            results.append({"target": name, "examples": None, "seconds": round(time.perf_counter() - t0, 1),
                            "failures": [f"child exited {proc.returncode}: {proc.stderr[-2000:]}"]})
        r = results[-1]
        print(f"{name:18s} examples {r['examples']!s:>6}  {r['seconds']:>7}s  failures {len(r['failures'])}",
              flush=True)
    return results


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--examples", type=int, default=3000, help="hypothesis examples per target")
    p.add_argument("--targets", default="", help="comma-separated target names (default: all)")
    p.add_argument("--seed", type=int, default=None, help="fixed hypothesis seed (default: random)")
    p.add_argument("--timeout", type=float, default=3600, help="seconds per target")
    p.add_argument("--out", default=None, help="write the JSON summary here")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        print(json.dumps(run_child(a.child, a.examples, a.seed)))
        return 0
    import fuzz_targets as ft

    names = [n for n in a.targets.split(",") if n] or list(ft.targets(wide=True))
    results = run_parent(names, a.examples, a.seed, a.timeout)
    for r in results:
        for f in r["failures"]:
            print(f"\n=== {r['target']} ===\n{f}")
    if a.out:
        Path(a.out).write_text(json.dumps(results, indent=2) + "\n")
    return 1 if any(r["failures"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
