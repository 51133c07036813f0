"""Feature logos and TomTom-like matching against plain loops."""
from __future__ import annotations

import numpy as np
import pytest

from genesae_fast.annotate.logos import (
    MotifMatcher, consensus, information, match_score_reference, reverse_complement,
    to_probs, trim, weighted_pfm,
)


def _random_probs(rng, w):
    return rng.dirichlet(np.ones(4) * 0.5, size=w)


def test_weighted_pfm_reference(rng):
    codes = rng.integers(0, 5, size=300).astype(np.uint8)
    centers = np.array([0, 5, 150, 299])
    weights = rng.random(4)
    got = weighted_pfm(codes, centers, weights, 3, 2)
    ref = np.zeros((6, 4))
    for c, w in zip(centers, weights):
        for j, p in enumerate(range(c - 3, c + 3)):
            if 0 <= p < 300 and codes[p] < 4:
                ref[j, codes[p]] += w
    np.testing.assert_allclose(got, ref)


@pytest.mark.parametrize("wq", [1, 4, 9])
def test_matcher_matches_reference(rng, wq):
    motifs = [_random_probs(rng, w) for w in (3, 6, 12, 20)]
    m = MotifMatcher(motifs)
    q = _random_probs(rng, wq)
    score, off, strand = m.scores(q)
    for i, mot in enumerate(motifs):
        assert score[i] == pytest.approx(match_score_reference(q, mot), abs=1e-9)


def test_matcher_finds_embedded_motif_on_both_strands(rng):
    target = _random_probs(rng, 12)
    others = [_random_probs(rng, 12) for _ in range(20)]
    m = MotifMatcher(others[:10] + [target] + others[10:])
    sub = target[3:9]
    score, off, strand = m.scores(sub)
    assert np.argmax(score) == 10 and score[10] == pytest.approx(1.0) and off[10] == 3 and strand[10] == 1
    score, off, strand = m.scores(reverse_complement(sub))
    assert np.argmax(score) == 10 and score[10] == pytest.approx(1.0) and strand[10] == -1


def test_trim_consensus_information():
    p = to_probs(np.array([[1, 1, 1, 1], [100, 0, 0, 0], [0, 50, 50, 0], [1, 1, 1, 1.0]]), pseudo=0.01)
    ic = information(p)
    assert ic[0] == pytest.approx(0, abs=1e-6) and ic[1] > 1.9
    core, first = trim(p)
    assert first == 1 and core.shape == (2, 4)
    assert consensus(p) == "NASN"
    flat, j = trim(to_probs(np.ones((5, 4))))
    assert flat.shape == (1, 4)
