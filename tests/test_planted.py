"""Planted-motif control genomes (genesae_fast.planted) and the toy causal model.

The genome builder is checked against what it promises: the sites are where sites.bed says,
each site reads (on its strand) like a sample of its smoothed matrix, everything outside the
sites is the base sequence, strands are balanced, sites never overlap, the same seed writes
the same bytes, and decoys are unlike every planted motif by the plain-loop similarity.
The toy model is checked against a plain per-position PWM score.
"""
from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from genesae_fast.annotate.logos import match_score_reference, reverse_complement
from genesae_fast.errors import InputError
from genesae_fast.motifs import read_meme
from genesae_fast.planted import PlantOptions, make_planted_genome, read_manifest, read_sites_bed, write_planted
from genesae_fast.planted.__main__ import main
from genesae_fast.planted.genome import base_sequence, place_sites, sample_sites, smooth
from genesae_fast.sequences import read_fasta

OPTS = dict(length=120_000, n_sites=120, n_decoys=30, seed=5, offset=200_000)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    opts = PlantOptions(**OPTS)
    pg = make_planted_genome(opts)
    out = tmp_path_factory.mktemp("planted")
    return pg, write_planted(pg, out, opts), opts


def _oriented(codes, start, end, strand):
    site = codes[start:end]
    return site if strand > 0 else (3 - site)[::-1]


def test_sites_are_where_the_bed_says_and_read_like_their_motif(written):
    pg, paths, _ = written
    ids = [m.id for m in pg.planted]
    sites = read_sites_bed(paths["bed"], ids)
    codes = read_fasta(paths["fasta"])[0].codes
    np.testing.assert_array_equal(codes, pg.codes)
    for col in ("start", "end", "motif", "strand"):
        np.testing.assert_array_equal(getattr(sites, col), getattr(pg.sites, col))
    for i, m in enumerate(pg.planted):
        sel = np.flatnonzero(sites.motif == i)
        assert len(sel) == OPTS["n_sites"] and np.all(sites.end[sel] - sites.start[sel] == m.width)
        seqs = np.stack([_oriented(codes, sites.start[j], sites.end[j], sites.strand[j]) for j in sel])
        freq = (seqs[:, :, None] == np.arange(4)).mean(axis=0)
        expect = smooth(m.probs)
        # binomial standard error of a column frequency over 120 sites is at most .046
        assert np.abs(freq - expect).max() < 0.2, m.alt_id
        assert np.abs(freq - expect).mean() < 0.04, m.alt_id


def test_minus_strand_sites_are_reverse_complemented(written):
    pg, _, _ = written
    ctcf = next(i for i, m in enumerate(pg.planted) if m.alt_id == "CTCF")  # not palindromic
    sel = np.flatnonzero((pg.sites.motif == ctcf) & (pg.sites.strand < 0))
    as_read = np.stack([pg.codes[pg.sites.start[j]:pg.sites.end[j]] for j in sel])
    freq = (as_read[:, :, None] == np.arange(4)).mean(axis=0)
    probs = smooth(pg.planted[ctcf].probs)
    assert np.abs(freq - reverse_complement(probs)).mean() < 0.04
    assert np.abs(freq - probs).mean() > 0.1


def test_bases_outside_sites_are_the_base_sequence(written):
    pg, _, _ = written
    base = base_sequence(OPTS["length"], offset=OPTS["offset"])
    inside = np.zeros(base.shape[0], bool)
    for a, b in zip(pg.sites.start, pg.sites.end):
        inside[a:b] = True
    np.testing.assert_array_equal(pg.codes[~inside], base[~inside])
    assert inside.sum() == (pg.sites.end - pg.sites.start).sum()  # no overlaps


def test_strands_are_balanced_and_sites_apart(written):
    pg, _, opts = written
    for i in range(len(pg.planted)):
        s = pg.sites.strand[pg.sites.motif == i]
        assert (s > 0).sum() == OPTS["n_sites"] // 2 and (s < 0).sum() == OPTS["n_sites"] - OPTS["n_sites"] // 2
    assert np.all(pg.sites.start[1:] - pg.sites.end[:-1] >= opts.gap)
    assert pg.sites.start[0] >= 0 and pg.sites.end[-1] <= OPTS["length"]


