"""k-mer counts of a FASTA file read in pieces, so a memory budget covers the genome too.

:func:`genesae_fast.kmers.count_kmers_into` counts code arrays that are already in memory
(``read_fasta`` holds 2 bytes a base). Here the file is decoded piece by piece
(:class:`genesae_fast.fasta_stream.ReadAhead`) and only a stretch of it is held at a time:

* while the genome read so far fits the budget next to its k-mers (1 byte a base held plus
  16 bytes a k-mer counted), it is simply kept and counted in memory at the end, exactly as
  before;
* past that, every stretch held is handed to the native :class:`KmerSpiller`, which appends
  its k-mers to one spill file per bucket (8 bytes a k-mer), and the buckets are counted
  batch by batch within the budget once the file is read (KMC's design). A record cut between
  two stretches repeats its last k - 1 bases at the start of the next, so every k-mer is
  counted once.

Both give the same rows as counting the whole genome in memory.
"""
from __future__ import annotations

import contextlib
import os
import sys
from typing import Callable

import numpy as np

from genesae_fast.errors import InputError
from genesae_fast.fasta_stream import ReadAhead
from genesae_fast.kmers import check_count_options, count_kmers_into, spill_folder, working_memory_bytes

#: Bytes a held base costs next to its k-mer while counting in memory: the code (1), its
#: k-mer and scratch (16), and the copy made when a record's pieces are joined (1).
_BYTES_PER_HELD_BASE = 18
#: Decoded pieces the reader thread may hold ahead of the counter.
_READ_AHEAD = 2


class _Stretches:
    """The records read so far, as lists of pieces, and how many bases they hold."""

    def __init__(self):
        self.records: list[list[np.ndarray]] = []
        self.bases = 0

    def add(self, codes: np.ndarray, first: bool) -> None:
        if first or not self.records:
            self.records.append([])
        self.records[-1].append(codes)
        self.bases += int(codes.size)

    def take(self, keep: int) -> list[np.ndarray]:
        """Every record joined into one array; the open (last) record's final ``keep`` bases
        stay held, as the start of its next stretch."""
        arrays = [np.concatenate(parts) if len(parts) > 1 else parts[0] for parts in self.records if parts]
        tail = arrays[-1][max(0, arrays[-1].size - keep):].copy() if arrays and keep > 0 else None
        self.records = [[tail]] if tail is not None else []
        self.bases = 0 if tail is None else int(tail.size)
        return arrays


def _spill_errors(tmp: str):
    """Native spill-file failures as one-line InputErrors naming the folder."""

    @contextlib.contextmanager
    def guard():
        try:
            yield
        except RuntimeError as exc:
            if str(exc).startswith("cannot ") and "spill file" in str(exc):
                raise InputError(f"k-mer spill folder {tmp}: {exc}") from None
            raise

    return guard()


def count_kmers_file(path: str | os.PathLike, k: int, sink: Callable[[np.ndarray, np.ndarray], None], *,
                     canonical: bool = False, min_count: int = 1, threads: int = 1, method: str = "auto",
                     memory: int | str | None = None, spill_dir: str | os.PathLike | None = None,
                     piece_bytes: int = 1 << 20, working_memory: int | None = None) -> int:
    """Count the k-mers of a FASTA file and hand the rows to ``sink`` in ascending order.

    Parameters
    ----------
    path : FASTA file (plain, gzip or BGZF)
    k, sink, canonical, min_count, threads, method, memory, spill_dir
        As in :func:`genesae_fast.kmers.count_kmers_into`; ``memory`` now bounds the genome
        held as well (None: no budget, the whole genome is held and counted in memory).
    piece_bytes : decoded bytes read at a time
    working_memory : bytes for the held genome and the counter, instead of ``memory`` (tests)

    Returns
    -------
    int : the number of rows handed over.
    """
    from genesae_fast import _native

    check_count_options(k, threads, min_count, method)
    work = int(working_memory) if working_memory is not None else working_memory_bytes(memory)
    if work:  # the reader's pieces: queued, in hand, and the raw text and codes being parsed
        work = max(work - (_READ_AHEAD + 3) * int(piece_bytes), 1)
    limit = work // _BYTES_PER_HELD_BASE if work else sys.maxsize  # bases held before spilling
    held = _Stretches()
    spiller = None
    with contextlib.ExitStack() as stack:
        for piece in stack.enter_context(ReadAhead(path, piece_bytes, depth=_READ_AHEAD)):
            held.add(piece.codes, piece.first)
            if held.bases > limit:
                if spiller is None:
                    tmp = stack.enter_context(spill_folder(spill_dir))
                    stack.enter_context(_spill_errors(tmp))
                    spiller = _native.KmerSpiller(int(k), bool(canonical), int(threads), work, tmp)
                spiller.add(held.take(keep=int(k) - 1))
        if spiller is None:  # the genome fit: count it in memory, next to what it holds
            arrays = held.take(keep=0)
            rest = max(work - sum(a.nbytes for a in arrays), 1) if work else None
            return count_kmers_into(arrays, k, sink, canonical=canonical, min_count=min_count, threads=threads,
                                    method=method, spill_dir=spill_dir, working_memory=rest)
        spiller.add(held.take(keep=0))
        return spiller.count(int(min_count), sink)


def write_kmers_file(path: str | os.PathLike, k: int, out: str | os.PathLike | None, **options) -> int:
    """Count the k-mers of a FASTA file and write ``kmer\\tcount`` rows (with a header).

    ``out`` is a path (written atomically; FIFOs and devices written through) or None/'-'
    for stdout; ``options`` are those of :func:`count_kmers_file`. Returns the row count.
    """
    from genesae_fast import _native
    from genesae_fast.outputs import write_binary

    def run(fh) -> int:
        # The header waits for the first rows, which come only once the whole file has been
        # read: bad input then leaves nothing on stdout but the error.
        header = [b"kmer\tcount\n"]

        def sink(km, ct) -> None:
            if header:
                fh.write(header.pop())
            fh.write(_native.format_kmer_tsv(km, ct, k))

        rows = count_kmers_file(path, k, sink, **options)
        if header:
            fh.write(header.pop())
        return rows

    return write_binary(out, run)
