"""Sparse TopK SAE decoder: x_hat from k (value, latent) pairs per row, O(B k d).

Forward, for ``vals [B, k]``, ``idx [B, k]`` (int64 latents), ``W_dec [n, d]`` (one row
per latent) and ``b_dec [d]`` (or 0)::

    x_hat[b] = sum_j vals[b, j] * W_dec[idx[b, j]] + b_dec           gather_combine

Backward, given ``grad [B, d]`` (the gradient of x_hat)::

    dvals[b, j] = <grad[b], W_dec[idx[b, j]]>                         gather_dot
    dW_dec[i]   = sum_{(b, j): idx[b, j] = i} vals[b, j] * grad[b]     scatter_outer
    db_dec      = sum_b grad[b]

No pass costs O(B n d): the dense ``[B, n]`` code matrix is never formed. The three
primitives and their Triton kernels live in :mod:`sparse_rows`; this module wires them
into the op's forward and backward. The definition is ``reference.sparse_decode_reference``.

This module imports Triton at import time; it must only be imported on the Triton path.
"""
from __future__ import annotations

from . import sparse_rows
from .sparse_backward import decode_backward
from .sparse_rows import gather_combine

# --------------------------------------------------------------------------- launchers


def sparse_decode(vals, idx, W_dec, b_dec=None):
    """Triton decoder forward (inputs validated by ``genesae_fast.ops``); ``[B, d]``."""
    return gather_combine(idx, vals, W_dec, b_dec)


def sparse_decode_backward(grad, vals, idx, W_dec, **needs):
    """Triton decoder backward: ``(dvals, dW_dec)``; ``needs``: need_vals, need_W, deterministic."""
    return decode_backward(sparse_rows, grad, vals, idx, W_dec, **needs)
