"""Concept matching in the style of InterPLM: precision per base, recall per hit, F1.

A *concept* is a set of hits (intervals on the genome: motif sites, start codons, genes ...).
A base is positive for the concept when it lies in one of its hits. A feature is *on* at a
base when its activation there exceeds a threshold, tried at several fractions of the
feature's maximum. Per feature, concept and threshold:

- precision = (bases on and positive) / (bases on)            -- counted per base
- recall    = (hits with the feature on at >= 1 base) / hits  -- counted per hit
- F1        = 2 P R / (P + R)

Everything is held out: the genome is cut into large blocks, alternately a *select* part
(index 0) and an *evaluate* part (index 1). The best threshold of each feature-concept pair
is chosen on the select part and its precision, recall and F1 reported on the evaluate part.

Activations are sparse (:class:`SparseActs`, CSR by token) so nothing of size tokens x
features is ever built; counting is vectorised over the entries that fall on a concept's
bases (``np.bincount``) and over (hit, feature) keys (one ``np.unique``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# (hit, feature) pairs up to which recall uses a dense table (bytes) instead of a sort
_DENSE_PAIRS = 1 << 26
# positive bases handled at once (bounds the temporaries of a concept as big as CDS)
_CHUNK_BASES = 1 << 18
# activation entries gathered at once (several 8-byte temporaries each): SAE codes have k
# entries a token but the neuron baseline tens, so a chunk's bases follow the entries per token
_CHUNK_ENTRIES = 1 << 21


def _chunk_bases(acts: "SparseActs") -> int:
    """Bases per chunk for ``acts``: ``_CHUNK_BASES``, fewer where tokens hold many entries."""
    per = float(acts.ptr[-1]) / max(acts.n_tokens, 1)
    return max(256, min(_CHUNK_BASES, int(_CHUNK_ENTRIES / max(per, 1.0))))

# Fractions of each feature's maximum: InterPLM's grid (and notes/sae-motif-calibration.md)
# plus .9 and .95. On the planted-motif benchmark every planted motif's best threshold was
# .8, the top of InterPLM's grid: motif features fire weakly on background words that share
# a site's core and strongly on sites, so precision kept rising above .8 (planted median
# held-out F1 .27 -> .54; benchmarks/RESULTS.md). Going finer (.7, .85, .98) changed nothing.
DEFAULT_FRACTIONS = (0.0, 0.15, 0.5, 0.6, 0.8, 0.9, 0.95)


@dataclass
class Hits:
    """Intervals of one concept in global genome coordinates (records concatenated).

    Attributes
    ----------
    start, end : numpy.ndarray, shape (H,), int64 -- 0-based half-open
    """

    start: np.ndarray
    end: np.ndarray

    def __post_init__(self) -> None:
        self.start = np.asarray(self.start, dtype=np.int64).reshape(-1)
        self.end = np.asarray(self.end, dtype=np.int64).reshape(-1)
        if self.start.shape != self.end.shape:
            raise ValueError("Hits: start and end differ in length")
        if np.any(self.end <= self.start):
            raise ValueError("Hits: every interval needs end > start")

    def __len__(self) -> int:
        return int(self.start.shape[0])


@dataclass
class SparseActs:
    """Activations of many features, CSR by token (only non-zero entries stored).

    Attributes
    ----------
    ptr : numpy.ndarray, shape (N+1,), int64 -- entries of token i are ptr[i]:ptr[i+1]
    feat : numpy.ndarray, shape (E,), int32  -- feature index of each entry
    val : numpy.ndarray, shape (E,), float32 -- activation (> 0)
    n_features : int
    """

    ptr: np.ndarray
    feat: np.ndarray
    val: np.ndarray
    n_features: int

    @property
    def n_tokens(self) -> int:
        return int(self.ptr.shape[0] - 1)

    @classmethod
    def from_topk(cls, vals: np.ndarray, idx: np.ndarray, n_features: int) -> "SparseActs":
        """Build from per-token top-k arrays ``vals, idx`` of shape (N, k); zeros are dropped."""
        vals = np.asarray(vals, dtype=np.float32)
        idx = np.asarray(idx)
        keep = vals > 0
        counts = keep.sum(axis=1)
        ptr = np.zeros(vals.shape[0] + 1, dtype=np.int64)
        np.cumsum(counts, out=ptr[1:])
        return cls(ptr, idx[keep].astype(np.int32), vals[keep], int(n_features))

    @classmethod
    def from_dense(cls, dense: np.ndarray, floor: np.ndarray | float = 0.0) -> "SparseActs":
        """Build from a dense (N, F) array keeping entries ``> floor`` (per feature or scalar)."""
        dense = np.asarray(dense, dtype=np.float32)
        keep = dense > np.asarray(floor, dtype=np.float32)
        rows, cols = np.nonzero(keep)
        ptr = np.zeros(dense.shape[0] + 1, dtype=np.int64)
        np.cumsum(keep.sum(axis=1), out=ptr[1:])
        return cls(ptr, cols.astype(np.int32), dense[rows, cols], int(dense.shape[1]))

    @staticmethod
    def concat(parts: list["SparseActs"]) -> "SparseActs":
        """Concatenate token-consecutive pieces."""
        if not parts:
            raise ValueError("SparseActs.concat: nothing to concatenate")
        ptrs, offset = [np.zeros(1, dtype=np.int64)], 0
        for p in parts:
            ptrs.append(p.ptr[1:] + offset)
            offset += int(p.ptr[-1])
        return SparseActs(
            np.concatenate(ptrs),
            np.concatenate([p.feat for p in parts]),
            np.concatenate([p.val for p in parts]),
            parts[0].n_features,
        )

    def feature_max(self) -> np.ndarray:
        """Largest activation of each feature, shape (F,), 0 where it never fires."""
        out = np.zeros(self.n_features, dtype=np.float32)
        np.maximum.at(out, self.feat, self.val)
        return out

    def dense(self) -> np.ndarray:
        """The (N, F) dense array (tests and small inputs only)."""
        out = np.zeros((self.n_tokens, self.n_features), dtype=np.float32)
        rows = np.repeat(np.arange(self.n_tokens), np.diff(self.ptr))
        out[rows, self.feat] = self.val
        return out


@dataclass
class Layout:
    """Maps genome bases to tokens and to the select/evaluate parts.

    Attributes
    ----------
    pos_token : numpy.ndarray, shape (G,), int64 -- token covering each base, -1 if none
    tok_start, tok_end : numpy.ndarray, shape (N,), int64 -- global bp span of each token
    block : int -- block size in bp of the select/evaluate split
    origin : int -- global coordinate of ``pos_token[0]`` (a window of the genome when > 0)
    """

    pos_token: np.ndarray
    tok_start: np.ndarray
    tok_end: np.ndarray
    block: int
    origin: int = 0

    @property
    def genome_length(self) -> int:
        return int(self.pos_token.shape[0])

    def part(self, pos: np.ndarray) -> np.ndarray:
        """0 (select) or 1 (evaluate) for positions ``pos`` of ``pos_token`` (global - origin)."""
        return (((np.asarray(pos, dtype=np.int64) + self.origin) // self.block) % 2).astype(np.int64)


def default_block(genome_length: int) -> int:
    """Block size of the held-out split: about ten blocks, at least 1 kbp, at most 200 kbp."""
    return int(min(200_000, max(1_000, genome_length // 10)))


def make_layout(tok_start: np.ndarray, tok_end: np.ndarray, genome_length: int, block: int | None = None) -> Layout:
    """Build the base -> token map from tokens' global spans (later tokens win overlaps)."""
    tok_start = np.asarray(tok_start, dtype=np.int64)
    tok_end = np.asarray(tok_end, dtype=np.int64)
    pos_token = np.full(int(genome_length), -1, dtype=np.int64)
    lengths = tok_end - tok_start
    if np.all(lengths == 1):
        pos_token[tok_start] = np.arange(tok_start.shape[0])
    else:
        bases = _expand(tok_start, tok_end)
        pos_token[bases] = np.repeat(np.arange(tok_start.shape[0]), lengths)
    return Layout(pos_token, tok_start, tok_end, int(block or default_block(genome_length)))


