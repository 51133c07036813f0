"""One TopK SAE training step: genesae_fast.TopKSAE vs a naive dense SAE vs EleutherAI sparsify.

A step is: forward, FVU loss, backward, removal of the decoder-parallel gradient, Adam
step, decoder renormalisation, zero_grad. Same sizes, dtype (float32), data and optimizer
for every provider, so the ratios compare implementations only.

* ``genesae``: ``genesae_fast.TopKSAE`` (ops dispatch: on CPU the torch path).
* ``dense``: the naive implementation, ``genesae_fast.kernels.reference`` (dense ``[B, n]``
  pre-activations, dense top-k, dense decode ``codes @ W_dec``), plain autograd.
* ``sparsify``: ``sparsify.SparseCoder`` from the ``eai-sparsify`` package, its own CPU
  path (``SPARSIFY_DISABLE_TRITON=1``: its Triton decoder needs CUDA).

Run as pytest-benchmark (times only)::

    /work/venv/bin/pytest benchmarks/bench_sae_step.py --benchmark-only --benchmark-group-by=param:n

or as a script, which also measures peak memory (one fresh process per provider and
size, peak RSS during two steps minus RSS after setup) and prints ratios::

    /work/venv/bin/python benchmarks/bench_sae_step.py [--n 4096 16384] [--steps 5]
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import subprocess
import sys
import time
import types

os.environ.setdefault("SPARSIFY_DISABLE_TRITON", "1")

import torch  # noqa: E402

from genesae_fast.kernels.reference import sparse_decode_reference, topk_encode_reference  # noqa: E402

D, K, B = 256, 32, 4096
PROVIDERS = ("genesae", "dense", "sparsify")


# --------------------------------------------------------------------------- providers


class DenseTopKSAE(torch.nn.Module):
    """The naive reference: every pass is dense over all n latents."""

    def __init__(self, d, n, k):
        super().__init__()
        self.k = k
        W = torch.randn(n, d)
        W /= W.norm(dim=1, keepdim=True)
        self.W_dec = torch.nn.Parameter(W)
        self.W_enc = torch.nn.Parameter(W.clone())
        self.b_enc = torch.nn.Parameter(torch.zeros(n))
        self.b_dec = torch.nn.Parameter(torch.zeros(d))

    def forward(self, x):
        # the ops' definitions (kernels/reference.py): dense [B, n] pre-activations and codes
        vals, idx = topk_encode_reference(x, self.W_enc, self.b_enc, self.k, self.b_dec)
        return sparse_decode_reference(vals, idx, self.W_dec, self.b_dec)

    @torch.no_grad()
    def remove_parallel_grad_(self):
        g, W = self.W_dec.grad, self.W_dec
        g -= (g * W).sum(1, keepdim=True) * W

    @torch.no_grad()
    def set_decoder_norm_(self):
        self.W_dec /= self.W_dec.norm(dim=1, keepdim=True)


def _import_sparsify():
    """``sparsify.sparse_coder`` without the package ``__init__`` (which pulls in its trainer,
    ``datasets`` and ``schedulefree``, none of which a forward/backward needs)."""
    if "sparsify.sparse_coder" in sys.modules:
        return sys.modules["sparsify.sparse_coder"], sys.modules["sparsify.config"]
    spec = importlib.util.find_spec("sparsify")
    if spec is None:
        raise ImportError("eai-sparsify is not installed (pip install --no-deps eai-sparsify einops natsort "
                          "simple-parsing docstring-parser accelerate psutil)")
    if "sparsify" not in sys.modules:
        pkg = types.ModuleType("sparsify")
        pkg.__path__ = list(spec.submodule_search_locations)
        sys.modules["sparsify"] = pkg
    import sparsify.config as config
    import sparsify.sparse_coder as sparse_coder

    return sparse_coder, config


def fvu(x_hat, x):
    return (x_hat - x).pow(2).sum() / (x - x.mean(0)).pow(2).sum()


def make_step(provider: str, n: int, seed: int = 0):
    """A zero-argument callable doing one full training step of ``provider`` at width n."""
    torch.manual_seed(seed)
    x = torch.randn(B, D)
    if provider == "genesae":
        from genesae_fast import TopKSAE

        model = TopKSAE(D, n, K)
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)

        def step():
            loss = fvu(model(x).x_hat, x)
            loss.backward()
            model.remove_parallel_grad_()
            opt.step()
            model.set_decoder_norm_()
            opt.zero_grad(set_to_none=True)
            return loss

    elif provider == "dense":
        model = DenseTopKSAE(D, n, K)
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)

        def step():
            loss = fvu(model(x), x)
            loss.backward()
            model.remove_parallel_grad_()
            opt.step()
            model.set_decoder_norm_()
            opt.zero_grad(set_to_none=True)
            return loss

    elif provider == "sparsify":
        sparse_coder, config = _import_sparsify()
        model = sparse_coder.SparseCoder(D, config.SparseCoderConfig(num_latents=n, k=K))
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)

        def step():
            loss = model(x).fvu
            loss.backward()
            model.remove_gradient_parallel_to_decoder_directions()
            opt.step()
            model.set_decoder_norm_to_unit_norm()
            opt.zero_grad(set_to_none=True)
            return loss

    else:
        raise ValueError(provider)
    return step


# --------------------------------------------------------------------------- pytest-benchmark


def _params():
    import pytest

    return pytest.mark.parametrize("n", [4096, 16384]), pytest.mark.parametrize("provider", PROVIDERS)


try:
    _n_mark, _p_mark = _params()

    @_n_mark
    @_p_mark
    def test_sae_step(benchmark, provider, n):
        step = make_step(provider, n)
        loss = benchmark.pedantic(step, rounds=3, warmup_rounds=1, iterations=1)
        assert torch.isfinite(loss)
except ImportError:  # running as a script without pytest
    pass


# --------------------------------------------------------------------------- script


def _rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_rss_bytes() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _memory_child(provider: str, n: int, steps: int) -> None:
    step = make_step(provider, n)
    base = _rss_bytes()
    # Reset the peak-RSS counter: a child process inherits its parent's high-water mark
    # through fork, which would hide this provider's own peak.
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    for _ in range(steps):
        step()
    print(json.dumps({"base": base, "peak": _peak_rss_bytes()}))


def _time_interleaved(steps_by_provider: dict, rounds: int) -> dict:
    """Median seconds per step for each provider, the providers taking turns each round so
    that load from other processes on the shared machine hits them alike."""
    for step in steps_by_provider.values():
        step()  # warm-up: allocator, Adam state, lazy imports
    times = {p: [] for p in steps_by_provider}
    for _ in range(rounds):
        for p, step in steps_by_provider.items():
            t = time.perf_counter()
            step()
            times[p].append(time.perf_counter() - t)
    return {p: sorted(v)[len(v) // 2] for p, v in times.items()}


def time_providers(calls: dict, rounds: int, device: str, title: str) -> dict:
    """Median seconds per call (providers take turns each round) and, on CUDA, peak memory.

    Prints one line per provider with its speed-up over ``dense`` measured in this run.
    Shared by the per-op benchmarks (bench_topk_encode.py, bench_sparse_decode.py).
    """
    cuda = device == "cuda"

    def timed(call):
        if cuda:
            torch.cuda.synchronize()
        t = time.perf_counter()
        call()
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - t

    peak = {}
    for p, call in calls.items():  # warm-up (compiles, autotune, allocator), then the peak
        call()
        if cuda:
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            call()
            torch.cuda.synchronize()
            peak[p] = (torch.cuda.max_memory_allocated() - base) / 2**20
    times = {p: [] for p in calls}
    for _ in range(rounds):
        for p, call in calls.items():
            times[p].append(timed(call))
    med = {p: sorted(v)[len(v) // 2] for p, v in times.items()}
    print(f"\n{title}")
    print(f"{'provider':16s} {'ms':>9s} {'x dense':>8s} {'peak MiB':>9s}")
    for p, t in med.items():
        ratio = med["dense"] / t if "dense" in med else float("nan")
        print(f"{p:16s} {t * 1e3:9.2f} {ratio:8.2f} {peak.get(p, float('nan')):9.0f}")
    return med


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, nargs="+", default=[4096, 16384])
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--providers", nargs="+", default=list(PROVIDERS))
    ap.add_argument("--memory-child", nargs=2, metavar=("PROVIDER", "N"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.memory_child:
        _memory_child(args.memory_child[0], int(args.memory_child[1]), 2)
        return
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, B={B} d={D} k={K} float32 CPU")
    for n in args.n:
        res = {}
        times = _time_interleaved({p: make_step(p, n) for p in args.providers}, args.steps)
        for p in args.providers:
            t = times[p]
            out = subprocess.run([sys.executable, __file__, "--memory-child", p, str(n)],
                                 capture_output=True, text=True, check=True)
            mem = json.loads(out.stdout.strip().splitlines()[-1])
            res[p] = (t, (mem["peak"] - mem["base"]) / 2**20, mem["peak"] / 2**20)
        print(f"\nn = {n}")
        print(f"{'provider':10s} {'step ms':>9s} {'x dense':>8s} {'x sparsify':>11s} {'step MiB':>9s} {'peak MiB':>9s}")
        for p, (t, dm, pk) in res.items():
            vs_dense = res["dense"][0] / t if "dense" in res else float("nan")
            vs_sp = res["sparsify"][0] / t if "sparsify" in res else float("nan")
            print(f"{p:10s} {t * 1e3:9.0f} {vs_dense:8.2f} {vs_sp:11.2f} {dm:9.0f} {pk:9.0f}")


if __name__ == "__main__":
    main()
