"""k-mer counting (C++ counter, threads, GIL released) and its output formats.

k-mers are returned packed 2 bits a base (A=0, C=1, G=2, T=3; first base in the high
bits), so sorting the packed integers sorts the k-mers lexicographically.
"""
from __future__ import annotations

import os
from typing import Iterable, Sequence

import numpy as np

from genesae_fast.errors import InputError
from genesae_fast.sequences import Record

MAX_K = 31


def _code_arrays(records: Iterable[Record | np.ndarray]) -> list[np.ndarray]:
    arrays = []
    for r in records:
        codes = r.codes if isinstance(r, Record) else r
        arrays.append(np.ascontiguousarray(codes, dtype=np.uint8))
    return arrays


def count_kmers(
    records: Sequence[Record | np.ndarray],
    k: int,
    canonical: bool = False,
    min_count: int = 1,
    threads: int = 1,
    method: str = "auto",
) -> tuple[np.ndarray, np.ndarray]:
    """Count k-mers over records (or raw code arrays).

    k-mers spanning a non-ACGT base or a record boundary are skipped; soft-masked bases
    count like upper case. With ``canonical`` each k-mer is keyed by the smaller of itself
    and its reverse complement.

    Parameters
    ----------
    records : sequence of Record or uint8 arrays of shape (L,)
    k : int, 1..31
    canonical : bool
    min_count : int
        Drop k-mers seen fewer times.
    threads : int
    method : {"auto", "partition", "dense"}
        Force a counter (tests compare them): "partition" (the default; bucket by top bits, then
        tally or radix-sort each bucket in cache) or "dense" (one 4^k table, k <= 13).

    Returns
    -------
    kmers : numpy.ndarray, shape (M,), uint64 -- packed, ascending
    counts : numpy.ndarray, shape (M,), uint64
    """
    from genesae_fast import _native

    if not 1 <= int(k) <= MAX_K:
        raise InputError(f"k must be between 1 and {MAX_K}, got {k}")
    if int(threads) < 1:
        raise InputError(f"threads must be at least 1, got {threads}")
    if int(min_count) < 1:
        raise InputError(f"min-count must be at least 1, got {min_count}")
    return _native.count_kmers(_code_arrays(records), int(k), bool(canonical), int(min_count), int(threads), method)


def pack(kmer: str) -> int:
    """Pack an ACGT string into its 2-bit integer."""
    value = 0
    for ch in kmer.upper():
        value = (value << 2) | "ACGT".index(ch)
    return value


def unpack(packed: np.ndarray | int, k: int) -> list[str] | str:
    """Packed k-mer integer(s) back to strings."""
    scalar = np.isscalar(packed)
    arr = np.atleast_1d(np.asarray(packed, dtype=np.uint64))
    shifts = np.arange(2 * (k - 1), -1, -2, dtype=np.uint64)
    letters = np.frombuffer(b"ACGT", dtype=np.uint8)[((arr[:, None] >> shifts) & np.uint64(3)).astype(np.int64)]
    out = [row.tobytes().decode("ascii") for row in letters] if len(arr) else []
    return out[0] if scalar else out


def write_tsv(kmers: np.ndarray, counts: np.ndarray, k: int, out: str | os.PathLike | None) -> None:
    """Write ``kmer\\tcount`` rows with a header, to a path or to stdout when ``out`` is None/'-'."""
    import sys

    from genesae_fast import _native

    body = _native.format_kmer_tsv(kmers, counts, k)
    if out is None or str(out) == "-":
        sys.stdout.buffer.write(b"kmer\tcount\n")
        sys.stdout.buffer.write(body)
        sys.stdout.flush()
        return
    tmp = f"{out}.tmp"
    with open(tmp, "wb") as fh:
        fh.write(b"kmer\tcount\n")
        fh.write(body)
    os.replace(tmp, out)