def _expand(start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """All positions of intervals, concatenated: shape (sum(end - start),)."""
    lengths = (end - start).astype(np.int64)
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    offsets = np.repeat(start - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
    return np.arange(total, dtype=np.int64) + offsets


def _gather(acts: SparseActs, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Entry indices of ``tokens`` and, for each entry, which input it came from."""
    starts = acts.ptr[tokens]
    counts = acts.ptr[tokens + 1] - starts
    owner = np.repeat(np.arange(tokens.shape[0]), counts)
    total = int(counts.sum())
    offsets = np.repeat(starts - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts)
    return np.arange(total, dtype=np.int64) + offsets, owner


def thresholds(fmax: np.ndarray, fractions=DEFAULT_FRACTIONS) -> np.ndarray:
    """Per-feature thresholds, shape (F, T): ``fractions x max`` (ascending)."""
    return np.asarray(fmax, dtype=np.float32)[:, None] * np.asarray(sorted(fractions), dtype=np.float32)[None, :]


def _levels(val: np.ndarray, feat: np.ndarray, thr: np.ndarray) -> np.ndarray:
    """Number of thresholds each entry exceeds (0..T): on at threshold t iff level > t."""
    out = np.zeros(val.shape[0], dtype=np.int8)
    for t in range(thr.shape[1]):  # T small passes beat one (E, T) temporary
        out += val > thr[feat, t]
    return out


def entry_levels(acts: SparseActs, thr: np.ndarray) -> np.ndarray:
    """Levels of every entry of ``acts`` (computed once, shared by all concepts)."""
    return _levels(acts.val, acts.feat, thr)


def _sorted_unique(x: np.ndarray) -> np.ndarray:
    """np.unique for int arrays via one sort (numpy's hash-based unique is slower here)."""
    if x.size == 0:
        return x
    x = np.sort(x, kind="stable" if x.size < 64 else None)
    keep = np.empty(x.shape[0], dtype=bool)
    keep[0] = True
    np.not_equal(x[1:], x[:-1], out=keep[1:])
    return x[keep]


def _above(counts_by_level: np.ndarray) -> np.ndarray:
    """[..., T+1] histogram of levels -> [..., T] counts of level > t."""
    rev = np.cumsum(counts_by_level[..., ::-1], axis=-1)[..., ::-1]
    return rev[..., 1:]


def on_counts(acts: SparseActs, layout: Layout, thr: np.ndarray, chunk_tokens: int = 1 << 18) -> np.ndarray:
    """Bases where each feature is on, per part and threshold: shape (F, 2, T), int64.

    Tokens are taken ``chunk_tokens`` at a time so the per-entry temporaries stay small.
    """
    F, T = thr.shape
    hist = np.zeros(F * 2 * (T + 1), dtype=np.float64)
    for a in range(0, acts.n_tokens, chunk_tokens):
        b = min(a + chunk_tokens, acts.n_tokens)
        e0, e1 = int(acts.ptr[a]), int(acts.ptr[b])
        tok = a + np.repeat(np.arange(b - a), np.diff(acts.ptr[a:b + 1]))
        weight = (layout.tok_end - layout.tok_start)[tok]
        part = layout.part(layout.tok_start[tok])
        lev = _levels(acts.val[e0:e1], acts.feat[e0:e1], thr)
        key = (acts.feat[e0:e1].astype(np.int64) * 2 + part) * (T + 1) + lev
        hist += np.bincount(key, weights=weight, minlength=F * 2 * (T + 1))
    return _above(hist.reshape(F, 2, T + 1)).astype(np.int64)


@dataclass
class ConceptCounts:
    """Raw counts of one concept against every feature.

    Attributes
    ----------
    tp : (F, 2, T) int64 -- bases on and positive, per part
    found : (F, 2, T) int64 -- hits with the feature on at >= 1 base, per part
    n_hits : (2,) int64 -- hits per part (a hit belongs to the part of its first base)
    n_pos : (2,) int64 -- positive bases per part
    """

    tp: np.ndarray
    found: np.ndarray
    n_hits: np.ndarray
    n_pos: np.ndarray


def concept_counts(acts: SparseActs, layout: Layout, thr: np.ndarray, hits: Hits,
                   levels: np.ndarray | None = None) -> ConceptCounts:
    """Count one concept's true-positive bases and found hits for every feature and threshold.

    Parameters
    ----------
    acts : SparseActs with N tokens and F features
    layout : Layout of the same tokens
    thr : (F, T) thresholds, ascending along T
    hits : the concept's intervals (may overlap)
    levels : (E,) :func:`entry_levels` of ``acts`` for ``thr`` (computed here when None)
    """
    if levels is None:
        levels = entry_levels(acts, thr)
    G = layout.genome_length
    start = np.clip(hits.start, 0, G)
    end = np.clip(hits.end, 0, G)
    ok = end > start
    start, end = start[ok], end[ok]
    n_hits = np.bincount(layout.part(start), minlength=2)[:2].astype(np.int64)
    tp_hist, n_pos = tp_levels(acts, layout, levels, thr.shape[1], start, end)
    found_hist = found_levels(acts, layout, levels, thr.shape[1], start, end)
    return ConceptCounts(_above(tp_hist).astype(np.int64), _above(found_hist).astype(np.int64), n_hits, n_pos)


def tp_levels(acts: SparseActs, layout: Layout, levels: np.ndarray, T: int, start: np.ndarray,
              end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positive bases (each once) by feature, part and entry level.

    Returns
    -------
    hist : (F, 2, T+1) int64 -- positive bases whose token has the feature at each level
    n_pos : (2,) int64 -- positive bases per part
    """
    F = acts.n_features
    pos = _sorted_unique(_expand(start, end))
    n_pos = np.bincount(layout.part(pos), minlength=2)[:2].astype(np.int64)
    nbins = F * 2 * (T + 1)
    hist = np.zeros(nbins, dtype=np.int64)
    for a in range(0, pos.shape[0], _CHUNK_BASES):  # chunks bound the per-entry temporaries
        p = pos[a:a + _CHUNK_BASES]
        tok = layout.pos_token[p]
        has = tok >= 0
        entries, owner = _gather(acts, tok[has])
        part = layout.part(p[has])[owner]
        key = (acts.feat[entries].astype(np.int64) * 2 + part) * (T + 1) + levels[entries]
        hist += np.bincount(key, minlength=nbins)
    return hist.reshape(F, 2, T + 1), n_pos


def found_levels(acts: SparseActs, layout: Layout, levels: np.ndarray, T: int, start: np.ndarray,
                 end: np.ndarray) -> np.ndarray:
    """Hits by feature, part (of the hit's first base) and the top level reached inside.

    Returns (F, 2, T+1) int64 (level 0: the feature never on inside the hit, not filled).
    """
    F, H = acts.n_features, start.shape[0]
    if H and np.all(end - start == 1) and _sorted_unique(start).shape[0] == H:
        # 1-bp hits at distinct bases (codon positions): a hit is found iff its base is on
        return tp_levels(acts, layout, levels, T, start, end)[0]
    hit_part = layout.part(start)
    nbins = F * 2 * (T + 1)
    dense = H * F <= _DENSE_PAIRS
    top_all = np.zeros(H * F if dense else 0, dtype=np.int8)
    found_hist = np.zeros(nbins, dtype=np.int64)
    for h0, h1 in _hit_groups(start, end):
        key, lev = _hit_feature_levels(acts, layout, levels, start, end, h0, h1)
        if dense:
            # a dense (hit, feature) table of top levels, raised level by level
            for level in range(1, T + 1):
                idx = key[lev >= level]
                top_all[idx] = np.maximum(top_all[idx], level)
            continue
        combo = _sorted_unique(key * (T + 1) + lev)
        pair = combo // (T + 1)
        last = np.ones(combo.shape[0], dtype=bool)
        last[:-1] = pair[1:] != pair[:-1]  # sorted: the last entry of a pair has its top level
        pair, top = pair[last], combo[last] % (T + 1)
        found_hist += np.bincount(((pair % F) * 2 + hit_part[pair // F]) * (T + 1) + top, minlength=nbins)
    if dense:
        pair = np.flatnonzero(top_all)
        top = top_all[pair].astype(np.int64)
        found_hist += np.bincount(((pair % F) * 2 + hit_part[pair // F]) * (T + 1) + top, minlength=nbins)
    return found_hist.reshape(F, 2, T + 1)


def _hit_groups(start: np.ndarray, end: np.ndarray, chunk: int = _CHUNK_BASES):
    """Groups of whole hits of about ``chunk`` bases: a (hit, feature) pair never spans two."""
    H = start.shape[0]
    if H == 0:
        return []
    ends = np.cumsum(end - start)
    cuts = np.searchsorted(ends, np.arange(chunk, int(ends[-1]), chunk), side="left")
    bounds = np.unique(np.concatenate([[0], cuts + 1, [H]]))
    return list(zip(bounds[:-1], bounds[1:]))


def _hit_feature_levels(acts, layout, levels, start, end, h0, h1):
    """(hit * F + feature) keys and levels of the live entries on hits ``h0:h1``."""
    F = acts.n_features
    hs, he = start[h0:h1], end[h0:h1]
    pos_g = _expand(hs, he)
    hit_id = h0 + np.repeat(np.arange(h1 - h0, dtype=np.int64), he - hs)
    tok = layout.pos_token[pos_g]
    has = tok >= 0
    entries, owner = _gather(acts, tok[has])
    lev = levels[entries]
    live = lev > 0
    key = hit_id[has][owner][live] * F + acts.feat[entries][live].astype(np.int64)
    return key, lev[live]


def prf(tp, on, found, n_hits):
    """Precision, recall, F1 (0 where undefined); arrays broadcast."""
    tp = np.asarray(tp, dtype=np.float64)
    on = np.asarray(on, dtype=np.float64)
    found = np.asarray(found, dtype=np.float64)
    n_hits = np.asarray(n_hits, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where(on > 0, tp / on, 0.0)
        r = np.where(n_hits > 0, found / n_hits, 0.0)
        f = np.where(p + r > 0, 2 * p * r / (p + r), 0.0)
    return p, r, f


@dataclass
class HeldOut:
    """Held-out scores of one concept against every feature, each of shape (F,).

    ``threshold`` indexes the fraction grid (chosen on the select part); ``f1_select`` is
    the F1 there; ``precision``, ``recall``, ``f1`` are measured on the evaluate part.
    """

    threshold: np.ndarray
    f1_select: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray


def held_out(counts: ConceptCounts, on: np.ndarray) -> HeldOut:
    """Choose each feature's threshold on part 0 and score it on part 1."""
    p, r, f = prf(counts.tp, on, counts.found, counts.n_hits[None, :, None])
    best = np.argmax(f[:, 0, :], axis=1)  # ties -> the lowest threshold
    rows = np.arange(f.shape[0])
    return HeldOut(best, f[rows, 0, best], p[rows, 1, best], r[rows, 1, best], f[rows, 1, best])


def empirical_pvalues(observed: np.ndarray, null: np.ndarray) -> np.ndarray:
    """One-sided empirical p-values ``(1 + #{null >= x}) / (1 + n_null)``."""
    null = np.sort(np.asarray(null, dtype=np.float64).reshape(-1))
    observed = np.asarray(observed, dtype=np.float64)
    n_ge = null.shape[0] - np.searchsorted(null, observed, side="left")
    return (1.0 + n_ge) / (1.0 + null.shape[0])


def bh_qvalues(pvalues: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg q-values (monotone, capped at 1), same shape as ``pvalues``."""
    p = np.asarray(pvalues, dtype=np.float64)
    flat = p.reshape(-1)
    m = flat.shape[0]
    if m == 0:
        return p.copy()
    order = np.argsort(flat, kind="stable")
    ranked = flat[order] * m / np.arange(1, m + 1)
    q = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(q, 1.0)
    return out.reshape(p.shape)


def tail_pvalues(observed: np.ndarray, null: np.ndarray, n_tail: int = 100, min_exceed: int = 10) -> np.ndarray:
    """Empirical p-values, with a generalised Pareto tail where the null is too thin.

    A pooled null of n values cannot give p below 1/(n+1), which is too coarse for
    Benjamini-Hochberg over as many tests as null values. Following Knijnenburg et al.
    (2009, "Fewer permutations, more accurate P-values"), where fewer than ``min_exceed``
    null values reach x, the excesses of the top ``n_tail`` null values over the next one
    (u) are fitted by a generalised Pareto distribution (method of moments; a shape below 0
    is raised to 0, the exponential, which only makes p larger) and
    p(x) = n_tail / n * (1 + xi (x - u) / sigma) ** (-1 / xi). Elsewhere, and when the tail is
    degenerate (all top values tied), the plain empirical p-value is used.
    """
    null = np.sort(np.asarray(null, dtype=np.float64).reshape(-1))
    obs = np.asarray(observed, dtype=np.float64)
    p = empirical_pvalues(obs, null)
    n = null.shape[0]
    if n < 2 * n_tail + 1:
        return p
    u = null[n - n_tail - 1]
    exc = null[n - n_tail:] - u
    mean, var = float(exc.mean()), float(exc.var())
    if mean <= 0 or var <= 0:
        return p
    xi = max(0.0, 0.5 * (1.0 - mean * mean / var))
    sigma = 0.5 * mean * (mean * mean / var + 1.0) if xi > 0 else mean
    z = np.maximum(obs - u, 0.0)
    if xi > 0:
        p_tail = (n_tail / n) * (1.0 + xi * z / sigma) ** (-1.0 / xi)
    else:
        p_tail = (n_tail / n) * np.exp(-z / sigma)
    n_ge = n - np.searchsorted(null, obs, side="left")
    return np.where((obs > u) & (n_ge < min_exceed), p_tail, p)


def _tagged_expand(start: np.ndarray, end: np.ndarray, tag: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of many intervals and the tag (concept or hit id) of each: two (sum(len),) arrays."""
    return _expand(start, end), np.repeat(tag, end - start)


def multi_tp_levels(acts: SparseActs, layout: Layout, levels: np.ndarray, T: int, start: np.ndarray,
                    end: np.ndarray, cid: np.ndarray, n_concepts: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`tp_levels` of many concepts at once (hit i belongs to concept ``cid[i]``).

    Returns (C, F, 2, T+1) int64 histograms and (C, 2) positive bases per part.
    """
    F, L = acts.n_features, max(layout.genome_length, 1)
    pos, tag = _tagged_expand(start, end, cid)
    key = _sorted_unique(tag * L + pos)  # each positive base once per concept
    tag, pos = key // L, key % L
    part = layout.part(pos)
    n_pos = np.bincount(tag * 2 + part, minlength=n_concepts * 2).reshape(n_concepts, 2).astype(np.int64)
    nbins = n_concepts * F * 2 * (T + 1)
    hist = np.zeros(nbins, np.int64)
    step = _chunk_bases(acts)
    for a in range(0, pos.shape[0], step):
        p, t, pt = pos[a:a + step], tag[a:a + step], part[a:a + step]
        tok = layout.pos_token[p]
        has = np.flatnonzero(tok >= 0)
        entries, owner = _gather(acts, tok[has])
        k = ((t[has][owner] * F + acts.feat[entries]) * 2 + pt[has][owner]) * (T + 1) + levels[entries]
        hist += np.bincount(k, minlength=nbins)
    return hist.reshape(n_concepts, F, 2, T + 1), n_pos


def multi_found_levels(acts: SparseActs, layout: Layout, levels: np.ndarray, T: int, start: np.ndarray,
                       end: np.ndarray, cid: np.ndarray, n_concepts: int) -> np.ndarray:
    """:func:`found_levels` of many concepts at once: (C, F, 2, T+1) int64."""
    F, H = acts.n_features, start.shape[0]
    nbins = n_concepts * F * 2 * (T + 1)
    found = np.zeros(nbins, np.int64)
    hit_base = (cid * F * 2 + layout.part(start)) if H else np.zeros(0, np.int64)  # (concept, part) of each hit
    dense = H * F <= _DENSE_PAIRS
    top_all = np.zeros(H * F if dense else 0, dtype=np.int8)
    for h0, h1 in _hit_groups(start, end, _chunk_bases(acts)):
        key, lev = _hit_feature_levels(acts, layout, levels, start, end, h0, h1)
        if dense:  # a (hit, feature) table of top levels, raised level by level
            for level in range(1, T + 1):
                top_all[key[lev >= level]] = level
            continue
        combo = _sorted_unique(key * (T + 1) + lev)
        pair = combo // (T + 1)
        last = np.ones(combo.shape[0], dtype=bool)
        last[:-1] = pair[1:] != pair[:-1]  # sorted: the last entry of a pair has its top level
        pair, top = pair[last], combo[last] % (T + 1)
        found += np.bincount((hit_base[pair // F] + (pair % F) * 2) * (T + 1) + top, minlength=nbins)
    if dense:
        pair = np.flatnonzero(top_all)
        top = top_all[pair].astype(np.int64)
        found += np.bincount((hit_base[pair // F] + (pair % F) * 2) * (T + 1) + top, minlength=nbins)
    return found.reshape(n_concepts, F, 2, T + 1)
