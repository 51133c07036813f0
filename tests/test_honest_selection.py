"""Every "best" is chosen on the select part of the held-out split and reported on the
evaluate part: the best feature of a concept (concepts.tsv), the best neuron, the best
concept of a feature (features.tsv) and the ranked list of best features (summary.json).

Each test builds scores where the select part and the evaluate part disagree, so a choice
made on the evaluate part (or on q-values, which come from it) gives a different answer."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from genesae_fast.annotate import tables as TB


def scores(kind: str, f1_select, f1, q) -> TB.ConceptScores:
    """ConceptScores of (C, F) arrays; precision/recall set to the held-out F1."""
    f1_select, f1, q = (np.asarray(x, np.float64) for x in (f1_select, f1, q))
    obs = {"threshold": np.zeros_like(f1, dtype=np.int64), "f1_select": f1_select, "precision": f1, "recall": f1,
           "f1": f1, "n_hits": np.full((f1.shape[0], 2), 5, np.int64)}
    names = [f"{kind}{i}" for i in range(f1.shape[0])]
    return TB.ConceptScores(kind, names, obs, q.copy(), q, 10, [""] * len(names) if kind == "motif" else [])


CFG = SimpleNamespace(qvalue=0.05, motif_rows_per_feature=5, fractions=(0.15, 0.5))


def test_best_concept_of_a_feature_is_chosen_on_select_not_on_q():
    # feature 0: concept 0 is best on select (.6) but worse held out (.2, q .04); concept 1
    # has the lower q (.001, held-out .9): the feature's best concept must be concept 0
    sc = scores("motif", [[0.6], [0.4]], [[0.2], [0.9]], [[0.04], [0.001]])
    _, best = TB.pair_table(sc, np.array([True]), CFG)
    assert best.label[0] == "motif0" and best.f1[0] == 0.2 and best.qvalue[0] == 0.04 and best.f1_select[0] == 0.6
    # equal select F1: the lower q wins
    sc = scores("gene", [[0.5], [0.5]], [[0.2], [0.9]], [[0.04], [0.001]])
    _, best = TB.pair_table(sc, np.array([True]), CFG)
    assert best.label[0] == "gene1"


def test_best_feature_of_a_concept_and_best_neuron_are_chosen_on_select():
    sc = scores("motif", [[0.1, 0.7, 0.3]], [[0.9, 0.2, 0.95]], [[0.01, 0.01, 0.01]])
    cs = TB.concept_summary([sc], np.array([True, True, True]), {})
    assert cs["feature"] == [1] and cs["f1"] == [0.2]
    # an inactive feature is never chosen, however high its select F1
    cs = TB.concept_summary([sc], np.array([True, False, True]), {})
    assert cs["feature"] == [2] and cs["f1"] == [0.95]
    neurons = {"f1_select": np.array([[0.1, 0.7, 0.3]]), "f1": np.array([[0.9, 0.2, 0.95]])}
    assert TB.best_neurons(neurons, ["motif0"]) == {"motif0": (1, 0.2)}


def test_best_features_are_ranked_on_select_and_shown_held_out():
    # feature 0: select .9, held out .1; feature 1: select .5, held out .8; feature 2 not significant
    m = scores("motif", [[0.9, 0.5, 0.99]], [[0.1, 0.8, 0.99]], [[0.01, 0.01, 0.5]])
    _, best_m = TB.pair_table(m, np.ones(3, bool), CFG)
    _, best_c = TB.pair_table(None, np.ones(3, bool), CFG)
    listed = TB.best_list(best_m, best_c, CFG.qvalue)
    assert [e["feature"] for e in listed] == [0, 1]
    assert [e["f1"] for e in listed] == [0.1, 0.8]
    assert [e["concept"] for e in listed] == ["motif0", "motif0"]


@pytest.mark.parametrize("seed", range(5))
def test_random_scores_choices_never_read_held_out_values(seed):
    """Shuffling the held-out F1s and q-values leaves every choice (not the values) unchanged."""
    rng = np.random.default_rng(seed)
    C, F = 6, 9
    sel = rng.random((C, F))
    a = scores("motif", sel, rng.random((C, F)), rng.random((C, F)) * 0.01)
    b = scores("motif", sel, rng.random((C, F)), rng.random((C, F)) * 0.01)
    active = rng.random(F) > 0.2
    _, best_a = TB.pair_table(a, active, CFG)
    _, best_b = TB.pair_table(b, active, CFG)
    assert best_a.label == best_b.label
    assert TB.concept_summary([a], active, {})["feature"] == TB.concept_summary([b], active, {})["feature"]
    empty = TB.pair_table(None, active, CFG)[1]
    la, lb = TB.best_list(best_a, empty, 0.05), TB.best_list(best_b, empty, 0.05)
    assert [e["feature"] for e in la] == [e["feature"] for e in lb]


def test_a_features_best_concept_is_its_best_significant_one_and_counts_in_the_summary():
    # feature 0: its highest select F1 (.9, a base-rate CDS) is not significant, another
    # concept is (q .001, select .5): that one is its best concept, and the summary counts
    # the feature. Feature 1: nothing significant, so its highest select F1 stays its best
    # concept and it is not counted. Feature 2: significant but not tested (inactive).
    gene = scores("gene", [[0.9, 0.5, 0.5], [0.5, 0.2, 0.1]], [[0.6, 0.5, 0.5], [0.05, 0.2, 0.9]],
                  [[0.9, 0.9, 0.001], [0.001, 0.5, 0.001]])
    active = np.array([True, True, False])
    _, best_c = TB.pair_table(gene, active, CFG)
    _, best_m = TB.pair_table(None, active, CFG)
    assert best_c.label[0] == "gene1" and best_c.qvalue[0] == 0.001 and best_c.f1[0] == 0.05
    assert best_c.label[1] == "gene0" and best_c.qvalue[1] == 0.9
    assert best_c.label[2] == ""
    stats = SimpleNamespace(active=active, n_features=3, n_tokens=10, fvu=0.1, l0=2.0, n_active=np.array([5, 5, 0]))
    cs = {"f1": [0.6, 0.2], "neuron_f1": [0.1, 0.1], "qvalue": [0.9, 0.5]}
    s = TB.summary_dict(stats, None, gene, cs, best_m, best_c, SimpleNamespace(qvalue=0.05, fractions=(0.5,)),
                        genome_bp=10, split_block=5)
    assert (s["features_with_gene_concept"], s["features_with_motif"], s["features_with_any_concept"]) == (1, 0, 1)
    feats, score = TB.feature_table(SimpleNamespace(n_features=3, n_active=np.array([5, 5, 0]), n_tokens=10,
                                                    fmax=np.ones(3), mean_active=np.ones(3), active=active,
                                                    hist=[[1], [1], [0]]),
                                    best_m, best_c, _no_logos(3), 0.05)
    assert list(score) == [0.05, 0.0, 0.0]  # the score, hence tracks and the best list, see feature 0
    assert [e["feature"] for e in TB.best_list(best_m, best_c, 0.05)] == [0]


def _no_logos(F: int) -> TB.FeatureLogos:
    return TB.FeatureLogos({}, [""] * F, [""] * F, np.zeros(F), np.zeros(F), [""] * F, np.zeros(F))
