"""TopK SAE operators: ``topk_encode`` and ``sparse_decode`` as ``torch.library`` custom ops.

>>> from genesae_fast import ops
>>> vals, idx = ops.topk_encode(x, W_enc, b_enc, k, b_dec=b_dec)   # [B, k], int64 [B, k]
>>> x_hat = ops.sparse_decode(vals, idx, W_dec, b_dec=b_dec)       # [B, d]

Both are differentiable (gradients flow only through the k kept entries of each row, and
no backward pass costs O(B n d)), have fake (meta) kernels, and so work under
``torch.compile(fullgraph=True)``.

Which implementation runs is decided per call, from the tensors' device:
CUDA tensors with Triton installed use the Triton kernels (:mod:`genesae_fast.kernels`),
everything else the torch path (:mod:`genesae_fast.kernels.torch_path`). The environment
variable ``GENESAE_KERNELS=auto|triton|torch`` (read at each call) forces one; ``triton``
on CPU tensors needs ``TRITON_INTERPRET=1`` (Triton's interpreter, for tests).
On the Triton path the encoder also chooses per call by k: the fused split-latent kernels
for k <= 64, a row-chunked GEMM + ``torch.topk`` above (see :func:`_encoder` for why).
Importing this module imports neither Triton nor the kernels and does not query CUDA.

Deterministic mode: ``deterministic=True`` (or ``None`` with
``torch.use_deterministic_algorithms(True)`` or ``GENESAE_DETERMINISTIC=1``) makes the
Triton weight-gradient scatters use a sorted segment reduction instead of atomics. The
torch path is always deterministic (it sums each latent's entries in a fixed order).
"""
from __future__ import annotations

import importlib
import importlib.util
import os
from typing import Optional

import torch
from torch import Tensor

__all__ = ["topk_encode", "sparse_decode", "backend_for"]

_FLOATS = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
_TRITON_FLOATS = (torch.float32, torch.float16, torch.bfloat16)


# --------------------------------------------------------------------------- dispatch


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def _triton_installed() -> bool:
    # find_spec does not import the package (importing triton costs about a second)
    return importlib.util.find_spec("triton") is not None


def backend_for(t: Tensor) -> str:
    """The implementation a call with tensors like ``t`` would use: ``"triton"`` or ``"torch"``.

    Reads ``GENESAE_KERNELS`` (``auto`` by default) each time.
    """
    choice = os.environ.get("GENESAE_KERNELS", "auto").strip().lower() or "auto"
    if choice not in ("auto", "triton", "torch"):
        raise ValueError(f"GENESAE_KERNELS={choice!r}: expected auto, triton or torch")
    if choice == "torch":
        return "torch"
    if choice == "triton":
        if not _triton_installed():
            raise RuntimeError("GENESAE_KERNELS=triton but the triton package is not installed")
        if t.device.type != "cuda" and not _interpreting():
            raise RuntimeError(
                f"GENESAE_KERNELS=triton needs CUDA tensors (got {t.device.type}) or TRITON_INTERPRET=1"
            )
        if t.dtype not in _TRITON_FLOATS:
            raise RuntimeError(f"GENESAE_KERNELS=triton: the Triton kernels take float32/float16/bfloat16, not {t.dtype}")
        return "triton"
    if t.device.type == "cuda" and t.dtype in _TRITON_FLOATS and _triton_installed():
        return "triton"
    return "torch"


def _impl(module: str, t: Tensor):
    """The kernel module for ``t``'s backend, imported on first use."""
    if backend_for(t) == "triton":
        return importlib.import_module(f"genesae_fast.kernels.{module}")
    return importlib.import_module("genesae_fast.kernels.torch_path")


