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
into the op's forward and backward. The pure-torch reference is the dense matmul below.

This module imports Triton at import time; it must only be imported on the Triton path.
"""
from __future__ import annotations

import torch

from . import sparse_rows
from .sparse_backward import decode_backward
from .sparse_rows import gather_combine

# --------------------------------------------------------------------------- reference


def sparse_decode_reference(vals, idx, W_dec, b_dec=None):
    """Dense definition of the decoder: scatter the codes into ``[B, n]``, multiply by W_dec.

    Parameters
    ----------
    vals : [B, k]; idx : int64 [B, k]; W_dec : [n, d]; b_dec : [d] or None

    Returns
    -------
    x_hat [B, d]. Differentiable through torch autograd.
    """
    codes = torch.zeros(vals.shape[0], W_dec.shape[0], dtype=vals.dtype, device=vals.device)
    codes = codes.scatter_add(1, idx, vals)
    out = codes @ W_dec
    return out if b_dec is None else out + b_dec


# --------------------------------------------------------------------------- launchers


def sparse_decode(vals, idx, W_dec, b_dec=None):
    """Triton decoder forward (inputs validated by ``genesae_fast.ops``); ``[B, d]``."""
    return gather_combine(idx, vals, W_dec, b_dec)


def sparse_decode_backward(grad, vals, idx, W_dec, need_vals, need_W, deterministic):
    """Triton decoder backward: ``(dvals, dW_dec)`` (math in :mod:`sparse_backward`)."""
    return decode_backward(sparse_rows, grad, vals, idx, W_dec, need_vals, need_W, deterministic)
