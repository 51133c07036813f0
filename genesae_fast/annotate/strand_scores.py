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

import numpy as np

from genesae_fast.annotate import concepts as C
from genesae_fast.annotate import passes as P
from genesae_fast.annotate import tables as TB
from genesae_fast.annotate.accumulators import Tally
from genesae_fast.annotate.window import read_window

STRAND_COLUMNS = ("recall_plus", "recall_minus", "f1_plus", "f1_minus", "strand")
PASSES = (("plus", "fwd", 1), ("minus", "rc", -1))  # (name, store attribute, scanner strand)


def _strand_hits(hits: dict, strand: int) -> dict:
    sel = np.asarray(hits["strand"]) == strand
    return {k: np.asarray(v)[sel] for k, v in hits.items()}


def strand_block(task) -> tuple[int, dict]:
    """Per pass: (bases on (F, 2, T), Tally of the motifs' same-strand hits) of block ``b``.

    Runs in a worker set up by ``passes.worker_init`` with a both-strand job.
    """
    b, thr = task
    job, store, sae = P._resources()
    g0, g1 = job.blocks[b]
    F, T = thr.shape
    nm = len(job.motifs)
    pad = max(m.probs.shape[0] for m in job.motifs) - 1
    real = P._scan(job, job.motifs, g0, g1, pad)
    hi = max(g1, int(real["end"].max()) if real["end"].size else g1)
    out = {}
    for name, attr, strand in PASSES:
        w = read_window(getattr(store, attr), sae.sae, job.genome, g0, hi, job.split_block, F)
        own = w.owned(g0, g1)
        sub, _ = P._owned_acts(w.acts, own)
        hits = P._motif_hits(_strand_hits(real, strand), nm, g0, g1)
        tally = P._tally(w.acts, w.layout, C.entry_levels(w.acts, thr), T, hits).narrow()  # smaller to pickle
        out[name] = (P._on_counts(sub, w, own, thr), tally)
    return b, out


def _fold(results, n_motifs: int, F: int, T: int) -> dict:
    acc = {name: [np.zeros((F, 2, T), np.int64), Tally.empty(n_motifs, F, T)] for name, _, _ in PASSES}
    for _, out in results:
        for name, (on, tally) in out.items():
            acc[name][0] = acc[name][0] + on
            acc[name][1] = acc[name][1].merge(tally)
    return acc


def _map(job, tasks: list, workers: int, progress: bool):
    """``strand_block`` over ``tasks``, yielded as they finish (in order): in this process, or
    a spawned pool of ``workers``. A generator, so the caller folds each block's tallies as it
    arrives: a block's tallies are (motifs x features x thresholds), and holding every
    block's at once grew with the genome (12 GB at 24.6 Mbp)."""
    from tqdm.auto import tqdm

    bar = dict(total=len(tasks), desc="strands", unit="block", disable=not progress)
    if workers <= 1:
        import torch

        before = torch.get_num_threads()
        P.worker_init(job)
        try:
            yield from (strand_block(t) for t in tqdm(tasks, **bar))
        finally:
            torch.set_num_threads(before)
        return
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=P.worker_init,
                             initargs=(job,)) as pool:
        yield from tqdm(pool.map(strand_block, tasks), **bar)


def strand_scores(job, fmax: np.ndarray, active: np.ndarray, cfg, *, workers: int = 1,
                  progress: bool = False) -> dict:
    """Held-out scores of every (motif, feature) pair per strand.

    Parameters
    ----------
    job : passes.Job with ``strands == "both"`` and motifs
    fmax : (F,) pooled maximum of each feature (thresholds are ``cfg.fractions`` of it)
    active : (F,) bool, the features tested

    Returns
    -------
    dict ``"plus"``/``"minus"`` -> ``tables.held_out_scores`` dict of (n_motifs, F) arrays
    """
    thr = C.thresholds(np.asarray(fmax, np.float32), cfg.fractions)
    F, T = thr.shape
    results = _map(job, [(b, thr) for b in range(len(job.blocks))], workers, progress)
    acc = _fold(results, len(job.motifs), F, T)
    return {name: TB.held_out_scores(t.tp, t.found, t.n_hits, on, active) for name, (on, t) in acc.items()}


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


def add_to_result(res, job, cfg, *, workers: int = 1, progress: bool = False) -> None:
    """Score ``job``'s motifs per strand and add the columns to ``res.concept_summary``; the
    summary gets ``strands`` and how many motifs' best features read each strand."""
    fmax = np.asarray(res.features["max_activation"], np.float32)
    active = np.asarray(res.features["n_active"]) >= cfg.min_active
    scores = strand_scores(job, fmax, active, cfg, workers=workers, progress=progress)
    res.concept_summary = add_strand_columns(res.concept_summary, scores, [m.id for m in job.motifs])
    labels = [s for s, k in zip(res.concept_summary["strand"], res.concept_summary["kind"]) if k == "motif"]
    res.summary["strands"] = "both"
    res.summary["motif_best_feature_strand"] = {lab or "none": labels.count(lab) for lab in ("both", "+", "-", "")}


__all__ = ["STRAND_COLUMNS", "add_strand_columns", "add_to_result", "strand_block", "strand_label",
           "strand_scores"]
