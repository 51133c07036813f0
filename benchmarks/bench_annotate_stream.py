"""Streamed vs in-memory annotation: wall time and peak RSS, each in a fresh process.

    python benchmarks/bench_annotate_stream.py --store S.zarr --sae SAE/ [--workers 2] [--in-memory]

Peak RSS is the largest resident set of the annotating process and of its worker
processes (``ru_maxrss`` of the children, per process, so the sum over workers is an upper
bound of what was resident at once; both are printed). The ratio against the in-memory
path is measured in the same run when ``--in-memory`` is given.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_CHILD = """
import json, resource, sys, time
from genesae_fast.annotate.core import Config
from genesae_fast.annotate import folder
args = json.loads(sys.argv[1])
t0 = time.perf_counter()
cfg = Config(block_bp=args["block_bp"])
if args["mode"] == "stream":
    folder.annotate(args["store"], args["sae"], args["out"], cfg=cfg, progress=False, workers=args["workers"])
else:
    folder.annotate_in_memory(args["store"], args["sae"], args["out"], cfg=cfg)
own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"seconds": time.perf_counter() - t0, "main_rss_mib": own / 1024, "worker_rss_mib": kids / 1024}))
"""


def run(mode: str, store: str, sae: str, workers: int, block_bp: int) -> dict:
    with tempfile.TemporaryDirectory() as d:
        args = {"mode": mode, "store": store, "sae": sae, "out": str(Path(d) / "ann"), "workers": workers,
                "block_bp": block_bp}
        script = Path(d) / "child.py"
        # the guard: the streamed path spawns worker processes that import the main module
        script.write_text("if __name__ == '__main__':\n" + "\n".join("    " + ln for ln in _CHILD.splitlines()))
        out = subprocess.run([sys.executable, str(script), json.dumps(args)], check=True, capture_output=True,
                             text=True).stdout
        return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--store", required=True)
    ap.add_argument("--sae", required=True)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--block-bp", type=int, default=262_144)
    ap.add_argument("--in-memory", action="store_true", help="also run the in-memory reference path")
    a = ap.parse_args()
    t0 = time.perf_counter()
    res = {"stream": run("stream", a.store, a.sae, a.workers, a.block_bp)}
    if a.in_memory:
        res["in_memory"] = run("memory", a.store, a.sae, 1, a.block_bp)
        res["time_ratio_stream_over_memory"] = res["stream"]["seconds"] / res["in_memory"]["seconds"]
    res["total_seconds"] = time.perf_counter() - t0
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
