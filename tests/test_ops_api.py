"""genesae_fast.ops: input validation, backend choice, import laziness, opcheck, compile."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from genesae_fast import ops  # TRITON_INTERPRET is set by conftest.py


def inputs(B=4, d=6, n=16, dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    return (torch.randn(B, d, generator=g, dtype=dtype), torch.randn(n, d, generator=g, dtype=dtype),
            torch.randn(n, generator=g, dtype=dtype), torch.randn(d, generator=g, dtype=dtype))


# ------------------------------------------------------------------ validation


@pytest.mark.parametrize(
    ("mutate", "error", "message"),
    [
        (lambda a: {**a, "x": a["x"][:, :5]}, ValueError, "x has 5 features"),
        (lambda a: {**a, "x": a["x"][0]}, ValueError, "x must be 2-D"),
        (lambda a: {**a, "b_enc": a["b_enc"][:3]}, ValueError, "b_enc has shape"),
        (lambda a: {**a, "b_dec": a["b_dec"][:3]}, ValueError, "b_dec has shape"),
        (lambda a: {**a, "k": 17}, ValueError, "k=17 is out of range"),
        (lambda a: {**a, "k": 0}, ValueError, "k=0 is out of range"),
        (lambda a: {**a, "k": 2.0}, TypeError, "k must be an int"),
        (lambda a: {**a, "W_enc": a["W_enc"].double()}, TypeError, "W_enc has dtype torch.float64"),
        (lambda a: {**a, "x": a["x"].int()}, TypeError, "x must be a floating tensor"),
        (lambda a: {**a, "latent_mask": torch.ones(16)}, TypeError, "latent_mask must be a bool"),
        (lambda a: {**a, "latent_mask": torch.ones(15, dtype=torch.bool)}, ValueError, "latent_mask has shape"),
        (lambda a: {**a, "W_enc": a["W_enc"].to("meta")}, ValueError, "W_enc is on meta"),
    ],
)
def test_encode_rejects_bad_input(mutate, error, message):
    x, W, b, bd = inputs()
    args = mutate({"x": x, "W_enc": W, "b_enc": b, "k": 4, "b_dec": bd, "latent_mask": None})
    with pytest.raises(error, match=message):
        ops.topk_encode(**args)


@pytest.mark.parametrize(
    ("mutate", "error", "message"),
    [
        (lambda a: {**a, "idx": a["idx"].int()}, TypeError, "idx must be an int64"),
        (lambda a: {**a, "idx": a["idx"][:, :2]}, ValueError, "idx has shape"),
        (lambda a: {**a, "idx": a["idx"] + 100}, ValueError, "outside 0..15"),
        (lambda a: {**a, "idx": a["idx"] - 100}, ValueError, "outside 0..15"),
        (lambda a: {**a, "W_dec": a["W_dec"].half()}, TypeError, "W_dec has dtype"),
        (lambda a: {**a, "b_dec": a["b_dec"][:2]}, ValueError, "b_dec has shape"),
    ],
)
def test_decode_rejects_bad_input(mutate, error, message):
    x, W, b, bd = inputs()
    vals, idx = ops.topk_encode(x, W, b, 3, bd)
    args = mutate({"vals": vals, "idx": idx, "W_dec": W, "b_dec": bd})
    with pytest.raises(error, match=message):
        ops.sparse_decode(**args)


# ------------------------------------------------------------------ dispatch


def test_backend_choice_is_per_call(monkeypatch):
    t = torch.zeros(1)
    monkeypatch.setenv("GENESAE_KERNELS", "auto")
    assert ops.backend_for(t) == "torch"  # CPU tensors: torch path
    monkeypatch.setenv("GENESAE_KERNELS", "triton")
    assert ops.backend_for(t) == "triton"  # allowed on CPU under the interpreter
    monkeypatch.delenv("TRITON_INTERPRET")
    with pytest.raises(RuntimeError, match="needs CUDA tensors"):
        ops.backend_for(t)
    monkeypatch.setenv("GENESAE_KERNELS", "cuda")
    with pytest.raises(ValueError, match="GENESAE_KERNELS='cuda'"):
        ops.backend_for(t)


def test_import_is_lazy():
    """Importing ops, and running the torch path, loads none of the Triton kernel modules."""
    code = (
        "import sys, torch\n"
        "from genesae_fast import ops\n"
        "assert 'triton' not in sys.modules, 'ops imported triton'\n"
        "x = torch.randn(3, 4); W = torch.randn(8, 4)\n"
        "v, i = ops.topk_encode(x, W, torch.zeros(8), 2)\n"
        "ops.sparse_decode(v, i, W)\n"
        "bad = [m for m in ('genesae_fast.kernels.topk_encode', 'genesae_fast.kernels.sparse_rows') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "GENESAE_KERNELS"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


# ------------------------------------------------------------------ torch.library


def test_opcheck(backend, monkeypatch):
    monkeypatch.setenv("GENESAE_KERNELS", backend)
    x, W, b, bd = [t.requires_grad_() for t in inputs(B=5, d=6, n=32)]
    mask = torch.arange(32) % 3 != 0
    torch.library.opcheck(torch.ops.genesae_fast.topk_encode.default, (x, W, b, 4, bd, mask, False))
    torch.library.opcheck(torch.ops.genesae_fast.topk_encode.default, (x, W, b, 4, None, None, True))
    vals, idx = ops.topk_encode(x.detach(), W.detach(), b.detach(), 4, bd.detach())
    Wd = W.detach().clone().requires_grad_()
    torch.library.opcheck(torch.ops.genesae_fast.sparse_decode.default, (vals.requires_grad_(), idx, Wd, bd, False))
    torch.library.opcheck(torch.ops.genesae_fast.sparse_decode.default, (vals, idx, Wd, None, True))


def test_compile_fullgraph(monkeypatch):
    """A small module on both ops compiles with fullgraph=True and matches eager, grads too."""
    monkeypatch.setenv("GENESAE_KERNELS", "torch")
    from genesae_fast.sae import TopKSAE

    torch.manual_seed(0)
    sae = TopKSAE(8, 32, 4)
    x = torch.randn(6, 8)

    def loss_fn(m, x):
        out = m(x)
        return (out.x_hat - x).pow(2).sum()

    compiled = torch.compile(loss_fn, fullgraph=True, backend="aot_eager")
    eager_loss = loss_fn(sae, x)
    eager_loss.backward()
    eager_grads = [p.grad.clone() for p in sae.parameters()]
    sae.zero_grad()
    comp_loss = compiled(sae, x)
    comp_loss.backward()
    torch.testing.assert_close(comp_loss, eager_loss)
    for p, g in zip(sae.parameters(), eager_grads, strict=True):
        torch.testing.assert_close(p.grad, g)


def test_kernels_never_import_genesae_fast():
    """kernels/ is installed as genesae_fast.kernels but must stay vendorable on its own."""
    import ast
    import pathlib

    import genesae_fast.kernels as kernels_pkg

    for path in pathlib.Path(kernels_pkg.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            assert not any(n.split(".")[0] == "genesae_fast" for n in names), f"{path.name} imports {names}"
