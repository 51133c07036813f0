"""Commit records and normalisation statistics.

One JSON file per committed row chunk, ``_progress/chunk-<k>.json``, written durably
*after* the chunk's data is fsynced: a chunk without a valid record is simply redone on
resume. The record holds the chunk's CRC-32 (detects truncated or corrupted chunks) and
its float64 partial sums, which ``combine_stats`` folds in chunk order so the mean and
norm scale never depend on which process wrote which chunk, or when.
"""
from __future__ import annotations

import json
import zlib

import numpy as np

from genesae_fast.store.layout import PROGRESS


def chunk_key(k: int) -> str:
    """Key of chunk ``k``'s commit record."""
    return f"{PROGRESS}/chunk-{int(k):09d}.json"


COORDS_KEY = f"{PROGRESS}/coords.json"


def crc32(x: np.ndarray) -> int:
    """CRC-32 of an array's bytes in C order."""
    return zlib.crc32(np.ascontiguousarray(x).view(np.uint8).reshape(-1))


def chunk_stats(x: np.ndarray, dtype: str) -> tuple[list[float], float]:
    """Float64 column sums and the sum of squares of one stored chunk.

    Parameters
    ----------
    x : numpy.ndarray, shape (r, d)
        Stored activations (float16, float32 or bfloat16 bits).

    Returns
    -------
    (list of d floats, float)
        ``sum_i x_i`` and ``sum_i ||x_i||^2``, both accumulated in float64 row by row.
    """
    from genesae_fast.store.layout import stored_to_float32

    # float32 holds float16/bfloat16 exactly, and their squares exactly too (at most 22
    # significant bits); float64 accumulation keeps the sums accurate. numpy's
    # reductions are single-threaded, so the bits never depend on the thread count.
    x32 = stored_to_float32(x, dtype)
    s1 = np.add.reduce(x32, axis=0, dtype=np.float64)
    np.multiply(x32, x32, out=x32)
    s2 = float(np.add.reduce(np.add.reduce(x32, axis=0, dtype=np.float64)))
    return s1.tolist(), s2


def make_chunk_record(k: int, rows: int, config: str, crc: int, s1: list[float], s2: float) -> bytes:
    """The bytes of chunk ``k``'s commit record (deterministic: no time, no rank)."""
    rec = {"chunk": int(k), "rows": int(rows), "config": config, "crc32": int(crc), "sum": s1, "sumsq": s2}
    return json.dumps(rec, separators=(",", ":")).encode()


def parse_record(data: bytes | None, config: str | None = None) -> dict | None:
    """A commit record, or None when missing, unreadable or from another configuration."""
    if data is None:
        return None
    try:
        rec = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(rec, dict) or (config is not None and rec.get("config") != config):
        return None
    return rec


def combine_stats(records: list[dict], d: int) -> tuple[int, np.ndarray, float]:
    """Mean and norm scale from per-chunk sums (Chan et al.'s pairwise update, in order).

    Returns
    -------
    (int, numpy.ndarray [d] float64, float)
        Row count, per-dimension mean, and ``sqrt(mean_i ||x_i - mean||^2)``.
    """
    records = sorted(records, key=lambda r: r["chunk"])
    n = sum(int(r["rows"]) for r in records)
    if n == 0:
        return 0, np.zeros(d), 0.0
    sums = np.array([r["sum"] for r in records], dtype=np.float64).reshape(len(records), d)
    counts = np.array([r["rows"] for r in records], dtype=np.float64)
    mean = sums.sum(axis=0) / n
    # Within-chunk scatter, from each chunk's own mean (no large cancellation), plus the
    # between-chunk term.
    chunk_means = sums / counts[:, None]
    within = np.array([r["sumsq"] for r in records], dtype=np.float64) - (sums * chunk_means).sum(axis=1)
    between = (counts * ((chunk_means - mean) ** 2).sum(axis=1)).sum()
    m2 = max(float(within.sum() + between), 0.0)
    return n, mean, float(np.sqrt(m2 / n))
