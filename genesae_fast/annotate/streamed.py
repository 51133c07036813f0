"""``annotate_streamed``: the three passes of :mod:`.stream` turned into the annotation tables.

Memory: the gene calls and the accumulators (sizes set by features x concepts x
thresholds); per block, the block's rows and codes. The genome's bases are a memory-mapped
file (:mod:`.genome_map`) and the blocks' codes are cached on disk after pass 1
(:mod:`.codecache`).
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from genesae_fast.annotate import lm_knowledge as LK
from genesae_fast.annotate import stream as S
from genesae_fast.annotate import tables as TB
from genesae_fast.annotate.genome_map import for_workers
from genesae_fast.annotate.passes import Job, worker_init
from genesae_fast.annotate.peaks import examples_table, feature_logos
from genesae_fast.annotate.window import plan_blocks


def _stats(m, hist: np.ndarray, cfg) -> TB.FeatureStats:
    tot = m.float_totals()
    sse, sst, sums = tot[0], tot[1], tot[2:]
    F = m.n_active.shape[0]
    mean_active = np.divide(sums, m.n_active, out=np.zeros(F), where=m.n_active > 0)
    return TB.FeatureStats(m.n_tokens, m.n_active, m.fmax, mean_active, hist, m.n_active >= cfg.min_active,
                           sse / sst if sst > 0 else float("nan"), m.nnz / max(m.n_tokens, 1))


def _scores(t, rows, on, active) -> dict:
    return TB.held_out_scores(t.tp[rows], t.found[rows], t.n_hits[rows], on, active)


def _concepts(job: Job, p2, stats: TB.FeatureStats, cfg):
    """Motif and gene concept scores and the neuron baseline from the pass-2 counts."""
    active = stats.active
    motif = gene = None
    if job.motifs:
        scored = _scores(p2.motif, slice(None), p2.on, active)
        motif = TB.motif_significance(scored, len(job.motifs), active, job.motifs)
    names = list(job.gene or {})
    if job.gene is not None:
        n, S_ = len(names), len(job.shifts)
        obs = _scores(p2.gene, slice(0, n), p2.on, active)
        controls = [_scores(p2.gene, slice(n + i * S_, n + (i + 1) * S_), p2.on, active) if S_ else None
                    for i in range(n)]
        gene = TB.gene_significance(obs, controls, active, names)
    neuron_best = {}
    if p2.neuron is not None and p2.neuron.tp.shape[0]:
        nactive = p2.neuron_active >= cfg.min_active
        ns = _scores(p2.neuron, slice(None), p2.neuron_on, nactive)
        neuron_best = TB.best_neurons(ns, ([m.id for m in job.motifs] if job.motifs else []) + names)
    return motif, gene, neuron_best


def make_runner(job: Job, state: Path, *, workers: int, checkpoint_blocks: int, progress: bool):
    """A :class:`~.stream.Runner` with its pool (None for one worker) and distributed rank."""
    rank, world, _ = S.dist_info()
    r = S.Runner(job, Path(state), S.job_key(job, f"{world}"), rank, world, None, checkpoint_blocks, progress)
    if workers > 1:
        # a fresh pool for each pass: pass 1's workers load the SAE (torch's compiler stack
        # comes with its custom ops, ~150 MB a process); passes 2 and 3 read cached codes and
        # their workers never load it
        r.pool_factory = functools.partial(_new_pool, workers, for_workers(job))
    else:
        worker_init(job)
    return r


def _new_pool(workers: int, job: Job):
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=worker_init, initargs=(job,))


def annotate_streamed(job: Job, work: Path, *, workers: int = 1, checkpoint_blocks: int = 4,
                      progress: bool = False) -> tuple[TB.Result, list]:
    """Run the passes; returns the tables and the features whose track pieces were written.

    Parameters
    ----------
    job : Job (blocks planned, motifs, gene sources, shifts)
    work : folder for the state files and the output pieces
    workers : worker processes (1: this process)
    """
    import torch

    threads = torch.get_num_threads()
    r = make_runner(job, work / "state", workers=workers, checkpoint_blocks=checkpoint_blocks, progress=progress)
    _claim(work, r)
    ok = False
    try:
        out = _passes(r, job)
        ok = True
        return out
    finally:
        if r.pool is not None:
            # Ctrl-C or an error: drop the queued blocks, do not wait for them
            r.pool.shutdown(wait=ok, cancel_futures=not ok)
        torch.set_num_threads(threads)


def _claim(work: Path, r) -> None:
    """Start afresh (no state, no pieces) unless ``work`` holds a run of the same inputs."""
    import shutil

    key_file = work / "key.txt"
    if r.rank == 0:
        if not key_file.is_file() or key_file.read_text() != r.key:
            for sub in ("state", "pieces", "codes"):
                shutil.rmtree(work / sub, ignore_errors=True)
            work.mkdir(parents=True, exist_ok=True)
            key_file.write_text(r.key)
    if r.world > 1:
        import torch.distributed as dist

        dist.barrier()


def _passes(r, job: Job):
    from genesae_fast.store import ActivationStore
    from genesae_fast.store.strands import open_for_annotation

    cfg = job.cfg
    m = S.pass_moments(r)
    mean = open_for_annotation(job.store_path, job.strands).mean  # both strands: [forward | RC] means
    p2 = S.pass_counts(r, S.count_params(r, m, mean, cfg.neurons))
    stats = _stats(m, p2.hist, cfg)
    motif, gene, neuron_best = _concepts(job, p2, stats, cfg)
    logo_peaks, specs = S.peaks_and_specs(p2.cand, job.genome, cfg)
    logos = feature_logos(job.genome, p2.cand, logo_peaks, job.motifs, cfg, m.kmers)
    parts = TB.Parts(stats, motif, gene, neuron_best, logos, {}, {m_.id: m_.probs for m_ in job.motifs or []},
                     int(job.genome.codes.shape[0]), job.split_block)
    res = TB.build_result(parts, cfg)
    lm = LK.streamed(r, job)
    LK.add_columns(res, lm, None if lm is not None else LK.absent_reason(ActivationStore.open(job.store_path)))
    if job.strands == "both" and job.motifs:
        from genesae_fast.annotate.strand_scores import add_to_result

        add_to_result(res, r, cfg)
    tracks = TB.track_features(res.score, cfg.n_tracks)
    p3 = S.pass_contexts(r, specs, tracks)
    res.examples = examples_table(specs, job.genome, [p3.contexts[i] for i in range(len(specs))])
    return res, tracks


def plan_job(store_path, sae_path, genome, cfg, *, motifs=None, controls=None, gene=None, shifts=(),
             pieces, sae_loader, n_latents: int) -> Job:
    """A Job over ``genome`` cut into ``cfg.block_bp`` blocks."""
    from genesae_fast.annotate.concepts import default_block

    G = int(genome.codes.shape[0])
    return Job(str(store_path), str(sae_path), genome, cfg, plan_blocks(G, cfg.block_bp),
               int(cfg.block or default_block(G)), int(n_latents), str(pieces), motifs, controls, gene,
               list(shifts), sae_loader)
