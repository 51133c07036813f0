"""The data of ``genesae lm train``: the held-out split, the training stream and its batches.

The last 5% of every record is held out. Its first half (``val``) decides when training
stops and which weights are kept; its second half (``test``) is touched by no choice and
gives the reported test bits/bp. Training windows are random windows of the training parts,
reverse-complemented with probability 1/2 (both strands are DNA the model should know).
The windows of step ``s`` come from a generator seeded with ``(seed, s)``, so a resumed or
data-parallel run sees the same batches as one uninterrupted process.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from genesae_fast.errors import InputError
from genesae_fast.models.markov import Segment

HELDOUT_FRACTION = 0.05
_COMPLEMENT = np.array([3, 2, 1, 0, 4], dtype=np.int64)


def split_records(records: Sequence, heldout_fraction: float = HELDOUT_FRACTION) -> tuple[list[Segment], list[Segment]]:
    """Training and held-out segments: the last ``ceil(fraction * L)`` bases of each record are held out.

    Held-out segments start at position >= 1 (position 0 has no context for the LM), so
    the LM and the Markov baseline score exactly the same bases.
    """
    train, held = [], []
    for rec in records:
        codes = np.asarray(rec.codes)
        n = len(codes)
        if n == 0:
            continue
        h0 = n - int(math.ceil(heldout_fraction * n))
        train.append(Segment(codes, 0, h0))
        held.append(Segment(codes, max(h0, 1), n))
    return train, held


def halve_segments(held: Sequence[Segment]) -> tuple[list[Segment], list[Segment]]:
    """``(val, test)``: the first and second half of every held-out segment (empty halves dropped)."""
    val, test = [], []
    for seg in held:
        mid = seg.lo + (seg.hi - seg.lo) // 2
        if mid > seg.lo:
            val.append(Segment(seg.codes, seg.lo, mid))
        if seg.hi > mid:
            test.append(Segment(seg.codes, mid, seg.hi))
    return val, test


def share_segments(segments: Sequence[Segment], rank: int, world: int) -> list[Segment]:
    """Worker ``rank``'s contiguous share of every segment (the shares of all ranks tile them)."""
    out = []
    for seg in segments:
        cuts = np.linspace(seg.lo, seg.hi, world + 1).round().astype(np.int64)
        if cuts[rank + 1] > cuts[rank]:
            out.append(Segment(seg.codes, int(cuts[rank]), int(cuts[rank + 1])))
    return out


def training_stream(train: Sequence[Segment]) -> np.ndarray:
    """Training parts joined by one N (code 4) each, as int64 codes."""
    parts = []
    for seg in train:
        if seg.hi > seg.lo:
            parts.append(np.asarray(seg.codes[seg.lo : seg.hi], dtype=np.int64))
            parts.append(np.array([4], dtype=np.int64))
    return np.concatenate(parts[:-1]) if parts else np.zeros(0, dtype=np.int64)


def sample_batch(stream: np.ndarray, batch: int, length: int, rng: np.random.Generator) -> np.ndarray:
    """``batch`` random windows of ``length`` codes, half of them reverse-complemented.

    Returns
    -------
    numpy.ndarray, shape (batch, length), int64
    """
    starts = rng.integers(0, len(stream) - length + 1, size=batch)
    windows = stream[starts[:, None] + np.arange(length)[None, :]]
    flip = rng.random(batch) < 0.5
    windows[flip] = _COMPLEMENT[windows[flip][:, ::-1]]
    return windows


def step_windows(stream: np.ndarray, batch: int, length: int, *, seed: int, step: int) -> np.ndarray:
    """The whole batch of training step ``step`` (the same in every worker and after a resume).

    Returns
    -------
    numpy.ndarray, shape (batch, length), int64
    """
    return sample_batch(stream, batch, length, np.random.default_rng([int(seed), int(step)]))


@dataclass
class LMData:
    """A genome split for training: ``stream`` (training codes), held-out segments and their halves."""

    genome: Path
    genome_sha256: str
    genome_bp: int
    train: list[Segment]
    held: list[Segment]
    stream: np.ndarray

    @property
    def val(self) -> list[Segment]:
        """First half of the held-out part: chooses the stopping step."""
        return halve_segments(self.held)[0]

    @property
    def test(self) -> list[Segment]:
        """Second half of the held-out part: untouched by any choice."""
        return halve_segments(self.held)[1]


def load_lm_data(genome: Path) -> LMData:
    """Read ``genome`` and split it (:func:`split_records`); InputError when too short to train on."""
    from genesae_fast.sequences import file_sha256, read_fasta

    records = read_fasta(genome)
    train, held = split_records(records)
    stream = training_stream(train)
    if len(stream) < 16:
        raise InputError(f"--genome {genome}: too short to train on ({len(stream)} training bases)")
    return LMData(Path(genome), file_sha256(genome), int(sum(len(r) for r in records)), train, held, stream)


__all__ = ["HELDOUT_FRACTION", "LMData", "halve_segments", "load_lm_data", "sample_batch", "share_segments",
           "split_records", "step_windows", "training_stream"]
