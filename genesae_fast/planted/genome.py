"""A planted genome: real sequence with JASPAR motif sites written in at known places.

Sites are sampled from each motif's smoothed matrix (so, as in real genomes, many are weak
matches), put on a random strand (exactly half on each, the odd one out on -) and placed at
random, non-overlapping, at least ``gap`` bases apart. Everything is drawn from one seeded
generator, so a seed gives the same genome, sites and decoys on any machine.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from genesae_fast.errors import InputError

DEFAULT_SMOOTHING = 0.05
SEQUENCE_NAME = "planted"


@dataclass
class PlantedSites:
    """Where the sites are, sorted by start; every array has shape (S,).

    Attributes
    ----------
    start, end : int64 -- 0-based half-open, + strand coordinates
    motif : int64 -- index into the planted motif list
    strand : int8 -- +1 the motif reads on the + strand, -1 on the - strand
    """

    start: np.ndarray
    end: np.ndarray
    motif: np.ndarray
    strand: np.ndarray

    def __len__(self) -> int:
        return int(self.start.shape[0])


@dataclass
class PlantedGenome:
    """A planted genome and its motif sets (``codes`` (L,) uint8, A=0 C=1 G=2 T=3 other 4)."""

    codes: np.ndarray
    sites: PlantedSites
    planted: list
    decoys: list
    seed: int
    name: str = SEQUENCE_NAME


def smooth(probs: np.ndarray, smoothing: float = DEFAULT_SMOOTHING) -> np.ndarray:
    """``(1 - smoothing) * probs + smoothing / 4``, rows renormalised, shape (w, 4)."""
    p = np.asarray(probs, np.float64)
    p = p / p.sum(axis=1, keepdims=True)
    return (1.0 - smoothing) * p + smoothing / 4.0


def sample_sites(probs: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` sites drawn column by column from ``probs`` (w, 4); returns (n, w) uint8 codes."""
    cdf = np.cumsum(np.asarray(probs, np.float64), axis=1)
    cdf[:, -1] = 1.0  # rounding must not leave a sliver above the last base
    u = rng.random((int(n), cdf.shape[0]))
    return (u[:, :, None] >= cdf[None, :, :]).sum(axis=2).astype(np.uint8)


def balanced_strands(n: int, rng: np.random.Generator) -> np.ndarray:
    """(n,) int8 of +1/-1 in random order: n // 2 of +1, the rest -1."""
    s = np.full(int(n), -1, np.int8)
    s[: int(n) // 2] = 1
    return s[rng.permutation(int(n))]


def place_sites(length: int, widths: np.ndarray, rng: np.random.Generator, *, gap: int = 10,
                margin: int = 50) -> np.ndarray:
    """Random non-overlapping starts for sites of ``widths`` (S,) in ``[margin, length - margin)``.

    Sites keep at least ``gap`` bases between each other. The order of the sites along the
    genome is a random permutation and the free space is split by sorted uniform draws, so
    every arrangement is possible. Returns (S,) int64 starts, in the order of ``widths``.

    Raises
    ------
    InputError
        The sites do not fit.
    """
    widths = np.asarray(widths, np.int64)
    S = widths.shape[0]
    need = int(widths.sum()) + gap * max(S - 1, 0) + 2 * margin
    free = int(length) - need
    if free < 0:
        raise InputError(f"--length {length}: too short for {S} sites ({need:,} bp needed with gaps)")
    order = rng.permutation(S)
    offsets = np.sort(rng.integers(0, free + 1, size=S))
    before = np.concatenate([[0], np.cumsum(widths[order] + gap)[:-1]])
    starts = np.empty(S, np.int64)
    starts[order] = margin + offsets + before
    return starts


def plant(base: np.ndarray, motifs: list, n_per_motif: int, rng: np.random.Generator, *,
          smoothing: float = DEFAULT_SMOOTHING, gap: int = 10) -> tuple[np.ndarray, PlantedSites]:
    """Write ``n_per_motif`` sites of every motif into a copy of ``base`` (L,) uint8.

    Returns the planted codes (L,) uint8 and the sites, sorted by start.
    """
    sampled, strands, index = [], [], []
    for i, m in enumerate(motifs):
        sampled.append(sample_sites(smooth(m.probs, smoothing), n_per_motif, rng))
        strands.append(balanced_strands(n_per_motif, rng))
        index.append(np.full(n_per_motif, i, np.int64))
    widths = np.concatenate([np.full(n_per_motif, m.width, np.int64) for m in motifs]) if motifs else np.zeros(0, np.int64)
    starts = place_sites(base.shape[0], widths, rng, gap=gap)
    codes = np.array(base, dtype=np.uint8, copy=True)
    k = 0
    for sites, strand in zip(sampled, strands):
        for site, s in zip(sites, strand):
            codes[starts[k]:starts[k] + site.shape[0]] = site if s > 0 else (3 - site)[::-1]
            k += 1
    motif = np.concatenate(index) if index else np.zeros(0, np.int64)
    strand = np.concatenate(strands) if strands else np.zeros(0, np.int8)
    o = np.argsort(starts, kind="stable")
    return codes, PlantedSites(starts[o], (starts + widths)[o], motif[o], strand[o])


def base_sequence(length: int, genome=None, *, offset: int = 0, mutate: float = 0.0,
                  rng: np.random.Generator | None = None) -> np.ndarray:
    """``length`` bases of a FASTA file (records joined in file order) from ``offset`` on.

    ``genome`` defaults to the bundled genome. ``mutate``: the fraction of bases replaced
    by a uniformly random base (drawn from ``rng``), for a base sequence unlike the original.
    Returns (length,) uint8 codes.
    """
    from genesae_fast.sequences import read_fasta

    if genome is None:
        from genesae_fast.data import genome_path

        genome = genome_path()
    if not 0.0 <= mutate <= 1.0:
        raise InputError(f"--mutate {mutate}: must be in [0, 1]")
    records = read_fasta(genome)
    codes = np.concatenate([r.codes for r in records]) if records else np.zeros(0, np.uint8)
    if offset < 0 or length < 1 or offset + length > codes.shape[0]:
        raise InputError(f"{genome}: {codes.shape[0]:,} bp, too short for --offset {offset} --length {length}")
    out = codes[offset:offset + length].copy()
    if mutate > 0:
        rng = rng if rng is not None else np.random.default_rng(0)
        where = rng.random(length) < mutate
        out[where] = rng.integers(0, 4, size=int(where.sum()), dtype=np.uint8)
    return out
