"""Fixed-size accumulators of the streamed annotation, each with an exact ``merge``.

Integer counts are summed (order-free); maxima are maxima; float sums are kept per block
and added in block order by :meth:`Moments.float_totals`, so results do not depend on how
blocks were spread over workers or ranks. Sizes depend on features, concepts and
thresholds, never on the genome length.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from genesae_fast.annotate.peaks import Candidates

# activations are binned by their float32 bit pattern >> 19 (sign, exponent, 4 mantissa
# bits): monotone for positive values, so a per-feature rank cut-off is found from counts
VALUE_BIN_SHIFT = 19
VALUE_BINS = 1 << (31 - VALUE_BIN_SHIFT)


def value_bins(val: np.ndarray) -> np.ndarray:
    """Monotone bins of positive float32 activations, shape like ``val``, in [0, VALUE_BINS)."""
    return (np.ascontiguousarray(val, np.float32).view(np.uint32) >> VALUE_BIN_SHIFT).astype(np.int64)


def add_counts(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a + b`` of non-negative counts, in place when ``a``'s dtype holds the sum: int32 while
    every sum fits (half the memory of the big concept tallies), else int64 from then on."""
    if a.dtype == np.int64:
        a += b
        return a
    if (a.dtype == np.int32 and b.dtype == np.int32
            and (a.size == 0 or int(a.max()) + int(b.max()) <= np.iinfo(np.int32).max)):
        a += b
        return a
    return a.astype(np.int64) + b


def narrow(a: np.ndarray) -> np.ndarray:
    """A block's counts as int32 (half the bytes between processes); int64 if they do not fit."""
    if a.dtype == np.int32 or (a.size and (a.max() > np.iinfo(np.int32).max or a.min() < 0)):
        return a
    return a.astype(np.int32)


def merge_kmers(a: tuple, b: tuple) -> tuple:
    """Sum two (sorted k-mers uint64, counts) tables."""
    km = np.concatenate([a[0], b[0]]).astype(np.uint64)
    cnt = np.concatenate([a[1], b[1]]).astype(np.int64)
    uniq, inv = np.unique(km, return_inverse=True)
    out = np.zeros(uniq.shape[0], np.int64)
    np.add.at(out, inv.reshape(-1), cnt)
    return uniq, out


@dataclass
class Moments:
    """Pass 1: per-feature counts, maxima, value bins; neuron maxima; k-mers; float partials.

    ``partials[b]`` = [sse, sst, sum of activation of each feature...] of block b (float64).
    """

    n_tokens: int
    nnz: int
    n_active: np.ndarray  # (F,) int64
    fmax: np.ndarray  # (F,) float32
    vbins: np.ndarray  # (F, VALUE_BINS) int64
    dmax: np.ndarray  # (2d,) float32, max of the centered rows and of their negation
    kmers: tuple  # (sorted uint64 k-mers, int64 counts)
    partials: dict = field(default_factory=dict)

    @classmethod
    def empty(cls, F: int, d: int) -> "Moments":
        return cls(0, 0, np.zeros(F, np.int64), np.zeros(F, np.float32), np.zeros((F, VALUE_BINS), np.int64),
                   np.full(2 * d, -np.inf, np.float32), (np.zeros(0, np.uint64), np.zeros(0, np.int64)))

    def merge(self, o: "Moments") -> "Moments":
        if set(self.partials) & set(o.partials):
            raise ValueError("Moments.merge: a block was counted twice")
        return Moments(self.n_tokens + o.n_tokens, self.nnz + o.nnz, self.n_active + o.n_active,
                       np.maximum(self.fmax, o.fmax), add_counts(self.vbins, o.vbins), np.maximum(self.dmax, o.dmax),
                       merge_kmers(self.kmers, o.kmers), {**self.partials, **o.partials})

    def float_totals(self) -> np.ndarray:
        """Block partials summed in block order: [sse, sst, sums (F,)]."""
        total = np.zeros(2 + self.n_active.shape[0])
        for b in sorted(self.partials):
            total += self.partials[b]
        return total

    def cutoff_bins(self, keep: int) -> np.ndarray:
        """Per feature the lowest value bin that still holds one of its ``keep`` highest entries."""
        above = np.cumsum(self.vbins[:, ::-1], axis=1)[:, ::-1]  # entries in bins >= b
        ok = above >= keep
        # the highest bin b with at least ``keep`` entries at or above it (0 if fewer in all)
        last = VALUE_BINS - 1 - np.argmax(ok[:, ::-1], axis=1)
        return np.where(ok.any(axis=1), last, 0).astype(np.int64)


@dataclass
class Tally:
    """Counts of many concepts against every feature: (C, F, 2, T) at or above each threshold.

    tp: positive bases on; found: hits with the feature on at >= 1 base; n_hits, n_pos (C, 2).
    """

    tp: np.ndarray
    found: np.ndarray
    n_hits: np.ndarray
    n_pos: np.ndarray

    @classmethod
    def empty(cls, n_concepts: int, F: int, T: int) -> "Tally":
        return cls(np.zeros((n_concepts, F, 2, T), np.int64), np.zeros((n_concepts, F, 2, T), np.int64),
                   np.zeros((n_concepts, 2), np.int64), np.zeros((n_concepts, 2), np.int64))

    def merge(self, o: "Tally") -> "Tally":
        """Sum (reuses this tally's int64 arrays: merge into an accumulator, not into a shared value)."""
        return Tally(add_counts(self.tp, o.tp), add_counts(self.found, o.found), self.n_hits + o.n_hits,
                     self.n_pos + o.n_pos)

    def narrow(self) -> "Tally":
        return Tally(narrow(self.tp), narrow(self.found), self.n_hits, self.n_pos)


@dataclass
class Pass2:
    """Pass 2: bases on, value histograms, concept tallies, neuron tallies, peak candidates."""

    on: np.ndarray  # (F, 2, T)
    hist: np.ndarray  # (F, 20)
    motif: Tally | None
    gene: Tally | None
    neuron: Tally | None
    neuron_on: np.ndarray  # (2d, 2, Tn)
    neuron_active: np.ndarray  # (2d,) entries above the neuron floor
    cand: Candidates
    keep: int

    def merge(self, o: "Pass2") -> "Pass2":
        def add(a, b):
            return None if a is None else a.merge(b)

        return Pass2(self.on + o.on, self.hist + o.hist, add(self.motif, o.motif), add(self.gene, o.gene),
                     add(self.neuron, o.neuron), self.neuron_on + o.neuron_on, self.neuron_active + o.neuron_active,
                     self.cand.merge(o.cand, self.keep), self.keep)


@dataclass
class Pass3:
    """Pass 3: the example windows' activations, by example index."""

    contexts: dict = field(default_factory=dict)

    def merge(self, o: "Pass3") -> "Pass3":
        return Pass3({**self.contexts, **o.contexts})
