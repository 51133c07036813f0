"""genesae_fast.ops.topk_encode against float64 references, on the torch and Triton paths.

The definition is ``genesae_fast.kernels.reference.topk_encode_reference``; the truth is
that reference run in float64.

Tolerance rule (flash-attention's): the op's distance from the float64 truth may be at
most twice the distance of the plain-torch reference computed in the same dtype, plus a
small atol. The Triton path runs under TRITON_INTERPRET=1 on a smaller grid that still
hits every edge case (B=0, k=1, k=n, odd d, ties, a latent mask, each dtype).
"""
from __future__ import annotations

import pytest
import torch

from genesae_fast import ops  # TRITON_INTERPRET is set by conftest.py
from genesae_fast.kernels.reference import topk_encode_reference

DTYPES = [torch.float32, torch.bfloat16, torch.float16]
ATOL = {torch.float32: 1e-5, torch.bfloat16: 2e-2, torch.float16: 2e-3, torch.float64: 1e-10}


def use(monkeypatch, name):
    monkeypatch.setenv("GENESAE_KERNELS", name)


def make_inputs(B, d, n, dtype, seed=0, integer=False):
    g = torch.Generator().manual_seed(seed)
    if integer:
        # small integers: every product and sum is exact, so equal pre-activations tie exactly
        def r(*s):
            return torch.randint(-2, 3, s, generator=g).to(torch.float64)
    else:
        def r(*s):
            return torch.randn(*s, generator=g, dtype=torch.float64)
    x, W, b, bd = r(B, d), r(n, d) / (1 if integer else d**0.5), r(n) * 0.5, r(d) * 0.1
    return [t.to(dtype) for t in (x, W, b, bd)]


def pre64(x, W, b, bd):
    return (x.double() - bd.double()) @ W.double().T + b.double()


def assert_close_to_truth(out, truth, ref_lowp, atol, what):
    """|out - truth| <= 2 |ref_lowp - truth| + atol, elementwise maximum over the tensor."""
    if truth.numel() == 0:
        assert out.shape == truth.shape
        return
    err = (out.double() - truth).abs().max().item()
    base = (ref_lowp.double() - truth).abs().max().item()
    scale = truth.abs().max().item() + 1.0
    assert err <= 2 * base + atol * scale, f"{what}: error {err:.3g} vs reference-in-dtype {base:.3g}"


def check_valid_topk(vals, idx, pre, k, tol, mask=None):
    """idx is a valid top-k choice of pre (any tie order) and vals = relu(pre[idx])."""
    B, n = pre.shape
    assert vals.shape == (B, k) and idx.shape == (B, k) and idx.dtype == torch.int64
    if B == 0:
        return
    assert (idx >= 0).all() and (idx < n).all()
    allowed = torch.ones(n, dtype=torch.bool) if mask is None else mask
    n_allowed = int(allowed.sum())
    chosen = torch.zeros(B, n, dtype=torch.bool)
    chosen.scatter_(1, idx, True)
    if n_allowed >= k:
        assert (chosen.sum(1) == k).all(), "duplicate latents in a row"
        assert allowed[idx].all(), "a masked latent was chosen"
        sel = pre.gather(1, idx)
        assert ((vals.double() - sel.clamp_min(0)).abs() <= tol * (sel.abs() + 1)).all()
        rest = pre.masked_fill(chosen | ~allowed, float("-inf")).max(1).values
        assert (rest <= sel.min(1).values + tol * (pre.abs().max() + 1)).all(), "a larger latent was left out"
    else:
        # fewer allowed latents than k: every allowed one is chosen, extras are zero
        assert chosen[:, allowed].all()
        assert (vals[~allowed[idx]] == 0).all()


def run_case(B, d, n, k, dtype, seed=0, integer=False, mask=None):
    x, W, b, bd = make_inputs(B, d, n, dtype, seed, integer)
    vals, idx = ops.topk_encode(x, W, b, k, bd, latent_mask=mask)
    assert vals.dtype == dtype
    p = pre64(x, W, b, bd)
    k_eff = min(k, n if mask is None else int(mask.sum()))
    # values: the sorted kept values against the float64 truth, tie-proof
    truth = topk_encode_reference(*(t.double() for t in (x, W, b)), k, bd.double(), mask)[0]
    ref_lowp = topk_encode_reference(x, W, b, k, bd, mask)[0]
    srt = lambda t: t.double().sort(1, descending=True).values  # noqa: E731
    assert_close_to_truth(srt(vals), srt(truth), srt(ref_lowp), ATOL[dtype], "vals")
    if dtype == torch.float32 or integer:
        check_valid_topk(vals, idx, p, k, 1e-5, mask)
    # any dtype: each row names k_eff distinct allowed latents (no duplicates, none masked)
    if B:
        chosen = torch.zeros(B, n, dtype=torch.bool).scatter_(1, idx, True)
        allowed = torch.ones(n, dtype=torch.bool) if mask is None else mask
        assert ((chosen & allowed).sum(1) == k_eff).all()
    return x, W, b, bd, vals, idx


