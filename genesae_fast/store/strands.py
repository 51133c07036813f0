"""The reverse-complement store beside a forward store, and the two views that read both.

Layout: ``extract(..., strands="both")`` writes the forward pass to ``S.zarr`` exactly as a
one-pass extraction does (same bytes), and the reverse-complement pass
(``genesae_fast.strands.ReverseComplementModel``) to the sibling store
``rc_store_path(S.zarr)`` = ``S.rc.zarr``: an ordinary store (same chunking, commit records,
CRC checks, resume), whose attrs and config carry ``"strand": "-"``. Its rows are in +
strand order and its coordinates are + strand coordinates, so for a 1-bp tokenizer row
``i`` of both stores is the same base.

Readers find the RC store with :func:`companion` (present, complete, and made with the
same model, layer, windows and genome as the forward store) and read the two through:

- :class:`BothStrandsStore` (training): one store whose chunks are the forward and RC
  chunks interleaved (forward chunk j, RC chunk j, forward chunk j+1 ...), with the
  statistics of all rows folded from both stores' commit records; the held-out chunks at
  the end then hold both passes of the same genome stretch.
- :class:`SideBySideStore` (annotation): row ``i`` is ``[forward row i | RC row i]``
  (width ``2 d``); needs the same token coordinates in both stores (1-bp tokenizers).
"""
from __future__ import annotations

import numpy as np

from genesae_fast.errors import InputError

# attrs that must agree between a forward store and its RC companion
_MATCH = ("layer", "window", "stride", "max_tokens", "batch_size")


def rc_store_path(path) -> str:
    """Where the reverse-complement pass of the store at ``path`` lives: ``X.zarr`` -> ``X.rc.zarr``."""
    p = str(path).rstrip("/")
    return p[:-5] + ".rc.zarr" if p.endswith(".zarr") else p + ".rc"


def _mismatch(fwd_attrs: dict, rc_attrs: dict) -> str | None:
    """The first setting in which the RC store differs from the forward store, else None."""
    if rc_attrs.get("strand") != "-":
        return "it is not a reverse-complement pass (no strand '-' in its attrs)"
    for key in _MATCH:
        if fwd_attrs.get(key) != rc_attrs.get(key):
            return f"{key} {rc_attrs.get(key)!r} differs from the forward store's {fwd_attrs.get(key)!r}"
    for group, key in (("model", "sha256"), ("genome", "sha256"), ("model", "d_model")):
        a, b = (fwd_attrs.get(group) or {}).get(key), (rc_attrs.get(group) or {}).get(key)
        if a != b:
            return f"{group} {key} differs from the forward store's"
    return None


def companion(store, strands: str = "auto"):
    """The opened RC store of an opened forward ``store``, or None.

    ``strands``: ``"forward"`` never uses one; ``"auto"`` uses it when it is there, complete
    and matching (else None); ``"both"`` requires it (InputError naming the problem).
    """
    from genesae_fast.store import ActivationStore
    from genesae_fast.store.backend import Backend

    if strands == "forward" or (store.attrs or {}).get("strand") == "-":
        return None
    path = rc_store_path(store.path)
    if not Backend(path).exists("zarr.json"):
        if strands == "both":
            raise InputError(f"{path}: no reverse-complement store (extract with --strands both)")
        return None
    try:
        rc = ActivationStore.open(path)
    except InputError:
        if strands == "both":
            raise
        return None
    problem = _mismatch(store.attrs or {}, rc.attrs or {})
    if problem is not None:
        if strands == "both":
            raise InputError(f"{path}: not the reverse-complement pass of {store.path}: {problem}")
        return None
    return rc


