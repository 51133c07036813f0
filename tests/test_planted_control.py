"""CI-sized planted-motif control through the real path: extract -> train -> annotate.

A 120 kbp planted genome (four JASPAR motifs of 9-10 bp, none like its own reverse
complement, 80 sites each, half on each strand; 30 decoys unlike all of them) and the toy causal model of
``genesae_fast.planted.toy``, whose layer 2 scores the planted motifs over the window
ending at each base (+ strand sites only, like a causal LM) and whose layer 3, the one the
receptive-field rule picks, holds that signal smeared 2 bases past each site. Measured on
this control (benchmarks/RESULTS.md): one-pass default median F1 .37, layer 2 .58, an
emulated both-strand pass .48 (layer 3) and .94 (layer 2).

Collected now: the one-pass default finds every planted motif (held-out F1, q-value) with
features that fire on + strand sites and not on - strand ones, and no decoy scores like a
planted motif.

Then the two changes of issue 13, each against that one-pass default with the other held
fixed: pooling a reverse-complement pass (``strands="both"``, layer 3) and the data-chosen
layer (``layer="auto"``, one pass) must each raise the planted median held-out F1.
"""
from __future__ import annotations

import json
import statistics
from pathlib import Path

import numpy as np
import pytest

from genesae_fast.planted import PlantOptions, make_planted_genome, read_manifest, write_planted
from genesae_fast.planted.scores import score_run
from genesae_fast.planted.toy import PlantedToyModel

PLANTED = ("SP1", "HNF4A", "ELK1", "MAFK")  # informative, unlike each other and their reverse complement, <= 10 bp
OPTS = dict(length=120_000, n_sites=80, planted=PLANTED, n_decoys=30, seed=1, offset=300_000)
MIN_F1_GAIN = 0.05  # of the planted median, well above seed noise on this control


@pytest.fixture(scope="module")
def planted_genome(tmp_path_factory):
    opts = PlantOptions(**OPTS)
    pg = make_planted_genome(opts)
    return pg, write_planted(pg, tmp_path_factory.mktemp("planted_genome"), opts)


def run_control(planted_genome, out, **run_kwargs) -> dict:
    """`run_pipeline` with the toy model on the planted genome; the planted and decoy scores.

    Returns ``{"f1": {motif: held-out F1}, "q": {motif: q}, "feature": {motif: best feature},
    "decoy_f1": best decoy held-out F1, "folder": out}`` (from concepts.tsv).
    """
    from genesae_fast.pipeline import RunSettings, run_pipeline

    pg, paths = planted_genome
    settings = RunSettings(expansion=4, k=4, batch=1024, min_train_tokens=200_000, max_train_tokens=200_000)
    run_pipeline(out, genome=paths["fasta"], model=PlantedToyModel(pg.planted, seed=0), motifs=paths["meme"],
                 settings=settings, threads=1, workers=1, progress=False, echo=lambda m: None, **run_kwargs)
    sc = score_run(out / "annotate" / "concepts.tsv", read_manifest(Path(paths["manifest"]).parent))
    planted = sc["planted"]
    return {"f1": {m: v["f1"] for m, v in planted.items()}, "q": {m: v["qvalue"] for m, v in planted.items()},
            "feature": {m: int(v["feature"]) for m, v in planted.items()}, "decoy_f1": sc["best_decoy_f1"],
            "folder": out}


def strand_recall(result: dict, planted_genome) -> dict:
    """Per planted motif: the share of + and of - strand sites where its best feature is on
    at some base of the site, from the run's store and SAE (one-pass runs)."""
    from genesae_fast.annotate.encode import encode_rows
    from genesae_fast.sae import TopKSAE
    from genesae_fast.store import ActivationStore

    pg, _ = planted_genome
    store = ActivationStore.open(result["folder"] / "store.zarr")
    _, bp, _, _ = store.coordinates()
    vals, idx, _ = encode_rows(TopKSAE.load(result["folder"] / "sae"), store.read_rows(0, store.n_rows))
    out = {}
    for i, m in enumerate(pg.planted):
        on = np.zeros(pg.codes.shape[0] + 1, bool)
        on[bp] = ((idx == result["feature"][m.alt_id]) & (vals > 0)).any(axis=1)
        cum = np.concatenate([[0], np.cumsum(on)])
        sel = pg.sites.motif == i
        hit = cum[pg.sites.end[sel]] > cum[pg.sites.start[sel]]
        strand = pg.sites.strand[sel]
        out[m.alt_id] = (float(hit[strand > 0].mean()), float(hit[strand < 0].mean()))
    return out


