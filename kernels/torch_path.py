"""The pure-torch path of both SAE ops: what runs on CPU (and on CUDA without Triton).

Same math as :mod:`topk_encode` and :mod:`sparse_decode` (see their docstrings), built
from stock torch operators so that each pass keeps the cost the kernels have:

* encoder forward: ``mm`` + in-place bias + ``topk`` over row blocks, so at most
  ``block x n`` pre-activations exist at once (the full ``[B, n]`` never does, once
  ``B x n`` exceeds the block);
* decoder forward and encoder input gradient: ``embedding_bag(mode="sum",
  per_sample_weights=...)``, O(B k d);
* decoder ``vals`` gradient: the ``per_sample_weights`` gradient of that same
  ``embedding_bag`` (torch's native kernel), O(B k d), no ``[B, k, d]`` temporary;
* weight and bias gradients (scatter of ``w[b, j] * rows[b]`` into row ``idx[b, j]``):
  the entries sorted by latent become one ``embedding_bag`` bag per latent over
  ``rows``, O(B k d + B k log(B k)). Every bag is summed sequentially, so this path is
  deterministic on CPU and CUDA and needs no separate deterministic mode.

Half-precision inputs are computed in float32 and rounded once at the end, like the
Triton kernels. This module imports only torch.
"""
from __future__ import annotations

import sys

import torch
import torch.nn.functional as F

from .sparse_backward import decode_backward, encode_backward

# Work-size caps (elements) for the chunked passes: they bound the temporary memory.
# block x n pre-activations (128 MiB in fp32). Smaller blocks re-stream W_enc more often
# and made the CPU GEMM slower (B=4096, n=16384, d=256: 2048-row blocks ran as fast as
# one [B, n] product, 128-row blocks about 2x slower).
_ENCODE_BLOCK_ELEMS = 1 << 25

_HALF = (torch.float16, torch.bfloat16)


def _compute_dtype(dtype):
    return torch.float32 if dtype in _HALF else dtype


def _centre(x, b_dec):
    return x if b_dec is None else x - b_dec


# --------------------------------------------------------------------------- encoder


