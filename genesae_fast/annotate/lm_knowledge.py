""""Does the LM know this concept?": the LM's bits per base at a concept's sites vs matched flanks.

An SAE can only find what the language model encodes. If the model predicts the bases of a
concept's sites no better than the bases around them, a weak SAE feature for that concept
is an LM failure, not an SAE failure. The store's per-token ``lm_bits`` (written by
``extract --lm-bits``; spread evenly over a token's bases) give bits per base.

Definition, per concept (motif concepts: the scan's hits on both strands; gene concepts:
their intervals), over every site of the genome (nothing here is chosen from the data, so
the held-out split is not needed):

- a site ``[s, e)`` of length ``L`` has two flanks of ``min(L, FLANK_MAX_BP)`` bases at
  ``FLANK_GAP_BP`` bases from it, ``[s - GAP - l, s - GAP)`` and ``[e + GAP, e + GAP + l)``,
  cut to the site's record; flank bases inside any site of the same concept are dropped;
- the site's value is the mean bits of its bases that have bits, the flank's the mean over
  both flanks; a site counts when both have at least one base; delta = site - flank;
- ``lm_bits_site``, ``lm_bits_flank``, ``lm_bits_delta`` are means over the counted sites,
  ``lm_bits_delta_ci`` the half-width of the normal 95% interval of the mean delta,
  ``lm_z`` = mean delta / its standard error, and ``lm_knows`` = 1 when the mean delta is
  at most ``-KNOWS_DROP_BITS`` and ``lm_z <= -KNOWS_Z`` over at least ``KNOWS_MIN_SITES``
  sites (sites cost clearly fewer bits; the normal interval needs a few sites).

Per-site means are rounded to 2^-20 bits and summed as exact (Python) integers, squares
included, so the sums do not depend on block order, workers or ranks, the streamed pass
equals the in-memory reference, and the variance has no cancellation error.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from genesae_fast.annotate import stream as S
from genesae_fast.annotate.concepts import _expand

FLANK_GAP_BP = 10  # bases between a site and its flanks (the LM's prediction just after a site uses it)
FLANK_MAX_BP = 1000  # flank length cap for long sites (CDS, intergenic runs)
KNOWS_DROP_BITS = 0.1  # sites must cost at least this many bits per base fewer than flanks ...
KNOWS_Z = 3.0  # ... and the mean delta must be this many standard errors below 0 ...
KNOWS_MIN_SITES = 10  # ... over at least this many sites
SCALE = float(1 << 20)  # fixed point of the per-site sums
COLUMNS = ("lm_sites", "lm_bits_site", "lm_bits_flank", "lm_bits_delta", "lm_bits_delta_ci", "lm_z", "lm_knows")


@dataclass
class LMKnowledge:
    """Per concept ``(kind, name)``: exact sums ``[sites, sum site, sum flank, sum delta^2]``
    (site values in units of 2^-20 bits, squares in 2^-40), shape (C, 4), Python ints."""

    keys: list
    sums: np.ndarray

    @classmethod
    def empty(cls, keys: list) -> "LMKnowledge":
        return cls(list(keys), empty_sums(len(keys)))

    def merge(self, o: "LMKnowledge") -> "LMKnowledge":
        if self.keys != o.keys:
            raise ValueError("LMKnowledge.merge: different concepts")
        return LMKnowledge(self.keys, self.sums + o.sums)

    def table(self) -> dict:
        """``{(kind, name): {column: value}}`` (see the module docstring)."""
        return {key: concept_row(self.sums[i]) for i, key in enumerate(self.keys)}


def empty_sums(n_concepts: int) -> np.ndarray:
    """(C, 4) zeros as Python ints (object array: sums of squares never overflow)."""
    out = np.empty((n_concepts, 4), dtype=object)
    out[...] = 0
    return out


def concept_row(sums) -> dict:
    """The columns of one concept from its exact sums ``[n, sum site, sum flank, sum delta^2]``."""
    n, s_site, s_flank, s_sq = (int(v) for v in sums)
    row = dict.fromkeys(COLUMNS, float("nan"))
    row["lm_sites"] = n
    if n == 0:
        row["lm_knows"] = 0
        return row
    s_delta = s_site - s_flank
    delta = s_delta / SCALE / n
    row.update(lm_bits_site=s_site / SCALE / n, lm_bits_flank=s_flank / SCALE / n, lm_bits_delta=delta)
    if n >= 2:
        var = (n * s_sq - s_delta * s_delta) / (n * (n - 1)) / (SCALE * SCALE)  # exact integer numerator
        se = math.sqrt(max(var, 0.0) / n)
        row["lm_bits_delta_ci"] = 1.96 * se
        row["lm_z"] = delta / se if se > 0 else (0.0 if delta == 0 else math.copysign(math.inf, delta))
    row["lm_knows"] = int(n >= KNOWS_MIN_SITES and delta <= -KNOWS_DROP_BITS and row["lm_z"] <= -KNOWS_Z)
    return row


# --------------------------------------------------------------------------- per-base bits
def base_bits(store, genome, lo: int, hi: int) -> np.ndarray:
    """The LM's bits of every base of the global window ``[lo, hi)``: float32 (hi - lo,), NaN where none.

    A token's bits are spread evenly over its bases (one token per base: its bits); where
    tokens overlap, the later token's share is kept.
    """
    from genesae_fast.annotate.window import window_rows

    out = np.full(max(hi - lo, 0), np.nan, np.float32)
    r0, r1 = window_rows(store, genome, lo, hi)
    if r1 <= r0:
        return out
    seq, bs, be, _ = store.coordinates(r0, r1)
    off = genome.offsets[np.asarray(seq, np.int64)]
    ts, te = off + np.asarray(bs, np.int64), off + np.asarray(be, np.int64)
    share = store.lm_bits(r0, r1) / np.maximum(te - ts, 1).astype(np.float32)
    a, b = np.clip(ts, lo, hi), np.clip(te, lo, hi)
    b = np.maximum(a, b)
    out[_expand(a - lo, b - lo)] = np.repeat(share, b - a)
    return out


# --------------------------------------------------------------------------- per-site values
def _segment_sums(vals: np.ndarray, ok: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sum (float64, left to right) and count of ``vals[ok]`` in each local range ``[a_i, b_i)``."""
    n = a.shape[0]
    b = np.maximum(a, b)
    idx = _expand(a, b)
    seg = np.repeat(np.arange(n), b - a)
    keep = ok[idx]
    total = np.bincount(seg[keep], weights=vals[idx[keep]].astype(np.float64), minlength=n)
    return total, np.bincount(seg[keep], minlength=n).astype(np.int64)