@pytest.fixture(scope="module")
def default_run(planted_genome, tmp_path_factory):
    """The old default: one pass, the layer of the receptive-field rule (extract.default_layer)."""
    from genesae_fast.extract import default_layer

    layer = default_layer(PlantedToyModel(planted_genome[0].planted, seed=0))
    assert layer == 3
    return run_control(planted_genome, tmp_path_factory.mktemp("planted_default") / "run", layer=layer,
                       strands="forward")


def test_one_pass_default_finds_planted_motifs(default_run):
    for motif, f1 in default_run["f1"].items():
        assert f1 >= 0.25 and default_run["q"][motif] <= 0.05, (motif, f1, default_run["q"][motif])
    assert default_run["decoy_f1"] < statistics.median(default_run["f1"].values())
    assert default_run["decoy_f1"] < min(default_run["f1"].values())


def test_one_pass_default_sees_plus_strand_sites_only(default_run, planted_genome):
    recall = strand_recall(default_run, planted_genome)
    for motif, (plus, minus) in recall.items():
        assert plus >= 0.5, (motif, plus, minus)
        assert minus <= 0.2, (motif, plus, minus)  # no planted motif reads like its reverse complement


def _assert_raises_f1(default: dict, new: dict) -> None:
    """The planted median rises by MIN_F1_GAIN, no planted motif drops, decoys stay below."""
    before, after = statistics.median(default["f1"].values()), statistics.median(new["f1"].values())
    assert after >= before + MIN_F1_GAIN, (default["f1"], new["f1"])
    for motif, f1 in new["f1"].items():
        assert f1 >= default["f1"][motif] - 0.05, (motif, default["f1"][motif], f1)
        assert new["q"][motif] <= 0.05, motif
    assert new["decoy_f1"] < after


def test_strands_both_raises_held_out_f1(planted_genome, default_run, tmp_path):
    """Pooling a reverse-complement pass (``strands="both"``) raises held-out F1 over one pass."""
    _assert_raises_f1(default_run, run_control(planted_genome, tmp_path / "run", strands="both", layer=3))


def test_layer_auto_raises_held_out_f1(planted_genome, default_run, tmp_path):
    """The data-chosen layer (``layer="auto"``: the toy's layer 2) beats the receptive-field rule (layer 3)."""
    result = run_control(planted_genome, tmp_path / "run", layer="auto", strands="forward")
    assert json.loads((tmp_path / "run" / "annotate" / "summary.json").read_text())["layer"] == 2
    _assert_raises_f1(default_run, result)


@pytest.mark.parametrize(("change", "passes"), [
    ({"f1": {"SP1": 0.7, "ELK1": 0.6, "MAFK": 0.7, "HNF4A": 0.7}}, True),
    ({}, False),                                                            # nothing changed
    ({"f1": {"SP1": 0.9, "ELK1": 0.9, "MAFK": 0.9, "HNF4A": 0.05}}, False),  # one motif lost
    ({"f1": {"SP1": 0.7, "ELK1": 0.6, "MAFK": 0.7, "HNF4A": 0.7}, "decoy_f1": 0.8}, False),
])
def test_the_comparison_can_fail(change, passes):
    default = {"f1": {"SP1": 0.2, "ELK1": 0.15, "MAFK": 0.2, "HNF4A": 0.17}, "q": dict.fromkeys(PLANTED, 0.01),
               "decoy_f1": 0.05}
    new = {**default, **change}
    if passes:
        _assert_raises_f1(default, new)
    else:
        with pytest.raises(AssertionError):
            _assert_raises_f1(default, new)
