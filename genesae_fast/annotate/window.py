"""Genome blocks and the store rows, coordinates and SAE codes of a genome window.

The genome (records laid end to end, as :class:`~genesae_fast.annotate.core.Genome`) is cut
into blocks of ``block_bp`` bases. A block *owns* its bases and the tokens whose first base
it holds, so every base and token is counted once; the work on a block reads a wider
window (motif widths, hits that run past the block, example contexts).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from genesae_fast.annotate import concepts as C

DEFAULT_BLOCK_BP = 262_144


def plan_blocks(genome_bp: int, block_bp: int = DEFAULT_BLOCK_BP) -> list[tuple[int, int]]:
    """Blocks ``[(g0, g1), ...]`` covering ``[0, genome_bp)`` in order."""
    if block_bp < 1:
        raise ValueError("block_bp must be at least 1")
    return [(a, min(a + block_bp, genome_bp)) for a in range(0, genome_bp, block_bp)]


def window_rows(store, genome, lo: int, hi: int) -> tuple[int, int]:
    """Store rows ``[r0, r1)`` whose tokens overlap the global window ``[lo, hi)``.

    Rows are in genome order (records in store order, tokens by position), so the rows of
    every record the window touches form one run.
    """
    if hi <= lo:
        return 0, 0
    first = int(np.searchsorted(genome.offsets, lo, side="right") - 1)
    last = int(np.searchsorted(genome.offsets, hi - 1, side="right") - 1)
    r0, r1 = None, None
    for r in range(first, last + 1):
        off = int(genome.offsets[r])
        a, b = max(lo - off, 0), min(hi - off, int(genome.lengths[r]))
        if b <= a:
            continue
        rlo, rhi = store.interval_row_ranges(r, np.array([a]), np.array([b]))
        r0 = int(rlo[0]) if r0 is None else min(r0, int(rlo[0]))
        r1 = int(rhi[0]) if r1 is None else max(r1, int(rhi[0]))
    if r0 is None or r1 <= r0:
        return 0, 0
    return r0, r1


@dataclass
class Window:
    """Tokens of a window: global rows, spans, SAE codes and the base -> token layout.

    Attributes
    ----------
    lo, hi : int -- the window (global bp)
    r0 : int -- global row of token 0
    tok_start, tok_end : (n,) int64 global spans
    x : (n, d) float32 store rows, or None (read with ``need_x=False``)
    acts : SparseActs (n tokens) of the SAE features
    layout : Layout over ``[lo, hi)`` (origin lo; tokens cut to the window)
    """

    lo: int
    hi: int
    r0: int
    tok_start: np.ndarray
    tok_end: np.ndarray
    x: np.ndarray
    acts: C.SparseActs
    layout: C.Layout

    def owned(self, g0: int, g1: int) -> np.ndarray:
        """Tokens whose first base is in ``[g0, g1)``, shape (n,) bool."""
        return (self.tok_start >= g0) & (self.tok_start < g1)


# rows encoded at once: the encoder builds a dense (rows, n_latents) pre-activation, so
# this bounds a worker's memory (16384 x 768 float32 = 50 MB) whatever the block size
ENCODE_ROWS = 16384


def encode_topk(sae, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """SAE codes of ``x`` (n, d): (vals [n, k] float32, idx [n, k]); values <= 0 do not fire."""
    import torch

    vals, idx = [], []
    with torch.no_grad():
        for a in range(0, max(x.shape[0], 1), ENCODE_ROWS):
            xt = torch.from_numpy(np.ascontiguousarray(x[a:a + ENCODE_ROWS], dtype=np.float32))
            v, i = sae.encode(sae.normalize(xt))
            vals.append(v.float().cpu().numpy())
            idx.append(i.cpu().numpy())
    return np.concatenate(vals), np.concatenate(idx)


def window_codes(store, sae, r0: int, r1: int, *, cache=None, blocks=(), need_x: bool = True):
    """Rows ``[r0, r1)`` (None unless ``need_x``) and their top-k codes, from ``cache`` (a
    :class:`~.codecache.CodeCache`, files of ``blocks``) where it has them, else encoded."""
    x = store.read_rows(r0, r1) if need_x else None
    if cache is None:
        return (x,) + encode_topk(sae, x if x is not None else store.read_rows(r0, r1))
    vals, idx, have = cache.read(r0, r1, blocks)
    if have.all():
        return x, vals, idx
    miss = np.flatnonzero(~have)
    # missing rows come in runs (window edges): read and encode each run
    cuts = np.flatnonzero(np.diff(miss) != 1) + 1
    runs = [(int(a[0]), int(a[-1]) + 1) for a in np.split(miss, cuts)]
    enc = [encode_topk(sae, x[a:z] if x is not None else store.read_rows(r0 + a, r0 + z)) for a, z in runs]
    if vals is None:
        k = enc[0][0].shape[1]
        vals, idx = np.zeros((r1 - r0, k), np.float32), np.zeros((r1 - r0, k), np.int64)
    for (a, z), (v, i) in zip(runs, enc):
        vals[a:z], idx[a:z] = v, i
    return x, vals, idx


def read_window(store, sae, genome, lo: int, hi: int, split_block: int, n_latents: int, *, cache=None,
                blocks=(), need_x: bool = True) -> Window:
    """Read, encode and lay out the tokens overlapping ``[lo, hi)``.

    ``cache``/``blocks``: take the codes of the rows those blocks' files hold from the cache
    (the same codes, see :mod:`.codecache`); ``need_x=False``: no rows in ``Window.x``.
    """
    r0, r1 = window_rows(store, genome, lo, hi)
    if r1 > r0:
        seq, bs, be, _ = store.coordinates(r0, r1)
        off = genome.offsets[np.asarray(seq, np.int64)]
        ts, te = off + np.asarray(bs, np.int64), off + np.asarray(be, np.int64)
        x, vals, idx = window_codes(store, sae, r0, r1, cache=cache, blocks=blocks, need_x=need_x)
    else:
        ts = te = np.zeros(0, np.int64)
        x = np.zeros((0, store.d), np.float32)
        vals, idx = np.zeros((0, 1), np.float32), np.zeros((0, 1), np.int64)
    acts = C.SparseActs.from_topk(vals, idx, n_latents)
    layout = local_layout(ts, te, lo, hi, split_block)
    return Window(lo, hi, r0, ts, te, x, acts, layout)


def local_layout(tok_start: np.ndarray, tok_end: np.ndarray, lo: int, hi: int, split_block: int) -> C.Layout:
    """Layout of ``[lo, hi)``: tokens cut to the window, later tokens win overlaps (as genome-wide)."""
    s = np.clip(tok_start, lo, hi) - lo
    e = np.clip(tok_end, lo, hi) - lo
    base = C.make_layout(s, np.maximum(e, s), hi - lo, split_block)
    return C.Layout(base.pos_token, tok_start, tok_end, int(split_block), origin=int(lo))
