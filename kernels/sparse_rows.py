"""Row gather / scatter primitives shared by the sparse passes of both SAE ops.

Every sparse pass of a TopK SAE is one of three shapes of work over a ``[B, k]`` index
matrix ``idx`` (each entry a row of an ``[n, d]`` table) and a ``[B, k]`` weight matrix:

* ``gather_combine``: ``out[b] = sum_j w[b, j] * table[idx[b, j]] (+ bias)``, ``[B, d]``.
  The decoder forward (``w = vals``, ``table = W_dec``) and the encoder's input gradient
  (``w = g``, ``table = W_enc``).
* ``gather_dot``: ``out[b, j] = <table[idx[b, j]], rows[b]>``, ``[B, k]``.
  The decoder's gradient for ``vals`` (``rows = grad_x_hat``, ``table = W_dec``).
* ``scatter_outer``: ``out[i] = sum_{(b, j): idx[b, j] = i} w[b, j] * rows[b]``, ``[n, d]``,
  and optionally ``bias_out[i] = sum_{(b, j): idx[b, j] = i} w[b, j]``, ``[n]``.
  The decoder's weight gradient (``w = vals``, ``rows = grad_x_hat``) and the encoder's
  weight and bias gradients (``w = g``, ``rows = x - b_dec``).

Each costs O(B * k * d); none touches the ``n - k`` unused rows of a row of the batch.

``scatter_outer`` has two Triton kernels: atomics (fast; the order of the floating-point
additions into one output row varies run to run) and a deterministic sorted segment
reduction (the flat index is sorted once, then one program per (latent, column block)
sums its segment in a fixed order). Their definitions (dense one-hot matrices) are in
:mod:`reference`; block sizes, warps and stages come from :mod:`launch`.

Registers: every kernel works on 2-D ``[rows, columns]`` tiles. ``gather_dot`` once
loaded a 3-D ``[rows, slots, columns]`` tile of gathered table rows, which spilled
kilobytes per thread; it now walks its slots one at a time over a 2-D tile and keeps
only a ``[rows, slots]`` accumulator. Row offsets are int64 (``B * d`` and ``n * d`` may
exceed 2**31).

This module imports Triton at import time; it must only be imported on the Triton path.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from . import launch

# --------------------------------------------------------------------------- kernels


@triton.jit
def _gather_combine_kernel(
    idx_ptr,  # [B, k] int64, contiguous
    w_ptr,  # [B, k] weights, contiguous
    table_ptr,  # [n, d] rows, unit column stride
    bias_ptr,  # [d] or a dummy when HAS_BIAS is False
    out_ptr,  # [B, d], contiguous
    B,
    k,
    d,
    stride_table,
    HAS_BIAS: tl.constexpr,  # constexpr so the bias branch compiles away
    BLOCK_B: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    """out[b, c] = sum_j w[b, j] * table[idx[b, j], c] (+ bias[c]), accumulated in fp32."""
    rows = (tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)).to(tl.int64)
    cols = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    rmask = rows < B
    m2 = rmask[:, None] & (cols < d)[None, :]
    acc = tl.zeros([BLOCK_B, BLOCK_D], dtype=tl.float32)
    for j in range(0, k):
        ix = tl.load(idx_ptr + rows * k + j, mask=rmask, other=0)
        wv = tl.load(w_ptr + rows * k + j, mask=rmask, other=0.0).to(tl.float32)
        t = tl.load(table_ptr + ix[:, None] * stride_table + cols[None, :], mask=m2, other=0.0)
        acc += wv[:, None] * t.to(tl.float32)
    if HAS_BIAS:
        acc += tl.load(bias_ptr + cols, mask=cols < d, other=0.0).to(tl.float32)[None, :]
    tl.store(out_ptr + rows[:, None] * d + cols[None, :], acc.to(out_ptr.dtype.element_ty), mask=m2)


@triton.jit
def _gather_dot_kernel(
    idx_ptr,  # [B, k] int64, contiguous
    table_ptr,  # [n, d], unit column stride
    rows_ptr,  # [B, d], contiguous
    out_ptr,  # [B, k], contiguous
    B,
    k,
    d,
    stride_table,
    BLOCK_B: tl.constexpr,
    BLOCK_J: tl.constexpr,  # slots j per program
    BLOCK_D: tl.constexpr,
):
    """out[b, j] = sum_c table[idx[b, j], c] * rows[b, c], accumulated in fp32, 2-D tiles only."""
    r = (tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)).to(tl.int64)
    rmask = r < B
    jr = tl.program_id(1) * BLOCK_J + tl.arange(0, BLOCK_J)
    acc = tl.zeros([BLOCK_B, BLOCK_J], dtype=tl.float32)
    for d0 in range(0, d, BLOCK_D):
        c = d0 + tl.arange(0, BLOCK_D)
        m2 = rmask[:, None] & (c < d)[None, :]
        g = tl.load(rows_ptr + r[:, None] * d + c[None, :], mask=m2, other=0.0).to(tl.float32)
        for jj in range(0, BLOCK_J):
            j = tl.program_id(1) * BLOCK_J + jj
            jm = rmask & ((r * 0 + j) < k)  # a [BLOCK_B] mask (a scalar j < k breaks the interpreter at k = 1)
            ix = tl.load(idx_ptr + r * k + j, mask=jm, other=0)
            t = tl.load(table_ptr + ix[:, None] * stride_table + c[None, :], mask=jm[:, None] & m2, other=0.0)
            part = tl.sum(t.to(tl.float32) * g, axis=1)
            acc += tl.where((jr == j)[None, :], part[:, None], 0.0)
    m_bk = rmask[:, None] & (jr < k)[None, :]
    tl.store(out_ptr + r[:, None] * k + jr[None, :], acc.to(out_ptr.dtype.element_ty), mask=m_bk)


@triton.jit
def _scatter_outer_atomic_kernel(
    idx_ptr,  # [B, k] int64, contiguous
    w_ptr,  # [B, k], contiguous
    rows_ptr,  # [B, d], contiguous
    out_ptr,  # [n, d] float32 accumulator, zero-initialised
    bias_out_ptr,  # [n] float32 accumulator or a dummy
    B,
    k,
    d,
    HAS_BIAS: tl.constexpr,
    BLOCK_B: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    """out[idx[b, j], c] += w[b, j] * rows[b, c] with fp32 atomics (order not fixed)."""
    r = (tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)).to(tl.int64)
    c = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    rmask = r < B
    m2 = rmask[:, None] & (c < d)[None, :]
    g = tl.load(rows_ptr + r[:, None] * d + c[None, :], mask=m2, other=0.0).to(tl.float32)
    for j in range(0, k):
        ix = tl.load(idx_ptr + r * k + j, mask=rmask, other=0)
        wv = tl.load(w_ptr + r * k + j, mask=rmask, other=0.0).to(tl.float32)
        tl.atomic_add(out_ptr + ix[:, None] * d + c[None, :], wv[:, None] * g, mask=m2)
        if HAS_BIAS:
            if tl.program_id(1) == 0:  # one column block adds the bias term, so it counts once
                tl.atomic_add(bias_out_ptr + ix, wv, mask=rmask)


@triton.jit
def _scatter_outer_segment_kernel(
    order_ptr,  # [B*k] int64: flat entries (b*k + j) sorted stably by latent
    start_ptr,  # [n] int64: first position of latent i in the sorted order
    end_ptr,  # [n] int64: one past its last position
    w_ptr,  # [B, k], contiguous
    rows_ptr,  # [B, d], contiguous
    out_ptr,  # [n, d] float32
    bias_out_ptr,  # [n] float32 or a dummy
    k,
    d,
    HAS_BIAS: tl.constexpr,
    BLOCK_S: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    """Deterministic scatter: one program sums latent i's segment in a fixed order."""
    i = tl.program_id(0).to(tl.int64)
    c = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    cm = c < d
    start = tl.load(start_ptr + i)
    end = tl.load(end_ptr + i)
    acc = tl.zeros([BLOCK_D], dtype=tl.float32)
    bacc = tl.zeros([BLOCK_S], dtype=tl.float32)
    for s0 in range(start, end, BLOCK_S):
        s = s0 + tl.arange(0, BLOCK_S)
        sm = s < end
        e = tl.load(order_ptr + s, mask=sm, other=0)
        b = e // k
        wv = tl.load(w_ptr + e, mask=sm, other=0.0).to(tl.float32)
        g = tl.load(rows_ptr + b[:, None] * d + c[None, :], mask=sm[:, None] & cm[None, :], other=0.0)
        acc += tl.sum(wv[:, None] * g.to(tl.float32), axis=0)
        bacc += wv
    tl.store(out_ptr + i * d + c, acc, mask=cm)
    if HAS_BIAS:
        if tl.program_id(1) == 0:
            tl.store(bias_out_ptr + i, tl.sum(bacc, axis=0))


