"""The SAE trainer's settings: the user's options, checked, and the resolved run.

:class:`TrainOptions` holds what the caller asked for (``None`` = the default);
:meth:`TrainConfig.resolve` turns it into every number the run needs, from the store's
size and the number of processes. ``TrainConfig.run_config()`` is the dict saved in
checkpoints and ``config.json``: a resume must match it key for key.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from genesae_fast.errors import InputError

DEAD_TOKENS_MAX = 10_000_000  # Gao et al.: dead = no activation in the last 10M tokens
DEFAULT_TOKENS_MAX = 200_000_000
CHECKPOINT_TOKENS_MAX = 50_000_000
ADAM_EPS = 6.25e-10  # Gao et al.


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


@dataclass(frozen=True)
class TrainOptions:
    """What the caller asked for; ``None`` means the default given here.

    Attributes
    ----------
    n_latents, k : int
        Latents, and non-zero codes per row.
    batch_size : int
        Rows per step (per rank under torchrun); at most the training rows.
    tokens : int, optional
        Training rows to consume in all; default :func:`default_tokens`.
    lr : float, optional
        Adam learning rate; default :func:`default_lr`.
    seed : int
        Seeds the initialisation and the data order.
    batch_topk : bool
        BatchTopK (the batch's ``B*k`` largest codes) instead of per-row TopK.
    k_aux, aux_coef : int, float
        AuxK size (default d/2) and weight (1/32).
    dead_tokens : int, optional
        A latent is dead after this many tokens without firing; default a fifth of the run, at most 10M.
    checkpoint_tokens, log_tokens : int, optional
        Checkpoint interval (default a tenth of the run, at most 50M tokens) and
        ``metrics.jsonl`` interval (default 1/200 of the run).
    """

    n_latents: int
    k: int
    batch_size: int
    tokens: int | None = None
    lr: float | None = None
    seed: int = 0
    batch_topk: bool = False
    k_aux: int | None = None
    aux_coef: float = 1 / 32
    dead_tokens: int | None = None
    checkpoint_tokens: int | None = None
    log_tokens: int | None = None

    def check(self, store) -> None:
        """Raise a one-line InputError for an unusable store or option."""
        if store.n_rows == 0:
            raise InputError(f"{store.path}: the store is empty (0 rows); nothing to train on")
        if not math.isfinite(store.norm_scale) or store.norm_scale <= 0:
            raise InputError(f"{store.path}: the store has no usable statistics (norm scale {store.norm_scale}); "
                             "are all its activations equal?")
        if self.n_latents < 1:
            raise InputError(f"--latents {self.n_latents}: must be at least 1")
        if not 1 <= self.k <= self.n_latents:
            raise InputError(f"--k {self.k}: must be between 1 and the number of latents ({self.n_latents})")
        if self.batch_size < 1:
            raise InputError(f"--batch {self.batch_size}: must be at least 1")
        if self.tokens is not None and self.tokens < 1:
            raise InputError(f"--tokens {self.tokens}: must be at least 1")
        if self.lr is not None and not (self.lr > 0 and math.isfinite(self.lr)):
            raise InputError(f"--lr {self.lr}: must be a positive number")
        if self.aux_coef < 0:
            raise InputError(f"--aux-coef {self.aux_coef}: must be >= 0")
        if self.k_aux is not None and self.k_aux < 1:
            raise InputError(f"--aux-k {self.k_aux}: must be at least 1")


@dataclass(frozen=True)
class TrainConfig:
    """Every number of one training run (per-rank ``batch_size``; chunks as ranges)."""

    store_config: object
    store_rows: int
    d_in: int
    n_latents: int
    k: int
    batch_size: int
    world_size: int
    total_steps: int
    lr: float
    seed: int
    batch_topk: bool
    k_aux: int
    aux_coef: float
    dead_tokens: int
    warmup_steps: int
    decay_steps: int
    train_chunks: range
    heldout_chunks: range
    checkpoint_every: int  # steps
    log_every: int  # steps

    @property
    def global_batch(self) -> int:
        """Rows per optimiser step over all ranks."""
        return self.batch_size * self.world_size

    @property
    def total_tokens(self) -> int:
        """Rows consumed by the whole run."""
        return self.total_steps * self.global_batch

    @classmethod
    def resolve(cls, store, options: TrainOptions, world: int, n_heldout: int) -> "TrainConfig":
        """The run's settings for ``store`` split over ``world`` ranks, its last ``n_heldout`` chunks held out."""
        train_chunks = range(0, store.n_chunks - n_heldout)
        rows_per_rank = min(store.epoch_rows(r, world, options.seed, 0, train_chunks) for r in range(world))
        if rows_per_rank < 1:
            raise InputError(f"{store.path}: too few rows ({store.n_rows}) to give each of {world} processes one")
        batch_size = min(options.batch_size, rows_per_rank)  # a tiny store: one batch is the whole epoch
        global_batch = batch_size * world
        train_rows = sum(store.chunk_bounds(c)[1] - store.chunk_bounds(c)[0] for c in train_chunks)
        tokens = int(options.tokens) if options.tokens is not None else default_tokens(train_rows, global_batch)
        total_steps = max(1, math.ceil(tokens / global_batch))
        total_tokens = total_steps * global_batch
        n = options.n_latents
        return cls(
            store_config=store.attrs.get("config"), store_rows=store.n_rows, d_in=store.d, n_latents=n,
            k=options.k, batch_size=batch_size, world_size=world, total_steps=total_steps,
            lr=float(options.lr) if options.lr is not None else default_lr(n), seed=options.seed,
            batch_topk=options.batch_topk,
            k_aux=min(n, int(options.k_aux) if options.k_aux is not None else max(1, store.d // 2)),
            aux_coef=options.aux_coef,
            dead_tokens=(int(options.dead_tokens) if options.dead_tokens is not None
                         else min(DEAD_TOKENS_MAX, max(total_tokens // 5, global_batch))),
            warmup_steps=min(1000, total_steps // 20), decay_steps=total_steps // 5,
            train_chunks=train_chunks, heldout_chunks=range(train_chunks.stop, store.n_chunks),
            checkpoint_every=_every(options.checkpoint_tokens, min(CHECKPOINT_TOKENS_MAX, max(total_tokens // 10, 1)),
                                    global_batch, math.ceil),
            log_every=_every(options.log_tokens or None, total_tokens / 200, global_batch, round),
        )

    def run_config(self) -> dict:
        """The settings that decide the weights, as saved in checkpoints and ``config.json``."""
        return {
            "store_config": self.store_config, "store_rows": self.store_rows, "d_in": self.d_in,
            "n_latents": self.n_latents, "k": self.k, "batch_size": self.batch_size, "world_size": self.world_size,
            "total_steps": self.total_steps, "lr": self.lr, "seed": self.seed, "batch_topk": self.batch_topk,
            "k_aux": self.k_aux, "aux_coef": self.aux_coef, "dead_tokens": self.dead_tokens,
            "warmup_steps": self.warmup_steps, "decay_steps": self.decay_steps,
            "train_chunks": [self.train_chunks.start, self.train_chunks.stop],
            "heldout_chunks": [self.heldout_chunks.start, self.heldout_chunks.stop],
        }


def _every(tokens, default_tokens_: float, global_batch: int, rounding) -> int:
    """An interval in tokens (``None``: the default) as a whole number of steps, at least 1."""
    return max(1, rounding((tokens if tokens is not None else default_tokens_) / global_batch))


__all__ = ["ADAM_EPS", "TrainConfig", "TrainOptions", "default_lr", "default_tokens", "lr_factor"]
