"""Training batches: every row once per epoch, shuffled per epoch, sharded across ranks."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from genesae_fast.store import ActivationStore, StoreWriter


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    # Row i holds the value i in column 0 (exact in float32 storage), so rows identify themselves.
    n, d = 1000, 3
    x = np.random.default_rng(0).standard_normal((n, d)).astype(np.float32)
    x[:, 0] = np.arange(n)
    path = tmp_path_factory.mktemp("b") / "s.zarr"
    w = StoreWriter.create(path, n_rows=n, d=d, dtype="float32", config={}, chunk_rows=64, coordinates=False)
    for k in range(w.n_chunks):
        a, b = w.chunk_bounds(k)
        w.write_chunk(k, x[a:b])
    w.finalize()
    return ActivationStore.open(path), x


def _ids(batches):
    return np.concatenate([b[:, 0].numpy() for b in batches]).astype(np.int64)


@pytest.mark.parametrize("mode", ["stream", "memory"])
@pytest.mark.parametrize("world_size", [1, 2, 3])
@pytest.mark.parametrize("batch_size", [1, 7, 100, 5000])
def test_every_row_once_per_epoch(store, mode, world_size, batch_size):
    s, x = store
    seen = []
    for rank in range(world_size):
        bs = list(s.batches(batch_size, seed=5, rank=rank, world_size=world_size, epoch=2, mode=mode,
                            buffer_chunks=3))
        assert all(b.dtype == torch.float32 and b.shape[1] == 3 for b in bs)
        assert all(len(b) == batch_size for b in bs[:-1])
        ids = _ids(bs)
        assert len(ids) == s.epoch_rows(rank, world_size, seed=5, epoch=2, mode=mode)
        assert np.array_equal(np.concatenate([b.numpy() for b in bs]), x[ids])  # whole rows, unmixed
        seen.append(ids)
    assert np.array_equal(np.sort(np.concatenate(seen)), np.arange(len(x)))


@pytest.mark.parametrize("mode", ["stream", "memory"])
def test_order_is_seeded_and_changes_per_epoch(store, mode):
    s, _ = store
    run = lambda **kw: _ids(s.batches(64, mode=mode, buffer_chunks=4, **kw))  # noqa: E731
    e0, e0b, e1, other = run(seed=1, epoch=0), run(seed=1, epoch=0), run(seed=1, epoch=1), run(seed=2, epoch=0)
    assert np.array_equal(e0, e0b)
    assert not np.array_equal(e0, e1) and not np.array_equal(e0, other)
    # rows are mixed across chunks: a batch spans several chunks
    first = next(iter(s.batches(64, mode=mode, buffer_chunks=4, seed=1)))[:, 0].numpy().astype(int) // 64
    assert len(np.unique(first)) > 2


@pytest.mark.parametrize("mode", ["stream", "memory"])
def test_chunk_range_drop_last_and_no_shuffle(store, mode):
    s, _ = store
    ids = _ids(s.batches(10, shuffle=False, mode=mode))
    assert np.array_equal(ids, np.arange(1000))
    held = _ids(s.batches(10, chunks=range(14, 16), mode=mode, seed=3))
    assert np.array_equal(np.sort(held), np.arange(14 * 64, 1000))
    bs = list(s.batches(300, drop_last=True, chunks=range(0, 14), mode=mode))
    assert [len(b) for b in bs] == [300, 300]  # 896 rows: the last 296 dropped
    with pytest.raises(ValueError, match="out of range"):
        list(s.batches(10, chunks=range(15, 17)))
    with pytest.raises(ValueError, match="rank"):
        list(s.batches(10, rank=2, world_size=2))


def test_auto_mode_follows_the_memory_budget(store):
    s, _ = store
    s._resident.clear()
    list(s.batches(100, memory_budget=1000))  # 12 kB of rows do not fit 1 kB: streamed
    assert not s._resident
    list(s.batches(100))
    assert s._resident


def test_bfloat16_batches_are_exact(tmp_path, rng):
    x = rng.standard_normal((300, 4)).astype(np.float32)
    w = StoreWriter.create(tmp_path / "s.zarr", n_rows=300, d=4, dtype="bfloat16", config={}, chunk_rows=64,
                           coordinates=False)
    for k in range(w.n_chunks):
        a, b = w.chunk_bounds(k)
        w.write_chunk(k, x[a:b])
    w.finalize()
    s = ActivationStore.open(tmp_path / "s.zarr")
    want = torch.from_numpy(x).to(torch.bfloat16).float().numpy()
    for mode in ("stream", "memory"):
        got = np.concatenate([b.numpy() for b in s.batches(32, shuffle=False, mode=mode)])
        assert np.array_equal(got, want)


def test_interleaved_iterators_and_reused_buffers_stay_exact(store):
    s, x = store
    for _ in range(2):  # the second round reuses the first round's buffers
        a = s.batches(50, seed=1, mode="stream", buffer_chunks=2)
        b = s.batches(70, seed=2, mode="stream", buffer_chunks=2)
        got_a, got_b = [], []
        done = False
        while not done:  # alternate between the two live iterators
            done = True
            for it, got in ((a, got_a), (b, got_b)):
                t = next(it, None)
                if t is not None:
                    got.append(t.numpy())
                    done = False
        for got in (np.concatenate(got_a), np.concatenate(got_b)):
            ids = got[:, 0].astype(np.int64)
            assert np.array_equal(np.sort(ids), np.arange(len(x)))
            assert np.array_equal(got, x[ids])
    assert s._free_buffers