GRID = [(B, d, n, k) for B in (0, 1, 7, 300) for d in (13,) for n in (64, 257, 1024) for k in (1, 8, n)]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(("B", "d", "n", "k"), GRID)
def test_encode_torch_grid(B, d, n, k, dtype, monkeypatch):
    use(monkeypatch, "torch")
    run_case(B, d, n, k, dtype)


# Triton (interpreter): each row is one edge case; the interpreter is slow, so shapes are small.
TRITON_CASES = [
    (0, 13, 64, 8, torch.float32),
    (1, 13, 64, 1, torch.float32),
    (7, 13, 257, 8, torch.bfloat16),
    (7, 13, 64, 64, torch.float16),  # k = n
    (70, 33, 64, 5, torch.float32),  # two row blocks, k not a power of two
    (3, 70, 130, 16, torch.float16),  # d over one block, n not a tile multiple
    (5, 13, 300, 64, torch.float32),  # the largest k of the fused kernel, several splits
    (5, 13, 150, 100, torch.bfloat16),  # k > FUSED_MAX_K: the chunked GEMM + top-k path
    (3, 13, 130, 130, torch.float32),  # k = n on the chunked path
]


@pytest.mark.parametrize(("B", "d", "n", "k", "dtype"), TRITON_CASES)
def test_encode_triton_cases(B, d, n, k, dtype, monkeypatch):
    use(monkeypatch, "triton")
    run_case(B, d, n, k, dtype)


def test_encode_ties(backend):
    # integer data: many exactly equal pre-activations; any valid choice among ties passes
    x, W, b, bd, vals, idx = run_case(9, 6, 64, 8, torch.float32, seed=3, integer=True)
    p = pre64(x, W, b, bd)
    assert (p.unsqueeze(2) == p.unsqueeze(1)).sum() > p.numel(), "the test data must contain ties"


def test_encode_mask(backend):
    g = torch.Generator().manual_seed(1)
    mask = torch.rand(64, generator=g) < 0.3
    run_case(7, 13, 64, 8, torch.float32, seed=2, mask=mask)


def test_encode_mask_fewer_than_k(backend):
    mask = torch.zeros(64, dtype=torch.bool)
    mask[[3, 10, 40]] = True
    x, W, b, bd, vals, idx = run_case(5, 13, 64, 8, torch.float32, mask=mask)
    # the three allowed latents carry the values; the other five slots are zero
    assert ((vals > 0).sum(1) <= 3).all()


def test_encode_matches_across_backends(monkeypatch):
    """Same latent sets from both paths on data without near-ties."""
    x, W, b, bd = make_inputs(20, 16, 128, torch.float32, seed=5)
    use(monkeypatch, "torch")
    v1, i1 = ops.topk_encode(x, W, b, 8, bd)
    use(monkeypatch, "triton")
    v2, i2 = ops.topk_encode(x, W, b, 8, bd)
    assert torch.equal(i1.sort(1).values, i2.sort(1).values)
    torch.testing.assert_close(v1.sort(1).values, v2.sort(1).values)


# ------------------------------------------------------------------ gradients


def grads_gathered(x, W, b, bd, idx, gate, grad_out, dtype):
    """Gradients of sum(grad_out * gate * pre[idx]) computed directly from the gathered rows."""
    leaves = [t.detach().to(dtype).requires_grad_() for t in (x, W, b, bd)]
    xx, WW, bb, bdd = leaves
    sel = ((xx - bdd).unsqueeze(1) * WW[idx]).sum(-1) + bb[idx]
    (sel * gate.to(dtype) * grad_out.to(dtype)).sum().backward()
    return [t.grad for t in leaves]


