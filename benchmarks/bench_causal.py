"""Causal evidence: scoring only windows around the sites vs a spliced pass over the whole sequence.

Run: ``pytest benchmarks/bench_causal.py --benchmark-only -s``

Both give the same per-site bits (``tests/test_causal.py`` checks it); the windows cost
about (receptive field + site) bases per site instead of the whole sequence.

- ``test_windows``: 200 sites of 12 bp in the first 500 kbp of the bundled genome, the
  built-in LM with a random-dictionary SAE (4x, k = 8) spliced in at layer 3
  (``score_sites``).
- ``test_whole_sequence``: the reference: the same splice over the whole 500 kbp in one
  pass per 64 kbp chunk (what a genome-wide ablation costs per arm), bits summed per site.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

N_BP = 500_000
N_SITES = 200
SITE = 12


@pytest.fixture(scope="module")
def setup():
    import torch

    from genesae_fast.causal import SiteSet
    from genesae_fast.data import genome_path
    from genesae_fast.models import load_model
    from genesae_fast.sae import TopKSAE
    from genesae_fast.sequences import read_fasta

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = load_model("builtin", device="cpu")
    codes = np.asarray(read_fasta(genome_path())[0].codes[:N_BP])
    start = np.sort(np.random.default_rng(0).choice(N_BP - SITE, N_SITES, replace=False)).astype(np.int64)
    sites = SiteSet(start, start + SITE, np.zeros(N_SITES, np.int64))
    sae = TopKSAE(model.d_model, 4 * model.d_model, 8).eval()
    return model, codes, sites, sae


def test_windows(benchmark, setup):
    from genesae_fast.causal import Splice, score_sites

    model, codes, sites, sae = setup
    out = benchmark.pedantic(lambda: score_sites(model, codes, sites, layer=3, replace=Splice(sae)),
                             rounds=3, iterations=1)
    benchmark.extra_info["sites_per_s"] = N_SITES / benchmark.stats.stats.mean
    assert np.isfinite(out.bits).all()


def test_whole_sequence(benchmark, setup):
    from genesae_fast.causal import Splice

    model, codes, sites, sae = setup
    field, chunk = model.context_bp, 1 << 16

    def run():
        per_base = np.zeros(N_BP)
        for p0 in range(1, N_BP, chunk):
            p1 = min(p0 + chunk, N_BP)
            a = max(0, p0 - field)
            ids = codes[a:p1].astype(np.int64)
            lp = model.next_base_logprobs(ids[None], layer=3, replace=Splice(sae))[0].double().numpy()
            t = np.arange(p0, p1)
            per_base[p0:p1] = -lp[t - 1 - a, np.minimum(ids[t - a], 3)] / math.log(2) * (ids[t - a] < 4)
        return np.array([per_base[s:e].sum() for s, e in zip(sites.start, sites.end)])

    benchmark.pedantic(run, rounds=1, iterations=1)