def _encoder(x: Tensor, k: int):
    """The encoder forward function for this call: fused Triton, chunked GEMM + top-k, or torch.

    On the Triton path the fused kernel holds each row's running top-k in registers, which
    fits k <= ``FUSED_MAX_K`` (64) without spilling. Larger k (AuxK's k_aux = d / 2, i.e.
    256 to 2048) would spill the register file, and the fused kernel's insertion steps grow
    with k; there a row-chunked GEMM (cuBLAS, tensor cores; tf32 per torch's setting) plus
    ``torch.topk`` (a radix select whose cost hardly depends on k) is faster. It keeps at
    most a ``[rows, n]`` chunk of about 2**25 pre-activations alive, never ``[B, n]``. On
    CUDA that path computes in the input dtype (bf16 GEMMs on tensor cores); on CPU
    (interpreter tests) in float32.
    """
    mod = _impl("topk_encode", x)
    if mod.__name__.endswith("torch_path"):
        return mod.topk_encode
    from genesae_fast.kernels.launch import FUSED_MAX_K

    if k <= FUSED_MAX_K:
        return mod.topk_encode
    from genesae_fast.kernels import torch_path

    ct = x.dtype if x.is_cuda else torch.float32

    def chunked(x, W_enc, b_enc, k, b_dec, latent_mask):
        return torch_path.topk_encode(x, W_enc, b_enc, k, b_dec, latent_mask, compute_dtype=ct)

    return chunked


def _deterministic(flag: Optional[bool]) -> bool:
    if flag is not None:
        return bool(flag)
    return torch.are_deterministic_algorithms_enabled() or os.environ.get("GENESAE_DETERMINISTIC", "0") == "1"


def _or_empty(t: Optional[Tensor], like: Tensor) -> Tensor:
    # custom ops cannot return None: an empty tensor stands for "not computed"
    return t if t is not None else like.new_empty(0)


# --------------------------------------------------------------------------- validation