def site_values(bits: np.ndarray, lo: int, sites: tuple, others: tuple, records: tuple) -> tuple[np.ndarray, np.ndarray]:
    """Mean bits at each site and at its flanks (NaN where no base has bits).

    Parameters
    ----------
    bits : (W,) float32 -- bits of the window ``[lo, lo + W)`` (NaN: none)
    sites : (starts, ends) global, the sites to measure (inside the window with their flanks)
    others : (starts, ends) global, every site of the concept overlapping the window (flank exclusion)
    records : (record starts, record ends) global, of each measured site
    """
    W = bits.shape[0]
    s, e = (np.asarray(x, np.int64) for x in sites)
    valid = ~np.isnan(bits)
    vals = np.where(valid, bits, np.float32(0))
    inside = np.zeros(W, bool)
    os_, oe = (np.clip(np.asarray(x, np.int64) - lo, 0, W) for x in others)
    inside[_expand(os_, np.maximum(os_, oe))] = True
    fl = np.minimum(e - s, FLANK_MAX_BP)
    rlo, rhi = (np.asarray(x, np.int64) for x in records)
    s_sum, s_n = _segment_sums(vals, valid, s - lo, e - lo)
    fvalid = valid & ~inside
    left = (np.maximum(s - FLANK_GAP_BP - fl, rlo) - lo, np.maximum(s - FLANK_GAP_BP, rlo) - lo)
    right = (np.minimum(e + FLANK_GAP_BP, rhi) - lo, np.minimum(e + FLANK_GAP_BP + fl, rhi) - lo)
    l_sum, l_n = _segment_sums(vals, fvalid, *left)
    r_sum, r_n = _segment_sums(vals, fvalid, *right)
    with np.errstate(invalid="ignore", divide="ignore"):
        return s_sum / s_n, (l_sum + r_sum) / (l_n + r_n)


