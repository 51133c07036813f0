"""``ops.sparse_decode`` forward + backward against the dense decoder and sparsify's.

Providers, all on the same codes, dtype and device:

* ``genesae``: ``genesae_fast.ops.sparse_decode`` (Triton row kernels on CUDA, the
  ``embedding_bag`` torch path on CPU).
* ``dense``: ``kernels/reference.py``'s definition: codes scattered into ``[B, n]``, then
  ``codes @ W_dec``.
* ``dense-compiled``: the same through ``torch.compile``.
* ``sparsify``: EleutherAI sparsify's decoder (``sparsify.utils.decoder_impl``: its
  Triton kernel on CUDA, ``embedding_bag`` otherwise), when ``eai-sparsify`` is installed.

Run as pytest-benchmark (times only)::

    pytest benchmarks/bench_sparse_decode.py --benchmark-only --benchmark-group-by=param:mode

or as a script (providers take turns each round; median; peak memory on CUDA)::

    python benchmarks/bench_sparse_decode.py [--device cuda] [--dtype bf16] [--n 32768] [--k 32 384]

Defaults as in bench_topk_encode.py (CUDA: B=4096, d=768, n=32768, k=32, bf16).
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import types

import torch

from genesae_fast import ops
from genesae_fast.kernels.reference import sparse_decode_reference

PROVIDERS = ("genesae", "dense", "dense-compiled", "sparsify")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def defaults(device: str) -> dict:
    """Problem size per device: the issue's GPU shape, or a CPU-sized one."""
    if device == "cuda":
        return dict(B=4096, d=768, n=32768, k=32, dtype="bf16")
    return dict(B=1024, d=256, n=16384, k=32, dtype="fp32")


def sparsify_decoder():
    """``decoder_impl(idx, vals, W_dec.mT)`` from sparsify.utils, without its package ``__init__``."""
    spec = importlib.util.find_spec("sparsify")
    if spec is None:
        raise ImportError("eai-sparsify is not installed")
    if not torch.cuda.is_available():
        os.environ.setdefault("SPARSIFY_DISABLE_TRITON", "1")  # its Triton decoder needs CUDA
    if "sparsify" not in sys.modules:
        pkg = types.ModuleType("sparsify")
        pkg.__path__ = list(spec.submodule_search_locations)
        sys.modules["sparsify"] = pkg
    import sparsify.utils as utils

    return utils.decoder_impl


def make_codes(B, d, n, k, dtype, device, seed=0):
    """vals [B, k] >= 0, random latents idx [B, k], W_dec [n, d], b_dec [d]."""
    g = torch.Generator().manual_seed(seed)
    vals = torch.rand(B, k, generator=g)
    idx = torch.randint(0, n, (B, k), generator=g)  # repeats are rare and allowed
    W = torch.randn(n, d, generator=g) / d**0.5
    bd = torch.randn(d, generator=g) * 0.1
    vals, W, bd = [t.to(device=device, dtype=dtype).requires_grad_() for t in (vals, W, bd)]
    return vals, idx.to(device), W, bd


def decode_fn(provider: str):
    """``f(vals, idx, W_dec, b_dec) -> x_hat`` for a provider."""
    if provider == "genesae":
        return ops.sparse_decode
    if provider == "dense":
        return sparse_decode_reference
    if provider == "dense-compiled":
        return torch.compile(sparse_decode_reference, dynamic=False)
    if provider == "sparsify":
        impl = sparsify_decoder()
        return lambda vals, idx, W, bd: impl(idx, vals, W.mT) + bd
    raise ValueError(provider)


def make_call(provider: str, B, d, n, k, dtype, device):
    """A zero-argument callable running one forward + backward of the decoder."""
    vals, idx, W, bd = make_codes(B, d, n, k, dtype, device)
    fn = decode_fn(provider)
    grad = torch.randn(B, d, device=device, dtype=dtype)

    def call():
        out = fn(vals, idx, W, bd)
        out.backward(grad)
        return out

    return call


try:
    import pytest

    @pytest.mark.parametrize("provider", PROVIDERS)
    def test_sparse_decode(benchmark, provider):
        if provider == "sparsify" and importlib.util.find_spec("sparsify") is None:
            pytest.skip("eai-sparsify is not installed (the bench extra)")
        dev = "cuda" if torch.cuda.is_available() else "cpu"
        cfg = defaults(dev)
        call = make_call(provider, cfg["B"], cfg["d"], cfg["n"], cfg["k"], DTYPES[cfg["dtype"]], dev)
        out = benchmark.pedantic(call, rounds=3, warmup_rounds=1, iterations=1)
        assert torch.isfinite(out).all()
except ImportError:  # running as a script without pytest
    pass


def main(argv=None) -> None:
    from bench_sae_step import time_providers

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", choices=sorted(DTYPES))
    ap.add_argument("--n", type=int, nargs="+")
    ap.add_argument("--k", type=int, nargs="+")
    ap.add_argument("--providers", nargs="+", default=None, choices=PROVIDERS)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args(argv)
    cfg = defaults(args.device)
    dtype = DTYPES[args.dtype or cfg["dtype"]]
    providers = args.providers or [p for p in PROVIDERS if p != "sparsify" or importlib.util.find_spec("sparsify")]
    print(f"torch {torch.__version__}, device {args.device}, B={cfg['B']} d={cfg['d']} {dtype}, forward + backward")
    for n in args.n or [cfg["n"]]:
        for k in args.k or [cfg["k"]]:
            calls = {p: make_call(p, cfg["B"], cfg["d"], n, k, dtype, args.device) for p in providers}
            time_providers(calls, args.rounds, args.device, f"sparse_decode fwd+bwd n={n} k={k}")


if __name__ == "__main__":
    main()
