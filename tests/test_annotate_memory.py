"""Bounded memory of the streamed annotation: memory-mapped genome, block codes encoded once."""
from __future__ import annotations

import pickle
import shutil

import numpy as np
import pytest
from annotate_compare import assert_same_annotation, make_store, random_records
from hypothesis import given, settings
from hypothesis import strategies as st

from genesae_fast.annotate.codecache import CodeCache, code_dtype
from genesae_fast.annotate.core import Config, Genome
from genesae_fast.annotate.genome_map import CodesFile, for_workers, map_genome, open_codes, reattach, write_codes
from genesae_fast.annotate.passes import Job

CFG = dict(min_active=3, gene_shifts=2, n_tracks=4)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    rng = np.random.default_rng(11)
    recs = random_records(rng, [5000, 30, 2600, 5], n_runs=2)
    return make_store(tmp_path_factory.mktemp("mem"), recs)


# ---------------------------------------------------------------------------- genome map
def test_mapped_genome_equals_the_in_memory_one_and_travels_as_a_path(tmp_path):
    rng = np.random.default_rng(0)
    recs = [rng.integers(0, 5, n).astype(np.uint8) for n in (1000, 0, 37)]
    g = Genome(["a", "b", "c"], np.concatenate(recs), np.array([0, 1000, 1000]), np.array([1000, 0, 37]))
    m = map_genome(g, tmp_path / "g.npy")
    assert isinstance(m.codes, np.memmap) and not m.codes.flags.writeable
    np.testing.assert_array_equal(m.codes, g.codes)
    assert (m.names, list(m.offsets), list(m.lengths)) == (g.names, list(g.offsets), list(g.lengths))
    job = Job("s", "sae", m, Config(), [(0, 1037)], 100, 8, "p")
    sent = pickle.dumps(for_workers(job))
    assert len(sent) < 2000  # the bases stay behind
    back = reattach(pickle.loads(sent))
    assert isinstance(back.genome.codes, np.memmap)
    np.testing.assert_array_equal(back.genome.codes, g.codes)
    # an in-memory genome travels as it is; reattach leaves it alone
    plain = Job("s", "sae", g, Config(), [(0, 1037)], 100, 8, "p")
    assert for_workers(plain) is plain and reattach(plain) is plain


def test_write_codes_of_pieces_and_the_empty_genome(tmp_path):
    parts = [np.array([0, 1, 2], np.uint8), np.zeros(0, np.uint8), np.array([4, 3], np.uint8)]
    np.testing.assert_array_equal(write_codes(parts, tmp_path / "a.npy", 5), [0, 1, 2, 4, 3])
    assert write_codes([], tmp_path / "e.npy", 0).shape == (0,) == open_codes(tmp_path / "e.npy").shape
    with pytest.raises(ValueError, match="2 bases given, 3 announced"):
        write_codes([np.zeros(2, np.uint8)], tmp_path / "b.npy", 3)
    assert not (tmp_path / "b.npy").exists()
    assert isinstance(CodesFile("x"), CodesFile)


# ---------------------------------------------------------------------------- code cache
@pytest.mark.parametrize("n_latents,kind", [(64, np.uint16), (65_536, np.uint16), (65_537, np.int32)])
def test_code_dtype(n_latents, kind):
    dt = code_dtype(n_latents, 3)
    assert dt["idx"].base == kind and dt["val"].base == np.float32 and dt["val"].shape == (3,)


@settings(max_examples=40, deadline=None)
@given(sizes=st.lists(st.integers(0, 40), min_size=1, max_size=6), k=st.integers(1, 5),
       missing=st.sets(st.integers(0, 5)), win=st.tuples(st.integers(0, 250), st.integers(0, 250)),
       n_latents=st.sampled_from([50, 70_000]))