def test_same_seed_same_bytes_other_seed_other_sites(written, tmp_path):
    _, paths, opts = written
    again = write_planted(make_planted_genome(PlantOptions(**OPTS)), tmp_path / "a", opts)
    for kind in ("fasta", "bed", "meme", "manifest"):
        with open(paths[kind], "rb") as f1, open(again[kind], "rb") as f2:
            assert f1.read() == f2.read(), kind
    other = make_planted_genome(PlantOptions(**{**OPTS, "seed": 6}))
    assert not np.array_equal(other.sites.start, written[0].sites.start)


def test_decoys_are_unlike_every_planted_motif(written):
    pg, paths, _ = written
    assert len(pg.decoys) == OPTS["n_decoys"]
    assert not {m.id for m in pg.decoys} & {m.id for m in pg.planted}
    for d in pg.decoys:
        for p in pg.planted:
            assert match_score_reference(d.probs, p.probs) < 0.5, (d.id, p.id)
    meme = read_meme(paths["meme"])
    assert [m.id for m in meme] == [m.id for m in pg.planted + pg.decoys]
    for a, b in zip(meme, pg.planted + pg.decoys):
        np.testing.assert_allclose(a.probs, b.probs / b.probs.sum(1, keepdims=True), atol=2e-6)
    man = read_manifest(paths["fasta"].rsplit("/", 1)[0])
    assert [p["name"] for p in man["planted"]] == ["CTCF", "SP1", "MEF2A", "CREB1", "FOS::JUN", "HNF4A"]


@settings(max_examples=60, deadline=None)
@given(widths=st.lists(st.integers(1, 30), min_size=0, max_size=40), slack=st.integers(0, 500),
       gap=st.integers(0, 12), seed=st.integers(0, 2**32 - 1))
def test_place_sites_never_overlaps(widths, slack, gap, seed):
    w = np.array(widths, np.int64)
    length = int(w.sum()) + gap * max(len(w) - 1, 0) + 100 + slack
    starts = place_sites(length, w, np.random.default_rng(seed), gap=gap, margin=50)
    o = np.argsort(starts)
    ends = starts + w
    assert np.all(starts >= 50) and np.all(ends <= length - 50)
    assert np.all(starts[o][1:] - ends[o][:-1] >= gap)


@settings(max_examples=40, deadline=None)
@given(n_motifs=st.integers(1, 4), n_sites=st.integers(1, 9), slack=st.integers(0, 300),
       seed=st.integers(0, 2**32 - 1))
def test_plant_keeps_every_promise(n_motifs, n_sites, slack, seed):
    """Random matrices on random sequence: per-motif counts and strands, no overlap, outside untouched."""
    from genesae_fast.motifs import Motif
    from genesae_fast.planted.genome import plant

    rng = np.random.default_rng(seed)
    motifs = [Motif(f"M{i}", "", rng.dirichlet(np.ones(4), size=int(rng.integers(1, 12)))) for i in range(n_motifs)]
    length = sum(m.width + 10 for m in motifs) * n_sites + 100 + slack
    base = rng.integers(0, 5, size=length).astype(np.uint8)
    codes, sites = plant(base, motifs, n_sites, rng, gap=10)
    assert len(sites) == n_motifs * n_sites and np.all(np.diff(sites.start) > 0)
    assert np.all(sites.start[1:] - sites.end[:-1] >= 10)
    inside = np.zeros(length, bool)
    for a, b, m in zip(sites.start, sites.end, sites.motif):
        assert b - a == motifs[m].width
        inside[a:b] = True
    np.testing.assert_array_equal(codes[~inside], base[~inside])
    assert np.all(codes[inside] < 4)
    for i in range(n_motifs):
        s = sites.strand[sites.motif == i]
        assert (s > 0).sum() == n_sites // 2 and (s < 0).sum() == n_sites - n_sites // 2


def test_sampled_sites_follow_the_matrix():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(4) * 0.5, size=6)
    s = sample_sites(probs, 20_000, rng)
    freq = (s[:, :, None] == np.arange(4)).mean(axis=0)
    np.testing.assert_allclose(freq, probs, atol=0.015)  # 4.5 standard errors at p = .5


def test_mutate_changes_the_expected_fraction():
    a = base_sequence(50_000)
    b = base_sequence(50_000, mutate=0.2, rng=np.random.default_rng(1))
    assert abs((a != b).mean() - 0.2 * 0.75) < 0.01  # a quarter of the draws repeat the base


