"""Train a TopK sparse autoencoder on an activation store (the recipe of Gao et al. 2024).

>>> from genesae_fast.train import train_sae
>>> train_sae("store.zarr", "sae/", latents=1024, k=8, tokens=5_000_000)   # -> Path("sae")

Recipe: inputs centred by the store mean and divided by its norm scale (unit mean squared
norm; the saved SAE carries both as ``input_mean``/``input_scale``); decoder rows random
unit vectors, ``W_enc`` initialised to the decoder (the transpose of ``W_dec`` in the
usual ``[d, n]`` layout), ``b_dec`` to the mean of a first batch; loss = mean squared
error (= FVU, the data having unit mean squared norm) + AuxK/32 on the residual from the
``k_aux = d/2`` largest dead latents; Adam (eps 6.25e-10), lr ``2e-4 / sqrt(n / 2^14)``
with a short warm-up and a linear decay over the last 20% of steps; decoder rows kept at
unit norm, the gradient component along each row removed before the step. The encoder and
decoder run through :mod:`genesae_fast.ops` (Triton on GPU, torch on CPU); on GPU the ops
run in bfloat16 with fp32 master weights. BatchTopK (``batch_topk=True``) keeps the
``B*k`` largest codes of a batch instead of ``k`` per row.

Held out: the last 1% of the store's chunks (at least one when there are two or more) are
never trained on; ``eval.json`` reports FVU, L0 and dead fraction on them at the end.

Checkpoints (``trainer_state.pt``) every ``checkpoint_tokens`` and on SIGINT/SIGTERM;
calling again with the same arguments resumes, and on CPU ends with the same weights as
an uninterrupted run. On CPU the thread count is chosen by timing steps
(:class:`genesae_fast.threads.ThreadTuner`) unless ``threads`` pins it; it does not change the
weights (tests/test_train_loop.py checks 1 against 2 threads). Under ``torchrun`` (``WORLD_SIZE`` > 1) each rank reads its shard of
the store and gradients are averaged by DDP: ``batch_size`` is per rank.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from genesae_fast.errors import InputError
from genesae_fast.threads import ThreadTuner
from genesae_fast.train.checkpoint import (
    EVAL_FILE,
    METRICS_FILE,
    STATE_FILE,
    MetricsLog,
    check_resume,
    differences,
    load_state,
    save_state,
)
from genesae_fast.train.config import ADAM_EPS, TrainConfig, TrainOptions, lr_factor
from genesae_fast.train.data import DataCursor, first_batch_mean
from genesae_fast.train.distributed import agree_on_stop, all_reduce_max, barrier, dist_setup, resolve_device
from genesae_fast.train.evaluate import evaluate_store, heldout_chunks
from genesae_fast.train.metrics import MetricSums
from genesae_fast.train.objective import SAELoss
from genesae_fast.train.signals import StopSignals, TrainingInterrupted

SAE_FILE = "sae.safetensors"
CONFIG_FILE = "config.json"


@dataclass(frozen=True)
class RunContext:
    """Where and how a run executes; nothing here changes the trained weights."""

    out: Path
    dev: torch.device
    rank: int = 0
    world: int = 1
    evaluate: bool = True
    lm_loss: bool = True
    overwrite: bool = False
    progress: bool = True
    callback: Callable[[int, int], None] | None = None
    threads: int | None = None
    clock: Callable[[], float] = time.perf_counter

    @property
    def is_main(self) -> bool:
        """Rank 0 writes the files."""
        return self.rank == 0


# --------------------------------------------------------------------------- entry point


def train_sae(store_path, out_dir, *, latents: int | None = None, expansion: int = 16, k: int = 32,
              batch_size: int = 4096, tokens: int | None = None, lr: float | None = None, seed: int = 0,
              batch_topk: bool = False, k_aux: int | None = None, aux_coef: float = 1 / 32,
              dead_tokens: int | None = None, checkpoint_tokens: int | None = None, log_tokens: int | None = None,
              device=None, threads: int | None = None, evaluate: bool = True, lm_loss: bool = True,
              overwrite: bool = False, progress: bool = True, callback=None, clock=time.perf_counter,
              strands: str = "auto") -> Path:
    """Train a TopK SAE on an activation store; returns the SAE folder.

    Parameters
    ----------
    store_path : str or Path
        An activation store (``genesae extract`` / ``genesae import``).
    out_dir : str or Path
        The SAE folder: ``config.json``, ``sae.safetensors`` (``TopKSAE.load`` reads it),
        ``metrics.jsonl``, ``eval.json``; ``trainer_state.pt`` while unfinished.
    latents, expansion, k, batch_size, tokens, lr, seed, batch_topk, k_aux, aux_coef, dead_tokens, \