def test_cache_reads_back_the_rows_it_holds(tmp_path_factory, sizes, k, missing, win, n_latents):
    rng = np.random.default_rng(len(sizes) * 7 + k)
    n = sum(sizes)
    vals = rng.random((n, k)).astype(np.float32)
    idx = rng.integers(0, n_latents, (n, k))
    cache = CodeCache(tmp_path_factory.mktemp("c") / "codes", n_latents)
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    for b in range(len(sizes)):
        if b not in missing and sizes[b]:
            cache.write(b, int(bounds[b]), vals[bounds[b]:bounds[b + 1]], idx[bounds[b]:bounds[b + 1]])
    r0, r1 = min(win[0], n), min(max(win), n)
    fresh = CodeCache(cache.folder, n_latents)  # another process: finds the files by listing
    for c in (cache, fresh):
        v, i, have = c.read(r0, r1, range(len(sizes)))
        want = np.zeros(r1 - r0, bool)
        for b in range(len(sizes)):
            if b not in missing:
                want[max(bounds[b], r0) - r0:max(min(bounds[b + 1], r1) - r0, 0)] = True
        np.testing.assert_array_equal(have, want)
        if have.any():
            np.testing.assert_array_equal(v[have], vals[r0:r1][have])
            np.testing.assert_array_equal(i[have], idx[r0:r1][have])
            assert i.dtype == np.int64 and v.dtype == np.float32


def test_window_codes_from_a_partial_cache_equal_encoded_codes(synthetic, tmp_path):
    from genesae_fast.annotate.folder import load_sae
    from genesae_fast.annotate.window import encode_topk, window_codes
    from genesae_fast.store import ActivationStore

    store = ActivationStore.open(synthetic["store"])
    sae = load_sae(synthetic["sae"])
    n = store.n_rows
    want_v, want_i = encode_topk(sae, store.read_rows(0, n))
    cache = CodeCache(tmp_path / "codes", 64)
    bounds = [0, 900, 2000, 2001, 4100, n]
    for b in (0, 2, 4):  # blocks 1 and 3 missing: their rows are encoded again
        cache.write(b, bounds[b], want_v[bounds[b]:bounds[b + 1]], want_i[bounds[b]:bounds[b + 1]])
    held = np.zeros(n, bool)
    for b in (0, 2, 4):
        held[bounds[b]:bounds[b + 1]] = True
    for r0, r1 in [(0, n), (850, 950), (1990, 2010), (2000, 2001), (3000, 4200), (901, 902)]:
        # cached rows are pass 1's codes; each run of missing rows is encoded on its own (the
        # encoder's float rounding may depend on how many rows go through it at once)
        ref_v, ref_i = want_v[r0:r1].copy(), want_i[r0:r1].copy()
        miss = np.flatnonzero(~held[r0:r1])
        for run in np.split(miss, np.flatnonzero(np.diff(miss) != 1) + 1) if miss.size else []:
            a, z = r0 + int(run[0]), r0 + int(run[-1]) + 1
            ref_v[a - r0:z - r0], ref_i[a - r0:z - r0] = encode_topk(sae, store.read_rows(a, z))
        for need_x in (True, False):
            x, v, i = window_codes(store, sae, r0, r1, cache=cache, blocks=range(5), need_x=need_x)
            np.testing.assert_array_equal(v, ref_v)
            np.testing.assert_array_equal(i, ref_i)
            np.testing.assert_allclose(v, want_v[r0:r1], rtol=1e-5, atol=1e-6)
            if need_x:
                np.testing.assert_array_equal(x, store.read_rows(r0, r1))
            else:
                assert x is None


# ---------------------------------------------------------------------------- whole annotation
def _annotate(run, name, **kw):
    from genesae_fast.annotate import annotate

    out = run["dir"] / name
    shutil.rmtree(out, ignore_errors=True)
    annotate(run["store"], run["sae"], out, motifs=str(run["motifs"]), progress=False, **kw)
    return out


def test_blocks_are_encoded_once_and_tables_equal_the_in_memory_path(synthetic, monkeypatch):
    from genesae_fast.annotate import window
    from genesae_fast.annotate.folder import annotate_in_memory

    cfg = Config(**CFG, block_bp=1300)
    ref = synthetic["dir"] / "ref"
    annotate_in_memory(synthetic["store"], synthetic["sae"], ref, motifs=str(synthetic["motifs"]), cfg=cfg)
    calls = []
    real = window.encode_topk
    monkeypatch.setattr(window, "encode_topk", lambda sae, x: calls.append(x.shape[0]) or real(sae, x))
    out = _annotate(synthetic, "once", cfg=cfg, workers=1)
    assert_same_annotation(ref, out)
    # pass 1 encodes (through encode_rows) and caches; passes 2 and 3 find every row in the cache
    assert calls == []
    assert not (out.parent / "once.partial").exists()  # the work folder (genome map, codes) is gone


