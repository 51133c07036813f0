"""Fused TopK SAE encoder: affine map, top-k per row and ReLU, without the [B, n] matrix.

Forward, for ``x [B, d]``, ``W_enc [n, d]``, ``b_enc [n]``, ``b_dec [d]`` (or 0) and an
optional boolean ``latent_mask [n]`` (``False`` = latent may not be chosen)::

    pre[b, i]  = <x[b] - b_dec, W_enc[i]> + b_enc[i]          (never stored as [B, n])
    idx[b, :]  = the k indices i with the largest pre[b, i] among allowed latents
    vals[b, j] = relu(pre[b, idx[b, j]])

Backward, given ``grad_vals [B, k]``; only the k kept entries of each row carry gradient::

    g[b, j]     = grad_vals[b, j] * (vals[b, j] > 0)                 relu'
    dx[b]       = sum_j g[b, j] * W_enc[idx[b, j]]                   O(B k d), gather_combine
    dW_enc[i]   = sum_{(b, j): idx[b, j] = i} g[b, j] * (x[b] - b_dec)  O(B k d), scatter_outer
    db_enc[i]   = sum_{(b, j): idx[b, j] = i} g[b, j]
    db_dec      = -sum_b dx[b]

If fewer than k latents are allowed (a latent mask with fewer than k ``True``), the extra
slots hold value 0 (they carry no gradient); their index is any valid latent.

The Triton kernel: a program owns ``BLOCK_B`` rows and sweeps the latents in tiles of
``BLOCK_N``. For each tile it computes the ``[BLOCK_B, BLOCK_N]`` pre-activations with
``tl.dot`` (fp32 accumulation) and packs each (value, latent) pair into one int64 key
whose order is the float order (high 32 bits: the float's bits mapped to a monotone int32;
low 32 bits: the latent). Each row keeps its k best keys so far in registers. While some
row's best remaining tile key beats that row's current minimum, the key replaces the
minimum (one insertion per row per step). After the first tiles the threshold is high and
most tiles need only one max-reduction, so the expected number of insertions per row is
about ``k * (1 + ln(n / k))`` for a random order of latents. Only max/min/argmin
reductions and selects are used (no sort network), which keeps the kernel simple and
fast under the interpreter too. Keys are unique (the latent is part of the key), so ties
in value are broken deterministically (larger latent index first). The output order of
the k pairs is unspecified.

This module imports Triton at import time; it must only be imported on the Triton path.
"""
from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from . import sparse_rows
from .sparse_backward import centre, encode_backward

# --------------------------------------------------------------------------- reference


def topk_encode_reference(x, W_enc, b_enc, k, b_dec=None, latent_mask=None):
    """Dense definition of the encoder (materialises ``[B, n]``; tests and small inputs).

    Parameters
    ----------
    x : [B, d]; W_enc : [n, d]; b_enc : [n]; k : int; b_dec : [d] or None;
    latent_mask : bool [n] or None

    Returns
    -------
    vals [B, k] (x.dtype), idx int64 [B, k]. Differentiable through torch autograd.
    """
    xc = x if b_dec is None else x - b_dec
    pre = xc @ W_enc.T + b_enc
    if latent_mask is not None:
        pre = pre.masked_fill(~latent_mask, float("-inf"))
    top, idx = torch.topk(pre, k, dim=1)
    return torch.relu(top), idx


# --------------------------------------------------------------------------- kernel


@triton.jit
def _float_to_key_hi(v):
    # monotone map float32 -> int32: flip the magnitude bits of negative numbers
    bits = v.to(tl.int32, bitcast=True)
    return bits ^ ((bits >> 31) & 0x7FFFFFFF)


