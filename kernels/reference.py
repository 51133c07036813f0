"""The definitions of the SAE ops in plain torch: one reference per op, no Triton.

Tests, benchmarks and the plain-torch training reference import these, so there is one
statement of what each op computes. They are dense (they form the ``[B, n]`` matrix) and
meant for test-sized inputs and as the "dense" baseline; differentiable through autograd.

* :func:`topk_encode_reference` - ``genesae_fast.ops.topk_encode``
* :func:`sparse_decode_reference` - ``genesae_fast.ops.sparse_decode``
* :func:`gather_combine_reference`, :func:`gather_dot_reference`,
  :func:`scatter_outer_reference` - the three row primitives of :mod:`sparse_rows`.

Imports only torch.
"""
from __future__ import annotations

import torch


def topk_encode_reference(x, W_enc, b_enc, k, b_dec=None, latent_mask=None):
    """Dense TopK encoder: the k largest of ``(x - b_dec) @ W_enc.T + b_enc`` per row, relu'd.

    Parameters
    ----------
    x : [B, d]
    W_enc : [n, d]
    b_enc : [n]
    k : int, 1 <= k <= n
    b_dec : [d] or None
    latent_mask : bool [n] or None; False = never chosen

    Returns
    -------
    vals : [B, k], x.dtype, in descending order of pre-activation (the ops make no
        promise about order; compare sets).
    idx : int64 [B, k]. Where fewer than k latents are allowed, the extra slots have
        value 0 and an unspecified latent.
    """
    xc = x if b_dec is None else x - b_dec
    pre = xc @ W_enc.T + b_enc
    if latent_mask is not None:
        pre = pre.masked_fill(~latent_mask, float("-inf"))
    top, idx = torch.topk(pre, k, dim=1)
    return torch.relu(top), idx  # relu(-inf) = 0 for masked slots


def sparse_decode_reference(vals, idx, W_dec, b_dec=None):
    """Dense decoder: scatter the codes into ``[B, n]`` and multiply by ``W_dec``.

    Parameters
    ----------
    vals : [B, k]
    idx : int64 [B, k]
    W_dec : [n, d]
    b_dec : [d] or None

    Returns
    -------
    x_hat : [B, d]
    """
    codes = torch.zeros(vals.shape[0], W_dec.shape[0], dtype=vals.dtype, device=vals.device)
    codes = codes.scatter_add(1, idx, vals)
    out = codes @ W_dec
    return out if b_dec is None else out + b_dec


def gather_combine_reference(idx, w, table, bias=None):
    """``out [B, d] = sum_j w[b, j] * table[idx[b, j]] (+ bias)`` via a dense one-hot matrix."""
    dense = torch.zeros(idx.shape[0], table.shape[0], dtype=table.dtype, device=table.device)
    dense.scatter_add_(1, idx, w.to(table.dtype))
    out = dense @ table
    return out if bias is None else out + bias


def gather_dot_reference(idx, table, rows):
    """``out [B, k] = <table[idx[b, j]], rows[b]>`` as ``(rows @ table.T).gather(1, idx)``."""
    return (rows @ table.T).gather(1, idx)


def scatter_outer_reference(idx, w, rows, n):
    """``out [n, d] = sum_{idx[b, j] = i} w[b, j] rows[b]`` and its bias column ``[n]``, densely."""
    dense = torch.zeros(idx.shape[0], n, dtype=rows.dtype, device=rows.device)
    dense.scatter_add_(1, idx, w.to(rows.dtype))
    return dense.T @ rows, dense.sum(0)
