"""Which JASPAR motifs a planted-motif control plants, and which unrelated decoys it tests.

A control is only fair when the planted motifs are informative and unlike each other, and
when every decoy is unlike every planted motif: a paralog's matrix scores almost as well as
the planted one (notes/sae-motif-calibration.md). Similarity is the annotation's own
TomTom-like score (:class:`genesae_fast.annotate.logos.MotifMatcher`, both strands, 1 = a
column-for-column match).
"""
from __future__ import annotations

import numpy as np

from genesae_fast.errors import InputError

# Well-studied vertebrate TFs with informative, mutually dissimilar matrices in the bundled
# JASPAR 2024 set (the first matrix of each name). CTCF and SP1 share a GC-rich stretch
# (similarity .63); every other pair is below .5. HNF4A is the most dissimilar sixth (<= .35).
DEFAULT_PLANTED = ("CTCF", "SP1", "MEF2A", "CREB1", "FOS::JUN", "HNF4A")
MAX_DECOY_SIMILARITY = 0.5
MIN_DECOY_WIDTH = 8


def similarity(a: np.ndarray, others: list) -> np.ndarray:
    """Similarity of matrix ``a`` (w, 4) to each matrix of ``others``, shape (len(others),)."""
    from genesae_fast.annotate.logos import MotifMatcher

    if not others:
        return np.zeros(0)
    return MotifMatcher([np.asarray(o, np.float64) for o in others]).scores(np.asarray(a, np.float64))[0]


def mean_information(probs: np.ndarray) -> float:
    """Mean information content (bits per column) of a probability matrix (w, 4)."""
    from genesae_fast.annotate.logos import information

    return float(information(np.asarray(probs, np.float64)).mean())


def choose_planted(motifs: list, names=DEFAULT_PLANTED, *, n: int | None = None, min_bits: float = 1.2,
                   max_similarity: float = 0.5) -> list:
    """The motifs to plant.

    Parameters
    ----------
    motifs : list of Motif (e.g. ``load_motifs()``)
    names : TF names (``Motif.alt_id``) or matrix IDs, taken in order, the first matrix of each
        name; None: chosen greedily in file order (widths 8-16, mean information >= ``min_bits``,
        similarity < ``max_similarity`` to every motif already chosen)
    n : how many (default: all of ``names``; required when ``names`` is None)

    Raises
    ------
    InputError
        A name that is not in the motif set, or too few motifs qualify.
    """
    if names is not None:
        chosen = [_by_name(motifs, name) for name in names]
        return chosen[: n if n is not None else len(chosen)]
    if n is None or n < 1:
        raise InputError("choose_planted: give names or a number of motifs n >= 1")
    chosen: list = []
    for m in motifs:
        if 8 <= m.width <= 16 and mean_information(m.probs) >= min_bits and \
                np.all(similarity(m.probs, [c.probs for c in chosen]) < max_similarity):
            chosen.append(m)
            if len(chosen) == n:
                return chosen
    raise InputError(f"--planted: only {len(chosen)} of {n} motifs are informative and mutually dissimilar")


def _by_name(motifs: list, name: str):
    for m in motifs:
        if name in (m.alt_id, m.id):
            return m
    raise InputError(f"--planted {name}: no motif with that name or ID in the motif set")


def choose_decoys(motifs: list, planted: list, n: int, *, seed: int = 0,
                  max_similarity: float = MAX_DECOY_SIMILARITY, min_width: int = MIN_DECOY_WIDTH) -> list:
    """``n`` decoy motifs unrelated to every planted one, in a seeded random order.

    A decoy is at least ``min_width`` wide, shares no TF name with a planted motif, and scores
    below ``max_similarity`` against every planted matrix on both strands.

    Raises
    ------
    InputError
        Fewer than ``n`` motifs qualify.
    """
    names = {m.alt_id.upper() for m in planted} | {m.id for m in planted}
    pool = [m for m in motifs if m.id not in names and m.alt_id.upper() not in names and m.width >= min_width]
    order = np.random.default_rng(seed).permutation(len(pool))
    mats = [p.probs for p in planted]
    out = []
    for i in order:
        if similarity(pool[i].probs, mats).max(initial=0.0) < max_similarity:
            out.append(pool[i])
            if len(out) == n:
                return out
    raise InputError(f"--decoys {n}: only {len(out)} motifs are unlike every planted motif "
                     f"(similarity < {max_similarity})")
