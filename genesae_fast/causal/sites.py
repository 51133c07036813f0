"""Which (feature, concept) pairs to test, their held-out sites, random intervals and random features.

Sites are the concept's hits as the annotation scored them: motif hits from the folder's
``motif_hits.bed`` (label ``<motif id>_<name>``; a ``strand`` column of ``concepts.tsv``
with ``+``/``-`` keeps hits of that strand), gene-structure concepts from the same gene
calls (:func:`genesae_fast.annotate.sources.gene_sources`). Only hits of the held-out
(evaluate) split count: a hit belongs to the split block of its first base, as in
:mod:`genesae_fast.annotate.concepts`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from genesae_fast.causal.measure import SiteSet
from genesae_fast.errors import InputError

# tries of the rejection sampler that places random intervals
_MAX_DRAWS = 1000
# longest stretch scored per site: a longer hit (a gene, an intergenic run) is represented by
# a random stretch of this length inside it, so every window stays receptive field + 64 bp
MAX_SITE_BP = 64


@dataclass
class Pair:
    """One row of ``concepts.tsv`` to test: a concept and its best SAE feature."""

    concept: str
    kind: str
    feature: int
    f1: float
    strand: str = ""


def read_pairs(concepts: dict, n_pairs: int) -> list[Pair]:
    """The ``n_pairs`` rows of ``concepts.tsv`` (as read by ``read_tsv``) with the highest
    held-out F1 (> 0), ties in file order; one pair per (concept, strand, feature)."""
    n = len(concepts.get("concept", []))
    strands = concepts.get("strand", [""] * n)
    rows = []
    for i in range(n):
        f1 = _float(concepts["f1"][i])
        feature = int(concepts["feature"][i]) if concepts["feature"][i] not in ("", "NA") else -1
        if feature >= 0 and f1 > 0:
            rows.append(Pair(concepts["concept"][i], concepts["kind"][i], feature, f1, strands[i]))
    rows.sort(key=lambda p: -p.f1)
    out, seen = [], set()
    for p in rows:
        key = (p.concept, p.strand, p.feature)
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out[: max(0, int(n_pairs))]


def _float(s) -> float:
    try:
        v = float(s)
    except (TypeError, ValueError):
        return float("nan")
    return v if np.isfinite(v) else float("nan")


def read_motif_bed(path: Path, names: list, offsets: np.ndarray) -> dict:
    """``motif_hits.bed`` as label -> (global start, global end, strand) arrays."""
    index = {n: i for i, n in enumerate(names)}
    acc: dict = {}
    if not path.is_file():
        return {}
    with open(path) as fh:
        for line in fh:
            f = line.rstrip("\n").split("\t")
            if len(f) < 6 or f[0] not in index:
                continue
            off = int(offsets[index[f[0]]])
            acc.setdefault(f[3], []).append((int(f[1]) + off, int(f[2]) + off, f[5]))
    return {k: (np.array([a for a, _, _ in v], np.int64), np.array([b for _, b, _ in v], np.int64),
                np.array([s for _, _, s in v])) for k, v in acc.items()}


def motif_hits(bed: dict, pair: Pair) -> tuple[np.ndarray, np.ndarray]:
    """Global (start, end) of the hits of a motif concept (labels ``id`` or ``id_<name>``)."""
    keys = [k for k in bed if k == pair.concept or k.startswith(pair.concept + "_")]
    if not keys:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    s = np.concatenate([bed[k][0] for k in keys])
    e = np.concatenate([bed[k][1] for k in keys])
    strand = np.concatenate([bed[k][2] for k in keys])
    if pair.strand in ("+", "-"):
        keep = strand == pair.strand
        s, e = s[keep], e[keep]
    return s, e


def held_out_sites(start, end, genome, block: int, max_sites: int, rng) -> SiteSet:
    """Hits whose first base lies in the held-out split, at most ``max_sites`` (a random subset);
    a hit longer than ``MAX_SITE_BP`` is cut to a random stretch of that length inside it.

    ``genome`` is an :class:`genesae_fast.annotate.core.Genome`; hits are global coordinates.
    """
    start, end = np.asarray(start, np.int64), np.asarray(end, np.int64)
    keep = ((start // block) % 2 == 1) & (end > start)
    start, end = start[keep], end[keep]
    order = np.lexsort((end, start))
    start, end = start[order], end[order]
    if start.shape[0] > max_sites:
        pick = np.sort(rng.choice(start.shape[0], size=max_sites, replace=False))
        start, end = start[pick], end[pick]
    long = end - start > MAX_SITE_BP
    start = start.copy()
    start[long] += rng.integers(0, end[long] - start[long] - MAX_SITE_BP + 1)
    end = np.where(long, start + MAX_SITE_BP, end)
    return SiteSet(start, end, record_starts(genome, start))


def record_starts(genome, pos: np.ndarray) -> np.ndarray:
    """Global first base of the record holding each position."""
    seq = np.searchsorted(genome.offsets, pos, side="right") - 1
    return genome.offsets[np.maximum(seq, 0)].astype(np.int64)


def random_sites(sites: SiteSet, genome, block: int, rng) -> SiteSet:
    """Intervals of the same lengths as ``sites``, placed uniformly at random in the held-out
    split, each inside one record (fewer when the split is too small to hold them)."""
    G = int(genome.codes.shape[0])
    lengths = (sites.end - sites.start).astype(np.int64)
    starts = np.full(lengths.shape[0], -1, np.int64)
    ends_of_record = genome.offsets + genome.lengths
    for _ in range(_MAX_DRAWS):
        todo = np.flatnonzero(starts < 0)
        if todo.size == 0 or G == 0:
            break
        cand = rng.integers(0, G, size=todo.size)
        seq = np.searchsorted(genome.offsets, cand, side="right") - 1
        ok = ((cand // block) % 2 == 1) & (cand + lengths[todo] <= ends_of_record[seq])
        starts[todo[ok]] = cand[ok]
    keep = starts >= 0
    s = starts[keep]
    return SiteSet(s, s + lengths[keep], record_starts(genome, s))


def random_feature(features: dict, feature: int, rng, nearest: int = 3) -> int:
    """A tested feature other than ``feature`` with a similar firing rate: one of the
    ``nearest`` closest in log frequency (``features.tsv`` as read by ``read_tsv``), -1 if none."""
    ids = np.array([int(x) for x in features.get("feature", [])], np.int64)
    if ids.size == 0:
        return -1
    freq = np.array([_float(x) for x in features["frequency"]])
    tested = np.array([x == "1" for x in features.get("tested", ["1"] * ids.size)])
    own = freq[ids == feature]
    if own.size == 0:
        raise InputError(f"features.tsv: feature {feature} is not listed")
    ok = tested & (ids != feature) & (freq > 0)
    if not ok.any():
        return -1
    dist = np.abs(np.log(freq[ok]) - np.log(max(float(own[0]), 1e-12)))
    order = np.argsort(dist, kind="stable")[:nearest]
    return int(ids[ok][rng.choice(order)])
