"""Commit records and normalisation statistics.

One JSON file per committed row chunk, ``_progress/chunk-<k>.json``, written durably
*after* the chunk's data is fsynced: a chunk without a valid record is simply redone on
resume. The record holds the chunk's CRC-32 (detects truncated or corrupted chunks) and
its float64 partial sums, which ``combine_stats`` folds in chunk order so the mean and
norm scale never depend on which process wrote which chunk, or when.
"""
from __future__ import annotations

import json
import math
import zlib

import numpy as np

from genesae_fast.errors import InputError
from genesae_fast.store.layout import PROGRESS

try:  # ISA-L's CRC-32 is the same checksum as zlib's, ~10x faster (PCLMULQDQ)
    from isal.isal_zlib import crc32 as _crc32_impl
except ImportError:  # no wheel for this platform: zlib's (still correct, slower)
    _crc32_impl = zlib.crc32


def chunk_key(k: int) -> str:
    """Key of chunk ``k``'s commit record."""
    return f"{PROGRESS}/chunk-{int(k):09d}.json"


COORDS_KEY = f"{PROGRESS}/coords.json"


def crc32(x: np.ndarray) -> int:
    """CRC-32 (zlib's polynomial) of an array's bytes in C order."""
    return _crc32_impl(np.ascontiguousarray(x).reshape(-1).view(np.uint8))


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


def make_chunk_record(k: int, rows: int, config: str, crc: int, s1: list[float], s2: float,
                      lm_bits_crc: int | None = None) -> bytes:
    """The bytes of chunk ``k``'s commit record (deterministic: no time, no rank).

    ``lm_bits_crc``: CRC-32 of the chunk's rows of the optional ``lm_bits`` array (the key
    is left out when the store has none, so such records are unchanged).
    """
    rec = {"chunk": int(k), "rows": int(rows), "config": config, "crc32": int(crc), "sum": s1, "sumsq": s2}
    if lm_bits_crc is not None:
        rec["lm_bits_crc32"] = int(lm_bits_crc)
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


# -- strict checks for readers ----------------------------------------------------------
def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_finite_number(v) -> bool:
    return (_is_int(v) or isinstance(v, float)) and math.isfinite(v)


def check_chunk_record(data: bytes | None, k: int, *, rows: int, d: int, config: str | None, source: str) -> dict:
    """Validate chunk ``k``'s commit record for a reader; returns the record.

    Parameters
    ----------
    data : bytes or None
        The record file's contents (None when the file is missing).
    rows, d : int
        The chunk's row count and the store's width the record must describe.

    Raises
    ------
    InputError
        One line naming ``source`` and the chunk: missing, not JSON, another
        configuration, or a field of the wrong type, length or value.
    """
    where = f"{source}: commit record of activation chunk {k} ({chunk_key(k)})"
    if data is None:
        raise InputError(f"{where} is missing")
    try:
        rec = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise InputError(f"{where} is not valid JSON") from None
    if not isinstance(rec, dict):
        raise InputError(f"{where} is not a JSON object")
    if config is not None and rec.get("config") != config:
        raise InputError(f"{where} belongs to another store configuration")
    if rec.get("chunk") != k or not _is_int(rec.get("chunk")):
        raise InputError(f"{where} names chunk {rec.get('chunk')!r}")
    if rec.get("rows") != rows or not _is_int(rec.get("rows")):
        raise InputError(f"{where} says {rec.get('rows')!r} rows, the chunk has {rows}")
    crc = rec.get("crc32")
    if not _is_int(crc) or not 0 <= crc < 1 << 32:
        raise InputError(f"{where}: crc32 {crc!r} is not a 32-bit unsigned integer")
    sums = rec.get("sum")
    if not isinstance(sums, list) or len(sums) != d or not all(map(_is_finite_number, sums)):
        raise InputError(f"{where}: 'sum' is not a list of {d} finite numbers")
    sumsq = rec.get("sumsq")
    if not _is_finite_number(sumsq) or sumsq < 0:
        raise InputError(f"{where}: 'sumsq' {sumsq!r} is not a finite number >= 0")
    return rec


def check_coords_record(data: bytes | None, names, n_chunks: int, *, config: str | None,
                        source: str) -> dict[str, list[int]]:
    """Validate the coordinates' commit record; returns ``{array name: [CRC-32 per chunk]}``.

    Raises InputError (one line naming ``source``) when it is missing or malformed.
    """
    where = f"{source}: coordinate commit record ({COORDS_KEY})"
    if data is None:
        raise InputError(f"{where} is missing")
    try:
        rec = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise InputError(f"{where} is not valid JSON") from None
    if not isinstance(rec, dict) or (config is not None and rec.get("config") != config):
        raise InputError(f"{where} is damaged or belongs to another store configuration")
    crcs = rec.get("crc32")
    out = {}
    for name in names:
        values = crcs.get(name) if isinstance(crcs, dict) else None
        if (not isinstance(values, list) or len(values) != n_chunks
                or not all(_is_int(v) and 0 <= v < 1 << 32 for v in values)):
            raise InputError(f"{where}: CRC-32 list of '{name}' is not {n_chunks} 32-bit unsigned integers")
        out[name] = values
    return out
