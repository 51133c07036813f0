"""``ops.topk_encode`` (forward, and forward + backward) against the dense alternative.

Providers, all on the same data, dtype and device:

* ``genesae``: ``genesae_fast.ops.topk_encode`` (on CUDA the fused Triton kernels, or the
  chunked GEMM + top-k for k > 64; on CPU the torch path).
* ``dense``: ``kernels/reference.py``'s definition: the ``[B, n]`` GEMM (cuBLAS on CUDA)
  then ``torch.topk`` and relu.
* ``dense-compiled``: the same function through ``torch.compile``.

Run as pytest-benchmark (times only)::

    pytest benchmarks/bench_topk_encode.py --benchmark-only --benchmark-group-by=param:mode

or as a script (providers take turns each round; median; peak memory on CUDA)::

    python benchmarks/bench_topk_encode.py [--device cuda] [--dtype bf16] [--n 32768] [--mode fwd fwdbwd]

Defaults: on CUDA B=4096, d=768, n=32768, k=32, bf16; on CPU a smaller problem
(B=1024, d=256, n=16384, k=32, fp32) so the run stays short on the 2-core CI machine.
"""
from __future__ import annotations

import argparse

import torch

from genesae_fast import ops
from genesae_fast.kernels.reference import topk_encode_reference

PROVIDERS = ("genesae", "dense", "dense-compiled")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def defaults(device: str) -> dict:
    """Problem size per device: the issue's GPU shape, or a CPU-sized one."""
    if device == "cuda":
        return dict(B=4096, d=768, n=32768, k=32, dtype="bf16")
    return dict(B=1024, d=256, n=16384, k=32, dtype="fp32")


def make_inputs(B, d, n, dtype, device, seed=0):
    """x [B, d], W_enc [n, d] (unit rows), b_enc [n], b_dec [d], all requiring grad."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, d, generator=g)
    W = torch.randn(n, d, generator=g)
    W /= W.norm(dim=1, keepdim=True)
    b = torch.zeros(n)
    bd = torch.randn(d, generator=g) * 0.1
    return [t.to(device=device, dtype=dtype).requires_grad_() for t in (x, W, b, bd)]


def encode_fn(provider: str):
    """``f(x, W, b, k, bd) -> (vals, idx)`` for a provider."""
    if provider == "genesae":
        return lambda x, W, b, k, bd: ops.topk_encode(x, W, b, k, bd)
    if provider == "dense":
        return topk_encode_reference
    if provider == "dense-compiled":
        return torch.compile(topk_encode_reference, dynamic=False)
    raise ValueError(provider)


def make_call(provider: str, mode: str, B, d, n, k, dtype, device):
    """A zero-argument callable running one forward (``fwd``) or forward + backward."""
    x, W, b, bd = make_inputs(B, d, n, dtype, device)
    fn = encode_fn(provider)
    grad = torch.randn(B, k, device=device, dtype=dtype)

    def call():
        if mode == "fwd":
            with torch.no_grad():
                return fn(x, W, b, k, bd)[0]
        vals, _ = fn(x, W, b, k, bd)
        vals.backward(grad)
        return vals

    return call


def _params():
    import pytest

    return pytest.mark.parametrize("mode", ["fwd", "fwdbwd"]), pytest.mark.parametrize("provider", PROVIDERS)


try:
    _m_mark, _p_mark = _params()

    @_m_mark
    @_p_mark
    def test_topk_encode(benchmark, provider, mode):
        dev = "cuda" if torch.cuda.is_available() else "cpu"
        cfg = defaults(dev)
        call = make_call(provider, mode, cfg["B"], cfg["d"], cfg["n"], cfg["k"], DTYPES[cfg["dtype"]], dev)
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
    ap.add_argument("--mode", nargs="+", default=["fwd", "fwdbwd"], choices=["fwd", "fwdbwd"])
    ap.add_argument("--providers", nargs="+", default=list(PROVIDERS), choices=PROVIDERS)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args(argv)
    cfg = defaults(args.device)
    dtype = DTYPES[args.dtype or cfg["dtype"]]
    print(f"torch {torch.__version__}, device {args.device}, B={cfg['B']} d={cfg['d']} {dtype}")
    for n in args.n or [cfg["n"]]:
        for k in args.k or [cfg["k"]]:
            for mode in args.mode:
                calls = {p: make_call(p, mode, cfg["B"], cfg["d"], n, k, dtype, args.device) for p in args.providers}
                time_providers(calls, args.rounds, args.device, f"topk_encode {mode} n={n} k={k}")


if __name__ == "__main__":
    main()
