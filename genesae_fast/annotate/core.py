"""Annotation of SAE features: statistics, examples, logos, k-mers and concept matches.

:func:`annotate_encoded` does the science on in-memory inputs (sparse activations, token
coordinates, records, motif hits, gene calls) and returns tables; :func:`annotate` opens a
store and an SAE, scans motifs, predicts genes and writes the annotation folder.

Motif significance: every motif is also scanned after shuffling its columns
(``genesae_fast.motifs.shuffle_columns``, ``n_shuffles`` controls per motif). The held-out
F1 of each (feature, real motif) pair gets an empirical p-value against the pooled held-out
F1s of every (feature, shuffled motif) pair -- a target-decoy null made of the same features
-- and Benjamini-Hochberg q-values over all pairs tested. Gene-structure concepts have no
shuffled version; their control is the same concept's hits circularly shifted along the
genome (``gene_shifts`` shifts, per-concept null over all features).

Cost: every motif is scored against all features at once (counting touches only the
activation entries that fall on the motif's bases), so no motif shortlist is needed; the
features tested are those active on at least ``min_active`` tokens. ``feature_motif``
keeps, per tested feature, its ``motif_rows_per_feature`` best motifs by selection F1 plus
every pair with q <= ``qvalue``; the q-values are computed over all pairs tested.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from genesae_fast.annotate import concepts as C
from genesae_fast.annotate.logos import MotifMatcher, consensus, to_probs, trim, weighted_pfm

NEURON_FRACTIONS = (0.15, 0.5, 0.6, 0.8)


@dataclass
class Config:
    """Knobs of the annotation (defaults used by ``genesae annotate`` and ``genesae run``)."""

    fractions: tuple = C.DEFAULT_FRACTIONS
    min_active: int = 20          # features active on fewer tokens are not tested
    n_examples: int = 10          # top examples kept per feature
    context: int = 25             # +- bp of context around an example
    n_logo_peaks: int = 200       # peaks per logo
    logo_left: int = 20           # logo window: bases before / after the peak base
    logo_right: int = 10          # (the built-in LM is causal: a site ends at its peak)
    kmer_k: int = 6
    pvalue: float = 1e-4          # motif scanning threshold
    n_shuffles: int = 1           # shuffled controls per motif
    gene_shifts: int = 4          # shifted controls per gene concept
    block: int | None = None      # held-out split block size (bp), default about 1/10 genome
    qvalue: float = 0.05          # significance level for calls and the summary
    n_tracks: int = 10            # bedGraph tracks written
    motif_rows_per_feature: int = 5
    neurons: bool = True
    seed: int = 0
    threads: int = 1


@dataclass
class Genome:
    """Records laid end to end: global coordinate = offsets[seq] + bp."""

    names: list
    codes: np.ndarray     # (G,) uint8
    offsets: np.ndarray   # (R,) int64
    lengths: np.ndarray   # (R,) int64

    @classmethod
    def from_records(cls, records) -> "Genome":
        lengths = np.array([len(r) for r in records], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        codes = np.concatenate([r.codes for r in records]) if records else np.zeros(0, np.uint8)
        return cls([r.name for r in records], codes, offsets, lengths)

    def local(self, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Global positions -> (record index, bp in record)."""
        seq = np.searchsorted(self.offsets, pos, side="right") - 1
        return seq, pos - self.offsets[seq]


@dataclass
class Result:
    """Tables produced by :func:`annotate_encoded` (plain dicts of numpy columns/lists)."""

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


def hits_by_motif(hits, genome: Genome, n_motifs: int) -> list[C.Hits]:
    """Split a ScanHits table into one global-coordinate Hits per motif index."""
    out = []
    if len(hits) == 0:
        return [C.Hits(np.zeros(0, np.int64), np.zeros(0, np.int64)) for _ in range(n_motifs)]
    g0 = genome.offsets[np.asarray(hits.seq, dtype=np.int64)]
    start = g0 + np.asarray(hits.start, dtype=np.int64)
    end = g0 + np.asarray(hits.end, dtype=np.int64)
    motif = np.asarray(hits.motif, dtype=np.int64)
    order = np.argsort(motif, kind="stable")
    bounds = np.searchsorted(motif[order], np.arange(n_motifs + 1))
    for m in range(n_motifs):
        sel = order[bounds[m]:bounds[m + 1]]
        out.append(C.Hits(start[sel], end[sel]))
    return out


