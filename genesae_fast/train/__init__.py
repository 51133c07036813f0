"""Training of TopK sparse autoencoders on activation stores (``genesae train``).

>>> from genesae_fast.train import train_sae
>>> train_sae("store.zarr", "sae/", latents=1024, k=8, tokens=5_000_000)   # -> Path("sae")

Modules, one job each:

- :mod:`~genesae_fast.train.loop`: ``train_sae`` and the training loop;
- :mod:`~genesae_fast.train.config`: options, their defaults and checks, the resolved run;
- :mod:`~genesae_fast.train.objective`: the loss (MSE + AuxK) on the fused ops;
- :mod:`~genesae_fast.train.reference`: the same loss in plain dense torch (tests, benchmarks);
- :mod:`~genesae_fast.train.checkpoint`: checkpoints, the resume check, ``metrics.jsonl``;
- :mod:`~genesae_fast.train.data`, :mod:`~genesae_fast.train.metrics`,
  :mod:`~genesae_fast.train.distributed`, :mod:`~genesae_fast.train.signals`: batches,
  running metrics, torchrun collectives, clean stops;
- :mod:`~genesae_fast.train.evaluate`: held-out FVU / L0 / dead fraction (``eval.json``);
- :mod:`~genesae_fast.train.lm_delta`: the LM's loss with the SAE spliced into its layer;
- :mod:`~genesae_fast.train.synthetic`: planted-dictionary data to check recovery.
"""
from __future__ import annotations

from genesae_fast.train.config import default_lr, default_tokens, lr_factor
from genesae_fast.train.loop import train_sae
from genesae_fast.train.signals import TrainingInterrupted

__all__ = ["TrainingInterrupted", "default_lr", "default_tokens", "lr_factor", "train_sae"]
