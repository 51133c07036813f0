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
an uninterrupted run. Under ``torchrun`` (``WORLD_SIZE`` > 1) each rank reads its shard of
the store and gradients are averaged by DDP: ``batch_size`` is per rank.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

from genesae_fast.errors import InputError
from genesae_fast.train_state import (
    EVAL_FILE,
    METRICS_FILE,
    STATE_FILE,
    MetricsLog,
    check_resume,
    load_state,
    save_state,
)

SAE_FILE = "sae.safetensors"
CONFIG_FILE = "config.json"
DEAD_TOKENS_MAX = 10_000_000  # Gao et al.: dead = no activation in the last 10M tokens
DEFAULT_TOKENS_MAX = 200_000_000
ADAM_EPS = 6.25e-10  # Gao et al.


class TrainingInterrupted(Exception):
    """Training stopped by SIGINT/SIGTERM after saving a checkpoint; rerunning resumes it.

    ``signum`` is the signal's number (the CLI exits with 128 + signum).
    """

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum


def default_lr(n_latents: int) -> float:
    """Gao et al.'s learning rate for ``n_latents`` latents: ``2e-4 / sqrt(n / 2^14)``."""
    return 2e-4 / math.sqrt(n_latents / 2**14)


def default_tokens(train_rows: int, batch_size: int) -> int:
    """Default training length: five passes over the training rows, at least 200 batches,
    at most 200M tokens."""
    return int(min(DEFAULT_TOKENS_MAX, max(5 * train_rows, 200 * batch_size)))


def lr_factor(step: int, total: int, warmup: int, decay: int) -> float:
    """Learning-rate multiplier at ``step`` (0-based): linear warm-up over ``warmup`` steps,
    constant, then linear decay to 0 over the last ``decay`` steps."""
    f = 1.0
    if warmup > 0 and step < warmup:
        f = (step + 1) / warmup
    if decay > 0 and step >= total - decay:
        f = min(f, (total - step) / decay)
    return f


# --------------------------------------------------------------------------- set-up helpers


