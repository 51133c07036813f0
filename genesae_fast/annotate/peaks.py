"""Peaks of every feature and what is built on them: top examples, logos, top k-mers.

A feature's *candidates* are its highest entries, sorted by decreasing activation (ties in
token order). Peaks are picked from the first ``50 n`` candidates, one per ``sep``-bp bin
(binning rather than greedy suppression keeps it vectorised; two peaks in adjacent bins may
be closer than ``sep``). Both annotation paths feed the same candidates here: the
in-memory path all entries, the streamed path the merged per-block candidates.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from genesae_fast.annotate.logos import MotifMatcher, consensus, to_probs, trim, weighted_pfm
from genesae_fast.annotate.tables import FeatureLogos

# peaks are chosen among this many candidates per requested peak
CANDIDATES_PER_PEAK = 50
_LETTERS = np.frombuffer(b"ACGTN", np.uint8)


@dataclass
class Candidates:
    """Entries of every feature, grouped by feature, sorted by (-activation, token).

    Attributes
    ----------
    ptr : (F+1,) int64 -- feature f's candidates are ptr[f]:ptr[f+1]
    val : (E,) float32 ; token : (E,) int64 global row ; start, end : (E,) int64 global bp span
    """

    ptr: np.ndarray
    val: np.ndarray
    token: np.ndarray
    start: np.ndarray
    end: np.ndarray

    @classmethod
    def from_entries(cls, feat, val, token, start, end, n_features: int, keep: int | None = None) -> "Candidates":
        """Sort entries by (feature, -val, token); keep the first ``keep`` of each feature."""
        feat = np.asarray(feat, np.int64)
        order = np.lexsort((token, -np.asarray(val, np.float32), feat))
        feat = feat[order]
        bounds = np.searchsorted(feat, np.arange(n_features + 1))
        if keep is not None:
            rank = np.arange(feat.shape[0]) - bounds[feat]
            order = order[rank < keep]
            feat = feat[rank < keep]
            bounds = np.searchsorted(feat, np.arange(n_features + 1))
        return cls(bounds.astype(np.int64), np.asarray(val, np.float32)[order], np.asarray(token, np.int64)[order],
                   np.asarray(start, np.int64)[order], np.asarray(end, np.int64)[order])

    @property
    def n_features(self) -> int:
        return int(self.ptr.shape[0] - 1)

    def feat(self) -> np.ndarray:
        """Feature of every candidate, shape (E,)."""
        return np.repeat(np.arange(self.n_features), np.diff(self.ptr))

    def merge(self, other: "Candidates", keep: int) -> "Candidates":
        """Union of two candidate sets, first ``keep`` per feature (exact, order-free).

        Feature by feature, so the temporaries are one feature's (the same order as one
        sort of everything by (feature, -activation, token)), not several copies of all.
        """
        names = ("val", "token", "start", "end")
        out = {k: [] for k in names}
        counts = np.zeros(self.n_features, np.int64)
        for f in range(self.n_features):
            a = [slice(int(c.ptr[f]), int(c.ptr[f + 1])) for c in (self, other)]
            if a[1].stop == a[1].start or a[0].stop == a[0].start:
                src, sl = (self, a[0]) if a[1].stop == a[1].start else (other, a[1])
                cols = [getattr(src, k)[sl][:keep] for k in names]
            else:
                cols = [np.concatenate([getattr(self, k)[a[0]], getattr(other, k)[a[1]]]) for k in names]
                order = np.lexsort((cols[1], -cols[0]))[:keep]
                cols = [c[order] for c in cols]
            counts[f] = cols[0].shape[0]
            for k, c in zip(names, cols):
                out[k].append(c)
        ptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return Candidates(ptr, *(np.concatenate(out[k]) if out[k] else getattr(self, k)[:0] for k in names))


def select_peaks(cand: Candidates, n: int, sep: int) -> list[np.ndarray]:
    """Per feature, up to ``n`` candidate indices of its highest activations, one per ``sep``-bp bin."""
    out = []
    for f in range(cand.n_features):
        a = int(cand.ptr[f])
        idx = np.arange(a, min(int(cand.ptr[f + 1]), a + CANDIDATES_PER_PEAK * n), dtype=np.int64)
        if idx.size == 0:
            out.append(idx)
            continue
        _, first = np.unique(cand.start[idx] // sep, return_index=True)
        out.append(idx[np.sort(first)][:n])
    return out


@dataclass
class ExampleSpec:
    """One top example: feature, rank, record, token span and context window (global bp)."""

    feature: int
    rank: int
    seq: int
    token: int
    p0: int
    p1: int
    lo: int
    hi: int
    activation: float


def example_specs(cand: Candidates, peaks: list, genome, cfg) -> list[ExampleSpec]:
    """Top examples of every feature with their +-``cfg.context`` windows (cut at record ends)."""
    out = []
    for f in range(cand.n_features):
        for rank, e in enumerate(peaks[f][: cfg.n_examples]):
            p0, p1 = int(cand.start[e]), int(cand.end[e])
            seq = int(np.searchsorted(genome.offsets, p0, side="right") - 1)
            lo = max(int(genome.offsets[seq]), p0 - cfg.context)
            hi = min(int(genome.offsets[seq] + genome.lengths[seq]), p1 + cfg.context)
            out.append(ExampleSpec(f, rank, seq, int(cand.token[e]), p0, p1, lo, hi, float(cand.val[e])))
    return out


def examples_table(specs: list[ExampleSpec], genome, context_acts: list) -> dict:
    """examples.parquet columns; ``context_acts[i]`` is the feature's activation on each base of specs[i]'s window."""
    ex = {k: [] for k in ("feature", "rank", "seq", "start", "end", "activation", "context_start", "context",
                          "context_activation")}
    for s, val in zip(specs, context_acts):
        off = int(genome.offsets[s.seq])
        for key, v in (("feature", s.feature), ("rank", s.rank), ("seq", genome.names[s.seq]), ("start", s.p0 - off),
                       ("end", s.p1 - off), ("activation", s.activation), ("context_start", s.lo - off)):
            ex[key].append(v)
        ex["context"].append(_LETTERS[np.minimum(genome.codes[s.lo:s.hi], 4)].tobytes().decode())
        ex["context_activation"].append([round(float(v), 4) for v in val])
    return ex


def feature_logos(genome, cand: Candidates, logo_peaks: list, motifs, cfg, genome_kmers) -> FeatureLogos:
    """Logos (activation-weighted PFMs ending at the peaks), their best motif, and top k-mers."""
    F = cand.n_features
    logos, cons, cores = {}, [""] * F, [None] * F
    for f in range(F):
        pk = logo_peaks[f]
        if pk.size == 0:
            continue
        probs = to_probs(weighted_pfm(genome.codes, cand.end[pk] - 1, cand.val[pk], cfg.logo_left, cfg.logo_right))
        logos[f] = np.round(probs, 4).tolist()
        core, _ = trim(probs)
        cons[f] = consensus(core)
        cores[f] = core
    match_id, match_score, match_strand = [""] * F, np.zeros(F), np.zeros(F, np.int8)
    if motifs:
        matcher = MotifMatcher([m.probs for m in motifs])
        for f in range(F):
            if cores[f] is None or cores[f].shape[0] < 4:
                continue
            s, _, strand = matcher.scores(cores[f])
            j = int(np.argmax(s))
            match_id[f], match_score[f], match_strand[f] = motifs[j].id, s[j], strand[j]
    top, enr = top_kmers(genome, cand, logo_peaks, cfg, genome_kmers)
    return FeatureLogos(logos, cons, match_id, match_score, match_strand, top, enr)


def top_kmers(genome, cand: Candidates, logo_peaks: list, cfg, genome_kmers) -> tuple[list, np.ndarray]:
    """Per feature the k-mer most enriched in windows ending at its peaks (native counter).

    ``genome_kmers`` : (kmers sorted uint64, counts) of the whole genome.
    """
    from genesae_fast.kmers import count_kmers, unpack

    k = cfg.kmer_k
    F = cand.n_features
    top, enr = [""] * F, np.zeros(F)
    g_kmers, g_counts = genome_kmers
    g_total = max(float(np.sum(g_counts)), 1.0)
    for f in range(F):
        pk = logo_peaks[f]
        if pk.size < 3 or g_kmers.size == 0:
            continue
        ends = cand.end[pk]
        lo = np.maximum(ends - cfg.logo_left, 0)
        wins = [genome.codes[a:b] for a, b in zip(lo, np.minimum(ends + 2, genome.codes.shape[0]))]
        # the dense table is far faster than "auto" for a few hundred short windows
        km, cnt = count_kmers(wins, k, threads=1, method="dense" if k <= 13 else "auto")
        if km.size == 0:
            continue
        gi = np.minimum(np.searchsorted(g_kmers, km), g_kmers.shape[0] - 1)
        gfreq = np.where(g_kmers[gi] == km, g_counts[gi], 0).astype(np.float64)
        ratio = ((cnt + 0.5) / float(cnt.sum())) / ((gfreq + 0.5) / g_total)
        ratio[cnt < max(3, int(0.05 * pk.size))] = 0
        j = int(np.argmax(ratio))
        if ratio[j] > 0:
            top[f], enr[f] = unpack(int(km[j]), k), float(ratio[j])
    return top, enr
