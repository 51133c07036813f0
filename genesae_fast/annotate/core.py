"""Annotation of SAE features on in-memory inputs: the reference the streamed path is tested against.

:func:`annotate_encoded` does the science on in-memory inputs (sparse activations of every
token, token coordinates, records, motif hits, gene calls) and returns tables; it holds
genome-wide state (about 1 GB per Mbp), so ``genesae annotate`` uses the streamed
:mod:`genesae_fast.annotate.stream` instead, which reduces to the same
:mod:`~genesae_fast.annotate.tables` dataclasses and must give the same tables.

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

from dataclasses import dataclass

import numpy as np

from genesae_fast.annotate import concepts as C
from genesae_fast.annotate import tables as TB
from genesae_fast.annotate.peaks import Candidates, example_specs, examples_table, feature_logos, select_peaks
from genesae_fast.annotate.tables import Result  # noqa: F401  (re-exported: callers import it from here)

# the SAE's grid less 0 (a neuron is dense: > 0 fires almost everywhere); the same top
# thresholds, so the baseline gets the same chance at precision
NEURON_FRACTIONS = tuple(f for f in C.DEFAULT_FRACTIONS if f > 0)


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
    block_bp: int = 262_144       # streamed annotation: bases per block (memory per worker)


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


def _score_concepts(acts, layout, thr, on, concept_hits, active, *, levels=None, progress=False, desc=""):
    """Held-out scores of every concept: dict of (n_concepts, F) arrays."""
    from tqdm import tqdm

    concept_hits = list(concept_hits)
    if levels is None:
        levels = C.entry_levels(acts, thr)
    F, T = thr.shape
    tp = np.zeros((len(concept_hits), F, 2, T), np.int64)
    found = np.zeros_like(tp)
    n_hits = np.zeros((len(concept_hits), 2), np.int64)
    for i, hits in enumerate(tqdm(concept_hits, desc=desc, disable=not progress, leave=False)):
        counts = C.concept_counts(acts, layout, thr, hits, levels)
        tp[i], found[i], n_hits[i] = counts.tp, counts.found, counts.n_hits
    return TB.held_out_scores(tp, found, n_hits, on, active)


def _shift_hits(hits: C.Hits, shift: int, G: int) -> C.Hits:
    s = (hits.start + shift) % G
    e = s + (hits.end - hits.start)
    keep = e <= G  # a hit wrapped over the end is dropped
    return C.Hits(s[keep], e[keep])


def gene_shifts(G: int, cfg) -> list:
    """The circular shifts of the gene-concept controls (seeded by ``cfg.seed``)."""
    rng = np.random.default_rng(cfg.seed)
    return [int(s) for s in rng.integers(G // 10, G - G // 10, size=max(cfg.gene_shifts, 0))] if G > 20 else []


def acts_token(acts: C.SparseActs, entry):
    """Token index of entry index(es) (CSR lookup)."""
    return np.searchsorted(acts.ptr, entry, side="right") - 1


def _feature_stats(acts: C.SparseActs, encoded, cfg) -> TB.FeatureStats:
    F = acts.n_features
    n_active = np.bincount(acts.feat, minlength=F)
    fmax = acts.feature_max()
    sums = np.bincount(acts.feat, weights=acts.val, minlength=F)
    mean_active = np.divide(sums, n_active, out=np.zeros(F), where=n_active > 0)
    hist = TB.value_histogram(acts.val, acts.feat, fmax, F)
    return TB.FeatureStats(acts.n_tokens, n_active, fmax, mean_active, hist, n_active >= cfg.min_active,
                           float(encoded.fvu), float(encoded.l0))


def _context_activation(acts: C.SparseActs, layout: C.Layout, spec) -> np.ndarray:
    """The example feature's activation on every base of the example's window."""
    pos = np.arange(spec.lo, spec.hi)
    tok = layout.pos_token[pos]
    val = np.zeros(pos.shape[0], np.float32)
    has = np.flatnonzero(tok >= 0)
    entries, owner = C._gather(acts, tok[has])
    mine = acts.feat[entries] == spec.feature
    val[has[owner[mine]]] = acts.val[entries[mine]]
    return val


def _motif_scores(acts, layout, thr, on, genome, motifs, *, hits, active, cfg, progress):
    real_hits, control_hits = hits
    real = hits_by_motif(real_hits, genome, len(motifs))
    ctrl = hits_by_motif(control_hits, genome, len(motifs) * cfg.n_shuffles) if control_hits is not None else []
    scored = _score_concepts(acts, layout, thr, on, real + ctrl, active, progress=progress, desc="motif concepts")
    return TB.motif_significance(scored, len(motifs), active, motifs)


def _gene_scores(acts, layout, thr, on, gene_hits: dict, active, cfg, progress):
    G = layout.genome_length
    names, hits = list(gene_hits), list(gene_hits.values())
    levels = C.entry_levels(acts, thr)
    obs = _score_concepts(acts, layout, thr, on, hits, active, levels=levels, progress=progress, desc="gene concepts")
    shifts = gene_shifts(G, cfg)
    controls = [_score_concepts(acts, layout, thr, on, [_shift_hits(h, s, G) for s in shifts], active, levels=levels)
                if shifts else None for h in hits]
    return TB.gene_significance(obs, controls, active, names)


def _neuron_best(encoded, layout, genome, motifs, real_hits, gene_hits: dict, cfg, progress) -> dict:
    """The neuron baseline: same concepts, same held-out protocol, on the raw directions."""
    if encoded.neurons is None or not cfg.neurons:
        return {}
    nacts = encoded.neurons
    nthr = C.thresholds(nacts.feature_max(), NEURON_FRACTIONS)
    non = C.on_counts(nacts, layout, nthr)
    nactive = np.bincount(nacts.feat, minlength=nacts.n_features) >= cfg.min_active
    all_hits = (hits_by_motif(real_hits, genome, len(motifs)) if motifs else []) + list(gene_hits.values())
    names = ([m.id for m in motifs] if motifs else []) + list(gene_hits)
    if not all_hits:
        return {}
    ns = _score_concepts(nacts, layout, nthr, non, all_hits, nactive, progress=progress, desc="neuron baseline")
    return TB.best_neurons(ns, names)


def _all_candidates(acts: C.SparseActs, layout: C.Layout) -> Candidates:
    tok = acts_token(acts, np.arange(acts.feat.shape[0]))
    return Candidates.from_entries(acts.feat, acts.val, tok, layout.tok_start[tok], layout.tok_end[tok],
                                   acts.n_features)


def annotate_encoded(genome: Genome, tok_seq, tok_start, tok_end, encoded, *, motifs=None, real_hits=None,
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
    from genesae_fast.kmers import count_kmers

    cfg = cfg or Config()
    acts = encoded.features
    G = int(genome.codes.shape[0])
    off = genome.offsets[np.asarray(tok_seq, np.int64)]
    layout = C.make_layout(off + np.asarray(tok_start, np.int64), off + np.asarray(tok_end, np.int64), G, cfg.block)
    stats = _feature_stats(acts, encoded, cfg)
    cand = _all_candidates(acts, layout)
    ex_peaks = select_peaks(cand, max(cfg.n_examples, 1), 2 * cfg.context + 1)
    logo_peaks = select_peaks(cand, cfg.n_logo_peaks, cfg.logo_left + cfg.logo_right + 1)
    specs = example_specs(cand, ex_peaks, genome, cfg)
    examples = examples_table(specs, genome, [_context_activation(acts, layout, s) for s in specs])
    logos = feature_logos(genome, cand, logo_peaks, motifs, cfg, count_kmers([genome.codes], cfg.kmer_k,
                                                                             threads=cfg.threads))
    thr = C.thresholds(stats.fmax, cfg.fractions)
    on = C.on_counts(acts, layout, thr)
    motif = _motif_scores(acts, layout, thr, on, genome, motifs, hits=(real_hits, control_hits), active=stats.active,
                          cfg=cfg, progress=progress) if motifs else None
    gene_hits = {}
    if gene_calls is not None:
        from genesae_fast.annotate.genes import gene_concepts

        gene_hits = gene_concepts(gene_calls, genome.offsets, genome.lengths)
    gene = _gene_scores(acts, layout, thr, on, gene_hits, stats.active, cfg, progress) if gene_calls is not None else None
    parts = TB.Parts(stats, motif, gene, _neuron_best(encoded, layout, genome, motifs, real_hits, gene_hits, cfg,
                                                      progress), logos, examples,
                     {m.id: m.probs for m in motifs} if motifs else {}, G, layout.block)
    res = TB.build_result(parts, cfg)
    for f in TB.track_features(res.score, cfg.n_tracks):
        e = np.flatnonzero(acts.feat == f)
        t = acts_token(acts, e)
        res.tracks[f] = (layout.tok_start[t], layout.tok_end[t], acts.val[e])
    return res