class BothStrandsStore:
    """Training view of a forward store and its RC store as one store (duck-types ActivationStore
    for ``genesae_fast.train``: chunks, reads, batches, statistics, coordinates)."""

    def __init__(self, fwd, rc):
        from genesae_fast.store.records import combine_stats

        if fwd.d != rc.d or fwd.dtype != rc.dtype:
            raise InputError(f"{rc.path}: width or dtype differs from {fwd.path}")
        self.fwd, self.rc = fwd, rc
        self._parts = (fwd, rc)
        # forward chunk j, then RC chunk j: both passes of a stretch sit side by side
        self._chunks = sorted([(j, s) for s, st in enumerate(self._parts) for j in range(st.n_chunks)])
        rows = [self._parts[s].chunk_bounds(j)[1] - self._parts[s].chunk_bounds(j)[0] for j, s in self._chunks]
        self._offsets = np.concatenate([[0], np.cumsum(rows)]).astype(np.int64)
        self._chunk_pass = np.array([s for _, s in self._chunks], np.int64)  # 0 forward, 1 RC
        self._chunk_start = np.array([self._parts[s].chunk_bounds(j)[0] for j, s in self._chunks], np.int64)
        self.n_rows, self.n_chunks = int(self._offsets[-1]), len(self._chunks)
        self.d, self.dtype, self._stored_dtype = fwd.d, fwd.dtype, fwd._stored_dtype
        self.chunk_rows = max(fwd.chunk_rows, rc.chunk_rows)
        self.path, self.has_coordinates, self.sequence_names = fwd.path, fwd.has_coordinates, fwd.sequence_names
        self.complete = fwd.complete and rc.complete
        records = [dict(self._parts[s]._records[j], chunk=c) for c, (j, s) in enumerate(self._chunks)]
        _, self.mean, self.norm_scale = combine_stats(records, self.d)
        config = {"forward": (fwd.attrs or {}).get("config"), "reverse_complement": (rc.attrs or {}).get("config")}
        self.attrs = dict(fwd.attrs or {}, config=config, strands="both", rc_store=rc.path)
        self._resident, self._free_buffers = {}, []
        self.heldout_multiple = 2  # the trainer holds out both passes of the last stretch

    def __repr__(self) -> str:
        return f"BothStrandsStore({self.fwd.path!r} + {self.rc.path!r}, n_rows={self.n_rows})"

    def __len__(self) -> int:
        return self.n_rows

    def chunk_bounds(self, k: int) -> tuple[int, int]:
        return int(self._offsets[k]), int(self._offsets[k + 1])

    def read_chunk(self, k: int, out: np.ndarray | None = None, verify: bool | None = None) -> np.ndarray:
        """Chunk ``k`` of the view as stored (checked against its store's commit record)."""
        if not 0 <= k < self.n_chunks:
            raise IndexError(f"chunk {k} out of range [0, {self.n_chunks})")
        j, s = self._chunks[k]
        return self._parts[s].read_chunk(j, out=out, verify=verify)

    def committed_chunks(self) -> list[int]:
        return list(range(self.n_chunks))

    def _locate(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(pass, store row) of view ``rows``."""
        c = np.searchsorted(self._offsets, rows, side="right") - 1
        return self._chunk_pass[c], self._chunk_start[c] + rows - self._offsets[c]

    def coordinates(self, start: int = 0, stop: int | None = None):
        """(seq, bp_start, bp_end, token_id) of view rows ``[start, stop)`` (+ strand coordinates)."""
        stop = self.n_rows if stop is None else int(stop)
        rows = np.arange(int(start), stop, dtype=np.int64)
        s, r = self._locate(rows)
        cols = [np.zeros(len(rows), dt) for dt in (np.int32, np.int64, np.int64, np.int64)]
        for p, store in enumerate(self._parts):
            sel = np.flatnonzero(s == p)
            if sel.size:
                got = store.coordinates(int(r[sel].min()), int(r[sel].max()) + 1)
                for col, g in zip(cols, got):
                    col[sel] = np.asarray(g)[r[sel] - int(r[sel].min())]
        return tuple(cols)

    def batches(self, batch_size: int, shuffle: bool = True, seed: int = 0, **kwargs):
        """As ``ActivationStore.batches``, over the chunks of both passes."""
        from genesae_fast.store.batches import iterate_batches

        return iterate_batches(self, batch_size, shuffle=shuffle, seed=seed, **kwargs)

    def epoch_rows(self, rank: int = 0, world_size: int = 1, seed: int = 0, epoch: int = 0, chunks=None, *,
                   shuffle: bool = True, memory_budget: int | None = None, mode: str = "auto") -> int:
        """As ``ActivationStore.epoch_rows``."""
        from genesae_fast.store.batches import plan_epoch

        return plan_epoch(self, rank=rank, world_size=world_size, seed=seed, epoch=epoch, chunks=chunks,
                          shuffle=shuffle, memory_budget=memory_budget, mode=mode).n_rows


def open_for_training(path, strands: str = "auto"):
    """The store at ``path`` for SAE training: with its RC companion as a :class:`BothStrandsStore`
    (``strands`` "auto" when present, "both" required), else the plain ``ActivationStore``."""
    from genesae_fast.store import ActivationStore
    from genesae_fast.strands import check_strands

    check_strands(strands)
    store = ActivationStore.open(path)
    rc = companion(store, strands)
    return store if rc is None else BothStrandsStore(store, rc)


class SideBySideStore:
    """Annotation view: row ``i`` = ``[forward row i | RC row i]`` as float32 ``[n, 2 d]``.

    Coordinates, interval searches and everything else come from the forward store; the
    two stores must hold the same tokens (checked chunk by chunk on the coordinates when
    opened). ``mean`` is both stores' means side by side.
    """

    def __init__(self, fwd, rc):
        self.fwd, self.rc = fwd, rc
        self._check_same_tokens()
        self.d = 2 * int(fwd.d)
        self.mean = np.concatenate([np.asarray(fwd.mean, np.float64), np.asarray(rc.mean, np.float64)])
        self.attrs = dict(fwd.attrs or {}, strands="both", rc_store=rc.path)

    def _check_same_tokens(self) -> None:
        fwd, rc = self.fwd, self.rc
        if fwd.n_rows != rc.n_rows:
            raise InputError(f"{rc.path}: {rc.n_rows} tokens, the forward store {fwd.n_rows}; per-base pooling "
                             "of the two strands needs the same tokens (a 1-bp tokenizer); use --strands forward")
        step = 1 << 20
        for a in range(0, fwd.n_rows, step):
            b = min(a + step, fwd.n_rows)
            f, r = fwd.coordinates(a, b), rc.coordinates(a, b)
            if not all(np.array_equal(x, y) for x, y in zip(f[:3], r[:3])):
                raise InputError(f"{rc.path}: token coordinates differ from the forward store's; per-base pooling "
                                 "of the two strands needs the same tokens (a 1-bp tokenizer); use --strands forward")

    def __getattr__(self, name):
        # everything not defined here (coordinates, n_rows, sequence_names ...) is the forward store's
        return getattr(self.__dict__["fwd"], name)

    def read_rows(self, start: int, stop: int) -> np.ndarray:
        """Float32 ``[stop - start, 2 d]``: forward rows, then RC rows."""
        return np.concatenate([self.fwd.read_rows(start, stop), self.rc.read_rows(start, stop)], axis=1)

    def iter_rows(self, block_rows: int, start: int = 0, stop: int | None = None):
        """``(row, [n, 2 d])`` blocks in order."""
        stop = self.fwd.n_rows if stop is None else int(stop)
        for a in range(int(start), stop, int(block_rows)):
            yield a, self.read_rows(a, min(a + int(block_rows), stop))


def open_for_annotation(path, strands: str = "auto"):
    """The store at ``path`` for annotation: a :class:`SideBySideStore` with its RC companion
    (``strands`` "auto" when present and holding the same tokens, "both" required), else the
    plain ``ActivationStore``."""
    from genesae_fast.store import ActivationStore
    from genesae_fast.strands import check_strands

    check_strands(strands)
    store = ActivationStore.open(path)
    rc = companion(store, strands)
    if rc is None:
        return store
    try:
        return SideBySideStore(store, rc)
    except InputError:
        if strands == "both":
            raise
        return store  # auto: another tokenization on the RC pass (k-mers, BPE) is annotated one pass


__all__ = ["BothStrandsStore", "SideBySideStore", "companion", "open_for_annotation", "open_for_training",
           "rc_store_path"]
