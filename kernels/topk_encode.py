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

Two Triton kernels, parallel over rows *and* latents (so a 4096-token batch fills the
GPU even though it has only 64 row blocks):

1. ``_topk_encode_split_kernel``, grid (row blocks x latent splits). A program owns
   ``BLOCK_B`` rows and one contiguous split of the latents, which it sweeps in tiles of
   ``BLOCK_N``. For each tile it computes the ``[BLOCK_B, BLOCK_N]`` pre-activations with
   ``tl.dot`` (tensor cores; fp32 accumulation; tf32 for fp32 inputs when
   ``torch.backends.cuda.matmul.allow_tf32`` allows, else exact ``ieee``) and packs each
   (value, latent) pair into one int64 key whose order is the float order (high 32 bits:
   the float's bits mapped to a monotone int32; low 32 bits: the latent). Each row keeps
   its k best keys of the split in registers: while some row's best remaining tile key
   beats that row's current minimum, the key replaces the minimum (one insertion per row
   per step). Late in the sweep few keys beat the threshold, so most tiles cost one
   max-reduction; the expected number of insertions per row is about
   ``k * (1 + ln(split / k))``. The k keys of each (row, split) go to a ``[B, splits * k]``
   int64 candidate buffer (``B * splits * k * 8`` bytes, never ``[B, n]``).
2. ``_topk_merge_kernel``, grid (row blocks): the k largest of each row's candidates with
   Triton's bitonic ``tl.topk``, decoded into ``vals`` (relu) and ``idx``.

