"""Shuffled float32 batches from a store, for SAE training.

Rows sit in genome order and neighbours are strongly correlated, so batches need rows
from many places (notes/activation-store.md, 3.5). Two modes, both a pure function of
(seed, epoch, rank, world_size, chunks, batch_size):

* memory: the selected chunks are read once (cached on the store object) and each epoch
  draws a seeded permutation of all their rows; rank r takes every world_size-th row of it.
* stream: a seeded permutation of the chunks is dealt round-robin to ranks; each rank
  reads its chunks in groups of K (``buffer_chunks``) with a background thread pool one
  group ahead, permutes the rows of a group (plus the < batch_size rows left over from the
  group before) and yields batches gathered from it.

Either way each selected row comes exactly once per epoch across ranks.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

DEFAULT_MEMORY_BUDGET = 4 << 30
STREAM_BUFFER_BYTES = 128 << 20


@dataclass
class EpochPlan:
    mode: str
    chunks: list  # this rank's chunks (stream) or all selected chunks (memory)
    n_rows: int  # rows this rank gets


def _selected_chunks(store, chunks) -> list[int]:
    if chunks is None:
        return list(range(store.n_chunks))
    sel = list(chunks)
    for k in sel:
        if not 0 <= int(k) < store.n_chunks:
            raise ValueError(f"chunk {k} out of range [0, {store.n_chunks})")
    return [int(k) for k in sel]


def _rows_of(store, ks) -> int:
    return sum(store.chunk_bounds(k)[1] - store.chunk_bounds(k)[0] for k in ks)


def plan_epoch(store, *, rank, world_size, seed, epoch, chunks, shuffle, memory_budget, mode) -> EpochPlan:
    """Which chunks and how many rows ``rank`` gets in one epoch."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} not in [0, world_size={world_size})")
    if mode not in ("auto", "memory", "stream"):
        raise ValueError(f"mode must be auto, memory or stream, not {mode!r}")
    sel = _selected_chunks(store, chunks)
    total = _rows_of(store, sel)
    budget = DEFAULT_MEMORY_BUDGET if memory_budget is None else int(memory_budget)
    if mode == "auto":
        mode = "memory" if total * store.d * store._stored_dtype.itemsize <= budget else "stream"
    if mode == "memory":
        n = len(range(rank, total, world_size))
        return EpochPlan("memory", sel, n)
    order = sel
    if shuffle:
        order = [sel[i] for i in np.random.default_rng([seed, epoch]).permutation(len(sel))]
    mine = order[rank::world_size]
    return EpochPlan("stream", mine, _rows_of(store, mine))


