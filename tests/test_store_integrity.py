"""Damaged stores: every corruption of a chunk, a commit record or the statistics stops
reads, batches and training with one line naming the store and the chunk."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from genesae_fast.cli import cli
from genesae_fast.errors import InputError
from genesae_fast.store import ActivationStore, StoreWriter
from genesae_fast.store.records import chunk_key, crc32

N, D, R = 200, 8, 64  # rows, width, rows per chunk: chunks 0-2 full, chunk 3 has 8 rows


@pytest.fixture(autouse=True)
def one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _make(path, dtype="float16", coords=True, seed=0):
    x = np.random.default_rng(seed).standard_normal((N, D)).astype(np.float32)
    w = StoreWriter.create(path, n_rows=N, d=D, dtype=dtype, config={"t": 1}, chunk_rows=R, coordinates=coords,
                           attrs={"genome": {"sequences": [{"name": "a", "length": 3 * N, "row_start": 0,
                                                            "row_end": N}]}})
    for k in range(w.n_chunks):
        a, b = w.chunk_bounds(k)
        w.write_chunk(k, x[a:b])
    if coords:
        pos = np.arange(N) * 3
        w.write_coordinates(np.zeros(N, np.int32), pos, pos + 3, np.arange(N) % 5)
    w.finalize()
    return path


def _chunk(path, k):
    return path / "activations" / "c" / str(k) / "0"


def _poke(path, k, offset, value: bytes):
    f = _chunk(path, k)
    raw = bytearray(f.read_bytes())
    raw[offset:offset + len(value)] = value
    f.write_bytes(bytes(raw))


def _attrs(path):
    return json.loads((path / "zarr.json").read_text())


def _edit_attrs(path, fn):
    meta = _attrs(path)
    fn(meta["attributes"]["genesae"])
    (path / "zarr.json").write_text(json.dumps(meta))


def _edit_record(path, k, fn):
    f = path / chunk_key(k)
    rec = json.loads(f.read_text())
    fn(rec)
    f.write_text(json.dumps(rec))


def _swap(path, a, b):
    fa, fb = _chunk(path, a), _chunk(path, b)
    da, db = fa.read_bytes(), fb.read_bytes()
    fa.write_bytes(db)
    fb.write_bytes(da)


def _nan_with_matching_crc(path):
    # A NaN the checksum cannot see: the record is rewritten to match the damaged bytes.
    _poke(path, 1, 6, np.float16(np.nan).tobytes())
    data = np.frombuffer(_chunk(path, 1).read_bytes(), np.float16).reshape(R, D)
    _edit_record(path, 1, lambda r: r.update(crc32=crc32(data)))


# (name, damage, message the reads must give); every one names the damaged chunk
CHUNK_DAMAGE = [
    ("nan", lambda p: _poke(p, 1, 6, np.float16(np.nan).tobytes()), "chunk 1 is corrupt"),
    ("inf", lambda p: _poke(p, 1, 6, np.float16(np.inf).tobytes()), "chunk 1 is corrupt"),
    ("neg-inf", lambda p: _poke(p, 1, 100, np.float16(-np.inf).tobytes()), "chunk 1 is corrupt"),
    ("flipped-bit", lambda p: _poke(p, 1, 333, bytes([_chunk(p, 1).read_bytes()[333] ^ 4])), "chunk 1 is corrupt"),
    ("zeroed", lambda p: _chunk(p, 1).write_bytes(bytes(len(_chunk(p, 1).read_bytes()))), "chunk 1 is corrupt"),
    ("truncated", lambda p: _chunk(p, 1).write_bytes(_chunk(p, 1).read_bytes()[:-2]), "chunk 1 is truncated"),
    ("emptied", lambda p: _chunk(p, 1).write_bytes(b""), "chunk 1 is truncated"),
    ("deleted", lambda p: _chunk(p, 1).unlink(), "chunk 1 is missing"),
    ("swapped", lambda p: _swap(p, 1, 2), "chunk [12] is corrupt"),  # whichever is read first
    ("record-crc-edited", lambda p: _edit_record(p, 1, lambda r: r.update(crc32=r["crc32"] ^ 1)),
     "chunk 1 is corrupt"),
]


def _one_line_error(exc_info, path):
    msg = str(exc_info.value)
    assert "\n" not in msg and str(path) in msg
    return msg


@pytest.mark.parametrize("name,damage,msg", CHUNK_DAMAGE, ids=[c[0] for c in CHUNK_DAMAGE])
@pytest.mark.parametrize("mode", ["memory", "stream"])
def test_damaged_chunk_stops_batches_and_reads(tmp_path, name, damage, msg, mode):
    path = _make(tmp_path / "s.zarr")
    damage(path)
    s = ActivationStore.open(path)  # the damage is in the data: opening still works
    with pytest.raises(InputError, match=msg) as err:
        for _ in s.batches(32, mode=mode):
            pass
    _one_line_error(err, path)
    with pytest.raises(InputError, match=msg):
        s.read_rows(0, N)
    with pytest.raises(InputError, match=msg):
        list(s.iter_rows(10))
    assert s.read_rows(0, R).shape == (R, D)  # undamaged chunks still read
    with pytest.raises(InputError, match="verification failed: activation " + msg):
        s.verify()


def test_swapped_chunks_name_both(tmp_path):
    path = _make(tmp_path / "s.zarr")
    _swap(path, 0, 2)
    with pytest.raises(InputError, match=r"chunk 0 is corrupt.*chunk 2 is corrupt") as err:
        ActivationStore.open(path).verify()
    _one_line_error(err, path)


def test_unverified_reads_are_an_explicit_opt_out(tmp_path):
    path = _make(tmp_path / "s.zarr")
    good = ActivationStore.open(path).read_rows(0, N)
    _poke(path, 1, 333, bytes([_chunk(path, 1).read_bytes()[333] ^ 4]))
    raw = ActivationStore.open(path, verify=False).read_rows(0, N)
    assert (raw != good).sum() == 1  # the flipped bit, unchecked


def _del_key(key):
    return lambda r: r.pop(key)


# (name, edit of chunk 1's record, message at open)
RECORD_DAMAGE = [
    ("deleted", None, r"commit record of activation chunk 1 .* is missing"),
    ("not-json", "garbage{", r"chunk 1 .* is not valid JSON"),
    ("a-list", "[1, 2]", r"chunk 1 .* is not a JSON object"),
    ("other-config", lambda r: r.update(config="abc"), r"chunk 1 .* another store configuration"),
    ("chunk-renamed", lambda r: r.update(chunk=2), r"chunk 1 .* names chunk 2"),
    ("chunk-bool", lambda r: r.update(chunk=True), r"chunk 1 .* names chunk True"),
    ("rows", lambda r: r.update(rows=63), r"chunk 1 .* says 63 rows"),
    ("crc-string", lambda r: r.update(crc32="123"), r"chunk 1 .*crc32 '123'"),
    ("crc-negative", lambda r: r.update(crc32=-1), r"chunk 1 .*crc32 -1"),
    ("crc-64bit", lambda r: r.update(crc32=1 << 40), r"chunk 1 .*crc32"),
    ("sum-short", lambda r: r.update(sum=r["sum"][:-1]), r"chunk 1 .*'sum' is not a list of 8 finite"),
    ("sum-nan", lambda r: r["sum"].__setitem__(0, float("nan")), r"chunk 1 .*'sum'"),
    ("sum-string", lambda r: r["sum"].__setitem__(0, "1"), r"chunk 1 .*'sum'"),
    ("sumsq-inf", lambda r: r.update(sumsq=float("inf")), r"chunk 1 .*'sumsq'"),
    ("sumsq-missing", _del_key("sumsq"), r"chunk 1 .*'sumsq'"),
    ("sum-edited", lambda r: r["sum"].__setitem__(3, r["sum"][3] + 1.0), "do not match the chunks' commit records"),
]


@pytest.mark.parametrize("name,edit,msg", RECORD_DAMAGE, ids=[c[0] for c in RECORD_DAMAGE])
def test_damaged_commit_record_refused_on_open_and_by_train(tmp_path, name, edit, msg):
    path = _make(tmp_path / "s.zarr", coords=False)
    f = path / chunk_key(1)
    if edit is None:
        f.unlink()
    elif isinstance(edit, str):
        f.write_text(edit)
    else:
        _edit_record(path, 1, edit)
    with pytest.raises(InputError, match=msg) as err:
        ActivationStore.open(path)
    _one_line_error(err, path)
    result = CliRunner().invoke(cli, ["train", "--store", str(path), "--out", str(tmp_path / "sae"), "--latents",
                                      "16", "--k", "2", "--batch", "32", "--tokens", "64", "--quiet", "--no-eval"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1 and str(path) in result.output
    assert not (tmp_path / "sae" / "sae.safetensors").exists()


# (name, edit of the statistics, message at open)
STATS_DAMAGE = [
    ("scale-tiny", lambda s: s.update(norm_scale=1e-30), "'norm_scale' is 1e-30"),
    ("scale-zero", lambda s: s.update(norm_scale=0.0), "do not match"),  # 0 is a valid scale, not this one
    ("scale-negative", lambda s: s.update(norm_scale=-2.0), "'norm_scale' is -2.0"),
    ("scale-nan", lambda s: s.update(norm_scale=float("nan")), "'norm_scale' is nan"),
    ("scale-string", lambda s: s.update(norm_scale="1.5"), "'norm_scale' is '1.5'"),
    ("scale-edited", lambda s: s.update(norm_scale=s["norm_scale"] * 1.01), "do not match"),
    ("mean-nan", lambda s: s["mean"].__setitem__(0, float("nan")), "'mean' is not a list of 8 finite"),
    ("mean-inf", lambda s: s["mean"].__setitem__(2, float("-inf")), "'mean'"),
    ("mean-short", lambda s: s.update(mean=s["mean"][:3]), "'mean'"),
    ("mean-string", lambda s: s.update(mean="0"), "'mean'"),
    ("mean-edited", lambda s: s["mean"].__setitem__(5, s["mean"][5] + 0.5), "do not match"),
    ("count", lambda s: s.update(count=7), "count 7 does not match its 200 rows"),
    ("missing", lambda s: s.clear(), "'mean'"),
]


@pytest.mark.parametrize("name,edit,msg", STATS_DAMAGE, ids=[c[0] for c in STATS_DAMAGE])
def test_bad_statistics_refused(tmp_path, name, edit, msg):
    path = _make(tmp_path / "s.zarr", coords=False)
    _edit_attrs(path, lambda a: edit(a["stats"]))
    with pytest.raises(InputError, match=msg) as err:
        ActivationStore.open(path)
    _one_line_error(err, path)


ATTR_DAMAGE = [
    ("n_rows-string", lambda a: a.update(n_rows="200"), "'n_rows' is '200'"),
    ("n_rows-negative", lambda a: a.update(n_rows=-1), "'n_rows' is -1"),
    ("n_rows-wrong", lambda a: a.update(n_rows=199), "199"),
    ("d-float", lambda a: a.update(d=8.0), "'d' is 8.0"),
    ("d-zero", lambda a: a.update(d=0), "'d' is 0"),
    ("dtype", lambda a: a.update(dtype="float64"), "'dtype' is 'float64'"),
    ("dtype-wrong", lambda a: a.update(dtype="bfloat16"), "stored as float16, attributes say bfloat16"),
    ("chunk_rows", lambda a: a.update(chunk_rows=32), "chunked"),
    ("chunk_rows-list", lambda a: a.update(chunk_rows=[64]), "'chunk_rows'"),
    ("complete-string", lambda a: a.update(complete="yes"), "'complete' is 'yes'"),
    ("version", lambda a: a.update(format_version=99), "store format 99 is newer"),
    ("version-string", lambda a: a.update(format_version="1"), "'format_version'"),
    ("sequences", lambda a: a["genome"].update(sequences=[{"name": "a", "row_start": 0, "row_end": 999}]),
     r"genome.sequences\[0\]"),
    ("genome-list", lambda a: a.update(genome=[1]), "'genome'"),
]


@pytest.mark.parametrize("name,edit,msg", ATTR_DAMAGE, ids=[c[0] for c in ATTR_DAMAGE])
def test_bad_attributes_refused(tmp_path, name, edit, msg):
    path = _make(tmp_path / "s.zarr", coords=False)
    _edit_attrs(path, edit)
    with pytest.raises(InputError, match=msg) as err:
        ActivationStore.open(path)
    _one_line_error(err, path)


def test_coordinates_verified(tmp_path):
    path = _make(tmp_path / "s.zarr")
    rec = json.loads((path / "_progress" / "coords.json").read_text())
    rec["crc32"]["bp_end"][2] ^= 1
    (path / "_progress" / "coords.json").write_text(json.dumps(rec))
    s = ActivationStore.open(path)
    with pytest.raises(InputError, match="coordinate array 'bp_end' chunk 2 is corrupt"):
        s.coordinates()
    with pytest.raises(InputError, match="bp_end' chunk 2"):
        s.verify()
    (path / "_progress" / "coords.json").unlink()
    with pytest.raises(InputError, match="coordinate commit record .* is missing"):
        ActivationStore.open(path)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
def test_verified_reads_equal_unverified_reads(tmp_path, dtype):
    path = _make(tmp_path / "s.zarr", dtype=dtype)
    a, b = ActivationStore.open(path), ActivationStore.open(path, verify=False)
    assert np.array_equal(a.read_rows(0, N), b.read_rows(0, N))
    for mode in ("memory", "stream"):
        got = [x.numpy() for x in a.batches(48, seed=3, mode=mode)]
        want = [x.numpy() for x in b.batches(48, seed=3, mode=mode)]
        assert len(got) == len(want) and all(np.array_equal(g, w) for g, w in zip(got, want, strict=True))
    assert a.verify() == a.n_chunks


def test_train_stops_on_a_corrupt_chunk(tmp_path):
    path = _make(tmp_path / "s.zarr")
    _poke(path, 1, 6, np.float16(np.inf).tobytes())
    result = CliRunner().invoke(cli, ["train", "--store", str(path), "--out", str(tmp_path / "sae"), "--latents",
                                      "16", "--k", "2", "--batch", "32", "--tokens", "400", "--quiet"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.output.strip().splitlines() == [f"Error: {path}: activation chunk 1 is corrupt "
                                                  "(CRC-32 mismatch with its commit record)"]
    assert not (tmp_path / "sae" / "sae.safetensors").exists()


def test_info_verify(tmp_path):
    path = _make(tmp_path / "s.zarr")
    ok = CliRunner().invoke(cli, ["info", "--verify", "--json", str(path)])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.output)["verified_chunks"] == 4
    _poke(path, 3, 0, b"\xff\xff")
    _swap(path, 0, 1)
    bad = CliRunner().invoke(cli, ["info", "--verify", str(path)])
    assert bad.exit_code == 2 and len(bad.output.strip().splitlines()) == 1
    for k in (0, 1, 3):
        assert f"chunk {k} is corrupt" in bad.output
    assert "chunk 2" not in bad.output
    plain = CliRunner().invoke(cli, ["info", str(path)])  # without --verify: described, unread
    assert plain.exit_code == 0 and "chunks_committed" in plain.output


def test_info_refuses_non_regular_files(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    for target in ("/dev/zero", str(fifo)):
        result = CliRunner().invoke(cli, ["info", target])
        assert result.exit_code == 2
        assert result.output.strip().splitlines() == [f"Error: {target}: not a regular file or folder"]
    fasta = tmp_path / "x.fa"
    fasta.write_text(">a\nACGT\n")
    result = CliRunner().invoke(cli, ["info", "--verify", str(fasta)])
    assert result.exit_code == 2 and "--verify applies to activation stores only" in result.output


def test_partial_store_reads_committed_chunks_verified(tmp_path):
    w = StoreWriter.create(tmp_path / "p.zarr", n_rows=100, d=4, config={}, chunk_rows=32, coordinates=False)
    w.write_chunk(0, np.ones((32, 4), np.float32))
    w.flush()
    s = ActivationStore.open(tmp_path / "p.zarr", allow_partial=True)
    assert np.isnan(s.read_rows(32, 33)).all()  # uncommitted: NaN, not checked
    assert np.array_equal(s.read_rows(0, 32), np.ones((32, 4), np.float32))
    _poke(tmp_path / "p.zarr", 0, 0, b"\0\0")
    with pytest.raises(InputError, match="chunk 0 is corrupt"):
        ActivationStore.open(tmp_path / "p.zarr", allow_partial=True).read_rows(0, 32)


def test_nan_chunks_with_matching_records(tmp_path):
    # A NaN the writer itself stored: its record's sums are NaN, refused on open naming the chunk.
    path = tmp_path / "w.zarr"
    x = np.random.default_rng(0).standard_normal((N, D)).astype(np.float32)
    x[70, 3] = np.nan
    w = StoreWriter.create(path, n_rows=N, d=D, config={}, chunk_rows=R, coordinates=False)
    for k in range(w.n_chunks):
        a, b = w.chunk_bounds(k)
        w.write_chunk(k, x[a:b])
    w.finalize()
    with pytest.raises(InputError, match=r"commit record of activation chunk 1 .*'sum' is not a list of 8 finite"):
        ActivationStore.open(path)
    # A record rewritten by hand to match NaN bytes: reads trust its finite sums, verify scans.
    path = _make(tmp_path / "s.zarr")
    _nan_with_matching_crc(path)
    with pytest.raises(InputError, match="verification failed: activation chunk 1 holds NaN or infinite values"):
        ActivationStore.open(path).verify()


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
def test_check_finite_matches_numpy(dtype):
    from genesae_fast.store.checks import check_finite
    from genesae_fast.store.layout import stored_to_float32, to_stored

    rng = np.random.default_rng(1)
    for special in (None, np.nan, np.inf, -np.inf, -np.nan):
        x = (rng.standard_normal((33, 5)) * 1e3).astype(np.float32)
        if special is not None:
            x[rng.integers(33), rng.integers(5)] = special
        stored = to_stored(x, dtype)
        assert check_finite(stored, dtype) == bool(np.isfinite(stored_to_float32(stored, dtype)).all())
    big = np.array([[65504.0, -65504.0]], np.float32)  # float16's largest finite values
    assert check_finite(to_stored(big, "float16"), "float16")


def test_info_verify_names_the_chunk_whose_record_sums_were_edited(tmp_path):
    path = _make(tmp_path / "s.zarr", coords=False)
    _edit_record(path, 2, lambda r: r["sum"].__setitem__(3, r["sum"][3] + 1.0))
    with pytest.raises(InputError, match="do not match the chunks' commit records"):
        ActivationStore.open(path)  # training and annotation stop here
    bad = CliRunner().invoke(cli, ["info", "--verify", str(path)])
    assert bad.exit_code == 2 and len(bad.output.strip().splitlines()) == 1
    assert "commit record of activation chunk 2 (_progress/chunk-000000002.json): sums do not match" in bad.output
    _make(tmp_path / "t.zarr", coords=False)
    _edit_attrs(tmp_path / "t.zarr", lambda a: a["stats"].update(norm_scale=a["stats"]["norm_scale"] * 2))
    bad = CliRunner().invoke(cli, ["info", "--verify", str(tmp_path / "t.zarr")])  # only the stats were edited
    assert bad.exit_code == 2 and "verification failed: store statistics (mean, norm_scale) do not match" in bad.output
