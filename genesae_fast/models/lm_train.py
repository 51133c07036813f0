"""Training of the built-in gene LM (``genesae lm train``).

The last 5% of every record is held out. Training samples random windows of the training
parts, reverse-complemented with probability 1/2 (both strands are DNA the model should
know), and minimises next-base cross-entropy with AdamW under a cosine schedule laid out
over the wall-clock budget (CPU speed varies too much for a step budget). A checkpoint is
written every ``checkpoint_seconds`` and at the end; a run started again on the same
folder resumes from it. At the end the folder gets ``model.safetensors``,
``lm_config.json`` (written last: the marker of a finished model) and ``metrics.json``
with held-out bits/bp against the best order-k Markov model (k = 0..10).
"""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from genesae_fast.errors import InputError
from genesae_fast.models.builtin import (
    CONFIG_FILE,
    METRICS_FILE,
    WEIGHTS_FILE,
    build_network,
    make_config,
)
from genesae_fast.models.markov import Segment, best_markov

HELDOUT_FRACTION = 0.05
CHECKPOINT_FILE = "checkpoint.pt"
_COMPLEMENT = np.array([3, 2, 1, 0, 4], dtype=np.int64)


def split_records(records: Sequence, heldout_fraction: float = HELDOUT_FRACTION) -> tuple[list[Segment], list[Segment]]:
    """Training and held-out segments: the last ``ceil(fraction * L)`` bases of each record are held out.

    Held-out segments start at position >= 1 (position 0 has no context for the LM), so
    the LM and the Markov baseline score exactly the same bases.
    """
    train, held = [], []
    for rec in records:
        codes = np.asarray(rec.codes)
        n = len(codes)
        if n == 0:
            continue
        h0 = n - int(math.ceil(heldout_fraction * n))
        train.append(Segment(codes, 0, h0))
        held.append(Segment(codes, max(h0, 1), n))
    return train, held


def training_stream(train: Sequence[Segment]) -> np.ndarray:
    """Training parts joined by one N (code 4) each, as int64 codes."""
    parts = []
    for seg in train:
        if seg.hi > seg.lo:
            parts.append(np.asarray(seg.codes[seg.lo : seg.hi], dtype=np.int64))
            parts.append(np.array([4], dtype=np.int64))
    return np.concatenate(parts[:-1]) if parts else np.zeros(0, dtype=np.int64)


def sample_batch(stream: np.ndarray, batch: int, length: int, rng: np.random.Generator) -> np.ndarray:
    """``batch`` random windows of ``length`` codes, half of them reverse-complemented.

    Returns
    -------
    numpy.ndarray, shape (batch, length), int64
    """
    starts = rng.integers(0, len(stream) - length + 1, size=batch)
    windows = stream[starts[:, None] + np.arange(length)[None, :]]
    flip = rng.random(batch) < 0.5
    windows[flip] = _COMPLEMENT[windows[flip][:, ::-1]]
    return windows


def lm_loss(net, windows):
    """Mean next-base cross-entropy in nats over targets that are A/C/G/T, and their count."""
    import torch.nn.functional as F

    x, y = windows[:, :-1], windows[:, 1:]
    logits = net(x)  # [B, 4, L]
    mask = y < 4
    nll = F.cross_entropy(logits, y.clamp(max=3), reduction="none")
    n = mask.sum()
    return (nll * mask).sum() / n.clamp(min=1), n


def evaluate_bits(net, segments: Sequence[Segment], receptive_field: int, device, chunk: int = 1 << 16) -> tuple[float, int]:
    """Total bits and count of the LM's predictions of the A/C/G/T bases in ``segments``.

    Each chunk of positions is fed with ``receptive_field`` bases of left context, so every
    prediction sees its full causal context (as it would in one pass over the record).
    """
    import torch
    import torch.nn.functional as F

    total, n = 0.0, 0
    net.eval()
    with torch.inference_mode():
        for seg in segments:
            codes = np.asarray(seg.codes, dtype=np.int64)
            for p0 in range(seg.lo, seg.hi, chunk):
                p1 = min(p0 + chunk, seg.hi)
                a = max(0, p0 - receptive_field - 1)
                x = torch.as_tensor(codes[a : p1 - 1], device=device)[None]
                logits = net(x)[0, :, p0 - a - 1 :]  # column t predicts codes[a + t + 1]
                y = torch.as_tensor(codes[p0:p1], device=device)
                mask = y < 4
                nll = F.cross_entropy(logits.T, y.clamp(max=3), reduction="none")
                total += float(nll[mask].sum()) / math.log(2)
                n += int(mask.sum())
    return total, n