def topk_encode(x, W_enc, b_enc, k, b_dec=None, latent_mask=None, *, compute_dtype=None):
    """Encoder forward by row blocks (GEMM + top-k): ``vals [B, k]`` (x.dtype), ``idx int64 [B, k]``.

    Parameters
    ----------
    x : [B, d]; W_enc : [n, d]; b_enc : [n]; k : int; b_dec : [d] or None;
    latent_mask : bool [n] or None (False: never chosen)
    compute_dtype : dtype of the GEMM and selection; None = float32 for half inputs
        (CPU GEMMs are faster and exact in fp32), else x.dtype.
    """
    B = x.shape[0]
    n = W_enc.shape[0]
    ct = compute_dtype or _compute_dtype(x.dtype)
    W = W_enc.to(ct)
    b = b_enc.to(ct)
    xc = _centre(x, b_dec).to(ct)
    vals = torch.empty(B, k, dtype=x.dtype, device=x.device)
    idx = torch.empty(B, k, dtype=torch.int64, device=x.device)
    disallowed = None if latent_mask is None else ~latent_mask
    rows = max(1, min(B, _ENCODE_BLOCK_ELEMS // max(n, 1)))
    buf = torch.empty(rows, n, dtype=ct, device=x.device)
    for s in range(0, B, rows):
        xb = xc[s : s + rows]
        pre = buf[: xb.shape[0]]
        torch.mm(xb, W.T, out=pre)
        pre += b  # in place: addmm would first copy the broadcast bias into the block
        if disallowed is not None:
            pre.masked_fill_(disallowed, float("-inf"))
        top, ix = torch.topk(pre, k, dim=1, sorted=False)
        vals[s : s + rows] = top.clamp_min_(0)
        idx[s : s + rows] = ix
    return vals, idx


def topk_encode_backward(grad_vals, x, W_enc, b_dec, vals, idx, **needs):
    """Torch-path encoder backward: ``(dx, dW_enc, db_enc)``; ``needs`` as in :func:`sparse_backward.encode_backward`."""
    return encode_backward(sys.modules[__name__], grad_vals, x, W_enc, b_dec, vals, idx, **needs)


# --------------------------------------------------------------------------- decoder


def sparse_decode(vals, idx, W_dec, b_dec=None):
    """Decoder forward: ``x_hat [B, d] = sum_j vals[:, j] W_dec[idx[:, j]] + b_dec``."""
    out = gather_combine(idx, vals, W_dec).to(W_dec.dtype)
    return out if b_dec is None else out + b_dec


def sparse_decode_backward(grad, vals, idx, W_dec, **needs):
    """Torch-path decoder backward: ``(dvals, dW_dec)``; ``needs`` as in :func:`sparse_backward.decode_backward`."""
    return decode_backward(sys.modules[__name__], grad, vals, idx, W_dec, **needs)


# --------------------------------------------------------------------------- primitives


def gather_combine(idx, w, table):
    """``out[b] = sum_j w[b, j] * table[idx[b, j]]`` via ``embedding_bag``; ``[B, d]`` in compute dtype."""
    ct = _compute_dtype(table.dtype)
    B, d = idx.shape[0], table.shape[1]
    if B == 0:
        return torch.zeros(0, d, dtype=ct, device=table.device)
    return F.embedding_bag(idx, table.to(ct), per_sample_weights=w.to(ct), mode="sum")


def gather_dot(idx, table, rows):
    """``out[b, j] = <table[idx[b, j]], rows[b]>``; ``[B, k]`` in compute dtype.

    This is the gradient of ``embedding_bag(idx, table, per_sample_weights=w)`` with
    respect to ``w`` for an upstream gradient ``rows``, so torch's native kernel for it
    (``aten::_embedding_bag_per_sample_weights_backward``) does the work, without a
    ``[B, k, d]`` temporary.
    """
    B, k = idx.shape
    ct = _compute_dtype(rows.dtype)
    dev = rows.device
    if B == 0:
        return torch.zeros(0, k, dtype=ct, device=dev)
    flat = idx.reshape(-1)
    offsets = torch.arange(0, B * k, k, device=dev)
    bag_of = torch.arange(B * k, device=dev) // k
    out = torch.ops.aten._embedding_bag_per_sample_weights_backward(
        rows.detach().to(ct).contiguous(), table.detach().to(ct), flat, offsets, bag_of, 0, -1  # 0: mode "sum"
    )
    return out.view(B, k)


_SORT_CACHE: list = []  # [(idx, n, order, offsets)]: the last sort, reused when idx repeats


def _sorted_by_latent(idx, n):
    """Stable order of the flat entries by latent, and each latent's first position.

    A training step scatters with the same ``idx`` twice (decoder and encoder weight
    gradients), so the last result is kept with a copy of its ``idx`` and reused only
    when a later ``idx`` is equal to that copy.
    """
    if _SORT_CACHE:
        c_idx, c_n, order, offsets = _SORT_CACHE[0]
        if c_n == n and c_idx.shape == idx.shape and c_idx.device == idx.device and torch.equal(c_idx, idx):
            return order, offsets
    flat = idx.reshape(-1)
    # argsort of int32 keys: several times faster on CPU than torch.sort(int64,
    # stable=True) on top-k indices (measured: 10-40 ms vs 160 ms for 131k entries)
    order = torch.argsort(flat.to(torch.int32) if n < 2**31 else flat, stable=True)
    sorted_idx = flat[order]
    offsets = torch.searchsorted(sorted_idx, torch.arange(n, device=idx.device, dtype=sorted_idx.dtype))
    _SORT_CACHE[:] = [(idx.detach().clone(), n, order, offsets)]
    return order, offsets


def scatter_outer(idx, w, rows, n, with_bias=False, deterministic=False):
    """``out[i] = sum_{idx[b, j] = i} w[b, j] * rows[b]``, and ``sum w`` per latent if asked.

    The (b, j) entries are sorted by latent (stable), which turns the scatter into an
    ``embedding_bag`` with one bag per latent over the rows of ``rows``: a gather with
    per-entry weights and no ``[B k, d]`` temporary. Each bag is summed in a fixed order
    on one thread, so the result is deterministic whatever ``deterministic`` says.

    Returns ``(out [n, d], bias_out [n] or None)`` in compute dtype.
    """
    B, k = idx.shape
    d = rows.shape[1]
    ct = _compute_dtype(rows.dtype)
    dev = rows.device
    if B == 0:
        return torch.zeros(n, d, dtype=ct, device=dev), (torch.zeros(n, dtype=ct, device=dev) if with_bias else None)
    rows = rows.detach().to(ct)
    if with_bias:
        # a column of ones makes the bias sum ride along in the same pass
        rows = torch.cat([rows, torch.ones(B, 1, dtype=ct, device=dev)], dim=1)
    order, offsets = _sorted_by_latent(idx, n)
    out = F.embedding_bag(
        order // k, rows, offsets, per_sample_weights=w.detach().reshape(-1)[order].to(ct), mode="sum"
    )
    if with_bias:
        return out[:, :d].contiguous(), out[:, d].contiguous()
    return out, None
