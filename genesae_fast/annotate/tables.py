"""From per-feature statistics and concept scores to the annotation tables.

Both annotation paths (the in-memory reference in :mod:`.core` and the streamed one in
:mod:`.stream`) reduce their inputs to the small dataclasses below; :func:`build_result`
turns them into the rows of features.tsv, feature_motif.tsv, feature_concept.tsv,
concepts.tsv and the summary, so the two paths share every table rule.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from genesae_fast.annotate import concepts as C

HIST_BINS = 20
SCORE_KEYS = ("threshold", "f1_select", "precision", "recall", "f1")


@dataclass
class FeatureStats:
    """Firing statistics of every feature, each array of shape (F,) (``hist`` (F, 20))."""

    n_tokens: int
    n_active: np.ndarray
    fmax: np.ndarray
    mean_active: np.ndarray
    hist: np.ndarray
    active: np.ndarray
    fvu: float
    l0: float

    @property
    def n_features(self) -> int:
        return int(self.n_active.shape[0])


@dataclass
class ConceptScores:
    """Held-out scores of one kind of concept ("motif" or "gene") against every feature.

    ``obs`` maps SCORE_KEYS to (C, F) arrays and ``n_hits`` to (C, 2); ``p``/``q`` are (C, F).
    """

    kind: str
    names: list
    obs: dict
    p: np.ndarray
    q: np.ndarray
    null_size: int = 0
    alt: list = field(default_factory=list)  # motif alternative names (motif kind only)


@dataclass
class FeatureLogos:
    """Per feature: logo matrix (only features with peaks), consensus, best motif, top k-mer."""

    logos: dict
    consensus: list
    match_id: list
    match_score: np.ndarray
    match_strand: np.ndarray
    top_kmer: list
    kmer_enrichment: np.ndarray


@dataclass
class Result:
    """Tables of an annotation (plain dicts of numpy columns/lists)."""

    features: dict
    feature_motif: dict
    feature_concept: dict
    concept_summary: dict
    examples: dict
    logos: dict
    motif_logos: dict
    summary: dict
    tracks: dict = field(default_factory=dict)
    motif_hits: dict = field(default_factory=dict)
    score: np.ndarray | None = None


def value_histogram(val: np.ndarray, feat: np.ndarray, fmax: np.ndarray, F: int) -> np.ndarray:
    """(F, 20) counts of entries in 20 equal bins of [0, feature max]."""
    b = np.minimum((val / np.maximum(fmax[feat], 1e-12) * HIST_BINS).astype(np.int64), HIST_BINS - 1)
    return np.bincount(feat.astype(np.int64) * HIST_BINS + b, minlength=F * HIST_BINS).reshape(F, HIST_BINS)


def held_out_scores(tp: np.ndarray, found: np.ndarray, n_hits: np.ndarray, on: np.ndarray,
                    active: np.ndarray, chunk: int = 64) -> dict:
    """Held-out scores of many concepts from their counts.

    Parameters
    ----------
    tp, found : (C, F, 2, T) int64 -- counts at or above each threshold (see ConceptCounts)
    n_hits : (C, 2) int64
    on : (F, 2, T) int64 -- bases on per feature, part and threshold
    active : (F,) bool -- features tested (others score 0)

    Returns
    -------
    dict SCORE_KEYS -> (C, F) float64, plus "n_hits" (C, 2)
    """
    n_c, F = tp.shape[0], on.shape[0]
    res = {k: np.zeros((n_c, F), np.float64) for k in SCORE_KEYS}
    rows = np.arange(F)
    for a in range(0, n_c, chunk):  # chunks bound the (chunk, F, 2, T) float temporaries
        b = min(a + chunk, n_c)
        p, r, f = C.prf(tp[a:b], on[None], found[a:b], n_hits[a:b, None, :, None])
        best = np.argmax(f[:, :, 0, :], axis=2)  # ties -> the lowest threshold
        for i in range(b - a):
            vals = (best[i], f[i, rows, 0, best[i]], p[i, rows, 1, best[i]], r[i, rows, 1, best[i]],
                    f[i, rows, 1, best[i]])
            for k, v in zip(SCORE_KEYS, vals):
                res[k][a + i] = np.where(active, np.asarray(v, np.float64), 0.0)
    res["n_hits"] = np.asarray(n_hits, np.int64).copy()
    return res


def motif_significance(scored: dict, n_motifs: int, active: np.ndarray, motifs: list) -> ConceptScores:
    """Real motifs (the first ``n_motifs`` rows) against the pooled shuffled-motif null."""
    F = active.shape[0]
    tested = int(active.sum())
    obs = {k: v[:n_motifs] for k, v in scored.items()}
    null = scored["f1"][n_motifs:][:, active].reshape(-1)
    pvals = C.tail_pvalues(obs["f1"][:, active], null) if null.size else np.ones((n_motifs, tested))
    q = np.ones((n_motifs, F))
    p = np.ones((n_motifs, F))
    q[:, active] = C.bh_qvalues(pvals)
    p[:, active] = pvals
    return ConceptScores("motif", [m.id for m in motifs], obs, p, q, int(null.size),
                         [m.alt_id or "" for m in motifs])


def gene_significance(obs: dict, controls: list, active: np.ndarray, names: list) -> ConceptScores:
    """Gene concepts against their own circularly shifted copies.

    ``controls[i]`` holds the scores of concept i's shifted copies (dict of (S, F) arrays)
    or None when there are no shifts.
    """
    p = np.ones((len(names), active.shape[0]))
    for i, ctrl in enumerate(controls):
        if ctrl is None:
            break
        p[i, active] = C.tail_pvalues(obs["f1"][i, active], ctrl["f1"][:, active].reshape(-1))
    q = np.ones_like(p)
    q[:, active] = C.bh_qvalues(p[:, active])
    return ConceptScores("gene", list(names), obs, p, q)


def best_neurons(scored: dict, names: list) -> dict:
    """Per concept name: (best neuron direction by select F1, its held-out F1)."""
    out = {}
    for i, name in enumerate(names):
        j = int(np.argmax(scored["f1_select"][i]))
        out[name] = (j, float(scored["f1"][i, j]))
    return out


def _pair_rows(scores: ConceptScores, f: int, keep, fractions, label_cols) -> dict:
    """Rows of the long feature x concept table for feature ``f`` and concepts ``keep``."""
    rows = {k: [] for k in ("feature", *label_cols, "precision", "recall", "f1", "f1_select", "threshold",
                            "pvalue", "qvalue")}
    grid = sorted(fractions)
    for i in keep:
        rows["feature"].append(int(f))
        for col, val in zip(label_cols, label_cols_values(scores, i, label_cols)):
            rows[col].append(val)
        for key in ("precision", "recall", "f1", "f1_select"):
            rows[key].append(float(scores.obs[key][i, f]))
        rows["threshold"].append(float(grid[int(scores.obs["threshold"][i, f])]))
        rows["pvalue"].append(float(scores.p[i, f]))
        rows["qvalue"].append(float(scores.q[i, f]))
    return rows


def label_cols_values(scores: ConceptScores, i: int, label_cols) -> list:
    """Label columns of concept ``i``: (motif_id, motif_name) or (concept,)."""
    if label_cols == ("concept",):
        return [scores.names[i]]
    return [scores.names[i], scores.alt[i] if scores.alt else ""]


def _extend(dst: dict, src: dict) -> None:
    for k, v in src.items():
        dst[k].extend(v)


@dataclass
class BestConcept:
    """Per feature: the chosen concept's label and scores (NaN / "" when none); ``f1_select``
    is its F1 on the select part, by which it was chosen and the features are ranked."""

    label: list
    name: list
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    qvalue: np.ndarray
    f1_select: np.ndarray | None = None

    @classmethod
    def empty(cls, F: int) -> "BestConcept":
        return cls([""] * F, [""] * F, *(np.full(F, np.nan) for _ in range(5)))


def pair_table(scores: ConceptScores | None, active: np.ndarray, cfg) -> tuple[dict, BestConcept]:
    """The long table of one kind and each feature's best concept: among its significant
    concepts (q <= ``cfg.qvalue``; all of them when none is) the highest select F1, ties by
    the lower q. Never ranked by q, which comes from the held-out F1 the table reports;
    significance only filters, as it already does for the score and the best-features list.
    Why the filter: on a mostly coding genome a feature's highest F1 is often CDS at its
    base rate (not significant) while the feature also marks start codons at q 1e-20; without
    it no feature of the bundled genome's default run had a significant best concept, so the
    score, the tracks and the best-features list were all empty."""
    F = active.shape[0]
    is_motif = scores is None or scores.kind == "motif"
    label_cols = ("motif_id", "motif_name") if is_motif else ("concept",)
    rows = {k: [] for k in ("feature", *label_cols, "precision", "recall", "f1", "f1_select", "threshold",
                            "pvalue", "qvalue")}
    best = BestConcept.empty(F)
    if scores is None:
        return rows, best
    obs, q = scores.obs, scores.q
    for f in np.flatnonzero(active):
        if is_motif:
            order = np.argsort(-obs["f1_select"][:, f], kind="stable")
            sig = np.flatnonzero(q[:, f] <= cfg.qvalue)
            keep = list(dict.fromkeys(list(order[: cfg.motif_rows_per_feature]) + list(sig)))
        else:
            keep = range(len(scores.names))
        _extend(rows, _pair_rows(scores, f, keep, cfg.fractions, label_cols))
        not_sig = ~(np.nan_to_num(q[:, f], nan=1.0) <= cfg.qvalue)
        i = int(np.lexsort((q[:, f], -obs["f1_select"][:, f], not_sig))[0])
        labels = label_cols_values(scores, i, label_cols)
        best.label[f], best.name[f] = labels[0], (labels[1] if is_motif else "")
        best.precision[f], best.recall[f], best.f1[f], best.qvalue[f], best.f1_select[f] = (
            obs["precision"][i, f], obs["recall"][i, f], obs["f1"][i, f], q[i, f], obs["f1_select"][i, f])
    return rows, best


def concept_summary(kinds, active: np.ndarray, neuron_best: dict) -> dict:
    """Per concept: the best SAE feature (chosen on the select part) against the best neuron."""
    cs = {k: [] for k in ("concept", "kind", "n_hits", "feature", "f1", "qvalue", "neuron", "neuron_f1")}
    for scores in kinds:
        if scores is None:
            continue
        obs, q = scores.obs, scores.q
        for i, concept in enumerate(scores.names):
            name = concept
            f = int(np.argmax(np.where(active, obs["f1_select"][i], -1)))
            nb = neuron_best.get(name, (-1, float("nan")))
            for key, val in (("concept", name), ("kind", scores.kind), ("n_hits", int(obs["n_hits"][i].sum())),
                             ("feature", f), ("f1", float(obs["f1"][i, f])), ("qvalue", float(q[i, f])),
                             ("neuron", nb[0]), ("neuron_f1", nb[1])):
                cs[key].append(val)
    return cs


def feature_table(stats: FeatureStats, best_m: BestConcept, best_c: BestConcept, logos: FeatureLogos,
                  qvalue: float) -> tuple[dict, np.ndarray]:
    """features.tsv columns and the interpretability score (best significant held-out F1)."""
    F = stats.n_features
    feats = {
        "feature": np.arange(F),
        "n_active": stats.n_active,
        "frequency": stats.n_active / max(stats.n_tokens, 1),
        "max_activation": stats.fmax.astype(np.float64),
        "mean_activation": stats.mean_active,
        "tested": stats.active.astype(int),
        "motif": best_m.label, "motif_name": best_m.name, "motif_precision": best_m.precision,
        "motif_recall": best_m.recall, "motif_f1": best_m.f1, "motif_qvalue": best_m.qvalue,
        "concept": best_c.label, "concept_precision": best_c.precision, "concept_recall": best_c.recall,
        "concept_f1": best_c.f1, "concept_qvalue": best_c.qvalue,
        "logo_consensus": logos.consensus, "logo_match": logos.match_id, "logo_match_score": logos.match_score,
        "logo_match_strand": logos.match_strand, "top_kmer": logos.top_kmer,
        "kmer_enrichment": logos.kmer_enrichment,
        "histogram": [",".join(map(str, h)) for h in stats.hist],
    }
    mf = np.where(best_m.qvalue <= qvalue, np.nan_to_num(best_m.f1), 0.0)
    cf = np.where(best_c.qvalue <= qvalue, np.nan_to_num(best_c.f1), 0.0)
    feats["score"] = np.maximum(mf, cf)
    return feats, feats["score"]


def best_list(best_m: BestConcept, best_c: BestConcept, qvalue: float) -> list:
    """The ten best features, diversified: the best significant feature of each concept first,
    so broad concepts (CDS) with many good features do not fill the list. Ranked by select
    F1 and shown with held-out F1 (ranking by the F1 shown would inflate the list's F1s)."""
    mf = np.where(best_m.qvalue <= qvalue, np.nan_to_num(best_m.f1_select), 0.0)
    cf = np.where(best_c.qvalue <= qvalue, np.nan_to_num(best_c.f1_select), 0.0)
    rank = np.maximum(mf, cf)

    def entry(f):
        is_motif = mf[f] >= cf[f]
        name = (best_m.label[f] + (f" ({best_m.name[f]})" if best_m.name[f] else "")) if is_motif else best_c.label[f]
        chosen = best_m if is_motif else best_c
        return {"feature": int(f), "concept": name, "f1": float(np.nan_to_num(chosen.f1[f])),
                "qvalue": float(chosen.qvalue[f])}

    ranked = [entry(f) for f in np.argsort(-rank, kind="stable") if rank[f] > 0]
    best, seen = [], set()
    for e in ranked:
        if e["concept"] not in seen:
            best.append(e)
            seen.add(e["concept"])
    best += [e for e in ranked if e not in best]
    return best[:10]


def track_features(score: np.ndarray, n_tracks: int) -> list:
    """The features whose activations become tracks: the best ``n_tracks`` with score > 0."""
    out = []
    for f in np.argsort(-score, kind="stable")[:n_tracks]:
        if score[f] <= 0:
            break
        out.append(int(f))
    return out


def summary_dict(stats: FeatureStats, motif: ConceptScores | None, gene: ConceptScores | None, cs: dict,
                 best_m: BestConcept, best_c: BestConcept, cfg, *, genome_bp: int, split_block: int) -> dict:
    """summary.json (without the provenance keys added by the caller)."""
    tested = int(stats.active.sum())
    motif_names = motif.names if motif else []
    sig_m = np.nan_to_num(best_m.qvalue, nan=1.0) <= cfg.qvalue  # significant whenever any concept is
    sig_c = np.nan_to_num(best_c.qvalue, nan=1.0) <= cfg.qvalue
    cs_f1 = np.array(cs["f1"]) if cs["f1"] else np.zeros(0)
    cs_nf1 = np.nan_to_num(np.array(cs["neuron_f1"], dtype=float)) if cs["neuron_f1"] else np.zeros(0)
    F = stats.n_features
    return {
        "n_features": F, "n_tokens": stats.n_tokens, "genome_bp": int(genome_bp),
        "fvu": float(stats.fvu), "l0": float(stats.l0),
        "dead_fraction": float(np.mean(stats.n_active == 0)) if F else 0.0,
        "features_tested": tested, "motifs": len(motif_names),
        "motif_pairs_tested": int(tested * len(motif_names)),
        "motif_null_pairs": int(motif.null_size) if motif else 0,
        "gene_concepts": gene.names if gene else [],
        "features_with_motif": int(sig_m.sum()),
        "features_with_gene_concept": int(sig_c.sum()),
        "features_with_any_concept": int((sig_m | sig_c).sum()),
        "qvalue_level": cfg.qvalue, "split_block_bp": int(split_block),
        "concepts_sae_f1_ge_0.5": int(np.sum(cs_f1 >= 0.5)),
        "concepts_neuron_f1_ge_0.5": int(np.sum(cs_nf1 >= 0.5)),
        "concepts_sae_f1_ge_0.3": int(np.sum(cs_f1 >= 0.3)),
        "concepts_neuron_f1_ge_0.3": int(np.sum(cs_nf1 >= 0.3)),
        "concepts_sae_beats_neuron": int(np.sum(cs_f1 > cs_nf1)) if cs_nf1.size else 0,
        "concepts_significant": int(np.sum(np.array(cs["qvalue"]) <= cfg.qvalue)) if cs["qvalue"] else 0,
        "fractions": list(cfg.fractions),
    }


@dataclass
class Parts:
    """Everything :func:`build_result` needs, computed by either annotation path."""

    stats: FeatureStats
    motif: ConceptScores | None
    gene: ConceptScores | None
    neuron_best: dict
    logos: FeatureLogos
    examples: dict
    motif_probs: dict  # motif id -> probability matrix (for the atlas)
    genome_bp: int
    split_block: int


def build_result(parts: Parts, cfg) -> Result:
    """All tables from :class:`Parts` (tracks are added by the caller)."""
    active = parts.stats.active
    rows_fm, best_m = pair_table(parts.motif, active, cfg)
    rows_gc, best_c = pair_table(parts.gene, active, cfg)
    if parts.gene is None:
        rows_gc = {k: [] for k in ("feature", "concept", "precision", "recall", "f1", "f1_select", "threshold",
                                   "pvalue", "qvalue")}
    feats, score = feature_table(parts.stats, best_m, best_c, parts.logos, cfg.qvalue)
    cs = concept_summary((parts.motif, parts.gene), active, parts.neuron_best)
    summary = summary_dict(parts.stats, parts.motif, parts.gene, cs, best_m, best_c, cfg, genome_bp=parts.genome_bp,
                           split_block=parts.split_block)
    summary["best"] = best_list(best_m, best_c, cfg.qvalue)
    used = set(parts.logos.match_id) | set(best_m.label)
    motif_logos = {mid: np.round(np.asarray(pr), 4).tolist() for mid, pr in parts.motif_probs.items() if mid in used}
    return Result(feats, rows_fm, rows_gc, cs, parts.examples, parts.logos.logos, motif_logos, summary, score=score)
