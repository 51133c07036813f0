"""genesae_fast: sparse autoencoders for gene (DNA) language models, annotated with biology.

Importing this package is cheap: it does not import torch, triton or query CUDA. The
heavier modules (``ops``, ``store``, ``models`` ...) load on first use.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

__all__ = ["TopKSAE", "__version__"]

_LAZY_ATTRS = {"TopKSAE": ("genesae_fast.sae", "TopKSAE")}


def __getattr__(name: str):
    # PEP 562: import torch-backed names only when someone asks for them.
    if name in _LAZY_ATTRS:
        module, attr = _LAZY_ATTRS[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'genesae_fast' has no attribute {name!r}")