@triton.jit
def _topk_encode_kernel(
    xc_ptr,  # [B, d] centred input x - b_dec, contiguous
    w_ptr,  # [n, d] W_enc, contiguous
    b_ptr,  # [n] b_enc
    mask_ptr,  # [n] uint8 latent mask, or a dummy when HAS_MASK is False
    vals_ptr,  # [B, k] out
    idx_ptr,  # [B, k] int64 out
    B,
    n,
    d,
    k,
    HAS_MASK: tl.constexpr,
    BLOCK_B: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
    K_PAD: tl.constexpr,  # next power of two >= k (tl.arange needs one)
    INPUT_PRECISION: tl.constexpr,  # "ieee" for exact fp32 products, "tf32" when allowed
    DOT_FP32: tl.constexpr,  # upcast tiles before tl.dot (the interpreter's bf16 dot is wrong)
):
    """Running top-k of pre = xc @ W.T + b per row, then relu; see the module docstring."""
    SENTINEL: tl.constexpr = -9223372036854775808  # below every real key: an empty slot
    PAD: tl.constexpr = 9223372036854775807  # above every key: slots k..K_PAD-1, never replaced
    rows = (tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)).to(tl.int64)
    rmask = rows < B
    kk = tl.arange(0, K_PAD)
    best = tl.where((kk < k)[None, :], SENTINEL, PAD) + tl.zeros([BLOCK_B, K_PAD], dtype=tl.int64)
    worst = tl.min(best, axis=1)  # per-row entry threshold of the running set
    for n0 in range(0, n, BLOCK_N):
        cols = n0 + tl.arange(0, BLOCK_N)
        cmask = cols < n
        acc = tl.zeros([BLOCK_B, BLOCK_N], dtype=tl.float32)
        for d0 in range(0, d, BLOCK_D):
            dd = d0 + tl.arange(0, BLOCK_D)
            dm = dd < d
            a = tl.load(xc_ptr + rows[:, None] * d + dd[None, :], mask=rmask[:, None] & dm[None, :], other=0.0)
            w = tl.load(w_ptr + cols[:, None].to(tl.int64) * d + dd[None, :], mask=cmask[:, None] & dm[None, :], other=0.0)
            if DOT_FP32:
                a = a.to(tl.float32)
                w = w.to(tl.float32)
            acc = tl.dot(a, tl.trans(w), acc, input_precision=INPUT_PRECISION)
        acc += tl.load(b_ptr + cols, mask=cmask, other=0.0).to(tl.float32)[None, :]
        valid = rmask[:, None] & cmask[None, :]
        if HAS_MASK:
            valid = valid & (tl.load(mask_ptr + cols, mask=cmask, other=0) != 0)[None, :]
        key = (_float_to_key_hi(acc).to(tl.int64) << 32) | cols.to(tl.int64)[None, :]
        key = tl.where(valid, key, SENTINEL)
        # Insert the tile's members that beat a row's current minimum, best first, one per
        # row per step. Late in the sweep few keys beat the threshold, so most tiles cost
        # one max-reduction and no step at all.
        tmax = tl.max(key, axis=1)
        while tl.max((tmax > worst).to(tl.int32), axis=0) > 0:
            take = tmax > worst
            slot = tl.argmin(best, axis=1)
            best = tl.where(take[:, None] & (kk[None, :] == slot[:, None]), tmax[:, None], best)
            # keys are unique (the latent is in the low bits): this removes exactly one
            key = tl.where(take[:, None] & (key == tmax[:, None]), SENTINEL, key)
            tmax = tl.max(key, axis=1)
            worst = tl.min(best, axis=1)
    hi = (best >> 32).to(tl.int32)
    v = (hi ^ ((hi >> 31) & 0x7FFFFFFF)).to(tl.float32, bitcast=True)
    ix = best & 0xFFFFFFFF
    empty = best == SENTINEL  # fewer than k allowed latents: value 0, latent 0
    v = tl.where(empty, 0.0, tl.maximum(v, 0.0))
    ix = tl.where(empty, 0, ix)
    om = rmask[:, None] & (kk < k)[None, :]
    tl.store(vals_ptr + rows[:, None] * k + kk[None, :], v.to(vals_ptr.dtype.element_ty), mask=om)
    tl.store(idx_ptr + rows[:, None] * k + kk[None, :], ix, mask=om)


# --------------------------------------------------------------------------- launchers


def topk_encode(x, W_enc, b_enc, k, b_dec=None, latent_mask=None):
    """Triton encoder forward (inputs already validated by ``genesae_fast.ops``).

    Parameters
    ----------
    x : [B, d]; W_enc : [n, d]; b_enc : [n]; k : int, 1 <= k <= n; b_dec : [d] or None;
    latent_mask : bool [n] or None

    Returns
    -------
    vals [B, k] (x.dtype), idx int64 [B, k], in descending order of pre-activation.
    """
    B, d = x.shape
    n = W_enc.shape[0]
    vals = torch.empty(B, k, dtype=x.dtype, device=x.device)
    idx = torch.empty(B, k, dtype=torch.int64, device=x.device)
    if B == 0:
        return vals, idx
    xc = centre(x, b_dec)
    W = W_enc.contiguous()
    K_PAD = triton.next_power_of_2(k)
    BLOCK_N = 64
    # registers hold BLOCK_B x (BLOCK_N + K_PAD) keys: shrink the row block as k grows
    BLOCK_B = 64 if K_PAD <= 32 else (32 if K_PAD <= 128 else 16)
    interpreting = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")
    BLOCK_D = min(64, max(16, triton.next_power_of_2(d)))
    precision = "tf32" if (x.dtype == torch.float32 and x.is_cuda and torch.backends.cuda.matmul.allow_tf32) else "ieee"
    mask = latent_mask.to(torch.uint8).contiguous() if latent_mask is not None else W
    _topk_encode_kernel[(triton.cdiv(B, BLOCK_B),)](
        xc, W, b_enc.contiguous(), mask, vals, idx, B, n, d, k,
        HAS_MASK=latent_mask is not None, BLOCK_B=BLOCK_B, BLOCK_N=BLOCK_N, BLOCK_D=BLOCK_D,
        K_PAD=K_PAD, INPUT_PRECISION=precision, DOT_FP32=interpreting and x.dtype != torch.float32,
    )
    return vals, idx


def topk_encode_backward(grad_vals, x, W_enc, b_dec, vals, idx, need_x, need_W, need_b, deterministic):
    """Triton encoder backward: ``(dx, dW_enc, db_enc)`` (math in :mod:`sparse_backward`)."""
    return encode_backward(sparse_rows, grad_vals, x, W_enc, b_dec, vals, idx, need_x, need_W, need_b, deterministic)