class ThreadTuner:
    """Chooses torch's thread count by measuring steps, and re-checks it now and then.

    On a shared machine two threads that wait on each other can be several times slower
    than one (measured: 5 s against 1.2 s a step on a loaded 2-core machine), while on a
    quiet machine all cores are faster. So a few steps are timed with each candidate
    (1 thread and all cores), the fastest is kept, and the probe repeats every
    ``recheck_seconds``.
    """

    def __init__(self, fixed: int | None, probe_steps: int = 3, recheck_seconds: float = 120.0):
        import torch

        self._torch = torch
        cores = os.cpu_count() or 1
        self.candidates = [int(fixed)] if fixed else sorted({1, cores})
        self.probe_steps = probe_steps
        self.recheck_seconds = recheck_seconds
        self.current = self.candidates[-1]
        self._times: dict[int, list[float]] = {}
        self._probing = len(self.candidates) > 1
        self._next_probe = 0.0
        torch.set_num_threads(self.current)

    def before_step(self, elapsed: float) -> None:
        """Set the thread count for the next step."""
        if not self._probing and len(self.candidates) > 1 and elapsed >= self._next_probe:
            self._probing, self._times = True, {}
        if self._probing:
            for c in self.candidates:
                if len(self._times.get(c, [])) < self.probe_steps:
                    self.current = c
                    break
            self._torch.set_num_threads(self.current)

    def after_step(self, seconds: float, elapsed: float) -> None:
        """Record a step's duration; end a probe once every candidate has its steps."""
        if not self._probing:
            return
        self._times.setdefault(self.current, []).append(seconds)
        if all(len(self._times.get(c, [])) >= self.probe_steps for c in self.candidates):
            # the first step after a change pays for thread start-up: judge by the median
            self.current = min(self.candidates, key=lambda c: float(np.median(self._times[c])))
            self._torch.set_num_threads(self.current)
            self._probing = False
            self._next_probe = elapsed + self.recheck_seconds


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _save_checkpoint(path: Path, state: dict) -> None:
    import torch

    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def train_lm(
    genome: str | os.PathLike,
    out: str | os.PathLike,
    minutes: float = 10.0,
    n_layers: int = 6,
    d_model: int = 48,
    context: int = 512,
    seed: int = 0,
    batch_size: int = 32,
    lr: float = 3e-3,
    threads: int | None = None,
    checkpoint_seconds: float = 30.0,
    max_markov_order: int = 10,
    progress: bool = True,
) -> dict:
    """Train the built-in gene LM on ``genome`` into folder ``out``; resume if ``out`` holds a checkpoint.

    Parameters
    ----------
    genome : path
        FASTA (plain or gzip).
    out : path
        Output folder: ``checkpoint.pt`` while training; at the end ``model.safetensors``,
        ``lm_config.json`` and ``metrics.json``.
    minutes : float
        Wall-clock training budget in total (a resumed run trains for what is left).
    n_layers, d_model, context : int
        Blocks, width, training window in bp.
    seed : int
        Initialisation and sampling seed.
    threads : int, optional
        torch threads; None chooses between 1 and all cores by timing steps (``ThreadTuner``).

    Returns
    -------
    dict
        The metrics written to ``metrics.json``.
    """
    import torch

    threads_before = torch.get_num_threads()
    try:
        return _train(genome, out, minutes, n_layers, d_model, context, seed, batch_size, lr, threads,
                      checkpoint_seconds, max_markov_order, progress)
    finally:
        torch.set_num_threads(threads_before)  # the tuner changes a process-wide setting