checkpoint_tokens, log_tokens
        The recipe's options, described in :class:`~genesae_fast.train.config.TrainOptions`
        (``latents`` defaults to ``expansion * d``; ``batch_size`` is per rank).
    device : str, optional
        Default cuda when available, else cpu.
    threads : int, optional
        torch CPU threads; None on CPU times a few steps with 1 thread and with all cores,
        keeps the faster and re-measures every 2 minutes (:class:`genesae_fast.threads.ThreadTuner`).
        The count does not change the weights (checked for 1 and 2 threads).
    evaluate, lm_loss : bool
        Held-out evaluation at the end; with it, the LM loss increase when the store's model loads.
    overwrite, progress : bool
        Discard an SAE or checkpoint in ``out_dir``; tqdm progress bar (rank 0).
    callback : callable, optional
        ``callback(step, tokens)`` after every optimiser step (monitoring, tests).
    clock : callable
        Monotonic seconds; times the steps (tests pass a fake one).
    strands : str
        "auto"/"both"/"forward": the RC pass too (``genesae_fast.store.strands.open_for_training``).

    Raises
    ------
    InputError
        Unreadable or empty store, bad sizes, ``out_dir`` holding another run.
    TrainingInterrupted
        SIGINT/SIGTERM: the checkpoint is saved first.
    """
    from genesae_fast.store.strands import open_for_training

    store = open_for_training(store_path, strands)
    _check_counts(expansion if latents is None else 1, threads)
    options = TrainOptions(
        n_latents=int(latents) if latents is not None else int(expansion) * store.d, k=int(k),
        batch_size=int(batch_size), tokens=tokens, lr=lr, seed=int(seed), batch_topk=bool(batch_topk), k_aux=k_aux,
        aux_coef=float(aux_coef), dead_tokens=dead_tokens, checkpoint_tokens=checkpoint_tokens, log_tokens=log_tokens)
    options.check(store)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out}: is a file, not a folder")
    return _train_on_device(store, options, out, device, evaluate=evaluate, lm_loss=lm_loss, overwrite=overwrite,
                            progress=progress, callback=callback, threads=threads, clock=clock)


def _n_heldout(store) -> int:
    """Held-out chunks: the last 1% (``heldout_chunks``), rounded up to whole groups of
    ``store.heldout_multiple`` (2 for both strands: both passes of the held-out stretch)."""
    n, m = heldout_chunks(store.n_chunks), int(getattr(store, "heldout_multiple", 1))
    return min(-(-n // m) * m, max(store.n_chunks - 1, n))


def _check_counts(expansion: int, threads: int | None) -> None:
    if expansion < 1:
        raise InputError(f"--expansion {expansion}: must be at least 1")
    if threads is not None and threads < 1:
        raise InputError(f"--threads {threads}: must be at least 1")


def _train_on_device(store, options: TrainOptions, out: Path, device, **context) -> Path:
    """Join torchrun's process group (when launched by it), train, and put the thread count back."""
    dev = resolve_device(device)
    rank, world, owned_group = dist_setup(dev.type)
    threads_before = torch.get_num_threads()
    try:
        cfg = TrainConfig.resolve(store, options, world, _n_heldout(store))
        return _train(store, cfg, RunContext(out, dev, rank, world, **context))
    finally:
        torch.set_num_threads(threads_before)  # the tuner changes a process-wide setting
        if owned_group:
            torch.distributed.destroy_process_group()


def _train(store, cfg: TrainConfig, ctx: RunContext) -> Path:
    """Train (or resume, or find finished) the run ``cfg`` in ``ctx.out``."""
    run_config = cfg.run_config()
    if _already_trained(ctx, run_config):
        return ctx.out
    _prepare_folder(ctx)
    saved = load_state(ctx.out)
    if saved is not None:
        check_resume(ctx.out, saved["config"], run_config)
    trainer = Trainer(store, cfg, ctx, saved)
    trainer.run()
    if ctx.is_main:
        if saved is None or int(saved["step"]) < cfg.total_steps:
            save_state(ctx.out, trainer.snapshot(done_training=True))
        _finish(store, trainer, ctx)
    barrier(ctx.world)
    return ctx.out


# --------------------------------------------------------------------------- the output folder