def test_lost_cache_files_and_worker_processes_give_the_same_tables(synthetic, monkeypatch):
    from genesae_fast.annotate import codecache

    cfg = Config(**CFG, block_bp=1300)
    base = _annotate(synthetic, "cached", cfg=cfg, workers=1)
    # spawned workers write and read the cache (and map the genome) in their own processes
    assert_same_annotation(base, _annotate(synthetic, "two", cfg=cfg, workers=2))
    orig = codecache.CodeCache.write

    def lose_odd(self, b, r0, vals, idx):  # blocks with an odd index lose their file: encoded again
        if b % 2 == 0:
            orig(self, b, r0, vals, idx)

    monkeypatch.setattr(codecache.CodeCache, "write", lose_odd)
    assert_same_annotation(base, _annotate(synthetic, "lossy", cfg=cfg, workers=1))


def test_every_chunk_and_group_size_gives_the_same_tables(synthetic, monkeypatch):
    """Concept groups of one concept, tiny base and entry chunks, neuron rows a few at a time:
    the same tables as the defaults (all of these only bound temporaries)."""
    from genesae_fast.annotate import concepts, passes

    cfg = Config(**CFG, block_bp=2100)
    base = _annotate(synthetic, "chunks_default", cfg=cfg, workers=1)
    for name, value in (("TALLY_BINS", 1), ("TALLY_BASES", 7), ("TALLY_ENTRIES", 50), ("NEURON_ROWS", 37)):
        monkeypatch.setattr(passes, name, value)
    monkeypatch.setattr(concepts, "_CHUNK_ENTRIES", 64)
    assert concepts._chunk_bases(concepts.SparseActs(np.array([0, 40]), np.zeros(40, np.int32),
                                                     np.ones(40, np.float32), 4)) == 256
    assert_same_annotation(base, _annotate(synthetic, "chunks_small", cfg=cfg, workers=1))


@settings(max_examples=60, deadline=None)
@given(bases=st.lists(st.integers(0, 30), max_size=12), bins=st.integers(1, 50))
def test_concept_groups_cover_every_concept_once_within_the_limits(bases, bins):
    from unittest import mock

    from genesae_fast.annotate import passes

    hits = [((np.zeros(0), np.zeros(0)), (np.zeros(1, np.int64), np.array([n]))) for n in bases]
    with mock.patch.object(passes, "TALLY_BINS", 100), mock.patch.object(passes, "TALLY_BASES", 40):
        groups = passes._concept_groups(hits, bins)
    assert [i for g in groups for i in g] == list(range(len(bases)))
    for g in groups:
        assert len(g) >= 1
        if len(g) > 1:  # a lone concept may exceed the limits; a group of several does not
            assert len(g) * bins <= 100 and sum(bases[i] for i in g) <= 40


