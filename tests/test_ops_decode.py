"""genesae_fast.ops.sparse_decode against float64 references, on the torch and Triton paths.

Same tolerance rule as test_ops_encode: the op may be at most twice as far from the
float64 truth as the plain-torch reference in the same dtype, plus a small atol.
"""
from __future__ import annotations

import pytest
import torch

from genesae_fast import ops  # TRITON_INTERPRET is set by conftest.py
from genesae_fast.kernels.reference import sparse_decode_reference

DTYPES = [torch.float32, torch.bfloat16, torch.float16]
ATOL = {torch.float32: 1e-5, torch.bfloat16: 2e-2, torch.float16: 2e-3}


def use(monkeypatch, name):
    monkeypatch.setenv("GENESAE_KERNELS", name)


def make_codes(B, d, n, k, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    vals = torch.rand(B, k, generator=g, dtype=torch.float64) * 3
    # distinct latents per row, like a top-k (the op accepts repeats as well)
    idx = torch.rand(B, n, generator=g).argsort(1)[:, :k].contiguous()
    W = torch.randn(n, d, generator=g, dtype=torch.float64) / d**0.5
    bd = torch.randn(d, generator=g, dtype=torch.float64) * 0.1
    return vals.to(dtype), idx, W.to(dtype), bd.to(dtype)


def assert_close_to_truth(out, truth, ref_lowp, atol, what):
    if truth.numel() == 0:
        assert out.shape == truth.shape
        return
    err = (out.double() - truth).abs().max().item()
    base = (ref_lowp.double() - truth).abs().max().item()
    scale = truth.abs().max().item() + 1.0
    assert err <= 2 * base + atol * scale, f"{what}: error {err:.3g} vs reference-in-dtype {base:.3g}"


def reference_all(vals, idx, W, bd, grad, dtype):
    leaves = [t.detach().to(dtype).requires_grad_() for t in (vals, W, bd)]
    out = sparse_decode_reference(leaves[0], idx, leaves[1], leaves[2])
    out.backward(grad.to(dtype))
    return [out.detach()] + [t.grad for t in leaves]


def check_decode(B, d, n, k, dtype, deterministic=False, seed=0, repeats=False):
    vals, idx, W, bd = make_codes(B, d, n, k, dtype, seed)
    if repeats and B:
        idx[:, -1] = idx[:, 0]  # the same latent twice in a row: contributions add up
    leaves = [t.clone().requires_grad_() for t in (vals, W, bd)]
    out = ops.sparse_decode(leaves[0], idx, leaves[1], leaves[2], deterministic=deterministic)
    assert out.shape == (B, d) and out.dtype == dtype
    grad = torch.randn(B, d, generator=torch.Generator().manual_seed(seed + 1)).to(dtype)
    out.backward(grad)
    truth = reference_all(vals, idx, W, bd, grad, torch.float64)
    lowp = reference_all(vals, idx, W, bd, grad, dtype)
    got = [out.detach()] + [t.grad for t in leaves]
    for name, g, t, lo in zip(("x_hat", "dvals", "dW_dec", "db_dec"), got, truth, lowp, strict=True):
        assert g is not None and g.dtype == dtype, name
        assert_close_to_truth(g, t, lo, ATOL[dtype], name)


GRID = [(B, d, n, k) for B in (0, 1, 7, 300) for d in (13,) for n in (64, 257, 1024) for k in (1, 8, n)]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(("B", "d", "n", "k"), GRID)
def test_decode_torch_grid(B, d, n, k, dtype, monkeypatch):
    use(monkeypatch, "torch")
    check_decode(B, d, n, k, dtype)


TRITON_CASES = [
    (0, 13, 64, 8, torch.float32, False),
    (1, 13, 64, 1, torch.float32, True),
    (7, 13, 257, 8, torch.bfloat16, False),
    (7, 13, 64, 64, torch.float16, True),  # k = n
    (40, 150, 64, 5, torch.float32, False),  # d over one block, two row blocks
    (40, 33, 130, 8, torch.bfloat16, True),
]


@pytest.mark.parametrize(("B", "d", "n", "k", "dtype", "det"), TRITON_CASES)
def test_decode_triton_cases(B, d, n, k, dtype, det, monkeypatch):
    use(monkeypatch, "triton")
    check_decode(B, d, n, k, dtype, deterministic=det)


@pytest.mark.parametrize("det", [False, True])
def test_decode_repeated_latents(backend, det, monkeypatch):
    use(monkeypatch, backend)
    check_decode(9, 13, 64, 4, torch.float32, deterministic=det, repeats=True)


def test_decode_deterministic_is_bitwise_repeatable(backend, monkeypatch):
    use(monkeypatch, backend)
    vals, idx, W, bd = make_codes(40, 13, 32, 8, torch.float32, seed=7)
    grads = []
    for _ in range(2):
        Wl = W.clone().requires_grad_()
        ops.sparse_decode(vals, idx, Wl, bd, deterministic=True).sum().backward()
        grads.append(Wl.grad)
    assert torch.equal(grads[0], grads[1])


def test_decode_without_bias(monkeypatch):
    use(monkeypatch, "torch")
    vals, idx, W, bd = make_codes(4, 6, 16, 3, torch.float32)
    torch.testing.assert_close(ops.sparse_decode(vals, idx, W), sparse_decode_reference(vals, idx, W))


def test_decode_gradcheck_float64(monkeypatch):
    use(monkeypatch, "torch")
    vals, idx, W, bd = make_codes(3, 5, 16, 4, torch.float64, seed=2)
    leaves = [t.requires_grad_() for t in (vals, W, bd)]
    fn = lambda v, W, bd: ops.sparse_decode(v, idx, W, bd)  # noqa: E731
    assert torch.autograd.gradcheck(fn, tuple(leaves))