def _already_trained(ctx: RunContext, run_config: dict) -> bool:
    """True when ``ctx.out`` holds an SAE trained with these settings; InputError for other settings."""
    out = ctx.out
    if not (out / SAE_FILE).exists() or ctx.overwrite:
        return False
    try:
        saved = json.loads((out / CONFIG_FILE).read_text()).get("training", {}).get("run", {})
    except (OSError, ValueError):
        saved = {}
    diff = differences(saved, run_config)
    if diff or not saved:
        raise InputError(f"--out {out}: already holds a trained SAE with other settings "
                         f"({diff or 'unknown'}); use --overwrite or another --out")
    if ctx.is_main and ctx.progress:
        print(f"{out}: already trained with these settings (use --overwrite to train again)", file=sys.stderr)
    return True


def _prepare_folder(ctx: RunContext) -> None:
    """Create ``ctx.out`` (emptied of a previous run with ``overwrite``) before any rank reads it."""
    if ctx.is_main:
        ctx.out.mkdir(parents=True, exist_ok=True)
        if ctx.overwrite:
            for name in (SAE_FILE, CONFIG_FILE, STATE_FILE, STATE_FILE + ".tmp", METRICS_FILE, EVAL_FILE):
                (ctx.out / name).unlink(missing_ok=True)
            shutil.rmtree(ctx.out / ".final", ignore_errors=True)
    barrier(ctx.world)


# --------------------------------------------------------------------------- model and optimiser


def init_sae(store, cfg: TrainConfig, dev):
    """A fresh TopKSAE: random unit decoder rows (seeded), the encoder its transpose, the store's statistics."""
    from genesae_fast.sae import TopKSAE

    sae = TopKSAE(cfg.d_in, cfg.n_latents, cfg.k)
    gen = torch.Generator().manual_seed(cfg.seed)
    with torch.no_grad():
        W = torch.randn(cfg.n_latents, cfg.d_in, generator=gen)
        sae.W_dec.copy_(W / W.norm(dim=1, keepdim=True))
        sae.W_enc.copy_(sae.W_dec)  # Gao: encoder starts as the decoder's transpose
        sae.b_enc.zero_()
        sae.input_mean.copy_(torch.as_tensor(store.mean, dtype=sae.input_mean.dtype))
    sae.input_scale = float(store.norm_scale)
    return sae.to(dev)


def make_adam(params, lr: float, dev) -> torch.optim.Adam:
    """Adam with Gao's eps: fused on GPU; on CPU the foreach version (as fast at these
    sizes, and fused Adam imports torch._dynamo, which costs seconds at start-up)."""
    if dev.type == "cuda":
        try:
            return torch.optim.Adam(params, lr=lr, betas=(0.9, 0.999), eps=ADAM_EPS, fused=True)
        except (RuntimeError, TypeError, ValueError):
            pass
    return torch.optim.Adam(params, lr=lr, betas=(0.9, 0.999), eps=ADAM_EPS, foreach=True)


def _thread_tuner(ctx: RunContext) -> ThreadTuner | None:
    """Threads are tuned on CPU only (a GPU step's time says nothing about CPU threads)."""
    if ctx.threads is None and ctx.dev.type != "cpu":
        return None
    return ThreadTuner(ctx.threads)


# --------------------------------------------------------------------------- the loop


