"""Order-k Markov models of DNA: the baseline an LM must beat on held-out bits/bp.

An order-k model predicts a base from the k bases before it with add-alpha smoothed
counts. Positions whose k-base context runs into an N (or the start of a record) back off
to the longest clean context, so every scored position gets a prediction.
Scored positions are those whose own base is A, C, G or T (N targets are never scored,
by the LM either).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

ALPHAS = (0.01, 0.1, 0.5, 1.0)


def clean_run(codes: np.ndarray) -> np.ndarray:
    """Length of the run of A/C/G/T bases ending just before each position.

    Returns
    -------
    numpy.ndarray, shape (L,), int64
        ``run[i]`` = number of consecutive codes < 4 in ``codes[:i]`` counted back from i-1.
    """
    codes = np.asarray(codes)
    n = len(codes)
    valid = codes < 4
    idx = np.arange(n, dtype=np.int64)
    # index of the last invalid base at or before i, -1 if none
    last_bad = np.maximum.accumulate(np.where(valid, -1, idx)) if n else idx
    run_to_i = idx - last_bad  # clean bases in codes[..i] ending at i (0 if codes[i] is bad)
    out = np.zeros(n, dtype=np.int64)
    out[1:] = run_to_i[:-1]
    return out


def context_index(codes: np.ndarray, k: int) -> np.ndarray:
    """Integer code of the k bases before each position (most recent base = lowest digit).

    Only meaningful where ``clean_run(codes) >= k``.
    """
    codes = np.minimum(np.asarray(codes, dtype=np.int64), 3)
    ctx = np.zeros(len(codes), dtype=np.int64)
    for j in range(1, k + 1):
        ctx[j:] += codes[:-j] << (2 * (j - 1))
    return ctx


@dataclass
class Segment:
    """Bases to fit on or score: ``codes[lo:hi]`` are the positions, earlier codes are context."""

    codes: np.ndarray
    lo: int
    hi: int


def fit_counts(segments: Sequence[Segment], max_order: int) -> list[np.ndarray]:
    """Count tables of orders 0..max_order.

    Returns
    -------
    list of numpy.ndarray, table k has shape (4**k, 4), int64
        ``table[ctx, base]``: times ``base`` followed the clean context ``ctx``.
    """
    tables = [np.zeros((4**k, 4), dtype=np.int64) for k in range(max_order + 1)]
    for seg in segments:
        codes = np.asarray(seg.codes)
        run = clean_run(codes)[seg.lo : seg.hi]
        target = codes[seg.lo : seg.hi].astype(np.int64)
        ok = target < 4
        for k in range(max_order + 1):
            ctx = context_index(codes, k)[seg.lo : seg.hi]
            sel = ok & (run >= k)
            flat = ctx[sel] * 4 + target[sel]
            tables[k] += np.bincount(flat, minlength=4 ** (k + 1)).reshape(-1, 4)
    return tables


def score_bits(tables: Sequence[np.ndarray], segments: Sequence[Segment], order: int, alpha: float) -> tuple[float, int]:
    """Total bits and number of scored positions of the order-``order`` model.

    Positions with a shorter clean context back off to the longest available order.
    """
    total_bits = 0.0
    n = 0
    for seg in segments:
        # only `order` bases of context matter: trim the record so scoring a short held-out
        # tail does not cost passes over the whole record
        first = max(0, seg.lo - order)
        codes = np.asarray(seg.codes[first : seg.hi])
        seg = Segment(codes, seg.lo - first, seg.hi - first)
        run = clean_run(codes)[seg.lo : seg.hi]
        target = codes[seg.lo : seg.hi].astype(np.int64)
        ok = target < 4
        eff = np.minimum(run, order)
        for k in range(order + 1):
            sel = ok & (eff == k)
            if not sel.any():
                continue
            ctx = context_index(codes, k)[seg.lo : seg.hi][sel]
            counts = tables[k][ctx]
            p = (counts[np.arange(len(ctx)), target[sel]] + alpha) / (counts.sum(axis=1) + 4 * alpha)
            total_bits -= float(np.log2(p).sum())
            n += int(sel.sum())
    return total_bits, n


def best_markov(train: Sequence[Segment], heldout: Sequence[Segment], max_order: int = 10) -> dict:
    """Best order-k Markov model (k = 0..max_order, alpha in ``ALPHAS``) on held-out bits/bp.

    The choice is made on the held-out part itself, which favours the baseline.

    Returns
    -------
    dict
        ``markov_bits_per_bp``, ``markov_order``, ``markov_alpha``, ``markov_scored_bp`` and
        ``markov_bits_by_order`` (best over alpha per order).
    """
    tables = fit_counts(train, max_order)
    by_order = {}
    best = (np.inf, 0, ALPHAS[0], 0)
    for k in range(max_order + 1):
        for alpha in ALPHAS:
            bits, n = score_bits(tables, heldout, k, alpha)
            bpb = bits / max(n, 1)
            by_order[str(k)] = min(by_order.get(str(k), np.inf), bpb)
            if bpb < best[0]:
                best = (bpb, k, alpha, n)
    return {
        "markov_bits_per_bp": float(best[0]),
        "markov_order": int(best[1]),
        "markov_alpha": float(best[2]),
        "markov_scored_bp": int(best[3]),
        "markov_bits_by_order": {k: float(v) for k, v in by_order.items()},
    }