def _train(genome, out, minutes, n_layers, d_model, context, seed, batch_size, lr, threads,
           checkpoint_seconds, max_markov_order, progress) -> dict:
    import torch
    from safetensors.torch import save_file
    from tqdm.auto import tqdm

    from genesae_fast.sequences import file_sha256, read_fasta

    if minutes < 0:
        raise InputError(f"--minutes {minutes}: must be >= 0")
    if n_layers < 1 or d_model < 1 or context < 2:
        raise InputError("--layers and --d-model must be >= 1 and --context >= 2")
    genome = Path(genome)
    if not genome.is_file():
        raise InputError(f"--genome {genome}: no such file")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out}: exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)

    records = read_fasta(genome)
    genome_sha = file_sha256(genome)
    train, held = split_records(records)
    stream = training_stream(train)
    if len(stream) < 16:
        raise InputError(f"--genome {genome}: too short to train on ({len(stream)} training bases)")
    context = int(min(context, len(stream) - 1))
    config = make_config(d_model=d_model, n_layers=n_layers, context=context)
    receptive_field = config["receptive_field_bp"][-1]

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(seed)
    net = build_network(config).to(device)
    config["n_parameters"] = int(sum(p.numel() for p in net.parameters()))
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=0.01)
    rng = np.random.default_rng(seed)
    step, elapsed = 0, 0.0
    ckpt_path = out / CHECKPOINT_FILE
    settings = {"d_model": d_model, "n_layers": n_layers, "context": context, "genome_sha256": genome_sha,
                "seed": seed, "batch_size": batch_size, "lr": lr}
    if ckpt_path.is_file():
        try:
            state = torch.load(ckpt_path, map_location=device, weights_only=False)
        except Exception as exc:
            raise InputError(f"{ckpt_path}: unreadable checkpoint ({str(exc).splitlines()[0]}); delete it to start over") from None
        if state.get("settings") != settings:
            diff = sorted(k for k in settings if state.get("settings", {}).get(k) != settings[k])
            raise InputError(f"--out {out}: holds a training run with other settings ({', '.join(diff)}); use another folder")
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        rng.bit_generator.state = state["rng"]
        torch.set_rng_state(state["torch_rng"])
        step, elapsed = int(state["step"]), float(state["elapsed"])
    # an unfinished run must not look like a model: the marker comes back at the end
    (out / CONFIG_FILE).unlink(missing_ok=True)

    budget = 60.0 * minutes
    warmup = min(100, max(1, int(budget)))

    def checkpoint():
        _save_checkpoint(ckpt_path, {"model": net.state_dict(), "optimizer": opt.state_dict(), "step": step,
                                     "elapsed": elapsed, "rng": rng.bit_generator.state,
                                     "torch_rng": torch.get_rng_state(), "settings": settings})

    bar = tqdm(total=round(budget), initial=min(round(elapsed), round(budget)), unit="s", desc="lm train",
               disable=not progress, bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} s [{elapsed}{postfix}]")
    last_ckpt = time.perf_counter()
    tuner = ThreadTuner(threads)
    net.train()
    smooth = None
    while elapsed < budget:
        tuner.before_step(elapsed)
        t0 = time.perf_counter()
        frac = elapsed / budget
        scale = min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * frac))
        for group in opt.param_groups:
            group["lr"] = lr * max(scale, 0.02)
        windows = torch.as_tensor(sample_batch(stream, batch_size, context + 1, rng), device=device)
        loss, _ = lm_loss(net, windows)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        step += 1
        dt = time.perf_counter() - t0
        elapsed += dt
        tuner.after_step(dt, elapsed)
        bits = float(loss.detach()) / math.log(2)
        smooth = bits if smooth is None else 0.98 * smooth + 0.02 * bits
        bar.set_postfix_str(f"step {step}, train {smooth:.3f} bits/bp, {tuner.current} threads", refresh=False)
        bar.update(min(round(elapsed), round(budget)) - bar.n)
        if time.perf_counter() - last_ckpt >= checkpoint_seconds:
            checkpoint()
            last_ckpt = time.perf_counter()
    bar.close()
    checkpoint()

    held_bits, held_n = evaluate_bits(net, held, receptive_field, device)
    markov = best_markov(train, held, max_order=max_markov_order)
    metrics = {
        "heldout_bits_per_bp": held_bits / max(held_n, 1),
        "heldout_scored_bp": held_n,
        **markov,
        "train_final_bits_per_bp": smooth,
        "train_seconds": elapsed,
        "steps": step,
        "tokens_seen": step * batch_size * context,
        "genome": str(genome.resolve()),
        "genome_sha256": genome_sha,
        "genome_bp": int(sum(len(r) for r in records)),
        "heldout_fraction": HELDOUT_FRACTION,
        "settings": settings,
        "threads": torch.get_num_threads(),
        "device": str(device),
    }
    config["training"] = {k: metrics[k] for k in ("genome", "genome_sha256", "steps", "train_seconds")}
    config["training"].update(settings)
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    tmp = out / (WEIGHTS_FILE + ".tmp")
    save_file(state, str(tmp))
    os.replace(tmp, out / WEIGHTS_FILE)
    _atomic_write_text(out / METRICS_FILE, json.dumps(metrics, indent=2) + "\n")
    _atomic_write_text(out / CONFIG_FILE, json.dumps(config, indent=2) + "\n")
    return metrics
