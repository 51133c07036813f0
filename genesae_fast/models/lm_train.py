"""Training of the built-in gene LM (``genesae lm train``).

The last 5% of every record is held out (``lm_data``): its first half decides when to stop
and which weights to keep, its second half is reported untouched. Training samples random
windows of the training parts, reverse-complemented with probability 1/2, and minimises
next-base cross-entropy with AdamW under a cosine schedule laid out over the wall-clock
budget (CPU speed varies too much for a step budget) or over ``--steps`` when given.
All cores work from the first step: ``workers`` processes of one torch thread each sum
their gradients every step (``lm_parallel``; measured in ``benchmarks/bench_lm_train.py``).
Every ``eval_every`` steps the held-out bits/bp are measured. By default training runs the
whole budget and keeps its last weights; with ``patience`` > 0 it stops after that many
checks without improvement and keeps the best checked weights (``lm_loop``). Why not stop
early by default: on a small genome the held-out bits stop improving long before the LM has
learned its repeated elements. On the 1 Mbp planted-motif genome (benchmarks/RESULTS.md),
patience 5 stopped at step 1200 of ~4200 (held-out 1.929 bits/bp) and the SAE found 2 of 6
planted motifs at held-out F1 >= 0.3 with a decoy above the planted median; the whole
10 minutes (held-out 1.948, over-fitted by that measure) gave 3 of 6 and the decoys below.
On genomes of several Mbp and more, 10 minutes are less than a pass and the two agree.

A checkpoint is written every ``checkpoint_seconds`` and at the end; a run started again
on the same folder resumes from it. Time is read from an injectable clock (tests pass a
fake one, so no test depends on the machine's speed). At the end the folder gets
``model.safetensors``, ``lm_config.json`` (written last: the marker of a finished model)
and ``metrics.json`` with held-out bits/bp against the best order-k Markov model
(k = 0..10) and the held-out curve.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable

from genesae_fast.errors import InputError
from genesae_fast.models.builtin import CONFIG_FILE, METRICS_FILE, WEIGHTS_FILE, evaluate_bits
from genesae_fast.models.lm_data import (
    HELDOUT_FRACTION,
    LMData,
    load_lm_data,
    sample_batch,
    split_records,
    training_stream,
)
from genesae_fast.models.lm_loop import Budget, LMSettings, LMTrainer
from genesae_fast.models.lm_parallel import run_workers
from genesae_fast.models.markov import best_markov

CHECKPOINT_FILE = "checkpoint.pt"
DEFAULT_EVAL_EVERY = 100
DEFAULT_PATIENCE = 0  # train the whole budget: see the module docstring


def default_workers(batch_size: int, cores: int | None = None, load: float | None = None) -> int:
    """The cores no other work keeps busy: ``cores`` minus the busy cores (rounded; by
    default :func:`genesae_fast.threads.busy_cores`, sampled now), at least 1, at most one
    worker per window of the batch.

    Why not always all cores: workers meet every step, so each waits for the slowest; on a
    2-core VM at load average 11.7, two workers ran 0.85x the steps/s of one
    (benchmarks/bench_lm_train.py), while on a free machine each worker has its core.
    """
    from genesae_fast.threads import busy_cores, usable_cores

    cores = cores or usable_cores()
    load = busy_cores(cores=cores) if load is None else load
    return max(1, min(cores - int(round(load)), int(batch_size)))


def train_lm(genome: str | os.PathLike, out: str | os.PathLike, *, minutes: float = 10.0, n_layers: int = 6,
             d_model: int = 48, context: int = 512, seed: int = 0, batch_size: int = 32, lr: float = 3e-3, dropout: float = 0.0,
             workers: int | None = None, threads: int = 1, steps: int | None = None,
             eval_every: int = DEFAULT_EVAL_EVERY, patience: int = DEFAULT_PATIENCE, checkpoint_seconds: float = 30.0,
             max_markov_order: int = 10, progress: bool = True, clock: Callable[[], float] = time.perf_counter) -> dict:
    """Train the built-in gene LM on ``genome`` into folder ``out``; resume if ``out`` holds a checkpoint.

    Parameters
    ----------
    genome : path
        FASTA (plain or gzip).
    out : path
        Output folder: ``checkpoint.pt`` while training; at the end ``model.safetensors``,
        ``lm_config.json`` and ``metrics.json``.
    minutes : float
        Training budget in total (a resumed run trains for what is left), measured by ``clock``.
    n_layers, d_model, context : int
        Blocks, width, training window in bp.
    seed : int
        Initialisation and sampling seed.
    dropout : float
        Dropout on each block's residual branch while training (0: none).
    workers : int, optional
        Data-parallel processes (default: :func:`default_workers`); the same seed and worker
        count give the same weights when ``steps`` sets the schedule.
    threads : int
        torch threads per worker.
    steps : int, optional
        Stop after this many steps in total and lay the learning-rate schedule over them.
    eval_every, patience : int
        Held-out check every ``eval_every`` steps; stop after ``patience`` checks without
        improvement and keep the best checked weights; 0 (default): train the whole budget
        and keep the last weights.
    clock : callable
        Monotonic seconds (tests pass a fake clock; picklable when ``workers`` > 1).

    Returns
    -------
    dict
        The metrics written to ``metrics.json``.
    """
    genome, out = _check_inputs(genome, out, minutes, n_layers, d_model, context, dropout)
    if steps is not None and steps < 0 or eval_every < 0 or patience < 0:
        raise InputError("--steps, --eval-every and --patience must be >= 0")
    data = load_lm_data(genome)
    context = int(min(context, len(data.stream) - 1))
    settings = LMSettings(d_model, n_layers, context, data.genome_sha256, seed, batch_size, lr, float(dropout))
    budget = Budget(60.0 * minutes, steps, eval_every, patience, checkpoint_seconds)
    world = min(int(workers), batch_size) if workers else default_workers(batch_size)
    if _cuda_available():
        world = 1  # one process drives the GPU; worker processes are for CPU cores
    checkpoint = out / CHECKPOINT_FILE
    # an unfinished run must not look like a model: the marker comes back at the end
    (out / CONFIG_FILE).unlink(missing_ok=True)
    run_workers(world, _train_worker, (settings, checkpoint, data, budget, clock, progress), threads=threads)
    trainer = LMTrainer(settings, checkpoint, patience=patience)
    return _write_model(trainer, data, out, max_markov_order, run={
        "workers": world, "threads_per_worker": int(threads), "eval_every": eval_every, "patience": patience})


def _train_worker(comm, settings: LMSettings, checkpoint: Path, data: LMData, budget: Budget, clock,
                  progress: bool) -> None:
    """One worker's whole run (``lm_parallel.run_workers`` calls it in every process)."""
    trainer = LMTrainer(settings, checkpoint, clock=clock, comm=comm, patience=budget.patience)
    trainer.run(data.stream, data.val, budget, progress=progress)