# --------------------------------------------------------------------------- launchers


def _device(t):
    return launch.device_spec(t.device)


def gather_combine(idx, w, table, bias=None):
    """``out[b] = sum_j w[b, j] * table[idx[b, j]] (+ bias)`` with Triton.

    Parameters
    ----------
    idx : int64 [B, k]
    w : [B, k] weights
    table : [n, d]
    bias : [d] or None

    Returns
    -------
    [B, d] in ``table``'s dtype, accumulated in float32.
    """
    B, k = idx.shape
    d = table.shape[1]
    out = torch.empty(B, d, dtype=table.dtype, device=table.device)
    if B == 0 or d == 0:
        return out
    idx, w, table = idx.contiguous(), w.contiguous(), table.contiguous()
    p = launch.gather_combine_plan(B, k, d, _device(table))
    _gather_combine_kernel[p.grid](
        idx, w, table, bias if bias is not None else table, out, B, k, d, table.stride(0),
        HAS_BIAS=bias is not None, num_warps=p.num_warps, num_stages=p.num_stages, **p.constexprs,
    )
    return out


def gather_dot(idx, table, rows):
    """``out[b, j] = <table[idx[b, j]], rows[b]>`` with Triton.

    Parameters
    ----------
    idx : int64 [B, k]
    table : [n, d]
    rows : [B, d]

    Returns
    -------
    [B, k] in ``rows``' dtype, accumulated in float32.
    """
    B, k = idx.shape
    d = table.shape[1]
    out = torch.empty(B, k, dtype=rows.dtype, device=rows.device)
    if B == 0 or k == 0:
        return out
    if d == 0:
        return out.zero_()
    idx, table, rows = idx.contiguous(), table.contiguous(), rows.contiguous()
    p = launch.gather_dot_plan(B, k, d, _device(rows))
    _gather_dot_kernel[p.grid](
        idx, table, rows, out, B, k, d, table.stride(0), num_warps=p.num_warps, num_stages=p.num_stages, **p.constexprs
    )
    return out


