"""Motif concepts scored per strand: + sites against forward-pass codes, - sites against RC-pass codes.

A both-strand annotation scores every concept on pooled codes (``annotate.strands``). This
extra pass says *which* strand a feature reads: for every motif it counts, per feature,
the motif's + strand hits against the codes of the forward pass and its - strand hits
against the codes of the reverse-complement pass (the pass that reads a - site in its own
direction), with the same held-out protocol as every concept (threshold chosen on the
select part, precision/recall/F1 reported on the evaluate part; thresholds are fractions
of the pooled maximum). ``concepts.tsv`` gains, for the motif rows, the per-strand scores
of the concept's (pooled) best feature and a ``strand`` column:

- ``recall_plus``, ``f1_plus``: + sites, forward codes; ``recall_minus``, ``f1_minus``: - sites, RC codes;
- ``strand``: ``both`` when the smaller recall is at least half the larger, else the strand
  with the larger recall, ``""`` when the feature finds no site on either.

Gene-structure rows get empty values (gene concepts are scored on pooled codes only). The
columns exist only in both-strand runs; a one-pass annotation writes today's tables.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from genesae_fast.annotate import concepts as C
from genesae_fast.annotate import passes as P
from genesae_fast.annotate import tables as TB
from genesae_fast.annotate.window import read_window

STRAND_COLUMNS = ("recall_plus", "recall_minus", "f1_plus", "f1_minus", "strand")
PASSES = (("plus", "fwd", 1), ("minus", "rc", -1))  # (name, store attribute, scanner strand)


def _strand_hits(hits: dict, strand: int) -> dict:
    sel = np.asarray(hits["strand"]) == strand
    return {k: np.asarray(v)[sel] for k, v in hits.items()}


@dataclass
class StrandTallies:
    """Per pass name (``"plus"``, ``"minus"``): bases on (F, 2, T) and the motifs' :class:`Tally`."""

    on: dict
    tally: dict

    def merge(self, o: "StrandTallies") -> "StrandTallies":
        """Sum (the first operand's tallies are reused: merge into an accumulator, not into a shared value)."""
        return StrandTallies({k: self.on[k] + o.on[k] for k in self.on},
                             {k: self.tally[k].merge(o.tally[k]) for k in self.tally})


def strand_block(b: int, thr: np.ndarray) -> StrandTallies:
    """Both passes' counts of block ``b`` at thresholds ``thr`` (F, T): each pass's codes against
    the motifs' hits on the strand that pass reads.

    Runs where ``passes.worker_init`` set up a both-strand job (a pool worker or this process).
    """
    job, store, sae = P._resources()
    g0, g1 = job.blocks[b]
    F, T = thr.shape
    nm = len(job.motifs)
    pad = max(m.probs.shape[0] for m in job.motifs) - 1
    real = P._scan(job, job.motifs, g0, g1, pad)
    hi = max(g1, int(real["end"].max()) if real["end"].size else g1)
    on, tally = {}, {}
    for name, attr, strand in PASSES:
        w = read_window(getattr(store, attr), sae.sae, job.genome, g0, hi, job.split_block, F)
        own = w.owned(g0, g1)
        sub, _ = P._owned_acts(w.acts, own)
        hits = P._motif_hits(_strand_hits(real, strand), nm, g0, g1)
        tally[name] = P._tally(w.acts, w.layout, C.entry_levels(w.acts, thr), T, hits).narrow()  # smaller to pickle
        on[name] = P._on_counts(sub, w, own, thr)
    return StrandTallies(on, tally)


def run_strand_pass(r, fmax: np.ndarray) -> StrandTallies:
    """The ``strands`` pass over every block through the runner ``r`` (``annotate.stream``):
    its pool, its torchrun ranks and its checkpoints, so an interrupted run resumes after the
    last finished block. Each block's tallies are folded as they arrive (holding every
    block's at once grew with the genome: 12 GB at 24.6 Mbp)."""
    from genesae_fast.annotate import stream as S

    thr = C.thresholds(np.asarray(fmax, np.float32), r.job.cfg.fractions)
    return S.run_pass(r, "strands", {b: thr for b in range(len(r.job.blocks))})


def strand_scores(acc: StrandTallies, active: np.ndarray) -> dict:
    """Held-out scores of every (motif, feature) pair per strand from the pass's counts.

    Parameters
    ----------
    acc : the folded :class:`StrandTallies` of every block
    active : (F,) bool, the features tested

    Returns
    -------
    dict ``"plus"``/``"minus"`` -> ``tables.held_out_scores`` dict of (n_motifs, F) arrays
    """
    return {name: TB.held_out_scores(t.tp, t.found, t.n_hits, acc.on[name], active) for name, t in acc.tally.items()}


def strand_label(recall_plus: float, recall_minus: float) -> str:
    """Which strand(s) a feature detects from its held-out recalls (see the module doc)."""
    hi, lo = max(recall_plus, recall_minus), min(recall_plus, recall_minus)
    if not hi > 0:
        return ""
    if lo >= 0.5 * hi:
        return "both"
    return "+" if recall_plus > recall_minus else "-"


def add_strand_columns(cs: dict, scores: dict, motif_ids: list) -> dict:
    """``concepts.tsv`` columns (dict of lists) with :data:`STRAND_COLUMNS` added: the per-strand
    scores of each motif row's best feature; empty for other rows."""
    row_of = {m: i for i, m in enumerate(motif_ids)}
    out = dict(cs, **{k: [] for k in STRAND_COLUMNS})
    for concept, kind, f in zip(cs["concept"], cs["kind"], cs["feature"]):
        i = row_of.get(concept) if kind == "motif" else None
        if i is None:
            for k in STRAND_COLUMNS:
                out[k].append("" if k == "strand" else float("nan"))
            continue
        rp, rm = float(scores["plus"]["recall"][i, f]), float(scores["minus"]["recall"][i, f])
        for k, v in zip(STRAND_COLUMNS, (rp, rm, float(scores["plus"]["f1"][i, f]),
                                         float(scores["minus"]["f1"][i, f]), strand_label(rp, rm))):
            out[k].append(v)
    return out


def add_to_result(res, r, cfg) -> None:
    """Score the motifs of runner ``r``'s job per strand and add the columns to
    ``res.concept_summary``; the summary gets ``strands`` and how many motifs' best features
    read each strand. Every torchrun rank calls this (the pass sums their blocks)."""
    job = r.job
    fmax = np.asarray(res.features["max_activation"], np.float32)
    active = np.asarray(res.features["n_active"]) >= cfg.min_active
    scores = strand_scores(run_strand_pass(r, fmax), active)
    res.concept_summary = add_strand_columns(res.concept_summary, scores, [m.id for m in job.motifs])
    labels = [s for s, k in zip(res.concept_summary["strand"], res.concept_summary["kind"]) if k == "motif"]
    res.summary["strands"] = "both"
    res.summary["motif_best_feature_strand"] = {lab or "none": labels.count(lab) for lab in ("both", "+", "-", "")}


__all__ = ["STRAND_COLUMNS", "StrandTallies", "add_strand_columns", "add_to_result", "run_strand_pass", "strand_block",
           "strand_label", "strand_scores"]
