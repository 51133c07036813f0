"""The streamed annotation: passes over genome blocks, folded into fixed-size accumulators.

The passes: moments, counts, LM knowledge, per-strand motifs, contexts.

Blocks run in a pool of worker processes (one torch thread each) and, under torchrun, on
disjoint subsets per rank; the per-block results are merged in block order, so the tables
do not depend on the number of workers or ranks. After every ``checkpoint_blocks`` merged
blocks (and at the end of each pass) the accumulators are written atomically to
``<state>/<pass>.r<rank>of<world>.pkl``; a run that is killed resumes from the last
checkpoint with identical results. See :mod:`.passes` for what each pass computes.
"""
from __future__ import annotations

import hashlib
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from genesae_fast.annotate import concepts as C
from genesae_fast.annotate import passes as P
from genesae_fast.annotate.peaks import CANDIDATES_PER_PEAK, example_specs, select_peaks

# called as BLOCK_HOOK(pass_name, block) after each block is merged (tests interrupt runs here)
BLOCK_HOOK = None


@dataclass
class Runner:
    """Where blocks run: this process or a pool; which blocks are this rank's; where state goes."""

    job: P.Job
    state: Path
    key: str
    rank: int = 0
    world: int = 1
    pool: object = None
    checkpoint_blocks: int = 4
    progress: bool = False
    pool_factory: object = None  # makes a fresh pool for each pass (None: keep ``pool``)

    def my_blocks(self) -> list[int]:
        return list(range(self.rank, len(self.job.blocks), self.world))


def dist_info() -> tuple[int, int, bool]:
    """(rank, world size, whether this call initialised torch.distributed)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), False
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and dist.is_available():
        dist.init_process_group("gloo")
        return dist.get_rank(), dist.get_world_size(), True
    return 0, 1, False


def _state_file(r: Runner, name: str) -> Path:
    return r.state / f"{name}.r{r.rank}of{r.world}.pkl"


def _load_state(r: Runner, name: str):
    p = _state_file(r, name)
    if not p.is_file():
        return set(), None
    with open(p, "rb") as fh:
        st = pickle.load(fh)
    if st.get("key") != r.key:
        return set(), None
    return set(st["done"]), st["acc"]


def _save_state(r: Runner, name: str, done: set, acc) -> None:
    """Atomic: a kill during the write leaves the previous checkpoint."""
    p = _state_file(r, name)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    with open(tmp, "wb") as fh:
        pickle.dump({"key": r.key, "done": sorted(done), "acc": acc}, fh, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(tmp, p)


def run_pass(r: Runner, name: str, params: dict):
    """Run pass ``name`` on this rank's unfinished blocks; returns the merged accumulator of
    all ranks. ``params[b]`` is block b's parameter object."""
    import time

    from tqdm import tqdm

    t0 = time.perf_counter()
    done, acc = _load_state(r, name)
    todo = [b for b in r.my_blocks() if b not in done]
    tasks = [(name, b, params[b]) for b in todo]
    _fresh_pool(r, bool(tasks))
    results = _in_order(r.pool, tasks) if r.pool is not None else map(P.run_block, tasks)
    since = 0
    for b, delta in tqdm(results, total=len(tasks), desc=name, unit="block", disable=not r.progress):
        acc = delta if acc is None else acc.merge(delta)
        del delta
        P.trim_heap()
        done.add(b)
        since += 1
        if since >= r.checkpoint_blocks:
            _save_state(r, name, done, acc)
            since = 0
        if BLOCK_HOOK is not None:
            BLOCK_HOOK(name, b)
    if since or not _state_file(r, name).is_file():
        _save_state(r, name, done, acc)
    out = _gather(r, acc)
    if r.progress:
        tqdm.write(f"annotate: pass {name} on {len(tasks)} blocks: {time.perf_counter() - t0:.1f} s")
    return out


def _fresh_pool(r: Runner, needed: bool) -> None:
    """With a ``pool_factory``: end the last pass's pool (its workers exit, and their memory
    with them) and start one for this pass if it has blocks to run."""
    if r.pool_factory is None:
        return
    if r.pool is not None:
        r.pool.shutdown(wait=True)
        r.pool = None
    if needed:
        r.pool = r.pool_factory()