def scatter_outer(idx, w, rows, n, with_bias=False, deterministic=False):
    """``out[i] = sum_{idx[b, j] = i} w[b, j] * rows[b]`` (and the sum of ``w``) with Triton.

    Parameters
    ----------
    idx : int64 [B, k]
    w : [B, k]
    rows : [B, d]
    n : int, number of output rows
    with_bias : also return ``bias_out[i] = sum_{idx[b, j] = i} w[b, j]``
    deterministic : use the sorted segment reduction instead of atomics

    Returns
    -------
    (out float32 [n, d], bias_out float32 [n] or None); the caller casts.
    """
    B, k = idx.shape
    d = rows.shape[1]
    dev = rows.device
    out = torch.zeros(n, d, dtype=torch.float32, device=dev)
    bias_out = torch.zeros(n, dtype=torch.float32, device=dev) if with_bias else None
    if B == 0 or k == 0 or n == 0:
        return out, bias_out
    idx, w, rows = idx.contiguous(), w.contiguous(), rows.contiguous()
    dummy = bias_out if with_bias else out
    if deterministic:
        flat = idx.reshape(-1)
        # stable sort: ties keep (b, j) order, so the summation order is fixed by the data
        order = torch.argsort(flat.to(torch.int32) if n < 2**31 else flat, stable=True)
        sorted_idx = flat[order]
        latents = torch.arange(n, device=dev, dtype=sorted_idx.dtype)
        start = torch.searchsorted(sorted_idx, latents)
        end = torch.searchsorted(sorted_idx, latents, right=True)
        p = launch.scatter_segment_plan(n, d, _device(rows))
        _scatter_outer_segment_kernel[p.grid](
            order, start, end, w, rows, out, dummy, k, d,
            HAS_BIAS=with_bias, num_warps=p.num_warps, num_stages=p.num_stages, **p.constexprs,
        )
    else:
        p = launch.scatter_atomic_plan(B, k, d, _device(rows))
        _scatter_outer_atomic_kernel[p.grid](
            idx, w, rows, out, dummy, B, k, d, HAS_BIAS=with_bias, num_warps=p.num_warps, num_stages=p.num_stages,
            **p.constexprs,
        )
    return out, bias_out
