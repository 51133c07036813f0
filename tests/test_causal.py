"""Causal evidence (genesae_fast.causal): patched forwards, window scores, ablations, statistics, CLI."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from genesae_fast.annotate.core import Genome
from genesae_fast.causal import SiteSet, Splice, effect, ratio, score_sites
from genesae_fast.causal.sites import held_out_sites, random_feature, random_sites, read_pairs
from genesae_fast.causal.stage import Pair, measure_pair
from genesae_fast.models import load_model
from genesae_fast.sae import TopKSAE
from genesae_fast.sequences import Record


@pytest.fixture(scope="module")
def builtin():
    return load_model("builtin", device="cpu")


def _identity_sae(d: int) -> TopKSAE:
    """A dictionary [I; -I] with k = 2d: encode gives relu(x), relu(-x); decode gives x back."""
    sae = TopKSAE(d, 2 * d, 2 * d)
    eye = torch.eye(d)
    with torch.no_grad():
        sae.W_enc.copy_(torch.cat([eye, -eye]))
        sae.W_dec.copy_(torch.cat([eye, -eye]))
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    return sae.eval()


def _genome(lengths, seed=0) -> Genome:
    rng = np.random.default_rng(seed)
    recs = [Record(f"r{i}", "", rng.integers(0, 4, n).astype(np.uint8), np.zeros(n, bool)) for i, n in enumerate(lengths)]
    return Genome.from_records(recs)


def _full_pass_bits(model, g: Genome, start, end, replace=None, layer=None) -> np.ndarray:
    """Reference: one forward over each whole record, bits of each site's A/C/G/T bases."""
    out = np.zeros(len(start))
    per_base = np.zeros(g.codes.shape[0])
    for off, n in zip(g.offsets, g.lengths):
        codes = g.codes[off:off + n].astype(np.int64)
        lp = model.next_base_logprobs(codes[None], layer=layer, replace=replace)[0].double().numpy()
        bits = -lp[np.arange(n - 1), np.minimum(codes[1:], 3)] / math.log(2)
        per_base[off + 1:off + n] = np.where(codes[1:] < 4, bits, 0.0)
    for i, (s, e) in enumerate(zip(start, end)):
        out[i] = per_base[s:e].sum()
    return out


# -- patching the model -----------------------------------------------------------------

@pytest.mark.parametrize("layer", [0, 1, 3, 6])
def test_identity_patch_reproduces_the_unpatched_logprobs_exactly(builtin, layer):
    ids = np.random.default_rng(layer).integers(0, 5, (3, 300))
    clean = builtin.next_base_logprobs(ids)
    same = builtin.next_base_logprobs(ids, layer=layer, replace=lambda h: h.clone())
    assert torch.equal(clean, same)
    ref = torch.log_softmax(builtin.net(torch.as_tensor(ids)).float(), dim=1).transpose(1, 2)
    assert torch.equal(clean, ref.detach())
    worse = builtin.next_base_logprobs(ids, layer=layer, replace=lambda h: h * 0)
    assert not torch.equal(clean, worse)
    # the hook is gone afterwards
    assert torch.equal(builtin.next_base_logprobs(ids), clean)


def test_patch_sees_batch_length_channels(builtin):
    seen = []
    builtin.next_base_logprobs(np.zeros((2, 50), np.int64), layer=2, replace=lambda h: seen.append(h.shape) or h)
    assert seen == [torch.Size([2, 50, builtin.d_model])]


# -- window scores equal whole-record passes --------------------------------------------

@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 10**6), st.integers(1, 30)), min_size=1, max_size=12), st.integers(0, 3))
def test_window_scores_equal_a_whole_record_pass(builtin, spec, seed):
    g = _genome([700, 40, 500], seed)
    G = int(g.codes.shape[0])
    start = np.array([s % G for s, _ in spec], np.int64)
    rec = np.searchsorted(g.offsets, start, side="right") - 1
    end = np.minimum(start + np.array([n for _, n in spec]), g.offsets[rec] + g.lengths[rec])
    sites = SiteSet(start, end, g.offsets[rec])
    got = score_sites(builtin, g.codes, sites)
    np.testing.assert_allclose(got.bits, _full_pass_bits(builtin, g, start, end), rtol=1e-5, atol=1e-4)
    first = (start == g.offsets[rec]).astype(int)
    np.testing.assert_array_equal(got.n_bases, end - start - first)
    sae = _identity_sae(builtin.d_model)
    with torch.no_grad():
        sae.b_enc.fill_(-0.05)  # an SAE with an error, so the splice really changes the LM
    spliced = score_sites(builtin, g.codes, sites, layer=3, replace=Splice(sae))
    ref = _full_pass_bits(builtin, g, start, end, replace=Splice(sae), layer=3)
    np.testing.assert_allclose(spliced.bits, ref, rtol=1e-5, atol=1e-4)