def _score_concepts(acts, layout, thr, on, concept_hits, active, levels=None, progress=False, desc=""):
    """Held-out scores of every concept: dict of (n_concepts, F) arrays."""
    from tqdm import tqdm

    keys = ("threshold", "f1_select", "precision", "recall", "f1")
    concept_hits = list(concept_hits)
    res = {k: np.zeros((len(concept_hits), acts.n_features), np.float64) for k in keys}
    n_hits = np.zeros((len(concept_hits), 2), np.int64)
    if levels is None:
        levels = C.entry_levels(acts, thr)
    for i, hits in enumerate(tqdm(concept_hits, desc=desc, disable=not progress, leave=False)):
        counts = C.concept_counts(acts, layout, thr, hits, levels)
        ho = C.held_out(counts, on)
        n_hits[i] = counts.n_hits
        for k in keys:
            v = getattr(ho, k).astype(np.float64)
            res[k][i] = np.where(active, v, 0.0)
    res["n_hits"] = n_hits
    return res


def _shift_hits(hits: C.Hits, shift: int, G: int) -> C.Hits:
    s = (hits.start + shift) % G
    e = s + (hits.end - hits.start)
    keep = e <= G  # a hit wrapped over the end is dropped
    return C.Hits(s[keep], e[keep])


def _peaks(acts: C.SparseActs, layout: C.Layout, f_order, starts, n: int, sep: int) -> list[np.ndarray]:
    """Per feature, up to ``n`` entry indices of its highest activations, one per ``sep``-bp bin.

    Binning (rather than greedy suppression) keeps this vectorised; two peaks in adjacent
    bins may be closer than ``sep``.
    """
    out = []
    for f in range(acts.n_features):
        cand = f_order[starts[f]:starts[f + 1]][: 50 * n]  # sorted by decreasing activation
        if cand.size == 0:
            out.append(cand.astype(np.int64))
            continue
        bins = layout.tok_start[acts_token(acts, cand)] // sep
        _, first = np.unique(bins, return_index=True)
        out.append(cand[np.sort(first)][:n].astype(np.int64))
    return out


def acts_token(acts: C.SparseActs, entry):
    """Token index of entry index(es) (CSR lookup)."""
    return np.searchsorted(acts.ptr, entry, side="right") - 1


