"""What the atlas says about both strands (only for a both-strand annotation, ``annotate.strand_scores``)."""
from __future__ import annotations

# motifs shown in the per-strand recall figure (the best by pooled held-out F1)
TOP_MOTIFS = 30


def strand_stats(summary: dict) -> list:
    """Extra ``(label, value)`` rows of the atlas's summary for a both-strand run; [] otherwise."""
    if summary.get("strands") != "both":
        return []
    counts = summary.get("motif_best_feature_strand") or {}
    return [("strands", "both: forward + reverse-complement pass, codes pooled per base (max)"),
            ("motifs whose best feature reads both / + only / - only / neither",
             " / ".join(str(counts.get(k, 0)) for k in ("both", "+", "-", "none")))]


def strand_figure(concepts: dict, svg_paired, number) -> list:
    """The per-strand recall figure of the best motifs (``svg_paired`` and ``number`` from the report)."""
    if "recall_plus" not in concepts:
        return []
    motif = [i for i, k in enumerate(concepts["kind"]) if k == "motif"]
    motif = sorted(motif, key=lambda i: -number(concepts["f1"][i]))[:TOP_MOTIFS]
    if not motif:
        return []
    names = [f"{concepts['concept'][i]} ({concepts['strand'][i] or 'none'})" for i in motif]
    plus = [number(concepts["recall_plus"][i]) for i in motif]
    minus = [number(concepts["recall_minus"][i]) for i in motif]
    return [svg_paired(names, plus, minus, "motifs: best feature's held-out recall on + sites (forward pass) vs "
                       "- sites (reverse-complement pass)", labels=("+ sites", "- sites"))]