def _dist_setup(device_type: str):
    """(rank, world_size, process group we created or None) from torchrun's environment."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), False
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
        return dist.get_rank(), dist.get_world_size(), True
    return 0, 1, False


def _resolve_device(device):
    import torch

    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    return dev


def _check_args(store, n_latents, k, batch_size, tokens, lr, aux_coef, k_aux):
    if store.n_rows == 0:
        raise InputError(f"{store.path}: the store is empty (0 rows); nothing to train on")
    if not math.isfinite(store.norm_scale) or store.norm_scale <= 0:
        raise InputError(f"{store.path}: the store has no usable statistics (norm scale {store.norm_scale}); "
                         "are all its activations equal?")
    if n_latents < 1:
        raise InputError(f"--latents {n_latents}: must be at least 1")
    if not 1 <= k <= n_latents:
        raise InputError(f"--k {k}: must be between 1 and the number of latents ({n_latents})")
    if batch_size < 1:
        raise InputError(f"--batch {batch_size}: must be at least 1")
    if tokens is not None and tokens < 1:
        raise InputError(f"--tokens {tokens}: must be at least 1")
    if lr is not None and not (lr > 0 and math.isfinite(lr)):
        raise InputError(f"--lr {lr}: must be a positive number")
    if aux_coef < 0:
        raise InputError(f"--aux-coef {aux_coef}: must be >= 0")
    if k_aux is not None and k_aux < 1:
        raise InputError(f"--aux-k {k_aux}: must be at least 1")


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


def _clear_outputs(out: Path) -> None:
    for name in (SAE_FILE, CONFIG_FILE, STATE_FILE, STATE_FILE + ".tmp", METRICS_FILE, EVAL_FILE):
        (out / name).unlink(missing_ok=True)
    shutil.rmtree(out / ".final", ignore_errors=True)


class _StopSignals:
    """Turn the first SIGINT/SIGTERM into a flag checked between steps (a second SIGINT
    interrupts at once). Only the main thread can install handlers; elsewhere a no-op."""

    def __init__(self):
        self.signum = 0
        self._old = {}

    def _handler(self, signum, frame):
        if self.signum and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self._old[s] = signal.signal(s, self._handler)
        return self

    def __exit__(self, *exc):
        for s, h in self._old.items():
            signal.signal(s, h)
        return False


class _DataCursor:
    """Endless training batches for one rank, with a resumable position (epoch, batch).

    Each epoch takes the same number of batches on every rank (the smallest rank's count
    of full batches), so DDP ranks step together.
    """

    def __init__(self, store, batch_size, seed, rank, world, chunks, epoch=0, batch=0):
        self.store, self.b, self.seed = store, batch_size, seed
        self.rank, self.world, self.chunks = rank, world, chunks
        self.epoch, self.batch = epoch, batch
        self._it = None
        self._n = 0

    def steps_in_epoch(self, epoch: int) -> int:
        """Batches every rank takes in ``epoch``."""
        return min(self.store.epoch_rows(r, self.world, self.seed, epoch, self.chunks) for r in range(self.world)) // self.b

    def _open(self):
        self._n = self.steps_in_epoch(self.epoch)
        self._it = self.store.batches(self.b, shuffle=True, seed=self.seed, rank=self.rank, world_size=self.world,
                                      epoch=self.epoch, chunks=self.chunks, drop_last=True)
        for _ in range(self.batch):  # resume: skip the batches already trained on
            next(self._it)

    def next(self):
        """The next ``[batch_size, d]`` float32 batch."""
        if self._it is None:
            self._open()
        if self.batch >= self._n:
            self.close()
            self.epoch += 1
            self.batch = 0
            self._open()
        x = next(self._it)
        self.batch += 1
        return x

    def close(self):
        """Stop the store's background reader."""
        if self._it is not None:
            self._it.close()
            self._it = None


# --------------------------------------------------------------------------- entry point


