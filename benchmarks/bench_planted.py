"""Planted-motif benchmark (issue 13): does `genesae run` find motifs we know are there?

A 1 Mbp genome (the bundled genome with six JASPAR motifs planted 400 times each, half on
each strand) and 32 unrelated decoy motifs; `genesae lm train` on it for the default time
(``--minutes`` to shorten); then `genesae run` with the planted and decoy motifs under each
configuration of ``CONFIGS``. Per planted motif it reports the held-out F1 of the best SAE
feature and of the best neuron (both chosen on the select split, from concepts.tsv), and
against them the best decoy's held-out F1 and the planted median. Writes
``OUT/planted_results.json`` and ``OUT/planted_results.md``.

Run: python benchmarks/bench_planted.py --out bench_planted [--minutes 3]
Every step is skipped when its output is complete, so a rerun continues.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

# One line per configuration of `genesae run`: (name, extra CLI arguments). Layer 3 is what the
# old receptive-field rule picked for the built-in model; the last line is today's default. A configuration
# whose options this build's `genesae run` refuses (click's "No such option" / "Invalid
# value", before any work) is reported as not run.
CONFIGS = [
    ("one pass, layer 3", ["--strands", "forward", "--layer", "3"]),
    ("both strands, layer 3", ["--strands", "both", "--layer", "3"]),
    ("both strands, layer 2", ["--strands", "both", "--layer", "2"]),
    ("one pass, layer auto", ["--strands", "forward", "--layer", "auto"]),
    ("default (both strands, layer auto)", []),
]


def _exe() -> str:
    """The `genesae` script beside this interpreter (its virtual environment), else on PATH."""
    local = Path(sys.executable).parent / "genesae"
    return str(local) if local.is_file() else "genesae"


USAGE_ERRORS = ("No such option", "Invalid value for")


class Unsupported(Exception):
    """`genesae` refused an option of this build (a usage error, before any work)."""


def _genesae(*args, log: Path) -> None:
    """Run ``genesae ARGS``, its output appended to ``log``; raises :class:`Unsupported` on a
    usage error and ``CalledProcessError`` on any other failure."""
    cmd = [_exe(), *map(str, args)]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    with open(log, "a") as fh:
        fh.write("$ genesae " + " ".join(map(str, args)) + "\n" + proc.stdout)
    if proc.returncode == 2 and any(u in proc.stdout for u in USAGE_ERRORS):
        raise Unsupported(proc.stdout.strip().splitlines()[-1])
    if proc.returncode != 0:
        raise subprocess.CalledProcessError(proc.returncode, cmd, proc.stdout)


def plant(out: Path, seed: int, length: int, sites: int, decoys: int) -> dict:
    """The planted genome folder (made once); returns its manifest."""
    from genesae_fast.planted import PlantOptions, make_planted_genome, read_manifest, write_planted

    folder = out / "genome"
    if not (folder / "planted.json").is_file():
        opts = PlantOptions(length=length, n_sites=sites, n_decoys=decoys, seed=seed)
        write_planted(make_planted_genome(opts), folder, opts)
    return read_manifest(folder)


def train_lm(out: Path, minutes: float | None, log: Path) -> dict:
    """`genesae lm train` on the planted genome (skipped when its metrics exist)."""
    lm = out / "lm"
    if not (lm / "metrics.json").is_file():
        extra = [] if minutes is None else ["--minutes", minutes]
        _genesae("lm", "train", "--genome", out / "genome" / "genome.fa", "--out", lm, *extra, log=log)
    return json.loads((lm / "metrics.json").read_text())


def run_config(out: Path, name: str, args: list, log: Path) -> dict:
    """`genesae run` under one configuration; returns its folder and seconds (each stage's
    from run.json: a rerun skips finished stages, so this call's own time may be small)."""
    folder = out / "runs" / "".join(c if c.isalnum() else "_" for c in name).strip("_")
    t0 = time.perf_counter()
    _genesae("run", "--genome", out / "genome" / "genome.fa", "--model", out / "lm", "--motifs",
             out / "genome" / "motifs.meme", "--out", folder, "--quiet", *args, log=log)
    from genesae_fast.store import ActivationStore

    stages = json.loads((folder / "run.json").read_text()).get("stage_seconds", {})
    layer = ActivationStore.open(folder / "store.zarr", verify=False).attrs.get("layer")
    return {"folder": str(folder), "seconds_this_call": round(time.perf_counter() - t0, 1), "stage_seconds": stages,
            "layer": layer}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="bench_planted", help="Working folder (reused: finished steps are skipped).")
    ap.add_argument("--minutes", type=float, default=None, help="LM training minutes [default: lm train's].")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--length", type=int, default=1_000_000)
    ap.add_argument("--sites", type=int, default=400)
    ap.add_argument("--decoys", type=int, default=32)
    ap.add_argument("--configs", default=None, help="Configuration names separated by ';' [default: all].")
    a = ap.parse_args(argv)
    from genesae_fast.planted.scores import results_markdown, score_run

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    log = out / "commands.log"
    manifest = plant(out, a.seed, a.length, a.sites, a.decoys)
    results = {"genome": {"length": manifest["length"], "sites_per_motif": manifest["sites_per_motif"],
                          "decoys": len(manifest["decoys"]), "seed": manifest["seed"]},
               "minutes": a.minutes, "lm": train_lm(out, a.minutes, log), "configs": {}}
    wanted = None if a.configs is None else {c.strip() for c in a.configs.split(";")}
    for name, args in CONFIGS:
        if wanted is not None and name not in wanted:
            continue
        entry: dict = {"args": args}
        try:
            entry.update(run_config(out, name, args, log))
            entry["score"] = score_run(Path(entry["folder"]) / "annotate" / "concepts.tsv", manifest)
        except Unsupported as exc:
            entry["not_run"] = str(exc)
        results["configs"][name] = entry
    (out / "planted_results.json").write_text(json.dumps(results, indent=2) + "\n")
    md = results_markdown({c: e.get("score") for c, e in results["configs"].items()})
    md = (f"LM: held-out {results['lm']['heldout_bits_per_bp']:.4f} bits/bp, best Markov "
          f"{results['lm']['markov_bits_per_bp']:.4f} (order {results['lm']['markov_order']}), "
          f"{results['lm'].get('steps')} steps\n\n" + md)
    (out / "planted_results.md").write_text(md + "\n")
    print(md)
    return results


if __name__ == "__main__":
    main()