@pytest.mark.parametrize(("kwargs", "message"), [
    (dict(length=2_000, n_sites=400), "--length 2000: too short"),
    (dict(length=5_000, n_sites=10, planted=("NOT_A_TF",)), "--planted NOT_A_TF: no motif"),
    (dict(length=5_000, n_sites=10, n_decoys=5000), "--decoys 5000: only"),
    (dict(length=10**9), "too short for --offset 0 --length 1000000000"),
    (dict(length=5_000, n_sites=10, planted=("SP1", "MA0079.5")), "named twice"),
    (dict(length=5_000, n_sites=10, genome="/nonexistent/genome.fa"), "/nonexistent/genome.fa: no such file"),
    (dict(length=5_000, n_sites=10, mutate=1.5), "--mutate 1.5: must be in"),
])
def test_bad_options_give_one_line_errors(kwargs, message):
    with pytest.raises(InputError, match=message) as exc:
        make_planted_genome(PlantOptions(**kwargs))
    assert "\n" not in str(exc.value)


def test_cli_writes_the_folder_and_exits_2_on_bad_input(tmp_path):
    runner = CliRunner()
    ok = runner.invoke(main, ["--out", str(tmp_path / "p"), "--length", "20000", "--sites", "10", "--decoys", "30"])
    assert ok.exit_code == 0, ok.output
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == ["genome.fa", "motifs.meme", "planted.json",
                                                                 "sites.bed"]
    bad = runner.invoke(main, ["--out", str(tmp_path / "q"), "--length", "500", "--sites", "10"])
    assert bad.exit_code == 2 and "too short" in bad.output
    assert not (tmp_path / "q" / "planted.json").exists()
    assert "--decoys" in runner.invoke(main, ["--help"]).output


def _concepts_tsv(path, rows):
    cols = ("concept", "kind", "n_hits", "feature", "f1", "qvalue", "neuron", "neuron_f1")
    path.write_text("\t".join(cols) + "\n" + "".join("\t".join(map(str, r)) + "\n" for r in rows))
    return path


def test_score_run_reads_planted_and_decoys(tmp_path):
    from genesae_fast.planted.scores import results_markdown, score_run

    manifest = {"planted": [{"id": "P1", "name": "A"}, {"id": "P2", "name": "B"}, {"id": "P3", "name": "C"}],
                "decoys": [{"id": "D1", "name": "X"}, {"id": "D2", "name": "Y"}, {"id": "D9", "name": "Z"}]}
    tsv = _concepts_tsv(tmp_path / "concepts.tsv", [
        ("P1", "motif", 10, 3, 0.6, 0.001, 7, 0.2), ("P2", "motif", 10, 4, 0.35, 0.01, 1, 0.1),
        ("P3", "motif", 10, 5, 0.1, 0.5, 2, 0.05), ("D1", "motif", 9, 6, 0.2, 0.3, 3, 0.1),
        ("D2", "motif", 9, 8, 0.3, 0.2, 3, 0.1), ("P1", "gene", 1, 1, 0.99, 0.0, 1, 0.9),  # a gene concept: ignored
        ("P1", "motif", 10, 9, 0.01, 1.0, 7, 0.0),  # a second row of a concept: the first one counts
    ])
    s = score_run(tsv, manifest)
    assert s["planted"]["A"] == {"id": "P1", "f1": 0.6, "neuron_f1": 0.2, "feature": "3", "qvalue": 0.001}
    assert s["planted_median_f1"] == 0.35 and s["best_decoy_f1"] == 0.3 and s["best_decoy"] == "D2 Y"
    assert s["decoys_scored"] == 2 and s["best_decoy_below_median"]
    assert s["planted_f1_ge_0.3"] == 2 and s["planted_f1_ge_0.5"] == 1
    md = results_markdown({"one": s, "later": None})
    assert "| A | 0.60 / 0.20 |" in md and "| planted at F1 >= 0.3 | 2/3 |" in md
    assert "Not run" in md and "later" in md.splitlines()[-1]
    s2 = score_run(_concepts_tsv(tmp_path / "c2.tsv", [("P1", "motif", 1, 0, 0.2, 1, 0, 0.1),
                                                         ("D1", "motif", 1, 0, 0.4, 1, 0, 0.1)]), manifest)
    assert np.isnan(s2["planted"]["B"]["f1"]) and s2["planted_median_f1"] == 0.0  # missing = not found
    assert not s2["best_decoy_below_median"]