def _check_float(name: str, t: Tensor, ndim: int) -> None:
    if not isinstance(t, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dim() != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {tuple(t.shape)}")
    if t.dtype not in _FLOATS:
        raise TypeError(f"{name} must be a floating tensor (float32/float16/bfloat16/float64), got {t.dtype}")


def _check_same(ref_name: str, ref: Tensor, others: dict) -> None:
    for name, t in others.items():
        if t is None:
            continue
        if t.device != ref.device:
            raise ValueError(f"{name} is on {t.device} but {ref_name} is on {ref.device}")
        if t.is_floating_point() and t.dtype != ref.dtype:
            raise TypeError(f"{name} has dtype {t.dtype} but {ref_name} has {ref.dtype}; cast them to one dtype")


def _validate_encode(x, W_enc, b_enc, k, b_dec, latent_mask) -> None:
    _check_float("x", x, 2)
    _check_float("W_enc", W_enc, 2)
    _check_float("b_enc", b_enc, 1)
    n, d = W_enc.shape
    if x.shape[1] != d:
        raise ValueError(f"x has {x.shape[1]} features but W_enc has shape {tuple(W_enc.shape)} ([n_latents, d])")
    if b_enc.shape[0] != n:
        raise ValueError(f"b_enc has shape {tuple(b_enc.shape)}, expected ({n},) for W_enc {tuple(W_enc.shape)}")
    if b_dec is not None:
        _check_float("b_dec", b_dec, 1)
        if b_dec.shape[0] != d:
            raise ValueError(f"b_dec has shape {tuple(b_dec.shape)}, expected ({d},)")
    if latent_mask is not None:
        if not isinstance(latent_mask, Tensor) or latent_mask.dtype != torch.bool:
            raise TypeError("latent_mask must be a bool tensor of shape [n_latents]")
        if latent_mask.shape != (n,):
            raise ValueError(f"latent_mask has shape {tuple(latent_mask.shape)}, expected ({n},)")
    if isinstance(k, bool) or not isinstance(k, int):
        raise TypeError(f"k must be an int, got {type(k).__name__}")
    if not 1 <= k <= n:
        raise ValueError(f"k={k} is out of range: need 1 <= k <= n_latents={n}")
    _check_same("x", x, {"W_enc": W_enc, "b_enc": b_enc, "b_dec": b_dec, "latent_mask": latent_mask})


def _validate_decode(vals, idx, W_dec, b_dec) -> None:
    _check_float("vals", vals, 2)
    _check_float("W_dec", W_dec, 2)
    if not isinstance(idx, Tensor) or idx.dtype != torch.int64:
        raise TypeError(f"idx must be an int64 tensor, got {getattr(idx, 'dtype', type(idx).__name__)}")
    if idx.shape != vals.shape:
        raise ValueError(f"idx has shape {tuple(idx.shape)} but vals has {tuple(vals.shape)}")
    n, d = W_dec.shape
    if b_dec is not None:
        _check_float("b_dec", b_dec, 1)
        if b_dec.shape[0] != d:
            raise ValueError(f"b_dec has shape {tuple(b_dec.shape)}, expected ({d},)")
    _check_same("vals", vals, {"idx": idx, "W_dec": W_dec, "b_dec": b_dec})
    # a value check needs the data: only where it is free (CPU, eager)
    if idx.device.type == "cpu" and idx.numel() and not torch.compiler.is_compiling():
        lo, hi = int(idx.min()), int(idx.max())
        if lo < 0 or hi >= n:
            raise ValueError(f"idx holds latent {lo if lo < 0 else hi}, outside 0..{n - 1} (W_dec has {n} rows)")


# --------------------------------------------------------------------------- topk_encode


@torch.library.custom_op("genesae_fast::topk_encode", mutates_args=())
def _topk_encode_op(
    x: Tensor, W_enc: Tensor, b_enc: Tensor, k: int, b_dec: Optional[Tensor], latent_mask: Optional[Tensor],
    deterministic: bool,
) -> tuple[Tensor, Tensor]:
    return _encoder(x, k)(x, W_enc, b_enc, k, b_dec, latent_mask)


@_topk_encode_op.register_fake
def _(x, W_enc, b_enc, k, b_dec, latent_mask, deterministic):
    return x.new_empty(x.shape[0], k), x.new_empty(x.shape[0], k, dtype=torch.int64)


@torch.library.custom_op("genesae_fast::topk_encode_backward", mutates_args=())
def _topk_encode_backward_op(
    grad_vals: Tensor, x: Tensor, W_enc: Tensor, b_dec: Optional[Tensor], vals: Tensor, idx: Tensor,
    *, need_x: bool, need_W: bool, need_b: bool, deterministic: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    dx, dW, db = _impl("topk_encode", x).topk_encode_backward(
        grad_vals.contiguous(), x, W_enc, b_dec, vals, idx,
        need_x=need_x, need_W=need_W, need_b=need_b, deterministic=deterministic,
    )
    return _or_empty(dx, x), _or_empty(dW, W_enc), _or_empty(db, W_enc)


@_topk_encode_backward_op.register_fake
def _(grad_vals, x, W_enc, b_dec, vals, idx, *, need_x, need_W, need_b, deterministic):
    n = W_enc.shape[0]
    return (
        x.new_empty(x.shape if need_x else (0,)),
        W_enc.new_empty(W_enc.shape if need_W else (0,)),
        W_enc.new_empty((n,) if need_b else (0,)),
    )


def _encode_setup(ctx, inputs, output):
    x, W_enc, b_enc, k, b_dec, latent_mask, deterministic = inputs
    vals, idx = output
    ctx.save_for_backward(x, W_enc, b_dec, vals, idx)
    ctx.deterministic = deterministic
    ctx.has_b_dec = b_dec is not None
    ctx.mark_non_differentiable(idx)


def _encode_backward(ctx, grad_vals, grad_idx):
    x, W_enc, b_dec, vals, idx = ctx.saved_tensors
    need_x, need_W, need_b, _, need_bdec = ctx.needs_input_grad[:5]
    need_bdec = need_bdec and ctx.has_b_dec
    dx, dW, db = _topk_encode_backward_op(
        grad_vals, x, W_enc, b_dec, vals, idx,
        need_x=need_x or need_bdec, need_W=need_W, need_b=need_b, deterministic=ctx.deterministic,
    )
    # pre depends on x - b_dec, so b_dec's gradient is minus the batch sum of dx
    d_bdec = -dx.sum(0) if need_bdec else None
    return (dx if need_x else None, dW if need_W else None, db if need_b else None, None, d_bdec, None, None)


_topk_encode_op.register_autograd(_encode_backward, setup_context=_encode_setup)


def topk_encode(
    x: Tensor,
    W_enc: Tensor,
    b_enc: Tensor,
    k: int,
    b_dec: Optional[Tensor] = None,
    latent_mask: Optional[Tensor] = None,
    *,
    deterministic: Optional[bool] = None,
) -> tuple[Tensor, Tensor]:
    """TopK encoder: the k largest of ``(x - b_dec) @ W_enc.T + b_enc`` per row, through relu.

    Parameters
    ----------
    x : Tensor [B, d]
    W_enc : Tensor [n, d], one row per latent
    b_enc : Tensor [n]
    k : int, 1 <= k <= n
    b_dec : Tensor [d] or None (0)
    latent_mask : bool Tensor [n] or None; latents where it is False are never chosen
        (AuxK over dead latents). Rows with fewer than k allowed latents get value 0 in
        the extra slots.
    deterministic : bool or None
        Backward without atomics; None follows ``torch.are_deterministic_algorithms_enabled()``
        or ``GENESAE_DETERMINISTIC=1``.

    Returns
    -------
    vals : Tensor [B, k], x.dtype, >= 0
    idx : Tensor [B, k], int64; the order of the k pairs is unspecified.

    Differentiable in x, W_enc, b_enc and b_dec, through the kept entries only.
    """
    _validate_encode(x, W_enc, b_enc, k, b_dec, latent_mask)
    return _topk_encode_op(x, W_enc, b_enc, k, b_dec, latent_mask, _deterministic(deterministic))


# --------------------------------------------------------------------------- sparse_decode


@torch.library.custom_op("genesae_fast::sparse_decode", mutates_args=())
def _sparse_decode_op(vals: Tensor, idx: Tensor, W_dec: Tensor, b_dec: Optional[Tensor], deterministic: bool) -> Tensor:
    return _impl("sparse_decode", vals).sparse_decode(vals, idx, W_dec, b_dec)


@_sparse_decode_op.register_fake
def _(vals, idx, W_dec, b_dec, deterministic):
    return W_dec.new_empty(vals.shape[0], W_dec.shape[1])


@torch.library.custom_op("genesae_fast::sparse_decode_backward", mutates_args=())
def _sparse_decode_backward_op(
    grad: Tensor, vals: Tensor, idx: Tensor, W_dec: Tensor, *, need_vals: bool, need_W: bool, deterministic: bool
) -> tuple[Tensor, Tensor]:
    dvals, dW = _impl("sparse_decode", vals).sparse_decode_backward(
        grad.contiguous(), vals, idx, W_dec, need_vals=need_vals, need_W=need_W, deterministic=deterministic
    )
    return _or_empty(dvals, vals), _or_empty(dW, W_dec)


@_sparse_decode_backward_op.register_fake
def _(grad, vals, idx, W_dec, *, need_vals, need_W, deterministic):
    return vals.new_empty(vals.shape if need_vals else (0,)), W_dec.new_empty(W_dec.shape if need_W else (0,))


def _decode_setup(ctx, inputs, output):
    vals, idx, W_dec, b_dec, deterministic = inputs
    ctx.save_for_backward(vals, idx, W_dec)
    ctx.deterministic = deterministic
    ctx.has_b_dec = b_dec is not None


def _decode_backward(ctx, grad):
    vals, idx, W_dec = ctx.saved_tensors
    need_vals, _, need_W, need_bdec = ctx.needs_input_grad[:4]
    dvals, dW = _sparse_decode_backward_op(
        grad, vals, idx, W_dec, need_vals=need_vals, need_W=need_W, deterministic=ctx.deterministic
    )
    d_bdec = grad.sum(0) if (need_bdec and ctx.has_b_dec) else None
    return dvals if need_vals else None, None, dW if need_W else None, d_bdec, None


_sparse_decode_op.register_autograd(_decode_backward, setup_context=_decode_setup)


def sparse_decode(
    vals: Tensor,
    idx: Tensor,
    W_dec: Tensor,
    b_dec: Optional[Tensor] = None,
    *,
    deterministic: Optional[bool] = None,
) -> Tensor:
    """Sparse decoder: ``x_hat = sum_j vals[:, j] * W_dec[idx[:, j]] + b_dec``, O(B k d).

    Parameters
    ----------
    vals : Tensor [B, k]
    idx : Tensor [B, k], int64, each in 0..n-1
    W_dec : Tensor [n, d], one row per latent
    b_dec : Tensor [d] or None (0)
    deterministic : bool or None, as in :func:`topk_encode`

    Returns
    -------
    x_hat : Tensor [B, d], W_dec.dtype. Differentiable in vals, W_dec and b_dec.
    """
    _validate_decode(vals, idx, W_dec, b_dec)
    return _sparse_decode_op(vals, idx, W_dec, b_dec, _deterministic(deterministic))