def train_sae(store_path, out_dir, latents: int | None = None, expansion: int = 16, k: int = 32,
              batch_size: int = 4096, tokens: int | None = None, lr: float | None = None, seed: int = 0, *,
              batch_topk: bool = False, k_aux: int | None = None, aux_coef: float = 1 / 32,
              dead_tokens: int | None = None, checkpoint_tokens: int | None = None, log_tokens: int | None = None,
              device=None, evaluate: bool = True, lm_loss: bool = True, overwrite: bool = False,
              progress: bool = True, callback=None) -> Path:
    """Train a TopK SAE on an activation store; returns the SAE folder.

    Parameters
    ----------
    store_path : str or Path
        An activation store (``genesae extract`` / ``genesae import``).
    out_dir : str or Path
        The SAE folder: ``config.json``, ``sae.safetensors`` (``TopKSAE.load`` reads it),
        ``metrics.jsonl``, ``eval.json``; ``trainer_state.pt`` while unfinished.
    latents : int, optional
        Number of latents; default ``expansion * d``.
    expansion : int
        Latents per input dimension when ``latents`` is not given.
    k : int
        Non-zero codes per row.
    batch_size : int
        Rows per step (per rank under torchrun).
    tokens : int, optional
        Training rows to consume in all; default :func:`default_tokens`.
    lr : float, optional
        Adam learning rate; default :func:`default_lr`.
    seed : int
        Seeds the initialisation and the data order.
    batch_topk : bool
        BatchTopK instead of per-row TopK during training.
    k_aux, aux_coef : int, float
        AuxK size (default d/2) and weight (1/32).
    dead_tokens : int, optional
        A latent is dead after this many tokens without firing; default a fifth of the
        run, at most 10M.
    checkpoint_tokens : int, optional
        Checkpoint interval; default a tenth of the run, at most 50M tokens.
    log_tokens : int, optional
        Interval of ``metrics.jsonl`` records; default 1/200 of the run.
    device : str, optional
        Default cuda when available, else cpu.
    evaluate, lm_loss : bool
        Held-out evaluation at the end; with it, the LM loss increase when the model that
        made the store can be loaded.
    overwrite : bool
        Discard an existing SAE or checkpoint in ``out_dir``.
    progress : bool
        tqdm progress bar (rank 0).
    callback : callable, optional
        Called as ``callback(step, tokens)`` after every optimiser step (monitoring, tests).

    Raises
    ------
    InputError
        Unreadable or empty store, bad sizes, ``out_dir`` holding another run.
    TrainingInterrupted
        SIGINT/SIGTERM: the checkpoint is saved first.
    """
    import torch

    from genesae_fast.store import ActivationStore
    from genesae_fast.train_eval import heldout_chunks

    store = ActivationStore.open(store_path)
    d = store.d
    n_latents = int(latents) if latents is not None else int(expansion) * d
    if latents is None and expansion < 1:
        raise InputError(f"--expansion {expansion}: must be at least 1")
    _check_args(store, n_latents, int(k), int(batch_size), tokens, lr, aux_coef, k_aux)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out}: is a file, not a folder")

    dev = _resolve_device(device)
    rank, world, owned_pg = _dist_setup(dev.type)
    try:
        return _train(store, out, n_latents=n_latents, k=int(k), batch_size=int(batch_size), tokens=tokens, lr=lr,
                      seed=int(seed), batch_topk=bool(batch_topk), k_aux=k_aux, aux_coef=float(aux_coef),
                      dead_tokens=dead_tokens, checkpoint_tokens=checkpoint_tokens, log_tokens=log_tokens,
                      dev=dev, rank=rank, world=world, evaluate=evaluate, lm_loss=lm_loss, overwrite=overwrite,
                      progress=progress, callback=callback, heldout=heldout_chunks(store.n_chunks))
    finally:
        if owned_pg:
            torch.distributed.destroy_process_group()


