"""k-mer counting (C++ counter, threads, GIL released) and its output formats.

k-mers are returned packed 2 bits a base (A=0, C=1, G=2, T=3; first base in the high
bits), so sorting the packed integers sorts the k-mers lexicographically. The counter
hands its rows over in ascending order as it finishes them, so :func:`write_kmers` writes
a genome's counts without holding them, and within a memory budget: k-mers that do not
fit spill to disk in 256 partitions counted one batch at a time.
"""
from __future__ import annotations

import os
import re
import sys
import tempfile
from typing import Callable, Iterable, Sequence

import numpy as np

from genesae_fast.errors import InputError
from genesae_fast.sequences import Record

MAX_K = 31
MAX_COUNT = 2**64 - 1
# Memory the budget keeps back for what the counter does not account: the interpreter's
# growth, allocator slack and huge-page rounding, the formatted rows waiting to be written
# (a fixed part plus 1/16 of the budget; peak RSS came within 1% of 300M without the latter).
_RESERVE = 24 << 20
_RESERVE_FRACTION = 16
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_memory(text: str | int, option: str = "--memory") -> int:
    """Bytes of a size such as ``300M``, ``2G``, ``1.5g``, ``4096`` (binary units)."""
    if isinstance(text, int):
        size = text
    else:
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)(?:i?[bB])?\s*", str(text))
        if not m:
            raise InputError(f"{option}: cannot read {text!r} as a size (e.g. 300M, 2G)")
        size = int(float(m.group(1)) * _UNITS[m.group(2).upper()])
    if size <= 0:
        raise InputError(f"{option}: the size must be positive, got {text!r}")
    return size


def default_memory() -> int:
    """Half of the machine's physical memory, in bytes (the default budget)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 4 << 30


def resident_bytes() -> int:
    """This process's resident memory now (Linux /proc; 0 where unknown)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):  # pragma: no cover - not Linux
        return 0


def _code_arrays(records: Iterable[Record | np.ndarray]) -> list[np.ndarray]:
    arrays = []
    for r in records:
        codes = r.codes if isinstance(r, Record) else r
        arrays.append(np.ascontiguousarray(codes, dtype=np.uint8))
    return arrays


def check_count_options(k: int, threads: int, min_count: int, method: str) -> None:
    """A one-line InputError for k, threads, min-count or method out of range (both counters check these)."""
    if not 1 <= int(k) <= MAX_K:
        raise InputError(f"k must be between 1 and {MAX_K}, got {k}")
    if int(threads) < 1:
        raise InputError(f"threads must be at least 1, got {threads}")
    if not 1 <= int(min_count) <= MAX_COUNT:
        raise InputError(f"min-count must be at least 1 and below 2^64, got {min_count}")
    if method not in ("auto", "partition", "dense"):
        raise InputError(f"method must be 'auto', 'partition' or 'dense', got {method!r}")
    if method == "dense" and int(k) > 13:
        raise InputError(f"the dense counter supports k <= 13, got {k}")


def working_memory_bytes(memory: int | str | None) -> int:
    """Bytes the native counter may use under a whole-process budget (0 = no limit)."""
    if memory is None:
        return 0
    budget = parse_memory(memory)
    work = budget - resident_bytes() - _RESERVE - budget // _RESERVE_FRACTION
    if work < (8 << 20):
        raise InputError(
            f"--memory {memory}: too small, this process already uses {resident_bytes() / 2**20:.0f} MiB "
            f"(the input included); give at least {(budget - work + (8 << 20)) / 2**20:.0f}M"
        )
    return work


def spill_folder(spill_dir: str | os.PathLike | None) -> tempfile.TemporaryDirectory:
    """A fresh temporary folder for spill files under ``spill_dir`` (removed when closed)."""
    if spill_dir is not None and not os.path.isdir(spill_dir):
        raise InputError(f"--tmp-dir {spill_dir}: no such folder")
    try:
        return tempfile.TemporaryDirectory(prefix="genesae-kmers-", dir=spill_dir)
    except OSError as exc:
        where = spill_dir or tempfile.gettempdir()
        raise InputError(f"--tmp-dir {where}: cannot create a spill folder ({exc.strerror})") from None