def test_perfect_sae_splice_equals_clean_and_silent_feature_changes_nothing(builtin):
    g = _genome([3000], 1)
    start = np.arange(200, 2800, 97, dtype=np.int64)
    sites = SiteSet(start, start + 12, np.zeros_like(start))
    sae = _identity_sae(builtin.d_model)
    clean = score_sites(builtin, g.codes, sites)
    spliced = score_sites(builtin, g.codes, sites, layer=2, replace=Splice(sae))
    np.testing.assert_allclose(spliced.bits, clean.bits, rtol=1e-5, atol=1e-4)
    with torch.no_grad():
        sae.b_enc[5] = -1e6  # feature 5 never fires
    base = score_sites(builtin, g.codes, sites, layer=2, replace=Splice(sae))
    abl = score_sites(builtin, g.codes, sites, layer=2, replace=Splice(sae, (5,)))
    np.testing.assert_array_equal(abl.bits, base.bits)
    assert not abl.fired.any()
    live = score_sites(builtin, g.codes, sites, layer=2, replace=Splice(sae, (0,)))
    assert live.fired.any() and not np.array_equal(live.bits, base.bits)


# -- a toy LM where one feature alone carries a planted signal -------------------------

class ToyLM:
    """Layer 1 = 4 channels: 'ACGT' ends here, 'TGCA' ends here, 1, 0. The head predicts A
    after ACGT (logit 3) and nothing otherwise, so only channel 0 carries information."""

    name = "toy"
    context_bp = 4

    def tokenize(self, sequence):
        from genesae_fast.models.builtin import tokenize_bases

        return tokenize_bases(sequence)

    @staticmethod
    def _ends(ids, word):
        w = torch.as_tensor(ids)
        out = torch.zeros(w.shape, dtype=torch.float32)
        k = len(word)
        hit = torch.ones(w.shape[0], w.shape[1] - k + 1, dtype=torch.bool)
        for j, b in enumerate(word):
            hit &= w[:, j:w.shape[1] - k + 1 + j] == "ACGT".index(b)
        out[:, k - 1:] = hit.float()
        return out

    def next_base_logprobs(self, ids, layer=None, replace=None):
        h = torch.stack([self._ends(ids, "ACGT"), self._ends(ids, "TGCA"), torch.ones(np.shape(ids)),
                         torch.zeros(np.shape(ids))], dim=-1)
        if replace is not None:
            h = replace(h)
        logits = torch.zeros(*h.shape[:2], 4)
        logits[..., 0] = 3.0 * h[..., 0]
        return torch.log_softmax(logits, dim=-1)


def _planted(n_sites=150, length=40_000, seed=3):
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 4, length).astype(np.uint8)
    starts = np.sort(rng.choice(np.arange(10, length - 10, 20), n_sites, replace=False))
    for s in starts:
        codes[s:s + 5] = [0, 1, 2, 3, 0]  # ACGTA: the last A is predictable
    g = Genome(["chr"], codes, np.array([0]), np.array([length]))
    return g, starts


