"""Scientific controls of the motif-concept statistics.

Positive control: JASPAR motifs planted many times into real bacterial sequence must be
matched to the features that respond to them (q <= 0.05), and unrelated decoy motifs must
not be. Negative control: on shuffled sequence, with features that know no motif, no
feature-motif pair may be called at q <= 0.05.

To keep CI to seconds, the "model" is tiny and deterministic instead of a trained LM: each
channel is a rectified PWM score of the window ending at a base (channels of the planted
motifs respond to planted sites, and to chance matches, as a motif-detecting LM unit would;
the other channels are random PWMs). The channels are the features (an ideal SAE). The
full-size versions with a trained LM and SAE are in benchmarks/bench_run.py.
"""
from __future__ import annotations

import numpy as np
import pytest

from genesae_fast.annotate.concepts import SparseActs
from genesae_fast.annotate.core import Config, Genome, annotate_encoded
from genesae_fast.annotate.encode import Encoded
from genesae_fast.annotate.logos import MotifMatcher, information
from genesae_fast.motifs import load_motifs, shuffle_columns
from genesae_fast.scan import scan_motifs
from genesae_fast.sequences import Record

L = 100_000
N_SITES = 120


def _pwm_channel(codes: np.ndarray, probs: np.ndarray, quantile: float = 0.995) -> np.ndarray:
    """Rectified log-odds score of the window ending at each base, above a high quantile."""
    lo = np.log(probs / 0.25 + 1e-3)
    w = lo.shape[0]
    s = np.zeros(codes.shape[0] - w + 1)
    for j in range(w):
        c = codes[j:codes.shape[0] - w + 1 + j]
        s += np.where(c < 4, lo[j, np.minimum(c, 3)], -2.0)
    out = np.zeros(codes.shape[0], np.float32)
    out[w - 1:] = np.maximum(s - np.quantile(s, quantile), 0)
    return out


@pytest.fixture(scope="module")
def motif_sets():
    """Three planted motifs (informative, mutually dissimilar) and 40 decoys unlike them."""
    motifs = load_motifs()
    cand = [m for m in motifs if 10 <= m.width <= 16 and information(m.probs).mean() > 1.2]
    planted = []
    for m in cand:
        if all(MotifMatcher([p.probs]).scores(m.probs)[0][0] < 0.5 for p in planted):
            planted.append(m)
        if len(planted) == 3:
            break
    pm = MotifMatcher([p.probs for p in planted])
    planted_ids = {p.id for p in planted}
    decoys = [m for m in motifs if m.id not in planted_ids and m.width >= 8 and pm.scores(m.probs)[0].max() < 0.5][:40]
    return planted, decoys


@pytest.fixture(scope="module")
def base_codes():
    from genesae_fast.data import genome_path
    from genesae_fast.sequences import read_fasta

    return read_fasta(genome_path())[0].codes[500_000:500_000 + L].copy()


def _run(codes, channels, motifs, seed=0):
    rec = Record("ctl", "", codes, np.zeros(codes.shape[0], bool))
    rng = np.random.default_rng(seed)
    hits = scan_motifs([rec], motifs, pvalue=1e-4, threads=1)
    ctrl = scan_motifs([rec], [shuffle_columns(m, rng) for m in motifs], pvalue=1e-4, threads=1)
    dense = np.stack(channels, axis=1)
    enc = Encoded(SparseActs.from_dense(dense), None, 0.0, float((dense > 0).sum(1).mean()))
    n = codes.shape[0]
    return annotate_encoded(Genome.from_records([rec]), np.zeros(n, np.int64), np.arange(n), np.arange(n) + 1, enc,
                            motifs=motifs, real_hits=hits, control_hits=ctrl,
                            cfg=Config(min_active=5, neurons=False, seed=seed))


def _called(res, q=0.05):
    fm = res.feature_motif
    return {(f, m) for f, m, qq in zip(fm["feature"], fm["motif_id"], fm["qvalue"]) if qq <= q}


def test_positive_control_recovers_planted_motifs(motif_sets, base_codes):
    planted, decoys = motif_sets
    rng = np.random.default_rng(7)
    codes = base_codes.copy()
    slots = rng.choice(np.arange(50, L - 50, 40), size=N_SITES * len(planted), replace=False)
    for i, pos in enumerate(slots):
        m = planted[i % len(planted)]
        p = m.probs / m.probs.sum(axis=1, keepdims=True)
        site = np.array([rng.choice(4, p=row) for row in p], np.uint8)
        if rng.random() < 0.5:  # either strand
            site = (3 - site)[::-1]
        codes[pos:pos + site.shape[0]] = site
    random_pwms = [rng.dirichlet(np.ones(4) * 0.3, size=8) for _ in range(5)]
    channels = [_pwm_channel(codes, m.probs) for m in planted] + [_pwm_channel(codes, p) for p in random_pwms]
    motifs = planted + decoys
    res = _run(codes, channels, motifs)
    called = _called(res)
    for j, m in enumerate(planted):
        assert (j, m.id) in called, f"planted {m.id} not recovered by feature {j}"
        assert res.features["motif"][j] == m.id
        # the feature's logo matches its motif (TomTom-like) strongly
        assert res.features["logo_match"][j] == m.id
    decoy_ids = {m.id for m in decoys}
    assert not {c for c in called if c[1] in decoy_ids}, "a decoy motif was called"
    assert res.summary["features_with_motif"] >= len(planted)


def test_negative_control_calls_nothing_on_shuffled_sequence(motif_sets, base_codes):
    planted, decoys = motif_sets
    rng = np.random.default_rng(11)
    codes = rng.permutation(base_codes)  # composition kept, every motif site destroyed
    random_pwms = [rng.dirichlet(np.ones(4) * 0.3, size=int(w)) for w in rng.integers(6, 12, size=12)]
    channels = [_pwm_channel(codes, p) for p in random_pwms]
    res = _run(codes, channels, planted + decoys, seed=1)
    assert _called(res) == set()
    assert res.summary["features_with_motif"] == 0
