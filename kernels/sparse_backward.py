"""The backward passes of both ops, written once over three row primitives.

Both paths (Triton in :mod:`sparse_rows`, stock torch in :mod:`torch_path`) provide
``gather_combine``, ``gather_dot`` and ``scatter_outer`` with the same contract; the
gradient formulas below are the same for both, so they live here. Math:

Encoder, with g = grad_vals masked to the kept entries that passed the ReLU (vals > 0)::

    dx[b]      = sum_j g[b, j] * W_enc[idx[b, j]]                     gather_combine
    dW_enc[i]  = sum_{(b, j): idx[b, j] = i} g[b, j] * (x[b] - b_dec)  scatter_outer
    db_enc[i]  = sum_{(b, j): idx[b, j] = i} g[b, j]                   (its bias column)
    db_dec     = -sum_b dx[b]                                          (left to the caller)

Decoder, given grad [B, d]::

    dvals[b, j] = <grad[b], W_dec[idx[b, j]]>                          gather_dot
    dW_dec[i]   = sum_{(b, j): idx[b, j] = i} vals[b, j] * grad[b]      scatter_outer
    db_dec      = sum_b grad[b]                                        (left to the caller)

Imports only torch, so the torch path never loads Triton.
"""
from __future__ import annotations

import torch


def centre(x, b_dec):
    """``x - b_dec`` (or ``x``), contiguous for the row kernels."""
    return (x if b_dec is None else x - b_dec).contiguous()


def encode_backward(prims, grad_vals, x, W_enc, b_dec, vals, idx, *, need_x, need_W, need_b, deterministic):
    """Encoder backward over ``prims`` (a module with the row primitives): ``(dx, dW_enc, db_enc)``.

    Each is None when not needed; ``db_dec`` (``-dx.sum(0)``) is left to the caller.
    """
    n = W_enc.shape[0]
    g = torch.where(vals > 0, grad_vals, torch.zeros((), dtype=grad_vals.dtype, device=grad_vals.device))
    dx = prims.gather_combine(idx, g, W_enc).to(x.dtype) if need_x else None
    dW = db = None
    if need_W or need_b:
        dW32, db32 = prims.scatter_outer(idx, g, centre(x, b_dec), n, with_bias=need_b, deterministic=deterministic)
        dW = dW32.to(W_enc.dtype) if need_W else None
        db = db32.to(W_enc.dtype) if need_b else None
    return dx, dW, db


def decode_backward(prims, grad, vals, idx, W_dec, *, need_vals, need_W, deterministic):
    """Decoder backward over ``prims``: ``(dvals, dW_dec)``, each None when not needed.

    ``db_dec`` (``grad.sum(0)``) is left to the caller.
    """
    dvals = prims.gather_dot(idx, W_dec, grad).to(vals.dtype) if need_vals else None
    dW = None
    if need_W:
        dW32, _ = prims.scatter_outer(idx, vals, grad, W_dec.shape[0], deterministic=deterministic)
        dW = dW32.to(W_dec.dtype)
    return dvals, dW
