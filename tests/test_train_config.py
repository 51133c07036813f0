"""genesae_fast.train.config: the learning-rate rules and the run's resolved settings."""
from __future__ import annotations

import math

import pytest

from genesae_fast.train.config import TrainConfig, TrainOptions, default_lr, lr_factor
from genesae_fast.train.synthetic import planted_dictionary, write_store


def test_config_resolves_the_documented_defaults(tmp_path):
    from genesae_fast.store import ActivationStore

    X, _ = planted_dictionary(2000, 8, 16, 2, seed=0)
    store = ActivationStore.open(write_store(X, tmp_path / "s.zarr", chunk_rows=200))  # 10 chunks
    cfg = TrainConfig.resolve(store, TrainOptions(n_latents=32, k=4, batch_size=64), world=1, n_heldout=1)
    assert cfg.train_chunks == range(0, 9) and cfg.heldout_chunks == range(9, 10)
    assert cfg.total_steps == math.ceil(200 * 64 / 64)  # 5 passes over 1800 rows < 200 batches
    assert (cfg.k_aux, cfg.lr, cfg.warmup_steps, cfg.decay_steps) == (4, default_lr(32), 10, 40)
    assert cfg.dead_tokens == 200 * 64 // 5 and cfg.checkpoint_every == 20 and cfg.log_every == 1
    run = cfg.run_config()
    assert run["train_chunks"] == [0, 9] and run["heldout_chunks"] == [9, 10] and run["batch_size"] == 64
    big = TrainConfig.resolve(store, TrainOptions(n_latents=32, k=4, batch_size=10_000), world=1, n_heldout=1)
    assert big.batch_size == 1800  # a batch never exceeds the training rows


def test_lr_rules():
    assert default_lr(2**14) == pytest.approx(2e-4)
    assert default_lr(2**16) == pytest.approx(1e-4)
    factors = [lr_factor(s, 100, 10, 20) for s in range(100)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == 1.0 and factors[50] == 1.0
    assert factors[80] == 1.0 and factors[99] == pytest.approx(0.05)
    assert all(a >= b for a, b in zip(factors[80:], factors[81:]))
