"""Concept hits by genome window, for the streamed annotation.

A *source* gives the hits of one concept whose first base lies in a window ``[lo, hi)``
(global coordinates), without building the concept genome-wide: gene-structure concepts
are kept as their gene calls (O(genes)), codon positions are generated per window, and the
shifted controls map a window back to the unshifted one. The hits are the same, hit for
hit, as :func:`genesae_fast.annotate.genes.gene_concepts` and the in-memory controls.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from genesae_fast.annotate.concepts import _expand

GENE_ORDER = ("CDS", "start codon", "stop codon", "RBS", "codon pos 1", "codon pos 2", "codon pos 3")


@dataclass
class IntervalSource:
    """A concept given as intervals sorted by start (global, half-open)."""

    start: np.ndarray
    end: np.ndarray

    def __post_init__(self):
        order = np.argsort(self.start, kind="stable")
        self.start = np.asarray(self.start, np.int64)[order]
        self.end = np.asarray(self.end, np.int64)[order]
        self.maxlen = int((self.end - self.start).max()) if self.start.size else 1

    def starting(self, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        """Hits with ``lo <= start < hi``."""
        a, b = np.searchsorted(self.start, [lo, hi], side="left")
        return self.start[a:b], self.end[a:b]


@dataclass
class CodonSource:
    """Codon position ``phase`` (1..3) of every CDS on one strand: one 1-bp hit per base.

    The phase is counted from the CDS's 3' end, which is in frame even for 5'-partial genes.
    """

    cds: IntervalSource
    strand: int
    phase: int
    maxlen: int = 1

    def starting(self, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        s, e = self.cds.starting(max(lo - self.cds.maxlen, 0), hi)
        keep = e > lo
        s, e = s[keep], e[keep]
        a, b = np.maximum(s, lo), np.minimum(e, hi)
        ok = b > a
        s, e, a, b = s[ok], e[ok], a[ok], b[ok]
        pos = _expand(a, b)
        owner_s = np.repeat(s, b - a)
        owner_e = np.repeat(e, b - a)
        cp = 3 - ((owner_e - 1 - pos) % 3) if self.strand > 0 else 3 - ((pos - owner_s) % 3)
        p = pos[cp == self.phase]
        return p, p + 1


@dataclass
class ShiftedSource:
    """A concept circularly shifted by ``shift`` along a genome of ``G`` bases; hits that
    would wrap over the end are dropped (as the in-memory control does)."""

    base: object
    shift: int
    G: int

    @property
    def maxlen(self) -> int:
        return self.base.maxlen

    def starting(self, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        if hi <= lo:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        a = (lo - self.shift) % self.G
        pieces = [(a, min(a + hi - lo, self.G))]
        if a + hi - lo > self.G:
            pieces.append((0, a + hi - lo - self.G))
        starts, ends = [], []
        for p0, p1 in pieces:
            s, e = self.base.starting(p0, p1)
            s2 = (s + self.shift) % self.G
            e2 = s2 + (e - s)
            keep = e2 <= self.G
            starts.append(s2[keep])
            ends.append(e2[keep])
        return np.concatenate(starts), np.concatenate(ends)


def overlapping(source, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    """Hits of ``source`` that overlap ``[lo, hi)``, cut to it (the window's positive bases)."""
    s, e = source.starting(max(lo - source.maxlen + 1, 0), hi)
    keep = e > lo
    return np.maximum(s[keep], lo), np.minimum(e[keep], hi)


def _intergenic(calls, offsets, lengths) -> tuple[np.ndarray, np.ndarray]:
    """Runs of each record covered by no gene (global coordinates)."""
    starts, ends = [], []
    by_seq: dict[int, list] = {}
    for g in calls:
        by_seq.setdefault(g.seq, []).append((g.start, g.end))
    for r, n in enumerate(lengths):
        iv = sorted(by_seq.get(r, []))
        cursor = 0
        for s, e in iv:
            if s > cursor:
                starts.append(cursor + offsets[r])
                ends.append(s + offsets[r])
            cursor = max(cursor, e)
        if cursor < n:
            starts.append(cursor + offsets[r])
            ends.append(int(n) + offsets[r])
    return np.asarray(starts, np.int64), np.asarray(ends, np.int64)


def gene_sources(calls, offsets: np.ndarray, lengths: np.ndarray) -> dict:
    """Sources of the gene-structure concepts, names and order as ``gene_concepts``."""
    acc: dict[str, list] = {}
    for g in calls:
        off = int(offsets[g.seq])
        sg = "+" if g.strand > 0 else "-"
        s, e = g.start + off, g.end + off
        acc.setdefault(f"CDS({sg})", []).append((s, e))
        if g.has_start:
            acc.setdefault(f"start codon({sg})", []).append((s, s + 3) if g.strand > 0 else (e - 3, e))
        if g.has_stop:
            acc.setdefault(f"stop codon({sg})", []).append((e - 3, e) if g.strand > 0 else (s, s + 3))
        if g.rbs is not None:
            acc.setdefault(f"RBS({sg})", []).append((g.rbs[0] + off, g.rbs[1] + off))
    out = {}
    for name in [f"{o}({sg})" for o in GENE_ORDER for sg in "+-"]:
        if name.startswith("codon pos"):
            cds = acc.get(f"CDS({name[-2]})")
            if cds:
                out[name] = CodonSource(_source(cds), 1 if name[-2] == "+" else -1, int(name[10]))
        elif name in acc:
            out[name] = _source(acc[name])
    s, e = _intergenic(calls, offsets, lengths)
    if s.size:
        out["intergenic"] = IntervalSource(s, e)
    return out


def _source(pairs: list) -> IntervalSource:
    arr = np.asarray(pairs, np.int64).reshape(-1, 2)
    return IntervalSource(arr[:, 0], arr[:, 1])
