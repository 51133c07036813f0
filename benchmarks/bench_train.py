"""Trainer throughput: the real training step vs a plain-torch loop of the same recipe.

One step = normalised batch -> loss (recon + AuxK when latents are dead) -> backward ->
removal of the decoder-parallel gradient -> Adam step -> decoder renormalisation, i.e. the
body of :meth:`genesae_fast.train.loop.Trainer.train_step`, at d = 256, n = 16384, k = 32,
batch 4096, float32, same data and initial weights for both providers.

* ``genesae``: :class:`genesae_fast.train.objective.SAELoss` on :mod:`genesae_fast.ops`.
* ``reference``: :class:`genesae_fast.train.reference.ReferenceSAELoss` (dense ``[B, n]``
  codes, ``torch.topk``, autograd through dense matmuls).

Half of the latents are marked dead so AuxK runs too (the trainer's worst case).

pytest-benchmark::

    /work/venv/bin/pytest benchmarks/bench_train.py --benchmark-only

or quickly, as a script that times both in one process and prints tokens/s and the ratio::

    /work/venv/bin/python benchmarks/bench_train.py [--steps 3] [--n 16384] [--batch 4096]

or the real step at several thread counts (what the trainer's thread tuner measures)::

    python benchmarks/bench_train.py --threads 1 2 --d 64 --n 4096 --k 16 --batch 1024 --steps 7
"""
from __future__ import annotations

import argparse
import json
import time

import pytest
import torch

D, N, K, B = 256, 16384, 32, 4096
PROVIDERS = ("genesae", "reference")


def make_step(provider: str, d: int = D, n: int = N, k: int = K, batch: int = B, seed: int = 0):
    """A closure running one full training step of ``provider``; returns (step, batch size)."""
    from genesae_fast.sae import TopKSAE
    from genesae_fast.train.config import ADAM_EPS, default_lr
    from genesae_fast.train.objective import SAELoss
    from genesae_fast.train.reference import ReferenceSAELoss

    torch.manual_seed(seed)
    sae = TopKSAE(d, n, k)
    x = torch.randn(batch, d)
    x /= x.pow(2).sum(1).mean().sqrt()  # unit mean squared norm, as the trainer feeds it
    dead = torch.zeros(n, dtype=torch.bool)
    dead[: n // 2] = True
    cls = SAELoss if provider == "genesae" else ReferenceSAELoss
    model = cls(sae, k, d // 2, 1 / 32)
    opt = torch.optim.Adam(sae.parameters(), lr=default_lr(n), eps=ADAM_EPS, foreach=True)

    def step():
        res = model(x, dead)
        opt.zero_grad(set_to_none=True)
        res.loss.backward()
        sae.remove_parallel_grad_()
        opt.step()
        sae.set_decoder_norm_()
        return float(res.recon)

    return step, batch


@pytest.mark.parametrize("provider", PROVIDERS)
def test_train_step(benchmark, provider):
    """Times one training step; ``extra_info['tokens_per_s']`` is batch / mean time."""
    step, batch = make_step(provider)
    step()  # warm-up (allocations, Adam state)
    benchmark.pedantic(step, rounds=3, iterations=1)
    benchmark.extra_info["tokens_per_s"] = batch / benchmark.stats.stats.mean


def measure(provider: str, steps: int, **sizes) -> float:
    """Tokens/s of ``provider`` over ``steps`` steps after one warm-up step (median step time)."""
    step, batch = make_step(provider, **sizes)
    step()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    times.sort()
    return batch / times[len(times) // 2]


def main(argv=None):
    """Script entry: time both providers in this process and print JSON with the ratio."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--n", type=int, default=N)
    p.add_argument("--d", type=int, default=D)
    p.add_argument("--k", type=int, default=K)
    p.add_argument("--batch", type=int, default=B)
    p.add_argument("--threads", type=int, nargs="+", default=None,
                   help="time the real step at each of these torch thread counts instead (e.g. --threads 1 2): "
                        "what the trainer's thread tuner chooses between")
    a = p.parse_args(argv)
    sizes = dict(d=a.d, n=a.n, k=a.k, batch=a.batch)
    if a.threads:
        out = {"sizes": sizes, "steps": a.steps}
        for t in a.threads:
            torch.set_num_threads(t)
            out[f"genesae_tokens_per_s_{t}_threads"] = round(measure("genesae", a.steps, **sizes), 1)
        print(json.dumps(out, indent=1))
        return
    out = {"sizes": sizes, "steps": a.steps, "threads": torch.get_num_threads()}
    for prov in PROVIDERS:
        out[f"{prov}_tokens_per_s"] = round(measure(prov, a.steps, **sizes), 1)
    out["ratio"] = round(out["genesae_tokens_per_s"] / out["reference_tokens_per_s"], 3)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