def _train(store, out: Path, *, n_latents, k, batch_size, tokens, lr, seed, batch_topk, k_aux, aux_coef,
           dead_tokens, checkpoint_tokens, log_tokens, dev, rank, world, evaluate, lm_loss, overwrite, progress,
           callback, heldout) -> Path:
    import torch

    d = store.d
    train_chunks = range(0, store.n_chunks - heldout)
    cursor = _DataCursor(store, batch_size, seed, rank, world, train_chunks)
    rows_per_rank = min(store.epoch_rows(r, world, seed, 0, train_chunks) for r in range(world))
    if rows_per_rank < 1:
        raise InputError(f"{store.path}: too few rows ({store.n_rows}) to give each of {world} processes one")
    batch_size = min(batch_size, rows_per_rank)  # a tiny store: one batch is the whole epoch
    cursor.b = batch_size
    global_batch = batch_size * world
    train_rows = sum(store.chunk_bounds(c)[1] - store.chunk_bounds(c)[0] for c in train_chunks)
    tokens = int(tokens) if tokens is not None else default_tokens(train_rows, global_batch)
    total_steps = max(1, math.ceil(tokens / global_batch))
    total_tokens = total_steps * global_batch
    k_aux = min(n_latents, int(k_aux) if k_aux is not None else max(1, d // 2))
    lr = float(lr) if lr is not None else default_lr(n_latents)
    dead_tokens = int(dead_tokens) if dead_tokens is not None else min(DEAD_TOKENS_MAX, max(total_tokens // 5, global_batch))
    ckpt_tokens = checkpoint_tokens if checkpoint_tokens is not None else min(50_000_000, max(total_tokens // 10, 1))
    ckpt_every = max(1, math.ceil(ckpt_tokens / global_batch))
    log_every = max(1, round((log_tokens or total_tokens / 200) / global_batch))

    run_config = {
        "store_config": store.attrs.get("config"), "store_rows": store.n_rows, "d_in": d, "n_latents": n_latents,
        "k": k, "batch_size": batch_size, "world_size": world, "total_steps": total_steps, "lr": lr, "seed": seed,
        "batch_topk": batch_topk, "k_aux": k_aux, "aux_coef": aux_coef, "dead_tokens": dead_tokens,
        "warmup_steps": min(1000, total_steps // 20), "decay_steps": total_steps // 5,
        "train_chunks": [train_chunks.start, train_chunks.stop],
        "heldout_chunks": [train_chunks.stop, store.n_chunks],
    }
    is_main = rank == 0

    # -- the output folder: finished, resumable or new ------------------------------------
    if (out / SAE_FILE).exists() and not overwrite:
        try:
            saved = json.loads((out / CONFIG_FILE).read_text()).get("training", {}).get("run", {})
        except (OSError, ValueError):
            saved = {}
        from genesae_fast.train_state import differences

        diff = differences(saved, run_config)
        if diff or not saved:
            raise InputError(f"--out {out}: already holds a trained SAE with other settings "
                             f"({diff or 'unknown'}); use --overwrite or another --out")
        if is_main and progress:
            print(f"{out}: already trained with these settings (use --overwrite to train again)", file=sys.stderr)
        return out
    if is_main:
        out.mkdir(parents=True, exist_ok=True)
        if overwrite:
            _clear_outputs(out)
    _barrier(world)
    state = load_state(out)
    if state is not None:
        check_resume(out, state["config"], run_config)

    # -- model, objective, optimiser ------------------------------------------------------
    from genesae_fast.sae import TopKSAE
    from genesae_fast.train_step import SAELoss, normalize_decoder, remove_parallel_grad

    sae = TopKSAE(d, n_latents, k)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        W = torch.randn(n_latents, d, generator=gen)
        sae.W_dec.copy_(W / W.norm(dim=1, keepdim=True))
        sae.W_enc.copy_(sae.W_dec)  # Gao: encoder starts as the decoder's transpose
        sae.b_enc.zero_()
        sae.input_mean.copy_(torch.as_tensor(store.mean, dtype=sae.input_mean.dtype))
    sae.input_scale = float(store.norm_scale)
    sae.to(dev)
    params = [sae.W_enc, sae.b_enc, sae.W_dec, sae.b_dec]
    opt = _adam(params, lr, dev)
    pg = None
    if world > 1:
        import torch.distributed as dist

        pg = dist.group.WORLD
    compute_dtype = torch.bfloat16 if dev.type == "cuda" else None
    objective = SAELoss(sae, k, k_aux, aux_coef, batch_topk=batch_topk, compute_dtype=compute_dtype, process_group=pg)
    since_fired = torch.zeros(n_latents, dtype=torch.int64, device=dev)
    step = 0
    elapsed0 = 0.0
    log = MetricsLog(out / METRICS_FILE, enabled=is_main)
    if state is not None:
        sae.load_state_dict(state["sae"])
        sae.input_scale = float(store.norm_scale)
        opt.load_state_dict(state["optimizer"])
        since_fired.copy_(state["since_fired"])
        step = int(state["step"])
        cursor.epoch, cursor.batch = int(state["epoch"]), int(state["batch_in_epoch"])
        elapsed0 = float(state.get("elapsed_s", 0.0))
        log.truncate(int(state["metrics_bytes"]))
    else:
        log.reset()
        with torch.no_grad():
            sae.b_dec.copy_(_first_batch_mean(store, sae, batch_size, seed, rank, world, train_chunks, dev))
    model = objective
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        model = DDP(objective, device_ids=[dev.index] if dev.type == "cuda" else None, broadcast_buffers=False)

    def snapshot(done_training=False):
        return {
            "config": run_config, "sae": {k_: v.detach().cpu() for k_, v in sae.state_dict().items()},
            "optimizer": opt.state_dict(), "since_fired": since_fired.cpu(), "step": step,
            "epoch": cursor.epoch, "batch_in_epoch": cursor.batch, "metrics_bytes": log.size(),
            "elapsed_s": elapsed0 + (time.perf_counter() - t_start), "done_training": done_training,
        }

    # -- the loop -------------------------------------------------------------------------
    from tqdm.auto import tqdm

    bar = tqdm(total=total_tokens, initial=step * global_batch, unit="tok", unit_scale=True, desc="train SAE",
               disable=not (progress and is_main), dynamic_ncols=True, file=sys.stderr)
    acc = torch.zeros(5, dtype=torch.float64, device=dev)  # err_sq, var, l0, auxk*rows, rows
    t_start = time.perf_counter()
    t_log, step_log = t_start, step
    last_metrics: dict = {}
    warmup, decay = run_config["warmup_steps"], run_config["decay_steps"]
    try:
        with _StopSignals() as stop:
            while step < total_steps:
                x = sae.normalize(cursor.next().to(dev, non_blocking=True))
                dead = since_fired >= dead_tokens
                res = model(x, dead)
                opt.zero_grad(set_to_none=True)
                res.loss.backward()
                remove_parallel_grad(sae.W_dec)
                for g in opt.param_groups:
                    g["lr"] = lr * lr_factor(step, total_steps, warmup, decay)
                opt.step()
                normalize_decoder(sae.W_dec)
                fired = res.fired
                if world > 1:
                    fired = _all_reduce_max(fired.to(torch.uint8)).bool()
                since_fired += global_batch
                since_fired[fired] = 0
                with torch.no_grad():
                    var = (x - x.mean(0)).pow(2).sum().double()
                    acc += torch.stack([res.err_sq_sum.double(), var, res.l0_sum.double(),
                                        res.auxk.double() * x.shape[0], torch.tensor(float(x.shape[0]), device=dev,
                                                                                     dtype=torch.float64)])
                step += 1
                bar.update(global_batch)
                if callback is not None:
                    callback(step, step * global_batch)
                signum = _agree_on_stop(stop.signum, world, dev)
                if step % log_every == 0 or step == total_steps or signum:
                    if world > 1:
                        acc = _all_reduce_sum(acc)
                    now = time.perf_counter()
                    a = acc.tolist()
                    last_metrics = {
                        "step": step, "tokens": step * global_batch, "epoch": cursor.epoch,
                        "fvu": a[0] / a[1] if a[1] > 0 else float("nan"), "l0": a[2] / max(a[4], 1),
                        "dead_fraction": float((since_fired >= dead_tokens).float().mean()),
                        "auxk_loss": a[3] / max(a[4], 1), "lr": opt.param_groups[0]["lr"],
                        "tokens_per_s": (step - step_log) * global_batch / max(now - t_log, 1e-9),
                        "elapsed_s": elapsed0 + now - t_start,
                    }
                    log.append(last_metrics)
                    bar.set_postfix(fvu=f"{last_metrics['fvu']:.4f}", l0=f"{last_metrics['l0']:.1f}",
                                    dead=f"{last_metrics['dead_fraction']:.3f}",
                                    auxk=f"{last_metrics['auxk_loss']:.3g}", refresh=False)
                    acc.zero_()
                    t_log, step_log = now, step
                if signum:
                    if is_main:
                        save_state(out, snapshot())
                    _barrier(world)
                    raise TrainingInterrupted(
                        f"training interrupted at step {step}/{total_steps} ({step * global_batch} tokens); "
                        f"checkpoint saved in {out / STATE_FILE}: rerun the same command to resume", signum)
                if step % ckpt_every == 0 and step < total_steps and is_main:
                    save_state(out, snapshot())
    finally:
        bar.close()
        cursor.close()

    # -- finish: final checkpoint, evaluation, then the SAE files (sae.safetensors last) ---
    if is_main:
        if state is None or int(state["step"]) < total_steps:
            save_state(out, snapshot(done_training=True))
        _finish(store, sae, out, run_config, last_metrics, step * global_batch,
                elapsed0 + time.perf_counter() - t_start, evaluate=evaluate, lm_loss=lm_loss, dev=dev,
                compute_dtype=compute_dtype, progress=progress)
    _barrier(world)
    return out


def _adam(params, lr, dev):
    import torch

    # fused Adam on GPU; on CPU the foreach version (as fast at these sizes, and fused
    # Adam imports torch._dynamo, which costs seconds at start-up).
    if dev.type == "cuda":
        try:
            return torch.optim.Adam(params, lr=lr, betas=(0.9, 0.999), eps=ADAM_EPS, fused=True)
        except (RuntimeError, TypeError, ValueError):
            pass
    return torch.optim.Adam(params, lr=lr, betas=(0.9, 0.999), eps=ADAM_EPS, foreach=True)


def _first_batch_mean(store, sae, batch_size, seed, rank, world, chunks, dev):
    """Mean of the first training batch (normalised), averaged over ranks: b_dec's start."""
    import torch

    it = store.batches(batch_size, shuffle=True, seed=seed, rank=rank, world_size=world, epoch=0, chunks=chunks,
                       drop_last=True)
    try:
        x = sae.normalize(next(it).to(dev))
    finally:
        it.close()
    mean = x.mean(0)
    if world > 1:
        mean = _all_reduce_sum(mean) / world
    return mean.to(torch.float32)


def _barrier(world):
    if world > 1:
        import torch.distributed as dist

        dist.barrier()


def _all_reduce_sum(t):
    import torch.distributed as dist

    t = t.clone()
    dist.all_reduce(t)
    return t


def _all_reduce_max(t):
    import torch.distributed as dist

    t = t.clone()
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t


def _agree_on_stop(signum, world, dev):
    """A signal on any rank stops every rank at the same step."""
    if world == 1:
        return signum
    import torch

    return int(_all_reduce_max(torch.tensor([signum], dtype=torch.int64, device=dev)).item())


def _finish(store, sae, out, run_config, last_metrics, tokens_done, elapsed, *, evaluate, lm_loss, dev,
            compute_dtype, progress):
    """Evaluate and write the SAE folder; ``sae.safetensors`` is moved into place last."""
    from genesae_fast.sae import TopKSAE

    tmp = out / ".final"
    shutil.rmtree(tmp, ignore_errors=True)
    extra = {
        "training": {
            "run": run_config, "tokens": tokens_done, "steps": run_config["total_steps"],
            "elapsed_s": round(elapsed, 3), "final_metrics": last_metrics,
            "normalization": "x_n = (x - input_mean) / input_scale, store mean and norm scale",
        },
        "store": _store_provenance(store),
    }
    sae.cpu().save(tmp, extra_config=extra)
    sae.to(dev)
    if evaluate:
        from genesae_fast.train_eval import evaluate_store

        loaded = TopKSAE.load(tmp, device=dev)
        report = evaluate_store(store, loaded, run_config, dev=dev, compute_dtype=compute_dtype, lm_loss=lm_loss,
                                progress=progress)
        report["train_final"] = last_metrics
        (tmp / EVAL_FILE).write_text(json.dumps(report, indent=2, default=float) + "\n")
        if progress:
            h = report["heldout"]
            print(f"held-out ({h['rows']} rows): FVU {h['fvu']:.4f}  L0 {h['l0']:.2f}  "
                  f"dead fraction {h['dead_fraction']:.4f}", file=sys.stderr)
    for name in (CONFIG_FILE, EVAL_FILE, SAE_FILE):
        if (tmp / name).exists():
            os.replace(tmp / name, out / name)
    shutil.rmtree(tmp, ignore_errors=True)
    (out / STATE_FILE).unlink(missing_ok=True)


__all__ = ["TrainingInterrupted", "default_lr", "default_tokens", "lr_factor", "train_sae"]
