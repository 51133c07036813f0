"""The genome's bases in one file, memory-mapped by the main process and every worker.

The streamed annotation reads the bases of a block (motif scans, k-mers) and of a few
windows (logos, example contexts); with the codes in a file (1 byte a base, ``.npy``) the
operating system keeps only the pages in use, and the page cache is shared between
processes, so no process holds the whole genome. A job sent to worker processes carries the
file's path instead of the bases (:func:`for_workers`), and the worker maps it again
(:func:`reattach`).
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np


@dataclasses.dataclass(frozen=True)
class CodesFile:
    """Stands in for a genome's codes while a job travels to a worker: the ``.npy`` to map."""

    path: str


def write_codes(pieces, path, total: int) -> np.ndarray:
    """Write the concatenation of ``pieces`` (uint8 arrays, ``total`` bases in all) to the
    ``.npy`` file ``path`` (atomically); returns it memory-mapped read-only, shape (total,)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(int(total),))
    at = 0
    for p in pieces:
        out[at:at + len(p)] = p
        at += len(p)
    if at != total:
        raise ValueError(f"write_codes: {at} bases given, {total} announced")
    out.flush()
    del out
    os.replace(tmp, path)
    return open_codes(path)


def open_codes(path) -> np.ndarray:
    """The codes of ``path`` memory-mapped read-only (an empty file maps to an empty array)."""
    try:
        return np.load(path, mmap_mode="r")
    except ValueError:  # numpy cannot map the zero bytes of an empty genome
        return np.zeros(0, np.uint8)


def map_genome(genome, path):
    """``genome`` (a ``core.Genome``) with its codes moved to the file ``path`` and mapped."""
    codes = write_codes([genome.codes], path, int(genome.codes.shape[0]))
    return dataclasses.replace(genome, codes=codes)


def for_workers(job):
    """A copy of ``job`` to pickle for worker processes: a mapped genome travels as its path."""
    codes = job.genome.codes
    if isinstance(codes, np.memmap) and codes.filename:
        return dataclasses.replace(job, genome=dataclasses.replace(job.genome, codes=CodesFile(str(codes.filename))))
    return job


def reattach(job):
    """The job with the codes of a :class:`CodesFile` mapped again (other jobs unchanged)."""
    codes = job.genome.codes
    if isinstance(codes, CodesFile):
        return dataclasses.replace(job, genome=dataclasses.replace(job.genome, codes=open_codes(codes.path)))
    return job


def remap(job):
    """The job with its mapped genome mapped afresh: the pages earlier blocks touched leave
    this process's resident memory (a worker's RSS then follows the block, not the genome)."""
    codes = job.genome.codes
    if isinstance(codes, np.memmap) and codes.filename:
        return dataclasses.replace(job, genome=dataclasses.replace(job.genome, codes=open_codes(codes.filename)))
    return job