def check_encode_grads(B, d, n, k, dtype, deterministic=False, seed=0):
    x, W, b, bd = make_inputs(B, d, n, dtype, seed)
    leaves = [t.clone().requires_grad_() for t in (x, W, b, bd)]
    vals, idx = ops.topk_encode(*leaves[:3], k, leaves[3], deterministic=deterministic)
    grad_out = torch.randn(B, k, generator=torch.Generator().manual_seed(seed + 1)).to(dtype)
    vals.backward(grad_out)
    gate = vals.detach() > 0
    truth = grads_gathered(x, W, b, bd, idx, gate, grad_out, torch.float64)
    lowp = grads_gathered(x, W, b, bd, idx, gate, grad_out, dtype)
    for name, leaf, t, lo in zip(("x", "W_enc", "b_enc", "b_dec"), leaves, truth, lowp, strict=True):
        assert leaf.grad is not None and leaf.grad.dtype == dtype, name
        assert_close_to_truth(leaf.grad, t, lo, ATOL[dtype], f"d{name}")


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(("B", "n", "k"), [(0, 64, 8), (1, 64, 1), (7, 257, 8), (300, 64, 64), (300, 1024, 8)])
def test_encode_grads_torch(B, n, k, dtype, monkeypatch):
    use(monkeypatch, "torch")
    check_encode_grads(B, 13, n, k, dtype)


@pytest.mark.parametrize(
    ("B", "n", "k", "dtype", "det"),
    [
        (0, 64, 8, torch.float32, False),
        (7, 64, 1, torch.float32, True),
        (7, 64, 64, torch.bfloat16, False),
        (40, 130, 8, torch.float16, True),
    ],
)
def test_encode_grads_triton(B, n, k, dtype, det, monkeypatch):
    use(monkeypatch, "triton")
    check_encode_grads(B, 13, n, k, dtype, deterministic=det)


def test_encode_gradcheck_float64(monkeypatch):
    use(monkeypatch, "torch")
    x, W, b, bd = [t.requires_grad_() for t in make_inputs(3, 5, 16, torch.float64, seed=4)]
    fn = lambda x, W, b, bd: ops.topk_encode(x, W, b, 4, bd)[0]  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, W, b, bd))


def test_encode_deterministic_is_bitwise_repeatable(backend):
    x, W, b, bd = make_inputs(40, 13, 64, torch.float32, seed=6)
    grads = []
    for _ in range(2):
        Wl = W.clone().requires_grad_()
        v, _ = ops.topk_encode(x, Wl, b, 8, bd, deterministic=True)
        v.sum().backward()
        grads.append(Wl.grad)
    assert torch.equal(grads[0], grads[1])


# ------------------------------------------------------------------ the fused kernel's plans


def tie_broken_topk(pre, k):
    """The fused kernel's total order: larger value first, then larger latent (exact data)."""
    n = pre.shape[1]
    rank = pre * (2 * n) + torch.arange(n, dtype=pre.dtype)  # exact for small integers
    return torch.topk(rank, k, dim=1).indices


@pytest.mark.parametrize(("B", "d", "n", "k", "dtype"), [(7, 13, 257, 8, torch.float32), (9, 6, 200, 16, torch.bfloat16), (2, 5, 64, 1, torch.float32)])
def test_split_count_does_not_change_the_result(B, d, n, k, dtype):
    """Any latent split (1 up to one per tile) gives bit-identical vals and the same idx."""
    from genesae_fast.kernels import topk_encode as te

    x, W, b, _ = make_inputs(B, d, n, dtype, seed=8, integer=True)  # no b_dec: every sum exact
    outs = [te.topk_encode(x, W, b, k, splits=s) for s in (1, 2, 3, 64)]
    by_latent = lambda v, i: (i.sort(1).values, v.gather(1, i.argsort(1)))  # noqa: E731
    for v, i in outs[1:]:
        for got, want in zip(by_latent(v, i), by_latent(*outs[0]), strict=True):
            assert torch.equal(got, want)
    # ties (integer data) are broken by the larger latent: the same set as the total order
    want = tie_broken_topk(x.double() @ W.double().T + b.double(), k)
    assert torch.equal(outs[0][1].sort(1).values, want.sort(1).values)


def test_path_is_chosen_per_call_by_k(monkeypatch):
    """k <= FUSED_MAX_K runs the fused kernels; larger k the chunked GEMM + top-k."""
    from genesae_fast.kernels import launch
    from genesae_fast.kernels import topk_encode as te

    use(monkeypatch, "triton")
    x = torch.zeros(2, 4)
    assert ops._encoder(x, launch.FUSED_MAX_K) is te.topk_encode
    assert ops._encoder(x, launch.FUSED_MAX_K + 1) is not te.topk_encode
    use(monkeypatch, "torch")
    assert ops._encoder(x, 1).__module__.endswith("torch_path")


def test_large_k_grads_triton(monkeypatch):
    use(monkeypatch, "triton")
    check_encode_grads(6, 13, 160, 80, torch.float32)
