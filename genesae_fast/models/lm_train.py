"""Training of the built-in gene LM (``genesae lm train``).

The last 5% of every record is held out. Training samples random windows of the training
parts, reverse-complemented with probability 1/2 (both strands are DNA the model should
know), and minimises next-base cross-entropy with AdamW under a cosine schedule laid out
over the wall-clock budget (CPU speed varies too much for a step budget). A checkpoint is
written every ``checkpoint_seconds`` and at the end; a run started again on the same
folder resumes from it. Time is read from an injectable clock (tests pass a fake one, so
no test depends on the machine's speed). At the end the folder gets ``model.safetensors``,
``lm_config.json`` (written last: the marker of a finished model) and ``metrics.json``
with held-out bits/bp against the best order-k Markov model (k = 0..10).
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from genesae_fast.errors import InputError
from genesae_fast.models.builtin import (
    CONFIG_FILE,
    METRICS_FILE,
    WEIGHTS_FILE,
    build_network,
    evaluate_bits,
    make_config,
)
from genesae_fast.models.markov import Segment, best_markov
from genesae_fast.threads import ThreadTuner

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


@dataclass(frozen=True)
class LMSettings:
    """The settings that decide the weights: a resumed run must match them all."""

    d_model: int
    n_layers: int
    context: int
    genome_sha256: str
    seed: int
    batch_size: int
    lr: float


@dataclass
class LMData:
    """A genome split for training: ``stream`` (training codes) and held-out segments."""

    genome: Path
    genome_sha256: str
    genome_bp: int
    train: list[Segment]
    held: list[Segment]
    stream: np.ndarray


def load_lm_data(genome: Path) -> LMData:
    """Read ``genome`` and split it (:func:`split_records`); InputError when too short to train on."""
    from genesae_fast.sequences import file_sha256, read_fasta

    records = read_fasta(genome)
    train, held = split_records(records)
    stream = training_stream(train)
    if len(stream) < 16:
        raise InputError(f"--genome {genome}: too short to train on ({len(stream)} training bases)")
    return LMData(genome, file_sha256(genome), int(sum(len(r) for r in records)), train, held, stream)


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _save_checkpoint(path: Path, state: dict) -> None:
    import torch

    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def train_lm(genome: str | os.PathLike, out: str | os.PathLike, *, minutes: float = 10.0, n_layers: int = 6,
             d_model: int = 48, context: int = 512, seed: int = 0, batch_size: int = 32, lr: float = 3e-3,
             threads: int | None = None, checkpoint_seconds: float = 30.0, max_markov_order: int = 10,
             progress: bool = True, clock: Callable[[], float] = time.perf_counter) -> dict:
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
    threads : int, optional
        torch threads; None chooses between 1 and all cores by timing steps (``ThreadTuner``).
    clock : callable
        Monotonic seconds (tests pass a fake clock).

    Returns
    -------
    dict
        The metrics written to ``metrics.json``.
    """
    import torch

    genome, out = _check_inputs(genome, out, minutes, n_layers, d_model, context)
    data = load_lm_data(genome)
    context = int(min(context, len(data.stream) - 1))
    settings = LMSettings(d_model, n_layers, context, data.genome_sha256, seed, batch_size, lr)
    threads_before = torch.get_num_threads()
    try:
        trainer = LMTrainer(settings, out / CHECKPOINT_FILE, clock=clock)
        # an unfinished run must not look like a model: the marker comes back at the end
        (out / CONFIG_FILE).unlink(missing_ok=True)
        trainer.run(data.stream, 60.0 * minutes, threads=threads, checkpoint_seconds=checkpoint_seconds,
                    progress=progress)
        return _write_model(trainer, data, out, max_markov_order)
    finally:
        torch.set_num_threads(threads_before)  # the tuner changes a process-wide setting


def _check_inputs(genome, out, minutes, n_layers, d_model, context) -> tuple[Path, Path]:
    """The genome file and the (created) output folder; one-line InputError for bad options."""
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
    return genome, out


