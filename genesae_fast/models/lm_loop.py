"""The training loop of ``genesae lm train`` in one worker: steps, held-out checks, early stop.

Every worker (see ``lm_parallel``) runs the same loop on its share of each step's batch;
the gradients are summed before the optimiser step, so all workers hold the same weights.
Every ``eval_every`` steps the held-out ``val`` bits/bp are measured (each worker scores a
share of the bases, the sums are exchanged) and the best weights so far are remembered.
Training stops when the time budget is spent, after ``max_steps`` steps, or, with
``patience`` > 0, after that many evaluations without improvement. The model keeps the
last weights, or with ``patience`` > 0 the best checked ones (:meth:`LMTrainer.load_kept`);
the checkpoint always holds the last weights, so a resumed run continues where it stopped.
The learning rate follows a cosine over the budget (the time budget, or ``max_steps`` when
given: then the weights do not depend on timing).
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from genesae_fast.errors import InputError
from genesae_fast.models.builtin import build_network, evaluate_bits, make_config
from genesae_fast.models.lm_data import share_segments, step_windows
from genesae_fast.models.lm_parallel import LocalComm, sum_gradients

CHECKPOINT_FORMAT = 2


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
    dropout: float = 0.0  # on each block's residual branch, training only


@dataclass
class Budget:
    """When training ends: seconds of training, optional steps, held-out checks and patience."""

    seconds: float
    max_steps: int | None = None
    eval_every: int = 100
    patience: int = 0
    checkpoint_seconds: float = 30.0


@dataclass
class EarlyStop:
    """The held-out curve and the best step so far (``bad``: evaluations since the best)."""

    patience: int
    best_bits: float = math.inf
    best_step: int = 0
    bad: int = 0
    curve: list = field(default_factory=list)

    def update(self, step: int, seconds: float, val_bits: float, train_bits: float | None) -> bool:
        """Record one evaluation; True when it is the best so far."""
        self.curve.append({"step": step, "seconds": round(seconds, 3), "val_bits_per_bp": val_bits,
                           "train_bits_per_bp": train_bits})
        if val_bits < self.best_bits:
            self.best_bits, self.best_step, self.bad = val_bits, step, 0
            return True
        self.bad += 1
        return False

    @property
    def exhausted(self) -> bool:
        """``patience`` evaluations in a row without improvement."""
        return self.patience > 0 and self.bad >= self.patience


def save_checkpoint(path: Path, state: dict) -> None:
    """``torch.save`` through a temporary file and a rename (never half-written)."""
    import torch

    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


class LMTrainer:
    """The network, optimiser, early-stop state and clock of one worker of a training run (resumable)."""

    def __init__(self, settings: LMSettings, checkpoint_path: Path, *, clock: Callable[[], float] = time.perf_counter,
                 comm=None, patience: int = 0, device=None):
        import torch

        self.settings, self.checkpoint_path, self.clock = settings, checkpoint_path, clock
        self.comm = comm or LocalComm()
        self.config = make_config(d_model=settings.d_model, n_layers=settings.n_layers, context=settings.context,
                                  dropout=settings.dropout)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        torch.manual_seed(settings.seed)
        self.net = build_network(self.config).to(self.device)
        self.config["n_parameters"] = int(sum(p.numel() for p in self.net.parameters()))
        self.opt = torch.optim.AdamW(self.net.parameters(), lr=settings.lr, weight_decay=0.01)
        self.step, self.elapsed = 0, 0.0
        self.smooth: float | None = None  # smoothed training bits/bp
        self.early = EarlyStop(patience)
        self.best_state: dict | None = None
        self.stop_reason = ""
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
        if state.get("format") != CHECKPOINT_FORMAT:
            raise InputError(f"{path}: a checkpoint of an older trainer; delete it to start over")
        want = asdict(self.settings)
        saved = {"dropout": 0.0, **state.get("settings", {})}  # checkpoints from before dropout existed
        if saved != want:
            diff = sorted(k for k in want if saved.get(k) != want[k])
            raise InputError(f"--out {path.parent}: holds a training run with other settings ({', '.join(diff)}); "
                             "use another folder")
        self.net.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        self.step, self.elapsed, self.smooth = int(state["step"]), float(state["elapsed"]), state["smooth"]
        self.early = EarlyStop(**{**state["early"], "patience": self.early.patience})
        self.best_state, self.stop_reason = state["best_model"], state.get("stop_reason", "")

    def checkpoint(self) -> None:
        """Save everything a resume needs (atomically); only worker 0 writes."""
        if self.comm.rank != 0:
            return
        save_checkpoint(self.checkpoint_path, {
            "format": CHECKPOINT_FORMAT, "model": self.net.state_dict(), "optimizer": self.opt.state_dict(),
            "step": self.step, "elapsed": self.elapsed, "smooth": self.smooth, "early": asdict(self.early),
            "best_model": self.best_state, "stop_reason": self.stop_reason, "settings": asdict(self.settings)})

    def train_step(self, stream: np.ndarray, progress: float, warmup: int) -> float:
        """One AdamW step on this worker's share of the step's batch; returns the whole batch's bits/bp.

        ``progress`` in [0, 1] places the step on the cosine learning-rate schedule.
        """
        import torch

        s, comm = self.settings, self.comm
        scale = min(1.0, (self.step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
        for group in self.opt.param_groups:
            group["lr"] = s.lr * max(scale, 0.02)
        batch = step_windows(stream, s.batch_size, s.context + 1, seed=s.seed, step=self.step)
        n_all = int((batch[:, 1:] < 4).sum())
        windows = torch.as_tensor(batch[comm.rank :: comm.world], device=self.device)
        with torch.random.fork_rng(devices=[], enabled=s.dropout > 0):  # the caller's RNG is left as it was
            if s.dropout > 0:
                # masks from (seed, step, worker) alone: a resumed run draws the same ones
                torch.manual_seed(int(np.random.SeedSequence([s.seed, self.step, comm.rank]).generate_state(1)[0]))
            mean, n = lm_loss(self.net, windows)
        loss = mean * (n.to(mean.dtype) / max(n_all, 1))  # this share's part of the whole batch's mean
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        sum_gradients(comm, self.net.parameters())
        torch.nn.utils.clip_grad_norm_(self.net.parameters(), 1.0)
        self.opt.step()
        self.step += 1
        total = comm.sum_(torch.tensor([float(loss.detach())], dtype=torch.float64))
        return float(total.item()) / math.log(2)

    def val_bits(self, val) -> float:
        """Bits/bp of the held-out ``val`` segments (each worker scores a share)."""
        import torch

        field = self.config["receptive_field_bp"][-1]
        bits, n = evaluate_bits(self.net, share_segments(val, self.comm.rank, self.comm.world), field, self.device)
        self.net.train()
        sums = self.comm.sum_(torch.tensor([bits, float(n)], dtype=torch.float64))
        return float(sums[0]) / max(float(sums[1]), 1.0)

    def evaluate(self, val) -> None:
        """One held-out check: update the curve and keep the weights if they are the best so far."""
        if self.early.curve and self.early.curve[-1]["step"] == self.step:
            return
        if self.early.update(self.step, self.elapsed, self.val_bits(val), self.smooth):
            self.best_state = {k: v.detach().clone() for k, v in self.net.state_dict().items()}

    def _progress(self, budget: Budget) -> float:
        by_time = self.elapsed / budget.seconds if budget.seconds > 0 else 1.0
        by_steps = self.step / budget.max_steps if budget.max_steps else 0.0
        return by_steps if budget.max_steps else by_time

    def _stop(self, budget: Budget) -> str:
        if self.early.exhausted:
            return "patience"
        if budget.max_steps is not None and self.step >= budget.max_steps:
            return "steps"
        if self.elapsed >= budget.seconds:
            return "time"
        return ""

    def run(self, stream: np.ndarray, val, budget: Budget, *, progress: bool = True) -> None:
        """Train until a stop (:meth:`_stop`), then score the last step and write a checkpoint."""
        from tqdm.auto import tqdm

        warmup = min(100, max(1, budget.max_steps or int(budget.seconds)))
        bar = tqdm(total=round(budget.seconds), initial=min(round(self.elapsed), round(budget.seconds)), unit="s",
                   desc="lm train", disable=not progress or self.comm.rank != 0,
                   bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} s [{elapsed}{postfix}]")
        last_checkpoint = self.clock()
        self.net.train()
        while not (reason := self._stop(budget)):
            t0 = self.clock()
            bits = self.train_step(stream, self._progress(budget), warmup)
            if budget.eval_every and self.step % budget.eval_every == 0:
                self.evaluate(val)
            # every worker must agree on the time spent: the slowest worker's step counts
            self.elapsed += self.comm.max_float(self.clock() - t0)
            self.smooth = bits if self.smooth is None else 0.98 * self.smooth + 0.02 * bits
            best = f", held-out best {self.early.best_bits:.3f}" if self.early.curve else ""
            bar.set_postfix_str(f"step {self.step}, train {self.smooth:.3f} bits/bp{best}", refresh=False)
            bar.update(min(round(self.elapsed), round(budget.seconds)) - bar.n)
            if self.clock() - last_checkpoint >= budget.checkpoint_seconds:
                self.checkpoint()
                last_checkpoint = self.clock()
        bar.close()
        self.finish(val, reason)

    @property
    def keeps_best(self) -> bool:
        """Early stopping (patience > 0) keeps the best checked weights; a run over the whole
        budget (patience 0) keeps its last weights."""
        return self.early.patience > 0

    def finish(self, val, reason: str) -> None:
        """Score the last step too and checkpoint the last weights (the end of a run)."""
        if self.step > 0:
            self.evaluate(val)
        self.stop_reason = reason
        self.checkpoint()

    def load_kept(self) -> str:
        """Load the weights the model keeps into ``net``: the best checked ones with early
        stopping, else the last (already there); returns ``"best"`` or ``"last"``."""
        if self.keeps_best and self.best_state is not None:
            self.net.load_state_dict(self.best_state)
            return "best"
        return "last"


__all__ = ["Budget", "EarlyStop", "LMSettings", "LMTrainer", "lm_loss", "save_checkpoint"]
