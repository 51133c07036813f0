"""Activation store speed against plain numpy peers measured in the same run.

Figures are logical GB/s of float16 rows (rows x d x 2 bytes / s), d = 512:

* durable write: ``StoreWriter.write_chunk`` for every chunk (zarr write + fsync + CRC +
  float64 partial sums + durable commit record) vs one raw ``.npy`` file written and fsynced,
  and vs the same 8 MiB chunk files written by numpy with one fsync each; commit overhead =
  1 - (time of the same writes without commit records) / (time with them).
* shuffled streaming, warm: one epoch of ``store.batches(4096, mode="stream")`` vs the same
  chunk-group shuffle over a numpy memmap of the same rows.
* in-memory batches: a second epoch of ``store.batches(4096, mode="memory")``.
* verification cost (``--verify-cost`` alone, or part of the full run): reading every
  chunk, and one shuffled streaming epoch, with the default CRC-32 + finiteness check of
  every chunk read vs ``ActivationStore.open(path, verify=False)``, same data, interleaved.

Run: ``/work/venv/bin/python benchmarks/bench_store.py --rows 2000000`` (prints a table), or
``/work/venv/bin/pytest benchmarks/bench_store.py`` (pytest-benchmark, 262,144 rows).
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from genesae_fast.store import ActivationStore, StoreWriter

D = 512
BATCH = 4096


def make_data(rows: int, seed: int = 0) -> np.ndarray:
    """LM-like float16 rows: random, row-correlated, a few large dimensions."""
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((rows, D), dtype=np.float32)
    base[:, :4] *= 30
    return base.astype(np.float16)


def numpy_durable_write(x: np.ndarray, path: Path) -> float:
    t = time.perf_counter()
    with open(path, "wb") as f:
        np.lib.format.write_array(f, x)
        f.flush()
        os.fsync(f.fileno())
    return time.perf_counter() - t


def numpy_chunked_durable_write(x: np.ndarray, folder: Path, chunk_rows: int = 8192) -> float:
    """The same chunk files written with numpy, each fsynced (the per-chunk peer)."""
    folder.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    for k in range(-(-len(x) // chunk_rows)):
        with open(folder / str(k), "wb") as f:
            f.write(memoryview(x[k * chunk_rows:(k + 1) * chunk_rows].reshape(-1).view(np.uint8)))
            f.flush()
            os.fsync(f.fileno())
    return time.perf_counter() - t


def store_durable_write(x: np.ndarray, path: Path, commit: bool = True) -> float:
    """Seconds to write every chunk durably and finalise (``commit=False``: the same
    without commit records, to measure what they cost)."""
    w = StoreWriter.create(path, n_rows=len(x), d=D, dtype="float16", config={"bench": 1}, coordinates=False,
                           overwrite=True)
    if not commit:
        durable = w.backend.write_durable
        w.backend.write_durable = lambda key, data: None if key.startswith("_progress/") else durable(key, data)
    t = time.perf_counter()
    for k in range(w.n_chunks):
        a, b = w.chunk_bounds(k)
        w.write_chunk(k, x[a:b])
    w.flush()
    elapsed = time.perf_counter() - t
    if commit:
        w.finalize()
    return elapsed


def memmap_shuffled_epoch(path: Path, chunk_rows: int, k_chunks: int = 16, seed: int = 0) -> int:
    """The same two-level shuffle over a numpy memmap (the peer)."""
    mm = np.load(path, mmap_mode="r")
    n = len(mm)
    rng = np.random.default_rng(seed)
    chunks = rng.permutation(-(-n // chunk_rows))
    buf = np.empty((k_chunks * chunk_rows + BATCH, D), dtype=np.float16)
    src = torch.from_numpy(buf)
    stage = torch.empty((BATCH, D), dtype=torch.float16)
    rows = 0
    for g in range(0, len(chunks), k_chunks):
        idx = []
        pos = 0
        for k in chunks[g:g + k_chunks]:
            a, b = k * chunk_rows, min((k + 1) * chunk_rows, n)
            buf[pos:pos + b - a] = mm[a:b]
            idx.append(np.arange(pos, pos + b - a))
            pos += b - a
        idx = np.concatenate(idx)[rng.permutation(pos)]
        for j in range(0, len(idx), BATCH):
            sel = torch.from_numpy(idx[j:j + BATCH])
            st = stage[:len(sel)]
            torch.index_select(src, 0, sel, out=st)
            out = torch.empty((len(sel), D), dtype=torch.float32)
            out.copy_(st)
            rows += len(sel)
    return rows


def epoch_rows(store: ActivationStore, mode: str, seed: int = 0) -> int:
    return sum(len(b) for b in store.batches(BATCH, seed=seed, mode=mode))


def read_all_chunks(store: ActivationStore) -> int:
    buf = np.empty((store.chunk_rows, store.d), dtype=store._stored_dtype)
    for k in range(store.n_chunks):
        store.read_chunk(k, out=buf)
    return store.n_rows


def verify_cost(path: Path, gb: float, rounds: int = 3) -> dict:
    """GB/s of chunk reads and of a streaming epoch, verified vs not (best of ``rounds``,
    the two interleaved so load on a shared machine hits both alike)."""
    stores = {True: ActivationStore.open(path), False: ActivationStore.open(path, verify=False)}
    best = {}
    for _ in range(rounds):
        for verify, store in stores.items():
            for what, fn in (("chunk reads", read_all_chunks), ("shuffled epoch", lambda s: epoch_rows(s, "stream"))):
                t = time.perf_counter()
                fn(store)
                key = (what, verify)
                best[key] = min(best.get(key, np.inf), time.perf_counter() - t)
    out = {}
    for what in ("chunk reads", "shuffled epoch"):
        out[f"{what} verified GB/s"] = gb / best[(what, True)]
        out[f"{what} unverified GB/s"] = gb / best[(what, False)]
        out[f"{what} verified/unverified"] = best[(what, False)] / best[(what, True)]
    return out


def run(rows: int, folder: Path) -> dict:
    x = make_data(rows)
    gb = x.nbytes / 1e9
    out = {"rows": rows, "GB": gb}
    t_np = numpy_durable_write(x, folder / "x.npy")
    t_npc = numpy_chunked_durable_write(x, folder / "chunks")
    shutil.rmtree(folder / "chunks")
    t_bare = store_durable_write(x, folder / "bare.zarr", commit=False)
    shutil.rmtree(folder / "bare.zarr")
    t_store = store_durable_write(x, folder / "s.zarr")
    out["numpy durable write GB/s"] = gb / t_np
    out["numpy per-chunk durable write GB/s"] = gb / t_npc
    out["store durable write GB/s"] = gb / t_store
    out["store write without commit records GB/s"] = gb / t_bare
    out["commit overhead %"] = 100 * (t_store - t_bare) / t_store
    store = ActivationStore.open(folder / "s.zarr")
    epoch_rows(store, "stream")  # warm the page cache
    memmap_shuffled_epoch(folder / "x.npy", store.chunk_rows)
    t = time.perf_counter()
    assert memmap_shuffled_epoch(folder / "x.npy", store.chunk_rows) == rows
    out["memmap shuffled GB/s"] = gb / (time.perf_counter() - t)
    t = time.perf_counter()
    assert epoch_rows(store, "stream", seed=1) == rows
    out["store shuffled GB/s"] = gb / (time.perf_counter() - t)
    out["store/memmap shuffled"] = out["store shuffled GB/s"] / out["memmap shuffled GB/s"]
    epoch_rows(store, "memory")  # loads once
    t = time.perf_counter()
    assert epoch_rows(store, "memory", seed=1) == rows
    out["in-memory batches GB/s"] = gb / (time.perf_counter() - t)
    out.update(verify_cost(folder / "s.zarr", gb))
    return out


def run_verify_cost(rows: int, folder: Path) -> dict:
    """Only the verification cost (a short run): write a store, time reads both ways."""
    x = make_data(rows)
    store_durable_write(x, folder / "v.zarr")
    out = {"rows": rows, "GB": x.nbytes / 1e9}
    out.update(verify_cost(folder / "v.zarr", out["GB"]))
    shutil.rmtree(folder / "v.zarr")
    return out


# -- pytest-benchmark -----------------------------------------------------------------------
def _bench_folder(tmp_path_factory):
    return tmp_path_factory.mktemp("bench_store")


def test_bench_store_durable_write(benchmark, tmp_path_factory):
    x = make_data(262144)
    folder = _bench_folder(tmp_path_factory)
    benchmark.pedantic(store_durable_write, args=(x, folder / "s.zarr"), rounds=3)


def test_bench_numpy_durable_write(benchmark, tmp_path_factory):
    x = make_data(262144)
    folder = _bench_folder(tmp_path_factory)
    benchmark.pedantic(numpy_durable_write, args=(x, folder / "x.npy"), rounds=3)


def test_bench_store_shuffled_epoch(benchmark, tmp_path_factory):
    folder = _bench_folder(tmp_path_factory)
    store_durable_write(make_data(262144), folder / "s.zarr")
    store = ActivationStore.open(folder / "s.zarr")
    benchmark.pedantic(epoch_rows, args=(store, "stream"), rounds=3, warmup_rounds=1)


def test_bench_memmap_shuffled_epoch(benchmark, tmp_path_factory):
    folder = _bench_folder(tmp_path_factory)
    numpy_durable_write(make_data(262144), folder / "x.npy")
    benchmark.pedantic(memmap_shuffled_epoch, args=(folder / "x.npy", 8192), rounds=3, warmup_rounds=1)


def test_bench_store_memory_epoch(benchmark, tmp_path_factory):
    folder = _bench_folder(tmp_path_factory)
    store_durable_write(make_data(262144), folder / "s.zarr")
    store = ActivationStore.open(folder / "s.zarr")
    benchmark.pedantic(epoch_rows, args=(store, "memory"), rounds=3, warmup_rounds=1)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--dir", default=None, help="scratch folder (default: a temp folder)")
    ap.add_argument("--torch-threads", type=int, default=1,
                    help="torch intra-op threads (1: on a shared 2-core box OpenMP threads stall each other)")
    ap.add_argument("--verify-cost", action="store_true",
                    help="only measure the cost of verified reads (CRC-32 + finiteness) against unverified ones")
    args = ap.parse_args()
    torch.set_num_threads(args.torch_threads)
    folder = Path(tempfile.mkdtemp(dir=args.dir, prefix="bench_store_"))
    try:
        results = []
        for r in range(args.rounds):
            res = (run_verify_cost if args.verify_cost else run)(args.rows, folder)
            results.append(res)
            print(f"round {r + 1}: " + ", ".join(f"{k} {v:.3g}" for k, v in res.items()), flush=True)
        keys = [k for k in results[0] if k not in ("rows", "GB")]
        print(f"\nmedian of {args.rounds} rounds, {args.rows:,} rows x {D} float16 ({results[0]['GB']:.2f} GB)")
        for k in keys:
            vals = sorted(r[k] for r in results)
            print(f"| {k} | {np.median(vals):.3g} | {vals[0]:.3g}-{vals[-1]:.3g} |")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