def iterate_batches(store, batch_size, *, shuffle=True, seed=0, rank=0, world_size=1, epoch=0, chunks=None,
                    drop_last=False, memory_budget=None, buffer_chunks=None, mode="auto"):
    """Generator behind ``ActivationStore.batches`` (see the module docstring)."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    plan = plan_epoch(store, rank=rank, world_size=world_size, seed=seed, epoch=epoch, chunks=chunks,
                      shuffle=shuffle, memory_budget=memory_budget, mode=mode)
    if plan.mode == "memory":
        return _memory_batches(store, plan, batch_size, shuffle=shuffle, seed=seed, rank=rank,
                               world_size=world_size, epoch=epoch, drop_last=drop_last)
    return _stream_batches(store, plan, batch_size, shuffle=shuffle, seed=seed, rank=rank, epoch=epoch,
                           drop_last=drop_last, buffer_chunks=buffer_chunks)


def _torch_view(x: np.ndarray, dtype: str):
    """A torch tensor over stored activations (bfloat16 bits viewed as bfloat16)."""
    import torch

    if dtype == "bfloat16":
        return torch.from_numpy(x.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(x)


def _resident(store, ks: list[int]) -> np.ndarray:
    key = tuple(ks)
    data = store._resident.get(key)
    if data is None:
        store._resident.clear()  # keep one resident copy at most
        data = np.empty((_rows_of(store, ks), store.d), dtype=store._stored_dtype)
        pos = 0
        for k in ks:
            a, b = store.chunk_bounds(k)
            store.read_chunk(k, out=data[pos:pos + b - a])
            pos += b - a
        store._resident[key] = data
    return data


def _gather(src, idx_np, stage, d):
    """float32 [len(idx), d] rows of ``src`` (a torch tensor) in ``idx`` order."""
    import torch

    idx = torch.from_numpy(idx_np)
    n = len(idx_np)
    st = stage[:n]
    torch.index_select(src, 0, idx, out=st)
    out = torch.empty((n, d), dtype=torch.float32)
    out.copy_(st)
    return out


def _memory_batches(store, plan, batch_size, *, shuffle, seed, rank, world_size, epoch, drop_last):
    import torch

    data = _resident(store, plan.chunks)
    src = _torch_view(data, store.dtype)
    total = data.shape[0]
    if shuffle:
        order = np.random.default_rng([seed, epoch]).permutation(total)
    else:
        order = np.arange(total, dtype=np.int64)
    mine = order[rank::world_size].astype(np.int64, copy=False)
    stage = torch.empty((batch_size, store.d), dtype=src.dtype)
    for a in range(0, len(mine), batch_size):
        idx = mine[a:a + batch_size]
        if len(idx) < batch_size and drop_last:
            return
        yield _gather(src, idx, stage, store.d)


def _stream_batches(store, plan, batch_size, *, shuffle, seed, rank, epoch, drop_last, buffer_chunks):
    import torch

    R, d = store.chunk_rows, store.d
    chunk_bytes = R * d * store._stored_dtype.itemsize
    K = buffer_chunks or max(1, min(16, STREAM_BUFFER_BYTES // max(1, chunk_bytes)))
    mine = plan.chunks
    groups = [mine[i:i + K] for i in range(0, len(mine), K)]
    if not groups:
        return
    rng = np.random.default_rng([seed, epoch, rank, 1])
    # Two group buffers: the pool fills one while batches are gathered from the other.
    # Rows [0, batch_size) of each buffer hold the rows carried over from the group before.
    bufs = [_take_buffer(store, (batch_size + K * R, d)) for _ in range(min(2, len(groups)))]
    pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="genesae-store-read")

    def submit(g):
        buf = bufs[g % len(bufs)]
        return [pool.submit(store.read_chunk, k, buf[batch_size + i * R:batch_size + (i + 1) * R])
                for i, k in enumerate(groups[g])]

    try:
        pending = submit(0)
        carry = np.zeros(0, dtype=np.int64)  # row indices into the previous buffer
        prev = None
        stage = torch.empty((batch_size, d), dtype=_torch_view(bufs[0][:1], store.dtype).dtype)
        for g in range(len(groups)):
            for f in pending:
                f.result()
            buf = bufs[g % len(bufs)]
            # Move the carried rows to the front of this buffer.
            c = len(carry)
            if c:
                buf[batch_size - c:batch_size] = prev[carry]
            idx = [np.arange(batch_size - c, batch_size, dtype=np.int64)]
            for i, k in enumerate(groups[g]):
                a, b = store.chunk_bounds(k)
                off = batch_size + i * R
                idx.append(np.arange(off, off + b - a, dtype=np.int64))
            idx = np.concatenate(idx)
            if shuffle:
                idx = idx[rng.permutation(len(idx))]
            last = g == len(groups) - 1
            if not last:
                # The other buffer is free now that its carried rows were copied out.
                pending = submit(g + 1)
            n_full = len(idx) // batch_size
            src = _torch_view(buf, store.dtype)
            for j in range(n_full):
                yield _gather(src, idx[j * batch_size:(j + 1) * batch_size], stage, d)
            carry = idx[n_full * batch_size:]
            prev = buf
            if last and len(carry) and not drop_last:
                yield _gather(src, carry, stage, d)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        store._free_buffers.extend(bufs)  # reused by the next epoch (no page faults)


def _take_buffer(store, shape) -> np.ndarray:
    """A stream buffer of ``shape``: a free one from an earlier epoch, or a new one.

    Buffers are handed out exclusively (list.pop is atomic), so iterators running at the
    same time never share one.
    """
    free = store._free_buffers
    for _ in range(len(free)):
        try:
            buf = free.pop()
        except IndexError:
            break
        if buf.shape == shape:
            return buf
        # a different batch size: drop it
    return np.empty(shape, dtype=store._stored_dtype)


__all__ = ["iterate_batches", "plan_epoch", "EpochPlan"]