def _cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def _check_inputs(genome, out, minutes, n_layers, d_model, context, dropout) -> tuple[Path, Path]:
    """The genome file and the (created) output folder; one-line InputError for bad options."""
    if minutes < 0:
        raise InputError(f"--minutes {minutes}: must be >= 0")
    if not 0.0 <= float(dropout) < 1.0:
        raise InputError(f"--dropout {dropout}: expected a fraction in [0, 1)")
    if n_layers < 1 or d_model < 1 or context < 2:
        raise InputError("--layers and --d-model must be >= 1 and --context >= 2")
    genome = Path(genome)
    if not genome.is_file():
        raise InputError(f"--genome {genome}: no such file")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out}: exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    return genome, out


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def heldout_metrics(trainer: LMTrainer, data: LMData, max_markov_order: int) -> dict:
    """Held-out bits/bp of the kept weights (whole held-out part and its untouched test half)
    beside the best Markov models of each."""
    field = trainer.config["receptive_field_bp"][-1]
    held_bits, held_n = evaluate_bits(trainer.net, data.held, field, trainer.device)
    test_bits, test_n = evaluate_bits(trainer.net, data.test, field, trainer.device)
    markov_test = best_markov(data.train, data.test, max_order=max_markov_order)
    return {
        "heldout_bits_per_bp": held_bits / max(held_n, 1),
        "heldout_scored_bp": held_n,
        **best_markov(data.train, data.held, max_order=max_markov_order),
        "test_bits_per_bp": test_bits / max(test_n, 1),
        "test_scored_bp": test_n,
        "markov_test_bits_per_bp": markov_test["markov_bits_per_bp"],
        "markov_test_order": markov_test["markov_order"],
    }


def _write_model(trainer: LMTrainer, data: LMData, out: Path, max_markov_order: int, run: dict) -> dict:
    """Score the held-out part, then write weights, ``metrics.json`` and ``lm_config.json`` (last)."""
    from safetensors.torch import save_file

    settings = asdict(trainer.settings)
    early = trainer.early
    kept = trainer.load_kept()
    metrics = {
        **heldout_metrics(trainer, data, max_markov_order),
        "val_bits_per_bp": (early.best_bits if trainer.keeps_best else early.curve[-1]["val_bits_per_bp"])
        if early.curve else None,
        "best_step": early.best_step,
        "kept_weights": kept,
        "stop_reason": trainer.stop_reason,
        "train_final_bits_per_bp": trainer.smooth,
        "train_seconds": trainer.elapsed,
        "steps": trainer.step,
        "tokens_seen": trainer.step * trainer.settings.batch_size * trainer.settings.context,
        "genome": data.genome.name,  # the file name only: a model folder must not carry this machine's paths
        "genome_sha256": data.genome_sha256,
        "genome_bp": data.genome_bp,
        "heldout_fraction": HELDOUT_FRACTION,
        "settings": settings,
        **run,
        "device": str(trainer.device),
        "eval_curve": early.curve,
    }
    config = trainer.config
    config["training"] = {k: metrics[k] for k in ("genome", "genome_sha256", "steps", "best_step", "kept_weights",
                                                  "train_seconds")}
    config["training"].update(settings)
    state = {k: v.detach().cpu().contiguous() for k, v in trainer.net.state_dict().items()}
    tmp = out / (WEIGHTS_FILE + ".tmp")
    save_file(state, str(tmp))
    os.replace(tmp, out / WEIGHTS_FILE)
    _atomic_write_text(out / METRICS_FILE, json.dumps(metrics, indent=2) + "\n")
    _atomic_write_text(out / CONFIG_FILE, json.dumps(config, indent=2) + "\n")
    return metrics


__all__ = ["LMData", "LMSettings", "LMTrainer", "default_workers", "heldout_metrics", "load_lm_data",
           "sample_batch", "split_records", "train_lm", "training_stream"]