def fold_sites(site: np.ndarray, flank: np.ndarray) -> list:
    """Exact sums ``[n, sum site, sum flank, sum delta^2]`` (Python ints) of the sites with both values."""
    ok = ~(np.isnan(site) | np.isnan(flank))
    qs = np.rint(site[ok] * SCALE).astype(np.int64)
    qf = np.rint(flank[ok] * SCALE).astype(np.int64)
    qd = qs - qf
    # squares of per-site deltas (< 2^50 for |delta| < 32 bits) summed 4096 at a time in int64, then exactly
    sq = sum(int(np.dot(qd[i:i + 4096], qd[i:i + 4096])) for i in range(0, qd.shape[0], 4096))
    return [int(ok.sum()), int(qs.sum()), int(qf.sum()), sq]


def concept_sums(bits: np.ndarray, lo: int, genome, starts: np.ndarray, ends: np.ndarray,
                 owned: np.ndarray) -> list:
    """Exact sums of one concept's ``owned`` sites; ``starts``/``ends`` hold every site of
    the concept overlapping the window (global)."""
    s, e = starts[owned], ends[owned]
    rec = np.searchsorted(genome.offsets, s, side="right") - 1
    records = (genome.offsets[rec], genome.offsets[rec] + genome.lengths[rec])
    # only the span of these sites and their flanks is read (the window may be far wider)
    fl = np.minimum(e - s, FLANK_MAX_BP)
    a = max(int(np.min(s - FLANK_GAP_BP - fl)), lo)
    z = min(int(np.max(e + FLANK_GAP_BP + fl)), lo + bits.shape[0])
    site, flank = site_values(bits[a - lo:z - lo], a, (s, e), (starts, ends), records)
    return fold_sites(site, flank)


# --------------------------------------------------------------------------- concepts of a job
def concept_keys(motifs, gene: dict | None) -> list:
    """``(kind, name)`` of every concept measured: motifs (by id), then gene concepts."""
    return [("motif", m.id) for m in motifs or []] + [("gene", name) for name in gene or {}]


def longest_site(motifs, gene: dict | None) -> int:
    """The longest site any concept can have (motif width, longest gene interval)."""
    return max([m.probs.shape[0] for m in motifs or []] + [int(src.maxlen) for src in (gene or {}).values()] + [1])


def reach(longest: int) -> int:
    """Bases a block's window reaches past the block: the longest site, its gap and flank."""
    return int(longest) + FLANK_GAP_BP + min(int(longest), FLANK_MAX_BP)


def window_sums(bits: np.ndarray, lo: int, genome, hits: list, g0: int, g1: int) -> np.ndarray:
    """(C, 4) exact sums of the concepts' sites starting in ``[g0, g1)``; ``hits[c]`` = (starts,
    ends) of concept c's sites near the window, ``bits`` the window ``[lo, lo + len(bits))``."""
    out = empty_sums(len(hits))
    for c, (s, e) in enumerate(hits):
        s, e = np.asarray(s, np.int64), np.asarray(e, np.int64)
        owned = (s >= g0) & (s < g1)
        if owned.any():
            out[c, :] = concept_sums(bits, lo, genome, s, e, owned)
    return out