def test_a_feature_that_alone_carries_a_planted_signal_is_specific():
    g, starts = _planted()
    model, sae = ToyLM(), _identity_sae(4)
    block = 1000
    rng = np.random.default_rng(0)
    sites = held_out_sites(starts, starts + 5, g, block, 200, rng)
    assert len(sites) > 40 and np.all((sites.start // block) % 2 == 1)
    rand = random_sites(sites, g, block, rng)
    assert len(rand) == len(sites) and np.all((rand.start // block) % 2 == 1)
    np.testing.assert_array_equal(rand.end - rand.start, sites.end - sites.start)
    row = measure_pair(model, sae, g.codes, 1, Pair("ACGTA", "motif", 0, 0.9), sites, rand, 1, seed=0)
    assert row["site_fire_frac"] == 1.0
    assert row["delta_site_lo"] > 0.1 and row["delta_site_lo"] <= row["delta_site"] <= row["delta_site_hi"]
    assert row["ratio_random_lo"] > 5 and row["ratio_feature"] == math.inf and row["ratio_feature_lo"] == math.inf
    assert row["bits_spliced"] == pytest.approx(row["bits_clean"], abs=1e-6)
    # the decoy channel fires as often but carries nothing: no effect at the sites
    decoy = measure_pair(model, sae, g.codes, 1, Pair("ACGTA", "motif", 1, 0.1), sites, rand, 0, seed=0)
    assert decoy["delta_site"] == 0 and math.isnan(decoy["ratio_random"])


def test_held_out_sites_are_in_the_evaluate_split_and_long_hits_are_cut():
    from genesae_fast.causal.sites import MAX_SITE_BP

    g = _genome([50_000, 30_000])
    rng = np.random.default_rng(0)
    start = np.sort(rng.choice(np.arange(0, 79_750, 250), 300, replace=False)).astype(np.int64)
    end = start + rng.integers(1, 250, 300)  # disjoint hits, none across the record boundary
    sites = held_out_sites(start, end, g, 5000, 120, np.random.default_rng(1))
    assert len(sites) == 120
    owner = np.searchsorted(start, sites.start, side="right") - 1  # the hit each stretch came from
    assert np.all((start[owner] // 5000) % 2 == 1)
    assert np.all(sites.end <= end[owner]) and np.all(sites.end - sites.start <= MAX_SITE_BP)
    full = end[owner] - start[owner]
    np.testing.assert_array_equal(sites.end - sites.start, np.minimum(full, MAX_SITE_BP))
    np.testing.assert_array_equal(sites.record_start, np.where(sites.start >= 50_000, 50_000, 0))


# -- statistics -------------------------------------------------------------------------

def test_ratio_rules():
    np.testing.assert_array_equal(ratio([2.0, 2.0, -1.0, 0.0, 1.0], [1.0, 0.0, 0.0, -1.0, 4.0]),
                                  [2.0, np.inf, np.nan, np.nan, 0.25])


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 60), st.integers(2, 60), st.integers(0, 10**6))
def test_bootstrap_interval_brackets_the_estimate(n_sites, n_rand, seed):
    rng = np.random.default_rng(seed)
    n = rng.integers(1, 20, n_sites)
    d = rng.gamma(2.0, 0.5, n_sites) * n
    g = rng.normal(0.05, 0.05, n_sites) * n
    m = rng.integers(1, 20, n_rand)
    r = rng.gamma(2.0, 0.05, n_rand) * m
    e = effect(n, d, g, m, r, seed=seed)
    assert e.delta_site == pytest.approx(d.sum() / n.sum())
    assert e.delta_site_ci[0] <= e.delta_site <= e.delta_site_ci[1]
    assert e.ratio_random_ci[0] <= e.ratio_random <= e.ratio_random_ci[1]
    # the same seed gives the same interval
    assert effect(n, d, g, m, r, seed=seed).ratio_random_ci == e.ratio_random_ci


def test_bootstrap_interval_is_narrow_with_many_identical_sites():
    n = np.full(500, 5)
    e = effect(n, n * 0.4, n * 0.1, n, n * 0.02)
    assert e.delta_site_ci == pytest.approx((0.4, 0.4)) and e.ratio_random == pytest.approx(20.0)
    assert e.ratio_random_ci == pytest.approx((20.0, 20.0)) and e.ratio_feature == pytest.approx(4.0)


# -- pairs, random features --------------------------------------------------------------

def test_read_pairs_takes_the_best_by_heldout_f1():
    concepts = {"concept": ["a", "b", "c", "d", "a"], "kind": ["motif"] * 4 + ["gene"],
                "feature": ["3", "1", "-1", "2", "3"], "f1": ["0.2", "0.5", "0.9", "0", "0.2"]}
    pairs = read_pairs(concepts, 5)
    assert [(p.concept, p.feature) for p in pairs] == [("b", 1), ("a", 3)]
    assert [p.concept for p in read_pairs(concepts, 1)] == ["b"]


def test_random_feature_has_a_similar_firing_rate():
    feats = {"feature": [str(i) for i in range(6)], "frequency": ["0.1", "0.01", "0.011", "0.009", "0.5", "0"],
             "tested": ["1", "1", "1", "1", "1", "1"]}
    picks = {random_feature(feats, 1, np.random.default_rng(s)) for s in range(30)}
    assert picks <= {2, 3, 0} and 1 not in picks
    assert random_feature({"feature": ["0"], "frequency": ["0.1"], "tested": ["1"]}, 0, np.random.default_rng(0)) == -1


# -- the stage, the CLI and the report on a small run ----------------------------------

@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    from genesae_fast.data import genome_path
    from genesae_fast.motifs import load_motifs, write_meme
    from genesae_fast.pipeline import RunSettings, run_pipeline
    from genesae_fast.sequences import read_fasta, write_fasta

    d = tmp_path_factory.mktemp("causal_run")
    rec = read_fasta(genome_path())[0]
    write_fasta([(rec.name, rec.sequence[:30_000])], d / "g.fa")
    write_meme(load_motifs()[:6], d / "m.meme")
    messages = []
    settings = RunSettings(expansion=2, k=4, batch=512, min_train_tokens=20_000, max_train_tokens=20_000,
                           causal_pairs=4, causal_sites=30)
    run_pipeline(d / "out", genome=str(d / "g.fa"), motifs=str(d / "m.meme"), settings=settings, progress=False,
                 echo=messages.append, workers=1, layer=3)
    return d / "out", messages


def test_run_has_a_causal_stage_before_the_report(small_run):
    from genesae_fast.annotate.folder import read_tsv
    from genesae_fast.causal import COLUMNS

    out, messages = small_run
    assert messages[1:] == [f"[{k}] ..." for k in ("extract", "train", "annotate", "causal", "report")]
    table = read_tsv(out / "annotate" / "causal.tsv")
    assert list(table) == list(COLUMNS) and 1 <= len(table["concept"]) <= 4
    summary = json.loads((out / "annotate" / "summary.json").read_text())
    assert summary["causal_pairs_tested"] == len(table["concept"]) and summary["causal_layer"] >= 0
    assert summary["causal_settings"]["passes"] == "forward strand pass only"
    for i in range(len(table["concept"])):
        assert 2 <= int(table["n_sites"][i]) <= 30 and int(table["n_random"][i]) == int(table["n_sites"][i])
        lo, est, hi = (float(table[k][i]) for k in ("delta_site_lo", "delta_site", "delta_site_hi"))
        assert lo <= est <= hi
    page = (out / "annotate" / "report.html").read_text()
    assert "Causal evidence" in page and table["concept"][0] in page
    from genesae_fast.annotate.folder import describe
    from genesae_fast.pipeline import format_summary

    assert f"of {len(table['concept'])} (feature, concept) pairs specific" in format_summary(summary)
    assert describe(out / "annotate")["causal_pairs_tested"] == len(table["concept"])


def test_causal_cli_reruns_with_its_options_and_is_deterministic(small_run):
    from click.testing import CliRunner

    from genesae_fast.cli import cli

    out, _ = small_run
    path = out / "annotate" / "causal.tsv"
    r = CliRunner().invoke(cli, ["causal", str(out), "--pairs", "2", "--sites", "10", "--seed", "5", "-q"])
    assert r.exit_code == 0, r.output
    assert "pairs tested" in r.output
    first = path.read_text()
    assert len(first.splitlines()) <= 3
    r = CliRunner().invoke(cli, ["causal", str(out), "--pairs", "2", "--sites", "10", "--seed", "5", "-q"])
    assert r.exit_code == 0 and path.read_text() == first


def test_causal_cli_errors(small_run, tmp_path):
    from click.testing import CliRunner

    from genesae_fast.cli import cli

    r = CliRunner().invoke(cli, ["causal", "--help"])
    assert r.exit_code == 0 and "--pairs" in r.output and "random feature" in " ".join(r.output.split())
    r = CliRunner().invoke(cli, ["causal", str(tmp_path / "nothing")])
    assert r.exit_code == 2 and "no complete annotation" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(cli, ["causal", str(small_run[0]), "--pairs", "0"])
    assert r.exit_code == 2 and "--pairs" in r.output
    r = CliRunner().invoke(cli, ["causal", str(small_run[0]), "--sites", "1"])
    assert r.exit_code == 2 and "--sites" in r.output


def test_an_interrupted_causal_run_leaves_no_table(small_run, monkeypatch):
    import genesae_fast.causal.stage as stage
    from genesae_fast.causal import run_causal

    out, _ = small_run
    path = out / "annotate" / "causal.tsv"
    path.unlink()

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(stage, "measure_pair", boom)
    with pytest.raises(KeyboardInterrupt):
        run_causal(out, n_pairs=2, max_sites=10, progress=False)
    assert not path.exists() and not list(path.parent.glob("*causal*"))
    monkeypatch.undo()
    run_causal(out, n_pairs=2, max_sites=10, progress=False)
    assert path.is_file()


def test_the_stage_is_on_by_default_for_the_builtin_family_only(tmp_path):
    from genesae_fast.models import builtin_path
    from genesae_fast.pipeline import _builtin_family

    assert _builtin_family("builtin") and _builtin_family(builtin_path())
    assert not _builtin_family(tmp_path) and not _builtin_family(tmp_path / "missing")