def test_neuron_entries_built_in_row_slices_equal_one_dense_pass(monkeypatch):
    from genesae_fast.annotate import passes
    from genesae_fast.annotate.concepts import SparseActs

    rng = np.random.default_rng(3)
    x = rng.normal(size=(101, 5)).astype(np.float32)
    mean = rng.normal(size=5)
    floor = np.abs(rng.normal(size=10)).astype(np.float32)
    c = (x.astype(np.float64) - mean).astype(np.float32)
    want = SparseActs.from_dense(np.concatenate([c, -c], axis=1), floor)
    for rows in (1, 7, 100, 101, 1000):
        monkeypatch.setattr(passes, "NEURON_ROWS", rows)
        got = passes._neuron_acts(x, mean, floor)
        for k in ("ptr", "feat", "val"):
            np.testing.assert_array_equal(getattr(got, k), getattr(want, k))
    empty = passes._neuron_acts(x[:0], mean, floor)
    assert empty.n_tokens == 0 and empty.n_features == 10


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), F=st.integers(1, 5), n=st.integers(0, 80), keep=st.integers(1, 12))
def test_candidates_merged_feature_by_feature_equal_one_sort_of_all(seed, F, n, keep):
    from genesae_fast.annotate.peaks import Candidates

    rng = np.random.default_rng(seed)
    feat = rng.integers(0, F, n)
    val = rng.integers(1, 6, n).astype(np.float32) / 4  # ties in value: broken by token
    token = rng.permutation(10 * n + 1)[:n]  # a token once per entry
    start = rng.integers(0, 1000, n)
    end = start + rng.integers(1, 4, n)
    half = rng.random(n) < 0.5
    a, b = (Candidates.from_entries(feat[m], val[m], token[m], start[m], end[m], F, keep=keep) for m in (half, ~half))
    got, want = a.merge(b, keep), Candidates.from_entries(feat, val, token, start, end, F, keep=keep)
    for k in ("ptr", "val", "token", "start", "end"):
        np.testing.assert_array_equal(getattr(got, k), getattr(want, k))
        assert getattr(got, k).dtype == getattr(want, k).dtype


def test_counts_stay_int32_while_they_fit_then_become_int64():
    from genesae_fast.annotate.accumulators import add_counts

    big = np.iinfo(np.int32).max
    a = np.array([1, 2], np.int32)
    out = add_counts(a, np.array([3, 4], np.int32))
    assert out is a and out.dtype == np.int32 and out.tolist() == [4, 6]
    out = add_counts(np.array([big - 1, 0], np.int32), np.array([1, 0], np.int32))
    assert out.dtype == np.int32 and out.tolist() == [big, 0]
    out = add_counts(np.array([big, 5], np.int32), np.array([1, 1], np.int32))
    assert out.dtype == np.int64 and out.tolist() == [big + 1, 6]
    a64 = np.array([big, 0], np.int64)
    assert add_counts(a64, np.array([big, 1], np.int32)) is a64 and a64.tolist() == [2 * big, 1]


def test_lazy_sae_loads_once_on_first_use():
    from genesae_fast.annotate.passes import LazySAE

    calls = []

    class Fake:
        k = 3

    lazy = LazySAE(lambda p: calls.append(p) or Fake(), "sae/")
    assert calls == []
    assert lazy.k == 3 and lazy.k == 3
    assert calls == ["sae/"]
    with pytest.raises(AttributeError):
        lazy._missing  # noqa: B018


def test_without_disk_space_for_the_codes_every_pass_encodes_and_tables_are_the_same(synthetic, monkeypatch, capsys):
    import collections

    from genesae_fast.annotate import folder, window

    cfg = Config(**CFG, block_bp=1300)
    base = _annotate(synthetic, "disk_ok", cfg=cfg, workers=1)
    Usage = collections.namedtuple("Usage", "total used free")
    monkeypatch.setattr(folder.shutil, "disk_usage", lambda p: Usage(100, 99, 1))
    calls = []
    real = window.encode_topk
    monkeypatch.setattr(window, "encode_topk", lambda sae, x: calls.append(x.shape[0]) or real(sae, x))
    out = _annotate(synthetic, "disk_full", cfg=cfg, workers=1)
    assert "would not fit" in capsys.readouterr().out
    assert sum(calls) > 0  # passes 2 and 3 encoded their windows
    assert_same_annotation(base, out)


def test_an_sae_rewritten_in_place_changes_the_key_of_cached_state(synthetic, tmp_path):
    import os

    from genesae_fast.annotate.stream import job_key

    sae = tmp_path / "sae"
    shutil.copytree(synthetic["sae"], sae)
    g = Genome(["a"], np.zeros(10, np.uint8), np.array([0]), np.array([10]))
    job = Job("s", str(sae), g, Config(), [(0, 10)], 10, 64, "p")
    k1 = job_key(job)
    assert job_key(job) == k1
    f = next(p for p in sae.iterdir() if p.suffix == ".safetensors")
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert job_key(job) != k1