class Trainer:
    """One rank's training state and loop: SAE, optimiser, dead-latent counters, data position."""

    def __init__(self, store, cfg: TrainConfig, ctx: RunContext, saved: dict | None):
        self.store, self.cfg, self.ctx = store, cfg, ctx
        self.sae = init_sae(store, cfg, ctx.dev)
        self.opt = make_adam([self.sae.W_enc, self.sae.b_enc, self.sae.W_dec, self.sae.b_dec], cfg.lr, ctx.dev)
        self.compute_dtype = torch.bfloat16 if ctx.dev.type == "cuda" else None
        group = torch.distributed.group.WORLD if ctx.world > 1 else None
        objective = SAELoss(self.sae, cfg.k, cfg.k_aux, cfg.aux_coef, batch_topk=cfg.batch_topk,
                            compute_dtype=self.compute_dtype, process_group=group)
        self.since_fired = torch.zeros(cfg.n_latents, dtype=torch.int64, device=ctx.dev)
        self.cursor = DataCursor(store, cfg.batch_size, cfg.seed, ctx.rank, ctx.world, cfg.train_chunks)
        self.log = MetricsLog(ctx.out / METRICS_FILE, enabled=ctx.is_main)
        self.step, self.elapsed0 = 0, 0.0
        self.sums = MetricSums.zeros(ctx.dev)
        self.last_metrics: dict = {}
        self._t_start = ctx.clock()
        if saved is None:
            self._start_fresh()
        else:
            self._restore(saved)
        self.model = objective
        if ctx.world > 1:  # after the restore: DDP broadcasts rank 0's weights when wrapping
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [ctx.dev.index] if ctx.dev.type == "cuda" else None
            self.model = DDP(objective, device_ids=ids, broadcast_buffers=False)

    def _start_fresh(self) -> None:
        self.log.reset()
        cfg, ctx = self.cfg, self.ctx
        with torch.no_grad():
            self.sae.b_dec.copy_(first_batch_mean(self.store, self.sae, cfg.batch_size, cfg.seed, ctx.rank, ctx.world,
                                                  cfg.train_chunks, ctx.dev))

    def _restore(self, state: dict) -> None:
        self.sae.load_state_dict(state["sae"])
        self.sae.input_scale = float(self.store.norm_scale)
        self.opt.load_state_dict(state["optimizer"])
        self.since_fired.copy_(state["since_fired"])
        self.step = int(state["step"])
        self.cursor.epoch, self.cursor.batch = int(state["epoch"]), int(state["batch_in_epoch"])
        self.elapsed0 = float(state.get("elapsed_s", 0.0))
        self.log.truncate(int(state["metrics_bytes"]))

    def elapsed(self) -> float:
        """Training seconds, resumed runs included."""
        return self.elapsed0 + (self.ctx.clock() - self._t_start)

    def snapshot(self, done_training: bool = False) -> dict:
        """The checkpoint's contents."""
        return {
            "config": self.cfg.run_config(),
            "sae": {name: v.detach().cpu() for name, v in self.sae.state_dict().items()},
            "optimizer": self.opt.state_dict(), "since_fired": self.since_fired.cpu(), "step": self.step,
            "epoch": self.cursor.epoch, "batch_in_epoch": self.cursor.batch, "metrics_bytes": self.log.size(),
            "elapsed_s": self.elapsed(), "done_training": done_training,
        }

    def train_step(self) -> None:
        """One optimiser step on the next batch (the decoder kept at unit rows)."""
        cfg, ctx, sae = self.cfg, self.ctx, self.sae
        x = sae.normalize(self.cursor.next().to(ctx.dev, non_blocking=True))
        res = self.model(x, self.since_fired >= cfg.dead_tokens)
        self.opt.zero_grad(set_to_none=True)
        res.loss.backward()
        sae.remove_parallel_grad_()
        for group in self.opt.param_groups:
            group["lr"] = cfg.lr * lr_factor(self.step, cfg.total_steps, cfg.warmup_steps, cfg.decay_steps)
        self.opt.step()
        sae.set_decoder_norm_()
        fired = res.fired
        if ctx.world > 1:
            fired = all_reduce_max(fired.to(torch.uint8)).bool()
        self.since_fired += cfg.global_batch
        self.since_fired[fired] = 0
        self.sums.add(x, res)
        self.step += 1

    def run(self) -> None:
        """Train to ``total_steps``: log records, periodic checkpoints, a clean stop on a signal."""
        from tqdm.auto import tqdm

        cfg, ctx = self.cfg, self.ctx
        bar = tqdm(total=cfg.total_tokens, initial=self.step * cfg.global_batch, unit="tok", unit_scale=True,
                   desc="train SAE", disable=not (ctx.progress and ctx.is_main), dynamic_ncols=True, file=sys.stderr)
        tuner = _thread_tuner(ctx)
        self._t_start = ctx.clock()
        self._t_log, self._step_log = self._t_start, self.step
        try:
            with StopSignals() as stop:
                while self.step < cfg.total_steps:
                    self._timed_step(tuner)
                    bar.update(cfg.global_batch)
                    if ctx.callback is not None:
                        ctx.callback(self.step, self.step * cfg.global_batch)
                    signum = agree_on_stop(stop.signum, ctx.world, ctx.dev)
                    if self.step % cfg.log_every == 0 or self.step == cfg.total_steps or signum:
                        self._write_record(bar)
                    if signum:
                        self._stop(signum)
                    if self.step % cfg.checkpoint_every == 0 and self.step < cfg.total_steps and ctx.is_main:
                        save_state(ctx.out, self.snapshot())
        finally:
            bar.close()
            self.cursor.close()

    def _timed_step(self, tuner: ThreadTuner | None) -> None:
        if tuner is None:
            self.train_step()
            return
        tuner.before_step(self.elapsed())
        t0 = self.ctx.clock()
        self.train_step()
        tuner.after_step(self.ctx.clock() - t0, self.elapsed())

    def _write_record(self, bar) -> None:
        """Append a ``metrics.jsonl`` record of the steps since the last one."""
        cfg = self.cfg
        sums = self.sums.all_reduce() if self.ctx.world > 1 else self.sums
        means = sums.record()
        now = self.ctx.clock()
        self.last_metrics = {
            "step": self.step, "tokens": self.step * cfg.global_batch, "epoch": self.cursor.epoch,
            "fvu": means["fvu"], "l0": means["l0"],
            "dead_fraction": float((self.since_fired >= cfg.dead_tokens).float().mean()),
            "auxk_loss": means["auxk_loss"], "lr": self.opt.param_groups[0]["lr"],
            "tokens_per_s": (self.step - self._step_log) * cfg.global_batch / max(now - self._t_log, 1e-9),
            "elapsed_s": self.elapsed0 + now - self._t_start,
        }
        self.log.append(self.last_metrics)
        m = self.last_metrics
        bar.set_postfix(fvu=f"{m['fvu']:.4f}", l0=f"{m['l0']:.1f}", dead=f"{m['dead_fraction']:.3f}",
                        auxk=f"{m['auxk_loss']:.3g}", refresh=False)
        self.sums = MetricSums.zeros(self.ctx.dev)
        self._t_log, self._step_log = now, self.step

    def _stop(self, signum: int) -> None:
        """Checkpoint, then raise TrainingInterrupted on every rank."""
        cfg, ctx = self.cfg, self.ctx
        if ctx.is_main:
            save_state(ctx.out, self.snapshot())
        barrier(ctx.world)
        raise TrainingInterrupted(
            f"training interrupted at step {self.step}/{cfg.total_steps} ({self.step * cfg.global_batch} tokens); "
            f"checkpoint saved in {ctx.out / STATE_FILE}: rerun the same command to resume", signum)