def _in_order(pool, tasks: list):
    """Results of ``tasks`` in order, with one task per worker in flight plus one queued:
    block results (up to ~0.2 GB each with many motifs) wait in this process only that long,
    whatever the genome size. ``pool`` is a
    ProcessPoolExecutor: a worker that dies (OOM killer, kill -9) raises BrokenProcessPool
    here instead of leaving the run waiting."""
    from collections import deque

    window = max(1, getattr(pool, "_max_workers", 1)) + 1
    pending, it = deque(), iter(tasks)
    for t in it:
        pending.append(pool.submit(P.run_block, t))
        if len(pending) >= window:
            break
    while pending:
        out = _result(pending.popleft())
        nxt = next(it, None)
        if nxt is not None:
            pending.append(pool.submit(P.run_block, nxt))
        yield out


def _result(fut):
    """A future's result through timed waits: Ctrl-C interrupts those (an untimed wait is not)."""
    while True:
        try:
            return fut.result(timeout=0.5)
        except TimeoutError:
            continue


def _gather(r: Runner, acc):
    """Merge the accumulators of every rank (in rank order; integer parts are exact sums)."""
    if r.world == 1:
        return acc
    import torch.distributed as dist

    objs = [None] * r.world
    dist.all_gather_object(objs, acc)
    out = None
    for o in objs:
        if o is not None:
            out = o if out is None else out.merge(o)
    return out


def pass_moments(r: Runner):
    return run_pass(r, "moments", {b: None for b in range(len(r.job.blocks))})


def count_params(r: Runner, m, mean: np.ndarray, neurons: bool) -> P.CountParams:
    """Pass-2 parameters from pass 1: thresholds, candidate cut-offs, neuron thresholds."""
    from genesae_fast.annotate.core import NEURON_FRACTIONS

    cfg = r.job.cfg
    keep = CANDIDATES_PER_PEAK * max(max(cfg.n_examples, 1), cfg.n_logo_peaks)
    thr = C.thresholds(m.fmax, cfg.fractions)
    nthr = None
    if neurons:
        dmax = np.where(np.isfinite(m.dmax), m.dmax, 0).astype(np.float32)
        floor = np.float32(0.15) * np.maximum(dmax, np.float32(1e-12))
        nmax = np.where(dmax > floor, dmax, np.float32(0)).astype(np.float32)
        nthr = C.thresholds(nmax, NEURON_FRACTIONS)
    return P.CountParams(thr, m.fmax, m.cutoff_bins(keep), keep, nthr, np.asarray(mean, np.float64))


def pass_counts(r: Runner, p: P.CountParams):
    return run_pass(r, "counts", {b: p for b in range(len(r.job.blocks))})


def pass_contexts(r: Runner, specs: list, tracks: list):
    """Pass 3: example windows go to the block holding their peak token's first base."""
    g = [[] for _ in r.job.blocks]
    starts = np.array([b[0] for b in r.job.blocks], np.int64)
    for i, s in enumerate(specs):
        g[int(np.searchsorted(starts, s.p0, side="right") - 1)].append((i, s))
    return run_pass(r, "contexts", {b: P.ContextParams(g[b], tracks) for b in range(len(r.job.blocks))})


def job_key(job: P.Job, extra: str = "") -> str:
    """Fingerprint of the inputs: state written for other inputs is never reused."""
    h = hashlib.sha256()
    for part in (job.store_path, job.sae_path, repr(job.cfg), repr(job.blocks[-1:] if job.blocks else []),
                 str(len(job.blocks)), str(job.n_latents), repr([m.id for m in job.motifs or []]),
                 repr(list(job.gene or {})), repr(job.shifts), _files_stamp(job.sae_path), extra,
                 *([job.strands] if job.strands != "forward" else [])):
        h.update(part.encode())
        h.update(b"\0")
    g = hashlib.sha256()
    codes = job.genome.codes
    for a in range(0, codes.shape[0], 1 << 24):  # a piece at a time: the codes may be a memory map
        g.update(np.ascontiguousarray(codes[a:a + (1 << 24)]).tobytes())
    h.update(g.digest())
    return h.hexdigest()


def _files_stamp(folder: str) -> str:
    """Names, sizes and modification times of a folder's files: an SAE retrained in place
    changes them, and cached codes and counts of the old one are then not reused."""
    p = Path(folder)
    if not p.is_dir():
        return ""
    return repr(sorted((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in p.iterdir() if f.is_file()))


def peaks_and_specs(cand, genome, cfg):
    """Example peaks, logo peaks and the example windows from the merged candidates."""
    ex_peaks = select_peaks(cand, max(cfg.n_examples, 1), 2 * cfg.context + 1)
    logo_peaks = select_peaks(cand, cfg.n_logo_peaks, cfg.logo_left + cfg.logo_right + 1)
    return logo_peaks, example_specs(cand, ex_peaks, genome, cfg)