def annotate_encoded(genome: Genome, tok_seq, tok_start, tok_end, encoded, motifs=None, real_hits=None,
                     control_hits=None, gene_calls=None, cfg: Config | None = None, progress=False) -> Result:
    """Annotate features from in-memory inputs.

    Parameters
    ----------
    genome : Genome
    tok_seq, tok_start, tok_end : (N,) token coordinates (record index, bp start/end)
    encoded : genesae_fast.annotate.encode.Encoded
    motifs : list of Motif (id, alt_id, probs) or None
    real_hits, control_hits : ScanHits of the motifs and of their shuffled controls
        (control motif j is a shuffle of motif j % len(motifs))
    gene_calls : list of GeneCall or None
    cfg : Config
    """
    cfg = cfg or Config()
    rng = np.random.default_rng(cfg.seed)
    acts = encoded.features
    F, G = acts.n_features, int(genome.codes.shape[0])
    gstart = genome.offsets[np.asarray(tok_seq, np.int64)] + np.asarray(tok_start, np.int64)
    gend = genome.offsets[np.asarray(tok_seq, np.int64)] + np.asarray(tok_end, np.int64)
    layout = C.make_layout(gstart, gend, G, cfg.block)
    N = acts.n_tokens

    # ---- per-feature statistics
    n_active = np.bincount(acts.feat, minlength=F)
    fmax = acts.feature_max()
    sums = np.bincount(acts.feat, weights=acts.val, minlength=F)
    mean_active = np.divide(sums, n_active, out=np.zeros(F), where=n_active > 0)
    bins = 20
    b = np.minimum((acts.val / np.maximum(fmax[acts.feat], 1e-12) * bins).astype(np.int64), bins - 1)
    hist = np.bincount(acts.feat.astype(np.int64) * bins + b, minlength=F * bins).reshape(F, bins)
    active = n_active >= cfg.min_active

    # ---- peaks: entries sorted by feature, then by decreasing activation
    f_order = np.lexsort((-acts.val, acts.feat))
    starts = np.searchsorted(acts.feat[f_order], np.arange(F + 1))
    ex_peaks = _peaks(acts, layout, f_order, starts, max(cfg.n_examples, 1), 2 * cfg.context + 1)
    logo_peaks = _peaks(acts, layout, f_order, starts, cfg.n_logo_peaks, cfg.logo_left + cfg.logo_right + 1)

    # ---- examples with +-context and the feature's activation on each base
    ex = {k: [] for k in ("feature", "rank", "seq", "start", "end", "activation", "context_start", "context", "context_activation")}
    letters = np.frombuffer(b"ACGTN", np.uint8)
    for f in range(F):
        for rank, e in enumerate(ex_peaks[f][: cfg.n_examples]):
            t = acts_token(acts, e)
            p0, p1 = int(layout.tok_start[t]), int(layout.tok_end[t])
            seq, bp = genome.local(np.array([p0]))
            seq, bp = int(seq[0]), int(bp[0])
            lo = max(int(genome.offsets[seq]), p0 - cfg.context)
            hi = min(int(genome.offsets[seq] + genome.lengths[seq]), p1 + cfg.context)
            pos = np.arange(lo, hi)
            tok = layout.pos_token[pos]
            val = np.zeros(pos.shape[0], np.float32)
            has = np.flatnonzero(tok >= 0)
            entries, owner = C._gather(acts, tok[has])
            mine = acts.feat[entries] == f
            val[has[owner[mine]]] = acts.val[entries[mine]]
            ex["feature"].append(f)
            ex["rank"].append(rank)
            ex["seq"].append(genome.names[seq])
            ex["start"].append(bp)
            ex["end"].append(bp + p1 - p0)
            ex["activation"].append(float(acts.val[e]))
            ex["context_start"].append(lo - int(genome.offsets[seq]))
            ex["context"].append(letters[np.minimum(genome.codes[lo:hi], 4)].tobytes().decode())
            ex["context_activation"].append([round(float(v), 4) for v in val])

    # ---- logos, their best motif match, top k-mers
    logos, cons, logo_core = {}, [""] * F, [None] * F
    for f in range(F):
        pk = logo_peaks[f]
        if pk.size == 0:
            continue
        centers = layout.tok_end[acts_token(acts, pk)] - 1
        probs = to_probs(weighted_pfm(genome.codes, centers, acts.val[pk], cfg.logo_left, cfg.logo_right))
        logos[f] = np.round(probs, 4).tolist()
        core, _ = trim(probs)
        cons[f] = consensus(core)
        logo_core[f] = core
    match_id, match_score, match_strand = [""] * F, np.zeros(F), np.zeros(F, np.int8)
    if motifs:
        matcher = MotifMatcher([m.probs for m in motifs])
        for f in range(F):
            if logo_core[f] is None or logo_core[f].shape[0] < 4:
                continue
            s, _, strand = matcher.scores(logo_core[f])
            j = int(np.argmax(s))
            match_id[f], match_score[f], match_strand[f] = motifs[j].id, s[j], strand[j]
    top_kmer, kmer_enr = _top_kmers(genome, layout, acts, logo_peaks, cfg)

    # ---- concept matching (SAE features), held out
    thr = C.thresholds(fmax, cfg.fractions)
    on = C.on_counts(acts, layout, thr)
    motif_names = [m.id for m in motifs] if motifs else []
    tested = int(active.sum())
    fm = {}
    if motifs:
        real = hits_by_motif(real_hits, genome, len(motifs))
        ctrl_all = hits_by_motif(control_hits, genome, len(motifs) * cfg.n_shuffles) if control_hits is not None else []
        levels = C.entry_levels(acts, thr)
        scored = _score_concepts(acts, layout, thr, on, real + ctrl_all, active, levels, progress, "motif concepts")
        M = len(motifs)
        obs = {k: v[:M] for k, v in scored.items()}
        null = scored["f1"][M:][:, active].reshape(-1)
        pvals = C.tail_pvalues(obs["f1"][:, active], null) if null.size else np.ones((M, tested))
        q = np.ones((M, F))
        p = np.ones((M, F))
        q[:, active] = C.bh_qvalues(pvals)
        p[:, active] = pvals
        fm = {"obs": obs, "p": p, "q": q, "null_size": int(null.size)}

    gc = {}
    gene_names = []
    gene_hits = []
    if gene_calls is not None:
        from genesae_fast.annotate.genes import gene_concepts

        gmap = gene_concepts(gene_calls, genome.offsets, genome.lengths)
        gene_names, gene_hits = list(gmap), list(gmap.values())
        levels = C.entry_levels(acts, thr)
        obs = _score_concepts(acts, layout, thr, on, gene_hits, active, levels, progress, "gene concepts")
        p = np.ones((len(gene_hits), F))
        shifts = rng.integers(G // 10, G - G // 10, size=max(cfg.gene_shifts, 0)) if G > 20 else []
        for i, h in enumerate(gene_hits):
            if len(shifts) == 0:
                break
            ctrl = _score_concepts(acts, layout, thr, on, [_shift_hits(h, int(s), G) for s in shifts], active, levels)
            p[i, active] = C.tail_pvalues(obs["f1"][i, active], ctrl["f1"][:, active].reshape(-1))
        q = np.ones_like(p)
        q[:, active] = C.bh_qvalues(p[:, active])
        gc = {"obs": obs, "p": p, "q": q}

    # ---- the neuron baseline: same concepts, same held-out protocol
    neuron_best = {}
    if encoded.neurons is not None and cfg.neurons:
        nacts = encoded.neurons
        nmax = nacts.feature_max()
        nthr = C.thresholds(nmax, NEURON_FRACTIONS)
        non = C.on_counts(nacts, layout, nthr)
        nactive = np.bincount(nacts.feat, minlength=nacts.n_features) >= cfg.min_active
        all_hits = (hits_by_motif(real_hits, genome, len(motifs)) if motifs else []) + gene_hits
        names = motif_names + gene_names
        if all_hits:
            ns = _score_concepts(nacts, layout, nthr, non, all_hits, nactive, None, progress, "neuron baseline")
            for i, name in enumerate(names):
                j = int(np.argmax(ns["f1_select"][i]))
                neuron_best[name] = (j, float(ns["f1"][i, j]))

    # ---- tables
    return _tables(F, N, genome, layout, acts, encoded, cfg, motifs, motif_names, fm, gene_names, gc, neuron_best,
                   n_active, fmax, mean_active, hist, active, cons, match_id, match_score, match_strand,
                   top_kmer, kmer_enr, ex, logos, real_hits, tested)


def _top_kmers(genome, layout, acts, logo_peaks, cfg):
    """Per feature the k-mer most enriched in windows ending at its peaks (native counter)."""
    from genesae_fast.kmers import count_kmers, unpack

    k = cfg.kmer_k
    F = acts.n_features
    top, enr = [""] * F, np.zeros(F)
    g_kmers, g_counts = count_kmers([genome.codes], k, threads=cfg.threads)
    g_total = max(float(g_counts.sum()), 1.0)
    for f in range(F):
        pk = logo_peaks[f]
        if pk.size < 3:
            continue
        ends = layout.tok_end[acts_token(acts, pk)]
        lo = np.maximum(ends - cfg.logo_left, 0)
        wins = [genome.codes[a:b] for a, b in zip(lo, np.minimum(ends + 2, genome.codes.shape[0]))]
        # the dense table is far faster than "auto" for a few hundred short windows
        km, cnt = count_kmers(wins, k, threads=1, method="dense" if k <= 13 else "auto")
        if km.size == 0:
            continue
        total = float(cnt.sum())
        gi = np.searchsorted(g_kmers, km)
        gi = np.minimum(gi, g_kmers.shape[0] - 1)
        gfreq = np.where(g_kmers[gi] == km, g_counts[gi], 0).astype(np.float64)
        ratio = ((cnt + 0.5) / total) / ((gfreq + 0.5) / g_total)
        ratio[cnt < max(3, int(0.05 * pk.size))] = 0
        j = int(np.argmax(ratio))
        if ratio[j] > 0:
            top[f], enr[f] = unpack(int(km[j]), k), float(ratio[j])
    return top, enr


def _tables(F, N, genome, layout, acts, encoded, cfg, motifs, motif_names, fm, gene_names, gc, neuron_best,
            n_active, fmax, mean_active, hist, active, cons, match_id, match_score, match_strand,
            top_kmer, kmer_enr, ex, logos, real_hits, tested) -> Result:
    feats = {
        "feature": np.arange(F),
        "n_active": n_active,
        "frequency": n_active / max(N, 1),
        "max_activation": fmax.astype(np.float64),
        "mean_activation": mean_active,
        "tested": active.astype(int),
    }
    rows_fm = {k: [] for k in ("feature", "motif_id", "motif_name", "precision", "recall", "f1", "f1_select",
                               "threshold", "pvalue", "qvalue")}
    best_motif = [""] * F
    best_name = [""] * F
    bm = {k: np.full(F, np.nan) for k in ("precision", "recall", "f1", "qvalue")}
    if fm:
        obs, q, p = fm["obs"], fm["q"], fm["p"]
        for f in np.flatnonzero(active):
            order = np.argsort(-obs["f1_select"][:, f], kind="stable")
            sig = np.flatnonzero(q[:, f] <= cfg.qvalue)
            keep = list(dict.fromkeys(list(order[: cfg.motif_rows_per_feature]) + list(sig)))
            for m in keep:
                rows_fm["feature"].append(int(f))
                rows_fm["motif_id"].append(motifs[m].id)
                rows_fm["motif_name"].append(motifs[m].alt_id or "")
                for key in ("precision", "recall", "f1", "f1_select"):
                    rows_fm[key].append(float(obs[key][m, f]))
                rows_fm["threshold"].append(float(sorted(cfg.fractions)[int(obs["threshold"][m, f])]))
                rows_fm["pvalue"].append(float(p[m, f]))
                rows_fm["qvalue"].append(float(q[m, f]))
            # the feature's motif: the lowest q-value, ties broken by the selection F1
            m = int(np.lexsort((-obs["f1_select"][:, f], q[:, f]))[0])
            best_motif[f], best_name[f] = motifs[m].id, motifs[m].alt_id or ""
            bm["precision"][f], bm["recall"][f], bm["f1"][f], bm["qvalue"][f] = (
                obs["precision"][m, f], obs["recall"][m, f], obs["f1"][m, f], q[m, f])
    feats.update({"motif": best_motif, "motif_name": best_name, "motif_precision": bm["precision"],
                  "motif_recall": bm["recall"], "motif_f1": bm["f1"], "motif_qvalue": bm["qvalue"]})

    rows_gc = {k: [] for k in ("feature", "concept", "precision", "recall", "f1", "f1_select", "threshold", "pvalue", "qvalue")}
    bc = {k: np.full(F, np.nan) for k in ("precision", "recall", "f1", "qvalue")}
    best_concept = [""] * F
    if gc:
        obs, q, p = gc["obs"], gc["q"], gc["p"]
        for f in np.flatnonzero(active):
            for i, name in enumerate(gene_names):
                rows_gc["feature"].append(int(f))
                rows_gc["concept"].append(name)
                for key in ("precision", "recall", "f1", "f1_select"):
                    rows_gc[key].append(float(obs[key][i, f]))
                rows_gc["threshold"].append(float(sorted(cfg.fractions)[int(obs["threshold"][i, f])]))
                rows_gc["pvalue"].append(float(p[i, f]))
                rows_gc["qvalue"].append(float(q[i, f]))
            i = int(np.lexsort((-obs["f1_select"][:, f], q[:, f]))[0])
            best_concept[f] = gene_names[i]
            bc["precision"][f], bc["recall"][f], bc["f1"][f], bc["qvalue"][f] = (
                obs["precision"][i, f], obs["recall"][i, f], obs["f1"][i, f], q[i, f])
    feats.update({"concept": best_concept, "concept_precision": bc["precision"], "concept_recall": bc["recall"],
                  "concept_f1": bc["f1"], "concept_qvalue": bc["qvalue"]})
    feats.update({"logo_consensus": cons, "logo_match": match_id, "logo_match_score": match_score,
                  "logo_match_strand": match_strand, "top_kmer": top_kmer, "kmer_enrichment": kmer_enr,
                  "histogram": [",".join(map(str, h)) for h in hist]})

    # interpretability score: the best significant held-out F1 of either kind
    mf = np.where(bm["qvalue"] <= cfg.qvalue, np.nan_to_num(bm["f1"]), 0.0)
    cf = np.where(bc["qvalue"] <= cfg.qvalue, np.nan_to_num(bc["f1"]), 0.0)
    score = np.maximum(mf, cf)
    feats["score"] = score

    # per concept: best SAE feature (chosen on the select part) vs best neuron
    cs = {k: [] for k in ("concept", "kind", "n_hits", "feature", "f1", "qvalue", "neuron", "neuron_f1")}
    for kind, names, d in (("motif", motif_names, fm), ("gene", gene_names, gc)):
        if not d:
            continue
        obs, q = d["obs"], d["q"]
        for i, name in enumerate(names):
            f = int(np.argmax(np.where(active, obs["f1_select"][i], -1)))
            cs["concept"].append(name)
            cs["kind"].append(kind)
            cs["n_hits"].append(int(obs["n_hits"][i].sum()))
            cs["feature"].append(f)
            cs["f1"].append(float(obs["f1"][i, f]))
            cs["qvalue"].append(float(q[i, f]))
            nb = neuron_best.get(name, (-1, float("nan")))
            cs["neuron"].append(nb[0])
            cs["neuron_f1"].append(nb[1])

    sig_m = (np.nan_to_num(bm["qvalue"], nan=1.0) <= cfg.qvalue)
    sig_c = (np.nan_to_num(bc["qvalue"], nan=1.0) <= cfg.qvalue)
    cs_f1 = np.array(cs["f1"]) if cs["f1"] else np.zeros(0)
    cs_nf1 = np.nan_to_num(np.array(cs["neuron_f1"], dtype=float)) if cs["neuron_f1"] else np.zeros(0)
    summary = {
        "n_features": F,
        "n_tokens": N,
        "genome_bp": int(genome.codes.shape[0]),
        "fvu": float(encoded.fvu),
        "l0": float(encoded.l0),
        "dead_fraction": float(np.mean(n_active == 0)) if F else 0.0,
        "features_tested": tested,
        "motifs": len(motif_names),
        "motif_pairs_tested": int(tested * len(motif_names)),
        "motif_null_pairs": int(fm.get("null_size", 0)) if fm else 0,
        "gene_concepts": gene_names,
        "features_with_motif": int(sig_m.sum()),
        "features_with_gene_concept": int(sig_c.sum()),
        "features_with_any_concept": int((sig_m | sig_c).sum()),
        "qvalue_level": cfg.qvalue,
        "split_block_bp": int(layout.block),
        "concepts_sae_f1_ge_0.5": int(np.sum(cs_f1 >= 0.5)),
        "concepts_neuron_f1_ge_0.5": int(np.sum(cs_nf1 >= 0.5)),
        "concepts_sae_f1_ge_0.3": int(np.sum(cs_f1 >= 0.3)),
        "concepts_neuron_f1_ge_0.3": int(np.sum(cs_nf1 >= 0.3)),
        "concepts_sae_beats_neuron": int(np.sum(cs_f1 > cs_nf1)) if cs_nf1.size else 0,
        "concepts_significant": int(np.sum(np.array(cs["qvalue"]) <= cfg.qvalue)) if cs["qvalue"] else 0,
        "fractions": list(cfg.fractions),
    }
    order = np.argsort(-score, kind="stable")
    # the best ten, diversified: the best significant feature of each concept first (ranked
    # by F1), so broad concepts (CDS) with many good features do not fill the whole list
    def _entry(f):
        is_motif = mf[f] >= cf[f]
        name = (best_motif[f] + (f" ({best_name[f]})" if best_name[f] else "")) if is_motif else best_concept[f]
        return {"feature": int(f), "concept": name, "f1": float(score[f]),
                "qvalue": float(bm["qvalue"][f] if is_motif else bc["qvalue"][f])}

    ranked = [_entry(f) for f in order if score[f] > 0]
    best, seen = [], set()
    for e in ranked:
        if e["concept"] not in seen:
            best.append(e)
            seen.add(e["concept"])
    best += [e for e in ranked if e not in best]
    best = best[:10]
    summary["best"] = best

    # tracks: the most interpretable features' activations as bedGraph intervals
    tracks = {}
    for f in order[: cfg.n_tracks]:
        if score[f] <= 0:
            break
        e = f_entries(acts, int(f))
        t = acts_token(acts, e)
        tracks[int(f)] = (layout.tok_start[t], layout.tok_end[t], acts.val[e])
    motif_logos = {}
    if motifs:
        used = set(match_id) | set(best_motif)
        for m in motifs:
            if m.id in used:
                motif_logos[m.id] = np.round(np.asarray(m.probs), 4).tolist()
    return Result(feats, rows_fm, rows_gc, cs, ex, logos, motif_logos, summary, tracks)


def f_entries(acts: C.SparseActs, f: int) -> np.ndarray:
    """Entry indices of feature ``f`` in token order."""
    return np.flatnonzero(acts.feat == f)