# --------------------------------------------------------------------------- the finished SAE


def _store_provenance(store) -> dict:
    a = store.attrs
    genome = a.get("genome") or {}
    out = {"path": str(store.path), "n_rows": store.n_rows, "d": store.d, "dtype": store.dtype,
           "config": a.get("config")}
    for key in ("model", "layer", "window", "stride"):
        if a.get(key) is not None:
            out[key] = a[key]
    if genome:
        out["genome"] = {k: genome[k] for k in ("path", "sha256", "name") if k in genome}
    return out


def _finish(store, trainer: Trainer, ctx: RunContext) -> None:
    """Evaluate and write the SAE folder; ``sae.safetensors`` is moved into place last."""
    out, sae, cfg = ctx.out, trainer.sae, trainer.cfg
    tmp = out / ".final"
    shutil.rmtree(tmp, ignore_errors=True)
    extra = {
        "training": {
            "run": cfg.run_config(), "tokens": trainer.step * cfg.global_batch, "steps": cfg.total_steps,
            "elapsed_s": round(trainer.elapsed(), 3), "final_metrics": trainer.last_metrics,
            "normalization": "x_n = (x - input_mean) / input_scale, store mean and norm scale",
        },
        "store": _store_provenance(store),
    }
    sae.cpu().save(tmp, extra_config=extra)
    sae.to(ctx.dev)
    if ctx.evaluate:
        _write_eval(store, trainer, ctx, tmp)
    for name in (CONFIG_FILE, EVAL_FILE, SAE_FILE):
        if (tmp / name).exists():
            os.replace(tmp / name, out / name)
    shutil.rmtree(tmp, ignore_errors=True)
    (out / STATE_FILE).unlink(missing_ok=True)


def _write_eval(store, trainer: Trainer, ctx: RunContext, folder: Path) -> None:
    """``eval.json`` for the SAE saved in ``folder`` (evaluated as it will be loaded)."""
    from genesae_fast.sae import TopKSAE

    loaded = TopKSAE.load(folder, device=ctx.dev)
    report = evaluate_store(store, loaded, trainer.cfg.run_config(), dev=ctx.dev, compute_dtype=trainer.compute_dtype,
                            lm_loss=ctx.lm_loss, progress=ctx.progress)
    report["train_final"] = trainer.last_metrics
    (folder / EVAL_FILE).write_text(json.dumps(report, indent=2, default=float) + "\n")
    if ctx.progress:
        h = report["heldout"]
        print(f"held-out ({h['rows']} rows): FVU {h['fvu']:.4f}  L0 {h['l0']:.2f}  "
              f"dead fraction {h['dead_fraction']:.4f}", file=sys.stderr)


__all__ = ["RunContext", "Trainer", "TrainingInterrupted", "init_sae", "make_adam", "train_sae"]
