"""Feature logos (activation-weighted PFMs around peaks) and TomTom-like motif matching.

The match score of a query matrix against a motif is the sum of Pearson correlations of
aligned columns, over the best offset and strand, divided by the shorter width: 1 means the
shorter matrix matches a stretch of the longer one column for column.
"""
from __future__ import annotations

import numpy as np

_IUPAC2 = {frozenset("AC"): "M", frozenset("AG"): "R", frozenset("AT"): "W",
           frozenset("CG"): "S", frozenset("CT"): "Y", frozenset("GT"): "K"}


def weighted_pfm(codes: np.ndarray, centers: np.ndarray, weights: np.ndarray, left: int, right: int) -> np.ndarray:
    """Activation-weighted base counts in windows ``[c - left, c + right]`` around centers.

    Parameters
    ----------
    codes : (G,) uint8 -- A=0 C=1 G=2 T=3, other 4 (ignored)
    centers : (P,) int -- global positions of the peaks
    weights : (P,) float -- each peak's weight (its activation)
    left, right : bases before / after the center

    Returns
    -------
    (left + right + 1, 4) float64 weighted counts (windows running off the genome are cut)
    """
    W = left + right + 1
    centers = np.asarray(centers, dtype=np.int64)
    weights = np.asarray(weights, dtype=np.float64)
    pos = centers[:, None] + np.arange(-left, right + 1)[None, :]
    ok = (pos >= 0) & (pos < codes.shape[0])
    base = np.where(ok, codes[np.clip(pos, 0, codes.shape[0] - 1)], 4)
    col = np.broadcast_to(np.arange(W), base.shape)
    w = np.broadcast_to(weights[:, None], base.shape)
    keep = base < 4
    out = np.zeros(W * 4)
    np.add.at(out, col[keep] * 4 + base[keep], w[keep])
    return out.reshape(W, 4)


def to_probs(pfm: np.ndarray, pseudo: float = 0.25) -> np.ndarray:
    """Counts -> probabilities with a pseudocount spread evenly (rows sum to 1)."""
    pfm = np.asarray(pfm, dtype=np.float64) + pseudo / 4
    return pfm / pfm.sum(axis=1, keepdims=True)


def information(probs: np.ndarray) -> np.ndarray:
    """Information content (bits) of each column, shape (W,)."""
    p = np.clip(probs, 1e-12, 1)
    return 2 + np.sum(p * np.log2(p), axis=1)


def trim(probs: np.ndarray, min_bits: float = 0.3) -> tuple[np.ndarray, int]:
    """Cut low-information columns off both ends; returns (probs, first kept column).

    An all-uninformative matrix keeps its single most informative column.
    """
    ic = information(probs)
    keep = np.flatnonzero(ic >= min_bits)
    if keep.size == 0:
        j = int(np.argmax(ic))
        return probs[j:j + 1], j
    return probs[keep[0]:keep[-1] + 1], int(keep[0])


def consensus(probs: np.ndarray) -> str:
    """IUPAC-style consensus: a base at >= 0.5, a two-base code at >= 0.75 together, else N."""
    out = []
    for row in np.asarray(probs):
        order = np.argsort(row)[::-1]
        if row[order[0]] >= 0.5:
            out.append("ACGT"[order[0]])
        elif row[order[0]] + row[order[1]] >= 0.75:
            out.append(_IUPAC2[frozenset("ACGT"[order[0]] + "ACGT"[order[1]])])
        else:
            out.append("N")
    return "".join(out)


def reverse_complement(probs: np.ndarray) -> np.ndarray:
    """The matrix of the other strand (columns reversed, A<->T, C<->G)."""
    return np.asarray(probs)[::-1, ::-1]


def _unit_columns(probs: np.ndarray) -> np.ndarray:
    """Columns centered and scaled to unit norm, so a dot product is a Pearson correlation."""
    c = probs - probs.mean(axis=-1, keepdims=True)
    n = np.linalg.norm(c, axis=-1, keepdims=True)
    return np.divide(c, n, out=np.zeros_like(c), where=n > 1e-9)