def count_kmers_into(
    records: Sequence[Record | np.ndarray],
    k: int,
    sink: Callable[[np.ndarray, np.ndarray], None],
    *,
    canonical: bool = False,
    min_count: int = 1,
    threads: int = 1,
    method: str = "auto",
    memory: int | str | None = None,
    spill_dir: str | os.PathLike | None = None,
    working_memory: int | None = None,
) -> int:
    """Count k-mers and hand the rows to ``sink`` in ascending k-mer order, a piece at a time.

    Parameters
    ----------
    records, k, canonical, min_count, threads, method
        As in :func:`count_kmers`.
    sink : callable(kmers, counts)
        Called with uint64 arrays of shape (m,), read-only views valid only during the call.
    memory : int or str, optional
        Budget of the whole process (bytes or ``"300M"``); partitions that do not fit spill to
        files in a temporary folder under ``spill_dir`` (the system's by default). None: no limit.
    working_memory : int, optional
        Bytes for the counter alone, instead of ``memory`` (tests force spilling with it).

    Returns
    -------
    int : the number of rows handed over.
    """
    from genesae_fast import _native

    check_count_options(k, threads, min_count, method)
    arrays = _code_arrays(records)
    work = int(working_memory) if working_memory is not None else working_memory_bytes(memory)
    with spill_folder(spill_dir) as tmp:
        try:
            return _native.count_kmers_stream(
                arrays, int(k), bool(canonical), int(min_count), int(threads), method, work, tmp, sink
            )
        except RuntimeError as exc:
            if str(exc).startswith("cannot ") and "spill file" in str(exc):
                raise InputError(f"k-mer spill folder {tmp}: {exc}") from None
            raise


def count_kmers(
    records: Sequence[Record | np.ndarray],
    k: int,
    canonical: bool = False,
    min_count: int = 1,
    threads: int = 1,
    method: str = "auto",
    *,
    memory: int | str | None = None,
    spill_dir: str | os.PathLike | None = None,
    working_memory: int | None = None,
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
        Worker threads (capped at the machine's cores).
    method : {"auto", "partition", "dense"}
        Force a counter (tests compare them): "partition" (bucket by top bits, then tally or
        radix-sort each bucket in cache; spills under a budget) or "dense" (one 4^k table, k <= 13).
    memory, spill_dir, working_memory
        A memory budget and where spill files go, as in :func:`count_kmers_into`.

    Returns
    -------
    kmers : numpy.ndarray, shape (M,), uint64 -- packed, ascending
    counts : numpy.ndarray, shape (M,), uint64
    """
    if memory is None and spill_dir is None and working_memory is None:
        from genesae_fast import _native

        check_count_options(k, threads, min_count, method)
        return _native.count_kmers(_code_arrays(records), int(k), bool(canonical), int(min_count), int(threads), method)
    kmers: list[np.ndarray] = []
    counts: list[np.ndarray] = []

    def collect(km: np.ndarray, ct: np.ndarray) -> None:
        kmers.append(km.copy())
        counts.append(ct.copy())

    count_kmers_into(records, k, collect, canonical=canonical, min_count=min_count, threads=threads,
                     method=method, memory=memory, spill_dir=spill_dir, working_memory=working_memory)
    empty = np.zeros(0, dtype=np.uint64)
    return (np.concatenate(kmers) if kmers else empty), (np.concatenate(counts) if counts else empty)


def write_kmers(records: Sequence[Record | np.ndarray], k: int, out: str | os.PathLike | None, **options) -> int:
    """Count k-mers and write ``kmer\\tcount`` rows (with a header) as they are found.

    ``out`` is a path (written atomically; FIFOs and devices written through) or None/'-'
    for stdout; ``options`` are those of :func:`count_kmers_into`. Returns the row count.
    """
    from genesae_fast import _native
    from genesae_fast.outputs import write_binary

    def run(fh) -> int:
        fh.write(b"kmer\tcount\n")
        return count_kmers_into(records, k, lambda km, ct: fh.write(_native.format_kmer_tsv(km, ct, k)), **options)

    return write_binary(out, run)


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
    """Write counted ``kmer\\tcount`` rows with a header, to a path or to stdout when ``out`` is None/'-'."""
    from genesae_fast import _native
    from genesae_fast.outputs import open_output

    body = _native.format_kmer_tsv(kmers, counts, k)
    if out is None or str(out) == "-":
        sys.stdout.buffer.write(b"kmer\tcount\n" + body)
        sys.stdout.flush()
        return
    with open_output(out, "wb") as fh:
        fh.write(b"kmer\tcount\n")
        fh.write(body)
