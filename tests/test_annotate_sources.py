"""Pieces of the streamed annotation against the in-memory definitions they replace:
concept sources by window vs gene_concepts and the shifted controls, accumulator merges,
the candidate cut-off."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from genesae_fast.annotate.accumulators import Moments, Tally, value_bins
from genesae_fast.annotate.core import _shift_hits
from genesae_fast.annotate.genes import GeneCall, gene_concepts
from genesae_fast.annotate.peaks import Candidates
from genesae_fast.annotate.sources import ShiftedSource, gene_sources, overlapping
from genesae_fast.annotate.window import plan_blocks


def _calls(rng, lengths, n):
    out = []
    for _ in range(n):
        r = int(rng.integers(0, len(lengths)))
        if lengths[r] < 10:
            continue
        a = int(rng.integers(0, lengths[r] - 6))
        b = int(rng.integers(a + 6, min(lengths[r], a + 400) + 1))
        g = GeneCall(r, a, b, int(rng.choice([-1, 1])), bool(rng.random() < 0.8), bool(rng.random() < 0.8))
        if rng.random() < 0.5 and a >= 10:
            g.rbs = (a - 10, a - 4)
        out.append(g)
    return out


def _pairs(s, e):
    return sorted(zip(np.asarray(s).tolist(), np.asarray(e).tolist()))


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31), n_rec=st.integers(1, 4), n_genes=st.integers(0, 25), block=st.integers(1, 900))
def test_sources_by_window_equal_gene_concepts(seed, n_rec, n_genes, block):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 1500, n_rec)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    calls = _calls(rng, lengths, n_genes)
    ref = gene_concepts(calls, offsets, lengths)
    src = gene_sources(calls, offsets, lengths)
    assert list(src) == list(ref)
    G = int(lengths.sum())
    blocks = plan_blocks(G, block)
    for name, hits in ref.items():
        got = [h for lo, hi in blocks for h in _pairs(*src[name].starting(lo, hi))]
        assert sorted(got) == _pairs(hits.start, hits.end), name
        # the positive bases of a window: every hit cut to it
        lo, hi = blocks[len(blocks) // 2]
        s, e = np.maximum(hits.start, lo), np.minimum(hits.end, hi)
        assert _pairs(*overlapping(src[name], lo, hi)) == sorted(p for p in _pairs(s, e) if p[1] > p[0]), name
        shift = int(rng.integers(0, G)) if G > 1 else 0
        want = _shift_hits(hits, shift, G) if len(hits) else hits
        sh = ShiftedSource(src[name], shift, G)
        got = [h for lo, hi in blocks for h in _pairs(*sh.starting(lo, hi))]
        assert sorted(got) == _pairs(want.start, want.end), (name, shift)


def _entries(rng, n, F):
    feat = rng.integers(0, F, n)
    val = rng.choice(np.array([0.5, 1.0, 2.0], np.float32), n) if rng.random() < 0.5 else rng.random(n).astype(np.float32)
    tok = rng.permutation(n).astype(np.int64)
    return feat, val, tok, tok * 3, tok * 3 + 2


@pytest.mark.parametrize("seed", range(6))
def test_candidate_merge_is_exact_and_order_free(seed):
    rng = np.random.default_rng(seed)
    F, keep = 5, int(rng.integers(1, 40))
    feat, val, tok, s, e = _entries(rng, 400, F)
    whole = Candidates.from_entries(feat, val, tok, s, e, F, keep=keep)
    cuts = np.sort(rng.integers(0, 400, 3))
    parts = [Candidates.from_entries(*(a[i:j] for a in (feat, val, tok, s, e)), F, keep=keep)
             for i, j in zip([0, *cuts], [*cuts, 400])]
    for order in (parts, parts[::-1]):
        m = order[0]
        for p in order[1:]:
            m = m.merge(p, keep)
        for k in ("ptr", "val", "token", "start", "end"):
            np.testing.assert_array_equal(getattr(m, k), getattr(whole, k), err_msg=k)
    # the reference: per feature, sort by (-value, token) and keep the first ``keep``
    for f in range(F):
        sel = np.flatnonzero(feat == f)
        ref = sel[np.lexsort((tok[sel], -val[sel]))][:keep]
        np.testing.assert_array_equal(whole.token[whole.ptr[f]:whole.ptr[f + 1]], tok[ref])


@pytest.mark.parametrize("seed", range(6))
def test_cutoff_bins_keep_every_top_entry(seed):
    rng = np.random.default_rng(seed)
    F = 4
    feat, val, *_ = _entries(rng, 3000, F)
    m = Moments.empty(F, 1)
    m.vbins = np.bincount(feat * m.vbins.shape[1] + value_bins(val), minlength=m.vbins.size).reshape(m.vbins.shape)
    for keep in (1, 7, 500, 5000):
        cut = m.cutoff_bins(keep)
        for f in range(F):
            v = np.sort(val[feat == f])[::-1]
            kept = v[value_bins(v) >= cut[f]]
            assert kept.shape[0] >= min(keep, v.shape[0])
            # and not much more: the next bin up holds fewer than ``keep``
            assert np.sum(value_bins(v) >= cut[f] + 1) < keep or cut[f] == m.vbins.shape[1] - 1


def test_tally_and_moments_merge():
    a, b = Tally.empty(2, 3, 4), Tally.empty(2, 3, 4)
    a.tp[0, 1, 0, 2], b.tp[0, 1, 0, 2], b.found[1, 2, 1, 3] = 3, 4, 5
    m = a.merge(b)
    assert m.tp[0, 1, 0, 2] == 7 and m.found[1, 2, 1, 3] == 5 and m.tp.sum() == 7
    x, y = Moments.empty(3, 1), Moments.empty(3, 1)
    x.partials, y.partials = {0: np.arange(5.0)}, {1: np.ones(5)}
    assert np.array_equal(x.merge(y).float_totals(), y.merge(x).float_totals())
    with pytest.raises(ValueError, match="counted twice"):
        x.merge(x)