class MotifMatcher:
    """Scores query matrices against a fixed motif set on both strands.

    All motifs (and their reverse complements) are laid end to end in one 4-channel track,
    separated by zero columns, so the column-correlation sums at every offset of every
    motif are one cross-correlation of the query with that track.

    Parameters
    ----------
    motifs : list of (w_m, 4) probability matrices
    """

    def __init__(self, motifs: list[np.ndarray]):
        self.motifs = [np.asarray(m, dtype=np.float64) for m in motifs]
        self.widths = np.array([m.shape[0] for m in self.motifs], dtype=np.int64)
        self._pad = -1
        self._index: dict[int, tuple] = {}

    def _build(self, pad: int) -> None:
        """Lay out the track with ``pad`` zero columns around every motif."""
        mats = [_unit_columns(m) for m in self.motifs] + [_unit_columns(reverse_complement(m)) for m in self.motifs]
        widths = np.concatenate([self.widths, self.widths])
        starts = pad + np.concatenate([[0], np.cumsum(widths + pad)[:-1]]).astype(np.int64)
        track = np.zeros((int(starts[-1] + widths[-1] + pad) if len(mats) else pad, 4))
        for st, m in zip(starts, mats):
            track[st:st + m.shape[0]] = m
        self._track, self._starts, self._pad = np.ascontiguousarray(track.T), starts, pad  # channel-major
        self._index = {}

    def _offsets(self, wq: int) -> tuple:
        """Per query width: segment of each (motif, offset) cell, segment starts, offsets, track rows."""
        if wq not in self._index:
            widths = np.concatenate([self.widths, self.widths])
            n_off = widths + wq - 1  # offsets -(wq-1) .. w_m - 1
            seg = np.repeat(np.arange(widths.shape[0]), n_off)
            first = np.concatenate([[0], np.cumsum(n_off)[:-1]])
            off = np.arange(seg.shape[0]) - np.repeat(first, n_off) - (wq - 1)
            self._index[wq] = (seg, first, n_off, off, self._starts[seg] + off, np.minimum(wq, widths))
        return self._index[wq]

    def scores(self, query: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Best score of ``query`` (w_q, 4) against every motif.

        Returns
        -------
        score : (M,) float -- best summed column correlation / min(w_q, w_m), at least 0
        offset : (M,) int -- motif column aligned with query column 0 (may be negative)
        strand : (M,) int8 -- +1 motif as given, -1 its reverse complement
        """
        q = _unit_columns(np.asarray(query, dtype=np.float64))
        wq = q.shape[0]
        M = len(self.motifs)
        if M == 0:
            return np.zeros(0), np.zeros(0, np.int64), np.zeros(0, np.int8)
        if self._pad < wq - 1:
            self._build(max(wq - 1, 32))
        # r[p] = sum_i sum_c q[i, c] * track[p + i, c]
        r = sum(np.correlate(self._track[c], q[:, c], mode="valid") for c in range(4))
        seg, first, n_off, off, rows, denom = self._offsets(wq)
        vals = r[rows]
        best = np.maximum.reduceat(vals, first)
        # the position of each segment's maximum (first one on ties)
        hit = np.flatnonzero(vals == np.repeat(best, n_off))
        arg = np.full(2 * M, -1, dtype=np.int64)
        arg[seg[hit[::-1]]] = hit[::-1]  # reversed so the earliest index is written last
        best = best / denom
        b2 = best.reshape(2, M)
        strand_idx = np.argmax(b2, axis=0)  # ties -> the given strand
        pick = strand_idx * M + np.arange(M)
        # no overlap is impossible here; a negative best is clipped like the reference
        return (np.maximum(best[pick], 0.0), off[arg[pick]], np.where(strand_idx == 0, 1, -1).astype(np.int8))


def match_score_reference(query: np.ndarray, motif: np.ndarray) -> float:
    """Plain-loop version of :meth:`MotifMatcher.scores` for one motif (tests)."""
    best = -np.inf
    for target in (np.asarray(motif, float), reverse_complement(np.asarray(motif, float))):
        for o in range(-(query.shape[0] - 1), target.shape[0]):
            total = 0.0
            for i in range(query.shape[0]):
                j = i + o
                if 0 <= j < target.shape[0]:
                    a, b = query[i] - query[i].mean(), target[j] - target[j].mean()
                    na, nb = np.linalg.norm(a), np.linalg.norm(b)
                    total += 0.0 if na < 1e-9 or nb < 1e-9 else float(a @ b / (na * nb))
            best = max(best, total / min(query.shape[0], target.shape[0]))
    return max(best, 0.0)