def block_hits(job, g0: int, g1: int) -> list:
    """Per concept of ``concept_keys``: (starts, ends) of its sites near block ``[g0, g1)``:
    every site a site starting in the block or its flanks can overlap. Motifs are scanned
    only as far as motif sites reach (gene intervals may reach much further)."""
    from genesae_fast.annotate.passes import _scan

    out = []
    if job.motifs:
        width = max(m.probs.shape[0] for m in job.motifs)
        R = reach(width)
        h = _scan(job, job.motifs, max(g0 - R - width, 0), g1 + R, width)
        for m in range(len(job.motifs)):
            sel = h["motif"] == m
            out.append((h["start"][sel], h["end"][sel]))
    R = reach(longest_site(None, job.gene))
    for src in (job.gene or {}).values():
        out.append(src.starting(max(g0 - 2 * R, 0), g1 + R))
    return out


def lm_block(b: int, _params) -> LMKnowledge:
    """The streamed pass on block ``b``: its sites' sums (a block of the pass ``lm_knowledge``)."""
    from genesae_fast.annotate.passes import _resources

    job, store, _ = _resources()
    g0, g1 = job.blocks[b]
    G = int(job.genome.codes.shape[0])
    R = reach(longest_site(job.motifs, job.gene))
    lo, hi = max(g0 - R, 0), min(g1 + R, G)
    acc = LMKnowledge.empty(concept_keys(job.motifs, job.gene))
    hits = block_hits(job, g0, g1)
    acc.sums += window_sums(base_bits(store, job.genome, lo, hi), lo, job.genome, hits, g0, g1)
    return acc


def streamed(r, job) -> LMKnowledge | None:
    """Run the pass over every block of ``job`` (None when the store has no LM bits or
    there are no concepts)."""
    from genesae_fast.store import ActivationStore

    if not ActivationStore.open(job.store_path).has_lm_bits or not concept_keys(job.motifs, job.gene):
        return None
    return S.run_pass(r, "lm_knowledge", {b: None for b in range(len(job.blocks))})


def in_memory(store, genome, motifs, real_hits, gene: dict | None) -> LMKnowledge | None:
    """The reference: every site of the genome at once (None without LM bits or concepts)."""
    from genesae_fast.annotate.core import hits_by_motif

    keys = concept_keys(motifs, gene)
    if not store.has_lm_bits or not keys:
        return None
    G = int(genome.codes.shape[0])
    hits = [(h.start, h.end) for h in hits_by_motif(real_hits, genome, len(motifs))] if motifs else []
    hits += [src.starting(0, G) for src in (gene or {}).values()]
    acc = LMKnowledge.empty(keys)
    acc.sums += window_sums(base_bits(store, genome, 0, G), 0, genome, hits, 0, G)
    return acc


# --------------------------------------------------------------------------- tables
def absent_reason(store) -> str:
    """Why a store gives no diagnostic."""
    return str(store.attrs.get("lm_bits_absent") or "the store has no LM bits (extract --lm-bits)")


def add_columns(res, lm: LMKnowledge | None, reason: str | None) -> None:
    """Add the diagnostic's columns to ``res.concept_summary`` (NA without it) and its
    counts (or the reason it is absent) to ``res.summary``."""
    cs = res.concept_summary
    table = lm.table() if lm is not None else {}
    empty = dict.fromkeys(COLUMNS, float("nan"))
    rows = [table.get((k, c), empty) for k, c in zip(cs["kind"], cs["concept"])]
    for col in COLUMNS:
        cs[col] = [row[col] for row in rows]
    if lm is None:
        res.summary["lm_knowledge"] = {"absent": reason or "no concepts"}
        return
    known = [c for c, row in zip(cs["concept"], rows) if row["lm_knows"] == 1]
    res.summary["lm_knowledge"] = {
        "concepts_measured": sum(1 for row in rows if row["lm_sites"] > 0),  # NaN (not measured) > 0 is False
        "concepts_known": len(known), "known": known[:50],
        "flank_gap_bp": FLANK_GAP_BP, "flank_max_bp": FLANK_MAX_BP,
        "knows_drop_bits": KNOWS_DROP_BITS, "knows_z": KNOWS_Z, "knows_min_sites": KNOWS_MIN_SITES,
    }
