"""`genesae run` end to end (defaults and --quick) with each stage's share, and the
full-size scientific controls of the annotation statistics.

Run (2 cores, as CI): taskset -c 0,1 pytest benchmarks/bench_run.py --benchmark-only -s
Each pipeline benchmark runs once into a fresh folder (a rerun would skip every stage) and
reports the stage seconds in ``extra_info``; the reference in the same run is the quick
pipeline, so the default/quick ratio is comparable across machines.
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def _pipeline(benchmark, tmp_path, quick: bool):
    from genesae_fast.pipeline import format_summary, run_pipeline

    out = tmp_path / ("quick" if quick else "default")

    def setup():
        shutil.rmtree(out, ignore_errors=True)

    summary = benchmark.pedantic(lambda: run_pipeline(out, quick=quick, threads=2, progress=False, echo=lambda m: None),
                                 setup=setup, rounds=1, iterations=1)
    st = summary["stage_seconds"]
    total = sum(st.values())
    benchmark.extra_info.update({f"{k}_s": v for k, v in st.items()})
    benchmark.extra_info.update({f"{k}_share": round(v / total, 3) for k, v in st.items()})
    benchmark.extra_info["features_with_any_concept"] = summary["features_with_any_concept"]
    print("\n" + format_summary(summary))
    return summary


def test_run_quick(benchmark, tmp_path):
    s = _pipeline(benchmark, tmp_path, quick=True)
    assert s["n_tokens"] == 250_000


def test_run_default(benchmark, tmp_path):
    s = _pipeline(benchmark, tmp_path, quick=False)
    assert s["n_tokens"] == 2_463_666


@pytest.mark.parametrize("control", ["positive", "negative"])
def test_controls_full_motif_set(benchmark, control):
    """The controls of tests/test_controls.py against all 879 JASPAR motifs (as decoys)
    on 500 kbp instead of 40 decoys on 100 kbp."""
    import test_controls as T

    from genesae_fast.data import genome_path
    from genesae_fast.motifs import load_motifs
    from genesae_fast.sequences import read_fasta

    planted, _ = T.motif_sets.__wrapped__()
    motifs = load_motifs()
    decoys = [m for m in motifs if m.id not in {p.id for p in planted}]
    codes0 = read_fasta(genome_path())[0].codes[:500_000].copy()
    rng = np.random.default_rng(5)
    if control == "positive":
        codes = codes0.copy()
        slots = rng.choice(np.arange(50, codes.shape[0] - 50, 40), size=400 * 3, replace=False)
        for i, pos in enumerate(slots):
            m = planted[i % 3]
            p = m.probs / m.probs.sum(axis=1, keepdims=True)
            site = np.array([rng.choice(4, p=row) for row in p], np.uint8)
            codes[pos:pos + site.shape[0]] = site if rng.random() < 0.5 else (3 - site)[::-1]
        channels = [T._pwm_channel(codes, m.probs) for m in planted]
    else:
        codes = rng.permutation(codes0)
        channels = []
    channels += [T._pwm_channel(codes, rng.dirichlet(np.ones(4) * 0.3, size=int(w))) for w in rng.integers(6, 12, 24)]
    res = benchmark.pedantic(lambda: T._run(codes, channels, planted + decoys), rounds=1, iterations=1)
    called = T._called(res)
    planted_ids = {m.id for m in planted}
    found = {m for _, m in called if m in planted_ids}
    false = {c for c in called if c[1] not in planted_ids}
    benchmark.extra_info.update({"planted_found": len(found), "decoy_pairs_called": len(false),
                                 "pairs_tested": res.summary["motif_pairs_tested"]})
    print(f"\n{control}: planted motifs recovered {len(found)}/3, decoy pairs called {len(false)} "
          f"of {res.summary['motif_pairs_tested']} tested")
    if control == "positive":
        assert found == planted_ids
    else:
        assert not called
