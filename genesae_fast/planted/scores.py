"""Score a `genesae run` on a planted genome: planted motifs against decoys.

Reads the run's ``annotate/concepts.tsv`` (one row per concept: the best SAE feature chosen
on the select split and its held-out ``f1``, ``qvalue``, and the best neuron's held-out
``neuron_f1``) and the planted genome's ``planted.json`` (which motif IDs were planted).
"""
from __future__ import annotations

import csv
import math
import statistics

TARGETS = (0.3, 0.5)


def _float(x) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


def motif_rows(concepts_tsv) -> dict:
    """concept ID -> its concepts.tsv row (as a dict of strings), motif concepts only.

    When a concept has several rows (e.g. per-strand rows), the first one is kept.
    """
    rows: dict = {}
    with open(concepts_tsv) as fh:
        for r in csv.DictReader(fh, delimiter="\t"):
            if r.get("kind") == "motif":
                rows.setdefault(r["concept"], r)
    return rows


def score_run(concepts_tsv, manifest: dict) -> dict:
    """Planted motifs against decoys in one run.

    Returns
    -------
    dict
        ``planted``: TF name -> {id, f1, neuron_f1, feature, qvalue} (held-out F1s; NaN when
        the concept is missing); ``planted_median_f1``; ``best_decoy_f1`` and ``best_decoy``
        (ID and name); ``decoys_scored``; the median and counts take a missing planted motif as F1 0; ``best_decoy_below_median``; and
        ``planted_f1_ge_{t}`` for t in :data:`TARGETS` (planted motifs at held-out F1 >= t).
    """
    rows = motif_rows(concepts_tsv)
    per = {}
    for p in manifest["planted"]:
        r = rows.get(p["id"], {})
        per[p["name"] or p["id"]] = {"id": p["id"], "f1": _float(r.get("f1")), "neuron_f1": _float(r.get("neuron_f1")),
                                     "feature": r.get("feature"), "qvalue": _float(r.get("qvalue"))}
    decoys = sorted(((_float(rows[d["id"]]["f1"]), d["id"], d["name"]) for d in manifest["decoys"] if d["id"] in rows),
                    key=lambda t: (-t[0] if not math.isnan(t[0]) else math.inf, t[1]))
    best = decoys[0] if decoys else (math.nan, "", "")
    f1s = [0.0 if math.isnan(v["f1"]) else v["f1"] for v in per.values()]  # a planted motif with no row: not found
    median = statistics.median(f1s) if f1s else math.nan
    return {"planted": per, "planted_median_f1": median, "best_decoy_f1": best[0],
            "best_decoy": f"{best[1]} {best[2]}".strip(), "decoys_scored": len(decoys),
            "best_decoy_below_median": bool(best[0] < median),
            **{f"planted_f1_ge_{t}": int(sum(x >= t for x in f1s)) for t in TARGETS}}


def results_markdown(configs: dict) -> str:
    """A markdown table: one row per planted motif (SAE F1 / neuron F1 under each configuration),
    then the planted median, the best decoy and the counts at each target F1.

    ``configs``: configuration name -> :func:`score_run` result (None: not run).
    """
    names = [c for c, s in configs.items() if s]
    lines = ["| planted motif | " + " | ".join(f"{c}: SAE / neuron F1" for c in names) + " |",
             "|---|" + "---|" * len(names)]
    motifs = list(configs[names[0]]["planted"]) if names else []
    for m in motifs:
        cells = [f"{configs[c]['planted'][m]['f1']:.2f} / {configs[c]['planted'][m]['neuron_f1']:.2f}" for c in names]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    lines.append("| planted median | " + " | ".join(f"{configs[c]['planted_median_f1']:.2f}" for c in names) + " |")
    lines.append("| best decoy | " + " | ".join(f"{configs[c]['best_decoy_f1']:.2f} ({configs[c]['best_decoy']})"
                                                for c in names) + " |")
    for t in TARGETS:
        lines.append(f"| planted at F1 >= {t} | " + " | ".join(
            f"{configs[c][f'planted_f1_ge_{t}']}/{len(motifs)}" for c in names) + " |")
    missing = [c for c, s in configs.items() if not s]
    if missing:
        lines += ["", "Not run (an option this build's `genesae run` does not have): " + ", ".join(missing)]
    return "\n".join(lines)