Keys are unique (the latent is part of the key), so the result is the top-k of one total
order (value, then larger latent first on ties): it does not depend on the split count
or block sizes. The output order of the k pairs is unspecified. Block sizes, warps,
stages and the split count come from :mod:`launch` (a function of the shape and the
device's SM count). Large k (above ``launch.FUSED_MAX_K``) does not fit the register
design; ``genesae_fast.ops`` runs it on the chunked GEMM + top-k path instead.

This module imports Triton at import time; it must only be imported on the Triton path.
"""
from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from . import launch, sparse_rows
from .sparse_backward import centre, encode_backward

# --------------------------------------------------------------------------- kernel


@triton.jit
def _float_to_key_hi(v):
    # monotone map float32 -> int32: flip the magnitude bits of negative numbers
    bits = v.to(tl.int32, bitcast=True)
    return bits ^ ((bits >> 31) & 0x7FFFFFFF)




@triton.jit
def _key_to_float(key):
    hi = (key >> 32).to(tl.int32)
    return (hi ^ ((hi >> 31) & 0x7FFFFFFF)).to(tl.float32, bitcast=True)


@triton.jit
def _topk_encode_split_kernel(
    xc_ptr,  # [B, d] centred input x - b_dec, contiguous
    w_ptr,  # [n, d] W_enc, contiguous
    b_ptr,  # [n] b_enc
    mask_ptr,  # [n] uint8 latent mask, or a dummy when HAS_MASK is False
    cand_ptr,  # [B, splits * k] int64 out: each (row, split)'s k best keys
    B,
    n,
    d,
    k,
    split_len,  # latents per split, a multiple of BLOCK_N
    HAS_MASK: tl.constexpr,  # constexpr so the mask branch compiles away
    BLOCK_B: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
    K_PAD: tl.constexpr,  # next power of two >= k (tl.arange needs one)
    INPUT_PRECISION: tl.constexpr,  # "ieee" for exact fp32 products, "tf32" when allowed
    DOT_FP32: tl.constexpr,  # upcast tiles before tl.dot (the interpreter's bf16 dot is wrong)
):
    """Running top-k keys of pre = xc @ W.T + b over one latent split; see the module docstring."""
    SENTINEL: tl.constexpr = -9223372036854775808  # below every real key: an empty slot
    PAD: tl.constexpr = 9223372036854775807  # above every key: slots k..K_PAD-1, never replaced
    rows = (tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)).to(tl.int64)
    rmask = rows < B
    split = tl.program_id(1)
    lo = split * split_len
    hi = tl.minimum(lo + split_len, n)
    kk = tl.arange(0, K_PAD)
    best = tl.where((kk < k)[None, :], SENTINEL, PAD) + tl.zeros([BLOCK_B, K_PAD], dtype=tl.int64)
    worst = tl.min(best, axis=1)  # per-row entry threshold of the running set
    for n0 in range(lo, hi, BLOCK_N):
        cols = n0 + tl.arange(0, BLOCK_N)
        cmask = cols < hi
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
        # row per step; most tiles late in the split cost one max-reduction and no step.
        tmax = tl.max(key, axis=1)
        while tl.max((tmax > worst).to(tl.int32), axis=0) > 0:
            take = tmax > worst
            slot = tl.argmin(best, axis=1)
            best = tl.where(take[:, None] & (kk[None, :] == slot[:, None]), tmax[:, None], best)
            # keys are unique (the latent is in the low bits): this removes exactly one
            key = tl.where(take[:, None] & (key == tmax[:, None]), SENTINEL, key)
            tmax = tl.max(key, axis=1)
            worst = tl.min(best, axis=1)
    n_splits = tl.num_programs(1)
    om = rmask[:, None] & (kk < k)[None, :]
    tl.store(cand_ptr + rows[:, None] * (n_splits * k) + split * k + kk[None, :], best, mask=om)


@triton.jit
def _topk_merge_kernel(
    cand_ptr,  # [B, C] int64 candidate keys (C = splits * k), contiguous
    vals_ptr,  # [B, k] out
    idx_ptr,  # [B, k] int64 out
    B,
    C,
    k,
    BLOCK_B: tl.constexpr,
    C_PAD: tl.constexpr,  # next power of two >= C (and >= K_PAD)
    K_PAD: tl.constexpr,
):
    """The k largest candidate keys per row (bitonic tl.topk), decoded to relu(value), latent."""
    SENTINEL: tl.constexpr = -9223372036854775808
    rows = (tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)).to(tl.int64)
    rmask = rows < B
    cc = tl.arange(0, C_PAD)
    keys = tl.load(cand_ptr + rows[:, None] * C + cc[None, :], mask=rmask[:, None] & (cc < C)[None, :], other=SENTINEL)
    top = tl.topk(keys, K_PAD, dim=1)  # descending: slots 0..k-1 are the answer
    kk = tl.arange(0, K_PAD)
    empty = top == SENTINEL  # fewer than k allowed latents: value 0, latent 0
    v = tl.where(empty, 0.0, tl.maximum(_key_to_float(top), 0.0))
    ix = tl.where(empty, 0, top & 0xFFFFFFFF)
    om = rmask[:, None] & (kk < k)[None, :]
    tl.store(vals_ptr + rows[:, None] * k + kk[None, :], v.to(vals_ptr.dtype.element_ty), mask=om)
    tl.store(idx_ptr + rows[:, None] * k + kk[None, :], ix, mask=om)


# --------------------------------------------------------------------------- launchers


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def dot_precision(x) -> str:
    """``"tf32"`` for fp32 CUDA inputs when torch allows tf32 matmuls, else ``"ieee"``."""
    if x.dtype == torch.float32 and x.is_cuda and torch.backends.cuda.matmul.allow_tf32:
        return "tf32"
    return "ieee"


def topk_encode(x, W_enc, b_enc, k, b_dec=None, latent_mask=None, *, splits=0):
    """Triton encoder forward (inputs validated by ``genesae_fast.ops``; k <= launch.FUSED_MAX_K).

    Parameters
    ----------
    x : [B, d]; W_enc : [n, d]; b_enc : [n]; k : int, 1 <= k <= n; b_dec : [d] or None;
    latent_mask : bool [n] or None
    splits : int, keyword-only; > 0 forces the latent split count (tests), 0 = planned.

    Returns
    -------
    vals [B, k] (x.dtype), idx int64 [B, k]; the order of the k pairs is unspecified.
    """
    B, d = x.shape
    n = W_enc.shape[0]
    vals = torch.empty(B, k, dtype=x.dtype, device=x.device)
    idx = torch.empty(B, k, dtype=torch.int64, device=x.device)
    if B == 0:
        return vals, idx
    xc = centre(x, b_dec)
    W = W_enc.contiguous()
    half = x.dtype != torch.float32
    plan = launch.encode_plan(B, n, d, k, half, launch.device_spec(x.device), splits=splits)
    cand = torch.empty(B, plan.splits * k, dtype=torch.int64, device=x.device)
    mask = latent_mask.to(torch.uint8).contiguous() if latent_mask is not None else W
    sp = plan.split
    _topk_encode_split_kernel[sp.grid](
        xc, W, b_enc.contiguous(), mask, cand, B, n, d, k, plan.split_len,
        HAS_MASK=latent_mask is not None, INPUT_PRECISION=dot_precision(x),
        DOT_FP32=_interpreting() and half, num_warps=sp.num_warps, num_stages=sp.num_stages, **sp.constexprs,
    )
    mp = plan.merge
    _topk_merge_kernel[mp.grid](
        cand, vals, idx, B, plan.splits * k, k, num_warps=mp.num_warps, num_stages=mp.num_stages, **mp.constexprs
    )
    return vals, idx


def topk_encode_backward(grad_vals, x, W_enc, b_dec, vals, idx, **needs):
    """Triton encoder backward: ``(dx, dW_enc, db_enc)``; ``needs``: need_x, need_W, need_b, deterministic."""
    return encode_backward(sparse_rows, grad_vals, x, W_enc, b_dec, vals, idx, **needs)
