"""StoreWriter / ActivationStore against plain numpy models of the same data."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from genesae_fast.errors import InputError
from genesae_fast.store import ActivationStore, StoreWriter, default_chunk_rows, describe
from genesae_fast.store.layout import stored_to_float32, to_stored


def _as_stored_f32(x, dtype):
    """What the store returns for float32 input ``x``: rounded to dtype, back to float32."""
    if dtype == "bfloat16":
        return torch.from_numpy(x).to(torch.bfloat16).float().numpy()
    return x.astype(dtype).astype(np.float32)


def _write(path, x, dtype="float16", chunk_rows=64, coords=True, **kw):
    n, d = x.shape
    w = StoreWriter.create(path, n_rows=n, d=d, dtype=dtype, config={"t": 1}, chunk_rows=chunk_rows,
                           coordinates=coords, attrs={"genome": {"sequences": [
                               {"name": "a", "length": 10 * n, "row_start": 0, "row_end": n // 2},
                               {"name": "b", "length": 10 * n, "row_start": n // 2, "row_end": n}]}}, **kw)
    for k in range(w.n_chunks):
        a, b = w.chunk_bounds(k)
        w.write_chunk(k, x[a:b])
    if coords:
        seq = (np.arange(n) >= n // 2).astype(np.int32)
        pos = np.where(seq == 0, np.arange(n), np.arange(n) - n // 2) * 3
        w.write_coordinates(seq, pos, pos + 3, np.arange(n) % 5)
    w.finalize()
    return w


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
@pytest.mark.parametrize("n,d,chunk_rows", [(1, 1, 4), (200, 7, 64), (256, 16, 64), (50, 3, 1000)])
def test_roundtrip_stats_and_fast_path(tmp_path, rng, dtype, n, d, chunk_rows):
    x = (rng.standard_normal((n, d)) * 3 + 1).astype(np.float32)
    _write(tmp_path / "s.zarr", x, dtype, chunk_rows)
    s = ActivationStore.open(tmp_path / "s.zarr", verify=True)
    want = _as_stored_f32(x, dtype)
    assert (s.n_rows, s.d, s.dtype, s.chunk_rows) == (n, d, dtype, chunk_rows)
    assert np.array_equal(s.read_rows(0, n), want)
    assert np.array_equal(s.read_rows(n // 3, n - n // 4), want[n // 3:n - n // 4])
    blocks = list(s.iter_rows(37, start=1))
    assert [a for a, _ in blocks] == list(range(1, n, 37))
    assert np.array_equal(np.concatenate([b for _, b in blocks]), want[1:]) if n > 1 else blocks == []
    # The raw-file fast path equals zarr's own decoding (the reference).
    assert s._fast
    for k in range(s.n_chunks):
        fast = s.read_chunk(k)
        s._fast = False
        assert np.array_equal(s.read_chunk(k), fast)
        s._fast = True
    w64 = want.astype(np.float64)
    assert np.allclose(s.mean, w64.mean(0), rtol=1e-12, atol=1e-12)
    assert np.isclose(s.norm_scale, np.sqrt(((w64 - w64.mean(0)) ** 2).sum(1).mean()), rtol=1e-10)
    assert s.verify() == s.n_chunks


@pytest.mark.parametrize("codec", ["lz4", "zstd"])
def test_codecs(tmp_path, rng, codec):
    x = rng.standard_normal((300, 9)).astype(np.float32)
    _write(tmp_path / "s.zarr", x, chunk_rows=128, codec=codec)
    s = ActivationStore.open(tmp_path / "s.zarr", verify=True)
    assert not s._fast and s.attrs["codec"] == codec
    assert np.array_equal(s.read_rows(0, 300), _as_stored_f32(x, "float16"))


def test_fsspec_memory_url(rng):
    x = rng.standard_normal((150, 5)).astype(np.float32)
    _write("memory://genesae-test/s.zarr", x, chunk_rows=64)
    s = ActivationStore.open("memory://genesae-test/s.zarr", verify=True)
    assert np.array_equal(s.read_rows(0, 150), _as_stored_f32(x, "float16"))
    assert sorted(np.concatenate([b.numpy() for b in s.batches(16)]).sum(1)) == pytest.approx(
        sorted(_as_stored_f32(x, "float16").sum(1)))


def test_bfloat16_conversion_is_exact_round_to_nearest(rng):
    x = rng.standard_normal((64, 8)).astype(np.float32) * 1e3
    bits = to_stored(x, "bfloat16")
    assert bits.dtype == np.uint16
    assert np.array_equal(stored_to_float32(bits, "bfloat16"), torch.from_numpy(x).to(torch.bfloat16).float().numpy())


# -- hypothesis: writes with interruptions against a numpy model --------------------------
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(1, 90), d=st.integers(1, 6), chunk_rows=st.integers(1, 40),
       data=st.data())
def test_writer_with_interruptions_matches_numpy_model(tmp_path_factory, n, d, chunk_rows, data):
    path = tmp_path_factory.mktemp("h") / "s.zarr"
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31)))
    x = rng.standard_normal((n, d)).astype(np.float32)
    n_chunks = -(-n // chunk_rows)
    model = {}  # chunk -> committed? (the numpy model of the store's progress)
    w = StoreWriter.create(path, n_rows=n, d=d, config={"x": 1}, chunk_rows=chunk_rows, coordinates=False)
    order = data.draw(st.permutations(range(n_chunks)))
    for k in order:
        event = data.draw(st.sampled_from(["write", "write", "crash_before_commit", "reopen", "crash_mid_data"]))
        a, b = w.chunk_bounds(k)
        if event == "crash_before_commit":  # data written, the process died before the record
            w._acts[a:b] = to_stored(x[a:b], "float16")
        elif event == "crash_mid_data":  # a half-written temp file, never renamed
            (path / "activations" / "c").mkdir(parents=True, exist_ok=True)
            (path / "activations" / "c" / f".{k}.partial").write_bytes(b"\0" * 5)
        else:
            w.write_chunk(k, x[a:b])
            model[k] = True
        if event == "reopen" or data.draw(st.booleans()):
            w.flush()  # the last commit lands (a crash before it is the crash_before_commit case)
            w = StoreWriter.create(path, n_rows=n, d=d, config={"x": 1}, chunk_rows=chunk_rows, coordinates=False)
            assert w.committed(verify=True) == set(model)
    with pytest.raises(InputError, match="never committed") if len(model) < n_chunks else _nullcontext():
        w.finalize()
    # resume: write whatever the numpy model says is missing
    w = StoreWriter.create(path, n_rows=n, d=d, config={"x": 1}, chunk_rows=chunk_rows, coordinates=False)
    assert not list(path.rglob("*.partial"))
    for k in sorted(set(range(n_chunks)) - w.committed()):
        a, b = w.chunk_bounds(k)
        w.write_chunk(k, x[a:b])
    w.finalize()
    s = ActivationStore.open(path, verify=True)
    want = _as_stored_f32(x, "float16")
    assert np.array_equal(s.read_rows(0, n), want)
    assert np.allclose(s.mean, want.astype(np.float64).mean(0))


class _nullcontext:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


# -- damage and refusals ------------------------------------------------------------------
def test_truncated_and_corrupted_chunks_are_detected(tmp_path, rng):
    x = rng.standard_normal((200, 8)).astype(np.float32)
    _write(tmp_path / "s.zarr", x, chunk_rows=64)
    chunk = tmp_path / "s.zarr" / "activations" / "c" / "1" / "0"
    raw = chunk.read_bytes()
    chunk.write_bytes(raw[:-10])
    s = ActivationStore.open(tmp_path / "s.zarr")
    with pytest.raises(InputError, match="chunk 1 is truncated"):
        s.read_rows(0, 200)
    with pytest.raises(InputError, match="chunk 1 is truncated"):
        list(s.batches(32, mode="stream"))
    chunk.write_bytes(raw[:100] + bytes([raw[100] ^ 1]) + raw[101:])
    ActivationStore.open(tmp_path / "s.zarr", verify=False).read_rows(0, 200)  # invisible without checksums ...
    with pytest.raises(InputError, match="chunk 1 is corrupt"):
        s.verify()  # ... and caught with them, which is the default
    with pytest.raises(InputError, match="chunk 1 is corrupt"):
        s.read_rows(0, 200)
    chunk.unlink()
    with pytest.raises(InputError, match="chunk 1 is missing"):
        s.read_rows(64, 65)
    coord = tmp_path / "s.zarr" / "bp_start" / "c" / "0"
    coord.write_bytes(coord.read_bytes()[:-3])
    chunk.write_bytes(raw)
    with pytest.raises(InputError, match="bp_start"):
        s.verify()


def test_open_refusals(tmp_path, rng):
    with pytest.raises(InputError, match="no such store"):
        ActivationStore.open(tmp_path / "nope.zarr")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no zarr.json"):
        ActivationStore.open(tmp_path / "empty")
    w = StoreWriter.create(tmp_path / "p.zarr", n_rows=100, d=4, config={}, chunk_rows=32, coordinates=False)
    w.write_chunk(0, np.ones((32, 4), np.float32))
    w.flush()  # the commit record is written in the background; open() reads records once
    with pytest.raises(InputError, match="not finished"):
        ActivationStore.open(tmp_path / "p.zarr")
    s = ActivationStore.open(tmp_path / "p.zarr", allow_partial=True)
    assert s.committed_chunks() == [0]
    assert np.isnan(s.read_rows(32, 33)).all()  # unwritten rows read as NaN, not zeros
    info = describe(tmp_path / "p.zarr")
    assert info["chunks_committed"] == 1 and info["complete"] is False
    with pytest.raises(InputError, match="different settings.*n_rows 100 -> 99"):
        StoreWriter.create(tmp_path / "p.zarr", n_rows=99, d=4, config={}, chunk_rows=32, coordinates=False)
    zj = tmp_path / "p.zarr" / "zarr.json"
    zj.write_text(json.dumps({"zarr_format": 3, "node_type": "group", "attributes": {}}))
    with pytest.raises(InputError, match="not a genesae activation store"):
        ActivationStore.open(tmp_path / "p.zarr")
    (tmp_path / "f").write_text("x")
    with pytest.raises(InputError, match="is a file"):
        StoreWriter.create(tmp_path / "f", n_rows=1, d=1, config={})
    with pytest.raises(InputError, match="no genome coordinates"):
        s.coordinates()


def test_rows_for_interval_matches_brute_force(tmp_path, rng):
    x = rng.standard_normal((120, 2)).astype(np.float32)
    s = ActivationStore.open(_write(tmp_path / "s.zarr", x, chunk_rows=32).path)
    seq, bs, be, _ = s.coordinates()
    for _ in range(200):
        i = int(rng.integers(0, 2))
        a = int(rng.integers(-5, 200))
        b = a + int(rng.integers(0, 30))
        brute = np.flatnonzero((seq == i) & (be > a) & (bs < b))
        name = s.sequence_names[i] if rng.integers(0, 2) else i
        assert np.array_equal(s.rows_for_interval(name, a, b), brute)
    with pytest.raises(InputError, match="no sequence named"):
        s.rows_for_interval("chrZ", 0, 10)
    info = describe(s.path, verify=True)
    assert info["shape"] == [120, 2] and info["verified_chunks"] == 4 and info["chunks_committed"] == 4


def test_default_chunk_rows_is_about_8_mib():
    assert default_chunk_rows(512, "float16") == 8192
    assert default_chunk_rows(512, "float32") == 4096
    assert default_chunk_rows(48, "float16") == 65536
    assert default_chunk_rows(100000, "float32") == 1024


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
def test_raw_chunk_writes_equal_zarr_writes(tmp_path, rng, dtype):
    x = rng.standard_normal((150, 5)).astype(np.float32)
    files = []
    for raw in (True, False):
        path = tmp_path / f"{raw}.zarr"
        w = StoreWriter.create(path, n_rows=150, d=5, dtype=dtype, config={}, chunk_rows=64, coordinates=False)
        assert w._raw_local
        w._raw_local = raw  # False: zarr's own write path, the reference
        for k in range(w.n_chunks):
            a, b = w.chunk_bounds(k)
            w.write_chunk(k, x[a:b])
        w.flush()
        files.append({p.relative_to(path): p.read_bytes() for p in path.rglob("*") if p.is_file()})
    assert files[0] == files[1]


def test_small_sequential_reads_read_each_chunk_once(tmp_path, rng):
    x = rng.standard_normal((300, 4)).astype(np.float32)
    _write(tmp_path / "s.zarr", x, chunk_rows=64)
    s = ActivationStore.open(tmp_path / "s.zarr")
    calls = []
    original = s.read_chunk
    s.read_chunk = lambda k, out=None, verify=None: calls.append(k) or original(k, out=out, verify=verify)
    got = np.concatenate([b for _, b in s.iter_rows(10, start=3)])
    assert np.array_equal(got, _as_stored_f32(x, "float16")[3:])
    assert sorted(calls) == list(range(s.n_chunks))


@pytest.mark.parametrize("chunk_rows", [1, 7, 32, 500])
def test_coordinate_slices_read_only_their_chunks(tmp_path, rng, chunk_rows):
    """Coordinates come chunk by chunk (never the whole column): every slice equals the
    column read whole from zarr, and the reader keeps a bounded number of chunks."""
    import zarr

    x = rng.standard_normal((130, 2)).astype(np.float32)
    s = ActivationStore.open(_write(tmp_path / "s.zarr", x, chunk_rows=chunk_rows).path)
    group = zarr.open_group(str(tmp_path / "s.zarr"), mode="r")
    whole = [np.asarray(group[name][:]) for name in ("seq", "bp_start", "bp_end", "token_id")]
    for _ in range(60):
        a = int(rng.integers(0, 131))
        b = int(rng.integers(a, 131))
        got = s.coordinates(a, b)
        for g, w in zip(got, whole, strict=True):
            assert g.dtype == w.dtype and np.array_equal(g, w[a:b])
    for start, stop in ((0, 130), (129, 130), (64, 64)):
        assert np.array_equal(s.coordinates(start, stop)[1], whole[1][start:stop])
    assert len(s._coords_cache) <= 16