class LMTrainer:
    """The network, optimiser, sampling state and clock of one LM training run (resumable)."""

    def __init__(self, settings: LMSettings, checkpoint_path: Path, clock: Callable[[], float] = time.perf_counter):
        import torch

        self.settings, self.checkpoint_path, self.clock = settings, checkpoint_path, clock
        self.config = make_config(d_model=settings.d_model, n_layers=settings.n_layers, context=settings.context)
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        torch.manual_seed(settings.seed)
        self.net = build_network(self.config).to(self.device)
        self.config["n_parameters"] = int(sum(p.numel() for p in self.net.parameters()))
        self.opt = torch.optim.AdamW(self.net.parameters(), lr=settings.lr, weight_decay=0.01)
        self.rng = np.random.default_rng(settings.seed)
        self.step, self.elapsed = 0, 0.0
        self.smooth: float | None = None  # smoothed training bits/bp
        if checkpoint_path.is_file():
            self._resume()

    def _resume(self) -> None:
        import torch

        path = self.checkpoint_path
        try:
            state = torch.load(path, map_location=self.device, weights_only=False)
        except Exception as exc:
            raise InputError(f"{path}: unreadable checkpoint ({str(exc).splitlines()[0]}); "
                             "delete it to start over") from None
        want = asdict(self.settings)
        if state.get("settings") != want:
            diff = sorted(k for k in want if state.get("settings", {}).get(k) != want[k])
            raise InputError(f"--out {path.parent}: holds a training run with other settings ({', '.join(diff)}); "
                             "use another folder")
        self.net.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        self.rng.bit_generator.state = state["rng"]
        torch.set_rng_state(state["torch_rng"])
        self.step, self.elapsed = int(state["step"]), float(state["elapsed"])

    def checkpoint(self) -> None:
        """Save everything a resume needs (atomically)."""
        import torch

        _save_checkpoint(self.checkpoint_path, {
            "model": self.net.state_dict(), "optimizer": self.opt.state_dict(), "step": self.step,
            "elapsed": self.elapsed, "rng": self.rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
            "settings": asdict(self.settings)})

    def train_step(self, stream: np.ndarray, budget: float, warmup: int) -> float:
        """One AdamW step on a fresh batch; returns the batch's bits/bp."""
        import torch

        s = self.settings
        scale = min(1.0, (self.step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * self.elapsed / budget))
        for group in self.opt.param_groups:
            group["lr"] = s.lr * max(scale, 0.02)
        windows = torch.as_tensor(sample_batch(stream, s.batch_size, s.context + 1, self.rng), device=self.device)
        loss, _ = lm_loss(self.net, windows)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.net.parameters(), 1.0)
        self.opt.step()
        self.step += 1
        return float(loss.detach()) / math.log(2)

    def run(self, stream: np.ndarray, budget: float, *, threads: int | None = None, checkpoint_seconds: float = 30.0,
            progress: bool = True) -> None:
        """Train until ``elapsed`` reaches ``budget`` seconds: cosine schedule over the budget,
        a checkpoint every ``checkpoint_seconds`` and at the end."""
        from tqdm.auto import tqdm

        warmup = min(100, max(1, int(budget)))
        bar = tqdm(total=round(budget), initial=min(round(self.elapsed), round(budget)), unit="s", desc="lm train",
                   disable=not progress, bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} s [{elapsed}{postfix}]")
        last_checkpoint = self.clock()
        tuner = ThreadTuner(threads)
        self.net.train()
        while self.elapsed < budget:
            tuner.before_step(self.elapsed)
            t0 = self.clock()
            bits = self.train_step(stream, budget, warmup)
            dt = self.clock() - t0
            self.elapsed += dt
            tuner.after_step(dt, self.elapsed)
            self.smooth = bits if self.smooth is None else 0.98 * self.smooth + 0.02 * bits
            bar.set_postfix_str(f"step {self.step}, train {self.smooth:.3f} bits/bp, {tuner.current} threads",
                                refresh=False)
            bar.update(min(round(self.elapsed), round(budget)) - bar.n)
            if self.clock() - last_checkpoint >= checkpoint_seconds:
                self.checkpoint()
                last_checkpoint = self.clock()
        bar.close()
        self.checkpoint()


def _write_model(trainer: LMTrainer, data: LMData, out: Path, max_markov_order: int) -> dict:
    """Score the held-out part, then write weights, ``metrics.json`` and ``lm_config.json`` (last)."""
    import torch
    from safetensors.torch import save_file

    settings = asdict(trainer.settings)
    held_bits, held_n = evaluate_bits(trainer.net, data.held, trainer.config["receptive_field_bp"][-1],
                                      trainer.device)
    metrics = {
        "heldout_bits_per_bp": held_bits / max(held_n, 1),
        "heldout_scored_bp": held_n,
        **best_markov(data.train, data.held, max_order=max_markov_order),
        "train_final_bits_per_bp": trainer.smooth,
        "train_seconds": trainer.elapsed,
        "steps": trainer.step,
        "tokens_seen": trainer.step * trainer.settings.batch_size * trainer.settings.context,
        "genome": data.genome.name,  # the file name only: a model folder must not carry this machine's paths
        "genome_sha256": data.genome_sha256,
        "genome_bp": data.genome_bp,
        "heldout_fraction": HELDOUT_FRACTION,
        "settings": settings,
        "threads": torch.get_num_threads(),
        "device": str(trainer.device),
    }
    config = trainer.config
    config["training"] = {k: metrics[k] for k in ("genome", "genome_sha256", "steps", "train_seconds")}
    config["training"].update(settings)
    state = {k: v.detach().cpu().contiguous() for k, v in trainer.net.state_dict().items()}
    tmp = out / (WEIGHTS_FILE + ".tmp")
    save_file(state, str(tmp))
    os.replace(tmp, out / WEIGHTS_FILE)
    _atomic_write_text(out / METRICS_FILE, json.dumps(metrics, indent=2) + "\n")
    _atomic_write_text(out / CONFIG_FILE, json.dumps(config, indent=2) + "\n")
    return metrics


__all__ = ["LMData", "LMSettings", "LMTrainer", "load_lm_data", "sample_batch", "split_records", "train_lm",
           "training_stream"]
