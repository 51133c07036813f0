"""The toy causal model of the planted-motif controls (genesae_fast.planted.toy).

Checked against a plain per-position PWM loop, for the determinism extract relies on
(a token's values do not depend on which window computed it), and for the property the
controls need: its motif layer fires at the last base of + strand sites and not of - strand
ones, and its other layers carry no motif signal.
"""
from __future__ import annotations

import numpy as np
import pytest

from genesae_fast.annotate.logos import reverse_complement
from genesae_fast.errors import InputError
from genesae_fast.extract import default_layer
from genesae_fast.motifs import load_motifs
from genesae_fast.planted import PlantOptions, make_planted_genome
from genesae_fast.planted.toy import N_PENALTY, PlantedToyModel, log_odds_table
from genesae_fast.sequences import decode

TOY_MOTIFS = ("SP1", "MEF2A", "CREB1", "HNF4A")  # all narrower than 12 bp


@pytest.fixture(scope="module")
def toy_setup():
    pg = make_planted_genome(PlantOptions(length=60_000, n_sites=60, planted=TOY_MOTIFS, n_decoys=0, seed=2))
    return pg, PlantedToyModel(pg.planted, seed=3)


def _score_loop(codes, probs):
    """Plain loop: log-odds of the len(probs) bases ending at each position (missing = N)."""
    lo = log_odds_table(probs)
    w = lo.shape[0]
    out = np.zeros(len(codes))
    for i in range(len(codes)):
        for j in range(w):
            k = i - w + 1 + j
            out[i] += lo[j, min(int(codes[k]), 4)] if k >= 0 else N_PENALTY
    return out


def test_motif_layer_is_the_rectified_pwm_score_of_the_window_ending_at_each_base(toy_setup):
    pg, toy = toy_setup
    codes = np.concatenate([pg.codes[1000:1300], [4, 4], pg.codes[5000:5100]]).astype(np.int64)
    ch = toy.channels(codes[None, :], 2)[0]
    for c, m in enumerate(pg.planted):
        ref = np.maximum(_score_loop(codes, m.probs) - toy.thresholds[2][c], 0)
        np.testing.assert_allclose(ch[:, c], ref, atol=1e-9)
    blurred = toy.channels(codes[None, :], 3)[0]
    ref3 = np.stack([ch[max(0, i - toy.blur):i + 1].max(axis=0) for i in range(len(codes))])
    np.testing.assert_allclose(blurred, ref3, atol=1e-12)


def test_rotation_keeps_the_channels(toy_setup):
    pg, toy = toy_setup
    ids = pg.codes[:2000].astype(np.int64)[None, :]
    for layer in range(toy.n_layers + 1):
        ch = toy.channels(ids, layer)
        back = toy.forward_windows(ids, layer).astype(np.float64) @ toy.rotations[layer].T
        np.testing.assert_allclose(back[..., :ch.shape[2]], ch, atol=1e-4 * max(1.0, ch.max()))
        np.testing.assert_allclose(back[..., ch.shape[2]:], 0, atol=1e-4 * max(1.0, ch.max()))


@pytest.mark.parametrize(("window", "stride", "start"), [(512, 256, 0), (200, 60, 0), (97, 97, 0), (512, 256, 3001)])
def test_extract_gives_each_token_the_values_of_one_long_pass(toy_setup, window, stride, start):
    pg, toy = toy_setup
    seq = decode(pg.codes[:6000])
    full = toy.forward_windows(pg.codes[:6000].astype(np.int64)[None, :], 2)[0]
    got = np.concatenate([b.activations for b in toy.extract(seq, 2, window=window, stride=stride,
                                                             start_token=start)])
    # tokens with the whole receptive field inside their window match exactly
    ctx = (window - stride) // 2
    if ctx >= toy.width:
        np.testing.assert_array_equal(got, full[start:])
    else:
        assert got.shape == full[start:].shape


def test_motif_channels_fire_on_plus_strand_sites_only(toy_setup):
    pg, toy = toy_setup
    ch = toy.channels(pg.codes.astype(np.int64)[None, :], 2)[0]
    for c, m in enumerate(pg.planted):
        ends = pg.sites.end[pg.sites.motif == c] - 1
        strand = pg.sites.strand[pg.sites.motif == c]
        plus, minus = (ch[ends[strand > 0], c] > 0).mean(), (ch[ends[strand < 0], c] > 0).mean()
        assert plus >= 0.5 and plus > minus, (m.alt_id, plus, minus)
        # CREB1 and MEF2A read almost the same on both strands; the others must not fire on -
        if np.abs(m.probs - reverse_complement(m.probs)).sum(axis=1).mean() > 1.0:
            assert minus <= 0.1, (m.alt_id, minus)


def test_other_layers_carry_no_motif_signal(toy_setup):
    pg, toy = toy_setup
    ids = pg.codes.astype(np.int64)[None, :]
    ends = pg.sites.end - 1
    inside = np.zeros(len(pg.codes), bool)
    for a, b in zip(pg.sites.start, pg.sites.end + toy.blur):
        inside[a:b] = True
    for layer in (1, 4):
        on = toy.channels(ids, layer)[0] > 0
        rate_sites, rate_else = on[ends].mean(axis=0), on[~inside].mean(axis=0)
        assert np.all(rate_sites <= 3 * rate_else + 0.02), (layer, rate_sites, rate_else)
    # the smeared layer 3 still fires after every site the motif layer saw
    l2, l3 = toy.channels(ids, 2)[0], toy.channels(ids, 3)[0]
    assert np.all(l3 >= l2) and (l3 > 0).sum() > 2 * (l2 > 0).sum()


def test_receptive_field_rule_picks_the_smeared_layer(toy_setup):
    pg, toy = toy_setup
    assert default_layer(toy) == 3
    wide = PlantedToyModel([m.probs for m in load_motifs() if m.alt_id == "CTCF"][:1])
    assert default_layer(wide) == 2  # a 15 bp motif: the motif layer reaches 12 bp itself


def test_toy_is_deterministic_and_checks_its_width():
    m = [x for x in load_motifs() if x.alt_id in TOY_MOTIFS]
    a, b = PlantedToyModel(m, seed=1), PlantedToyModel(m, seed=1)
    ids = np.random.default_rng(0).integers(0, 5, size=(3, 300))
    for layer in range(5):
        np.testing.assert_array_equal(a.forward_windows(ids, layer), b.forward_windows(ids, layer))
    assert a.identity == b.identity and a.identity != PlantedToyModel(m, seed=2).identity
    with pytest.raises(InputError, match="d_model 8: needs at least"):
        PlantedToyModel(m, d_model=8)
