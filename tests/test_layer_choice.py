"""Layers chosen by data (genesae_fast.layer_choice, `genesae run --layer auto`).

A deterministic toy gene LM with three candidate layers: layer 2's channels are exact
detectors of two planted motifs, layers 1 and 3 are 3-mer detectors that know nothing of
them. The choice must pick layer 2, use only the select half of the held-out split (the
evaluate half can be rewritten without changing anything the choice computes), resume, and
refuse bad --layer values with one line.
"""
from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from genesae_fast.errors import InputError
from genesae_fast.layer_choice import (COLUMNS, LAYERS_FILE, Choice, ChoiceSettings, candidate_layers, choose_layer,
                                       parse_layer_spec, pick, read_choice, score_concepts, select_pieces)
from genesae_fast.models.base import GeneModel, TokenizedSequence
from genesae_fast.sequences import encode

MOTIFS = ("GATTACAGCT", "CCGTAAGGTC")
GENOME_BP = 60_000
SPLIT = 6_000          # default_block(60_000): the select/evaluate block of the full run


class MotifLayerModel(GeneModel):
    """Layers 1 and 3: one-hot of the last 3-mer (two different foldings of its 64 codes onto
    d channels); layer 2: channel j is 1 where the last 10 bases are motif j, plus the
    current base one-hot at 0.2. Receptive fields 1, 3, 10, 3 bp (as reported)."""

    def __init__(self):
        import torch

        self.name, self.d_model, self.n_layers = "motif-toy", 8, 3
        self.identity = {"name": "motif-toy", "path": "", "sha256": "motif-toy-1"}
        self.default_window, self.default_stride, self.device = 512, 384, torch.device("cpu")
        self.codes = [np.asarray(encode(m), np.int64) for m in MOTIFS]

    def tokenize(self, sequence: str) -> TokenizedSequence:
        codes = np.asarray(encode(sequence), np.int64)
        pos = np.arange(len(codes), dtype=np.int64)
        return TokenizedSequence(codes, pos, pos + 1)

    def layer_info(self) -> dict:
        return {"receptive_field_bp": [1, 3, 10, 3]}

    def forward_windows(self, token_ids: np.ndarray, layer: int) -> np.ndarray:
        B, W = token_ids.shape
        out = np.zeros((B, W, self.d_model), np.float32)
        ids = np.minimum(token_ids, 3)
        if layer in (1, 3):
            prev = np.pad(ids, ((0, 0), (2, 0)))
            kmer = prev[:, :-2] * 16 + prev[:, 1:-1] * 4 + prev[:, 2:]
            ch = kmer % self.d_model if layer == 1 else (kmer * 5 + kmer // 8) % self.d_model
            np.put_along_axis(out, ch[..., None], 1.0, axis=2)
        else:
            np.put_along_axis(out[..., 4:], ids[..., None], 0.2 if layer == 2 else 1.0, axis=2)
        if layer == 2:
            for j, m in enumerate(self.codes):
                w = len(m)
                win = np.lib.stride_tricks.sliding_window_view(token_ids, w, axis=1)   # [B, W-w+1, w]
                out[:, w - 1:, j] = np.all(win == m, axis=2)
        return out


def planted_genome(seed: int = 0, sites: int = 120) -> str:
    """A random genome with each motif planted ``sites`` times (+ strand, no overlaps)."""
    rng = np.random.default_rng(seed)
    seq = np.array(list("ACGT"))[rng.integers(0, 4, GENOME_BP)]
    slots = rng.choice(GENOME_BP // 40 - 1, size=2 * sites, replace=False) * 40 + 10
    for i, s in enumerate(slots):
        seq[s:s + 10] = list(MOTIFS[i % 2])
    return "".join(seq)


def write_inputs(d, seq: str):
    from genesae_fast.motifs import Motif, write_meme
    from genesae_fast.sequences import write_fasta

    write_fasta([("chr", seq)], d / "g.fa")
    probs = [np.full((10, 4), 0.01) for _ in MOTIFS]
    for p, m in zip(probs, MOTIFS):
        p[np.arange(10), encode(m)] = 0.97
    write_meme([Motif(f"M{j}", f"toy{j}", p, 100.0) for j, p in enumerate(probs)], d / "m.meme")
    return d / "g.fa", d / "m.meme"


def run_choice(d, genome, motifs):
    job = Choice(d / "layers", MotifLayerModel(), ChoiceSettings(budget_bp=30_000, train_tokens=30_000, expansion=2,
                                                                 k=2, batch=512), str(motifs), threads=1)
    return choose_layer(str(genome), job, [1, 2, 3], split_block=SPLIT, covered_bp=GENOME_BP, echo=lambda m: None)


def table_without_seconds(path) -> list:
    rows = [ln.split("\t") for ln in path.read_text().splitlines()]
    col = rows[[i for i, r in enumerate(rows) if r[0] == "layer"][0]].index("seconds")
    return [r[:col] + r[col + 1:] if len(r) > col else r for r in rows]


@pytest.fixture(scope="module")
def chosen(tmp_path_factory):
    d = tmp_path_factory.mktemp("choice")
    genome, motifs = write_inputs(d, planted_genome())
    return d, genome, motifs, run_choice(d, genome, motifs)


def test_auto_picks_the_motif_layer_and_writes_the_table(chosen):
    d, _, _, choice = chosen
    assert choice["layer"] == 2 and choice["candidates"] == [1, 2, 3]
    assert choice["scores"][2] >= 2 > max(choice["scores"][1], choice["scores"][3])
    lines = (d / LAYERS_FILE).read_text().splitlines()
    assert lines[0] == f"# split_block_bp: {SPLIT}" and lines[1] == "# select_bp: 30000"
    assert lines[3].split("\t") == list(COLUMNS)
    rows = {int(r["layer"]): r for r in choice["rows"]}
    assert [rows[x]["receptive_field_bp"] for x in (1, 2, 3)] == ["3", "10", "3"]
    assert [rows[x]["chosen"] for x in (1, 2, 3)] == ["0", "1", "0"]
    assert float(rows[2]["best_f1"]) > 0.8 and rows[2]["best_concept"] in ("M0", "M1")
    assert int(rows[2]["motif_f1_ge_0.3"]) == 2
    # the per-layer annotation folders stay (an atlas per layer); the stores are deleted
    assert (d / "layers" / "L1" / "annotate" / "concepts.tsv").is_file()
    assert not (d / "layers" / "L2" / "store.zarr").exists()


def test_the_choice_reads_only_the_select_split(chosen, tmp_path):
    """Rewrite every evaluate block of the genome (sites removed, random bases, planted decoys
    of layer 1's 3-mers): the select FASTA, the scores and the choice stay the same."""
    d, _, motifs, _ = chosen
    seq = np.array(list(planted_genome()))
    rng = np.random.default_rng(7)
    for b0 in range(SPLIT, GENOME_BP, 2 * SPLIT):
        seq[b0:b0 + SPLIT] = np.array(list("ACGT"))[rng.integers(0, 4, SPLIT)]
    altered, _ = write_inputs(tmp_path, "".join(seq))
    assert altered.read_bytes() != (d / "g.fa").read_bytes()
    again = run_choice(tmp_path, altered, motifs)
    assert (tmp_path / "layers" / "select.fa").read_bytes() == (d / "layers" / "select.fa").read_bytes()
    assert table_without_seconds(tmp_path / LAYERS_FILE) == table_without_seconds(d / LAYERS_FILE)
    assert again["layer"] == 2


def test_rewriting_a_select_block_changes_the_choice_input(chosen, tmp_path):
    """The converse (the test above could not pass by ignoring the genome): a select block
    rewritten changes the select FASTA."""
    from genesae_fast.layer_choice import write_select_genome

    d, _, _, _ = chosen
    seq = np.array(list(planted_genome()))
    seq[100:200] = "A"
    altered, _ = write_inputs(tmp_path, "".join(seq))
    pieces = select_pieces(str(altered), split_block=SPLIT, covered_bp=GENOME_BP, budget_bp=30_000)
    assert pieces == [("chr", a, a + SPLIT) for a in range(0, 30_000 * 2, 2 * SPLIT)]
    assert write_select_genome(str(altered), tmp_path / "s.fa", pieces) == 30_000
    assert (tmp_path / "s.fa").read_bytes() != (d / "layers" / "select.fa").read_bytes()


def test_a_killed_choice_resumes_with_the_same_table(chosen, tmp_path):
    import shutil

    d, genome, motifs, _ = chosen
    shutil.copytree(d / "layers", tmp_path / "layers")
    shutil.rmtree(tmp_path / "layers" / "L3")                    # killed before layer 3
    (tmp_path / "layers" / "L2" / "annotate" / "summary.json").unlink()   # and inside layer 2's annotation
    kept = (tmp_path / "layers" / "L1" / "annotate" / "concepts.tsv").stat().st_mtime_ns
    again = run_choice(tmp_path, genome, motifs)
    assert (tmp_path / "layers" / "L1" / "annotate" / "concepts.tsv").stat().st_mtime_ns == kept
    assert table_without_seconds(tmp_path / LAYERS_FILE) == table_without_seconds(d / LAYERS_FILE)
    assert again["layer"] == 2


@pytest.mark.parametrize("covered, budget, expect", [
    (60_000, 30_000, [(0, 6_000), (12_000, 18_000), (24_000, 30_000), (36_000, 42_000), (48_000, 54_000)]),
    (60_000, 8_000, [(0, 6_000), (12_000, 14_000)]),
    (10_000, 100_000, [(0, 6_000)]),
    (12_100, 100_000, [(0, 6_000)]),                    # 100 bp of the third block: under MIN_PIECE_BP
    (12_500, 100_000, [(0, 6_000), (12_000, 12_500)]),
])
def test_select_pieces_follow_the_full_runs_split(tmp_path, covered, budget, expect):
    from genesae_fast.sequences import write_fasta

    write_fasta([("a", "ACGT" * 2_500), ("b", "ACGT" * 12_500)], tmp_path / "g.fa")   # 10 kbp + 50 kbp
    pieces = select_pieces(str(tmp_path / "g.fa"), split_block=SPLIT, covered_bp=covered, budget_bp=budget)
    # global [g0, g1) -> (record, local start, local end): record b starts at 10,000
    glob = [(a, b) if name == "a" else (a + 10_000, b + 10_000) for name, a, b in pieces]
    merged = []
    for a, b in glob:   # a select block that spans the record boundary comes as two pieces
        if merged and merged[-1][1] == a:
            merged[-1] = (merged[-1][0], b)
        else:
            merged.append((a, b))
    assert merged == expect
    assert all((a // SPLIT) % 2 == 0 and (b - 1) // SPLIT == a // SPLIT for a, b in glob)


def test_score_counts_concepts_with_hits_at_f1_level():
    concepts = {"concept": ["m1", "m2", "m3", "CDS(+)", "empty"], "kind": ["motif", "motif", "motif", "gene", "motif"],
                "n_hits": ["5", "7", "9", "3", "0"], "f1": ["0.3", "0.29", "NA", "0.9", "0.95"]}
    s = score_concepts(concepts)
    assert (s["score"], s["concepts"], s["motif_f1_ge_0.3"], s["gene_f1_ge_0.3"]) == (2, 4, 1, 1)
    assert s["mean_best_f1"] == pytest.approx((0.3 + 0.29 + 0 + 0.9) / 4)
    assert (s["best_concept"], s["best_f1"]) == ("CDS(+)", 0.9)
    rows = [{"layer": 3, "score": 2, "mean_best_f1": 0.1}, {"layer": 1, "score": 2, "mean_best_f1": 0.2},
            {"layer": 2, "score": 3, "mean_best_f1": 0.2}, {"layer": 4, "score": 1, "mean_best_f1": 0.9}]
    assert pick(rows) == 4  # the mean decides, not the count at 0.3
    assert pick(rows[:3]) == 2  # equal means: more concepts at 0.3
    assert pick(rows[:2]) == 1
    assert pick([dict(r, score=0) for r in rows[1:3]]) == 1  # all equal: the shallower layer


@pytest.mark.parametrize("value, expect", [
    ("auto", "auto"), ("AUTO", "auto"), (None, "auto"), ("3", 3), (3, 3), ("0", 0), ("3,2", (2, 3)),
    (" 2, 3 ,2", (2, 3)), ([4, 1], (1, 4)), ("5,5", 5)])
def test_parse_layer_spec(value, expect):
    assert parse_layer_spec(value) == expect


@pytest.mark.parametrize("value", ["", "x", "2,,3", "-1", "2,x", "1.5", "auto,2", -1, True])
def test_bad_layer_values_are_one_line_errors(value):
    with pytest.raises(InputError) as e:
        parse_layer_spec(value)
    assert "--layer" in str(e.value) and "\n" not in str(e.value)


def test_candidates_by_receptive_field_spread_or_list():
    from genesae_fast.models import load_model

    assert candidate_layers(load_model("builtin"), "auto") == [1, 2, 3, 4, 5]      # 3, 7, 15, 31, 63 bp
    assert candidate_layers(MotifLayerModel(), "auto") == [1, 2, 3]
    assert candidate_layers(MotifLayerModel(), (0, 3)) == [0, 3]

    class Deep(MotifLayerModel):
        def layer_info(self):
            return {}

    deep = Deep()
    deep.n_layers = 24
    assert candidate_layers(deep, "auto") == [1, 7, 12, 18, 24]
    with pytest.raises(InputError, match=r"^--layer 2,9: layer 9 is out of range for motif-toy \(valid layers 0..3\)$"):
        candidate_layers(MotifLayerModel(), (2, 9))


@pytest.mark.parametrize("value, message", [
    ("x", "--layer x: expected 'auto', a layer number or a list such as 2,3 (bad item 'x')"),
    ("2,,3", "--layer 2,,3: expected 'auto', a layer number or a list such as 2,3 (bad item '')"),
    ("1,99", "--layer 1,99: layer 99 is out of range for builtin (valid layers 0..6)"),
])
def test_cli_bad_layer_exits_2_with_one_line(tmp_path, value, message):
    from genesae_fast.cli import cli
    from genesae_fast.sequences import write_fasta

    write_fasta([("chr", "ACGT" * 500)], tmp_path / "g.fa")
    res = CliRunner().invoke(cli, ["run", "--genome", str(tmp_path / "g.fa"), "--layer", value, "--out",
                                   str(tmp_path / "o"), "--motifs", "none", "-q"])
    assert res.exit_code == 2
    assert res.output.strip().splitlines()[-1].endswith(message)
    assert not (tmp_path / "o" / LAYERS_FILE).exists()


def test_read_choice_absent(tmp_path):
    assert read_choice(tmp_path) is None


SETTINGS = dict(expansion=2, k=2, batch=512, min_train_tokens=30_000, max_train_tokens=30_000, choice_bp=30_000,
                choice_tokens=30_000, neurons=False)


@pytest.fixture(scope="module")
def piped(chosen, tmp_path_factory):
    """`run_pipeline(layer="auto", seeds=2)` on the planted genome, and its messages."""
    from genesae_fast.pipeline import RunSettings, run_pipeline

    _, genome, motifs, _ = chosen
    out = tmp_path_factory.mktemp("piped") / "auto"
    msgs = []
    summary = run_pipeline(out, genome=str(genome), model=MotifLayerModel(), motifs=str(motifs),
                           settings=RunSettings(seeds=2, **SETTINGS), progress=False, workers=1, threads=1,
                           echo=msgs.append)
    return out, summary, msgs


def test_run_pipeline_auto_beats_the_receptive_field_rule_and_resumes(chosen, piped, tmp_path):
    """`run_pipeline(layer="auto")`: the plan shows the choice, layers.tsv and the summary record
    it, the store is of layer 2, and its held-out motif F1 beats the old rule's layer (3 for
    this model); a rerun skips every stage."""
    from genesae_fast.annotate.folder import read_tsv
    from genesae_fast.extract import default_layer
    from genesae_fast.pipeline import RunSettings, format_summary, run_pipeline
    from genesae_fast.store import ActivationStore

    _, genome, motifs, _ = chosen
    out, auto, msgs = piped
    assert msgs[0].splitlines()[1].startswith("  layers    3 candidate layers (1,2,3): a small SAE each on <= 30,000")
    assert msgs[0].splitlines()[5].startswith("  seeds     1 more SAE seed: train and annotate each")
    assert msgs[1] == "[layers] ..." and msgs[-5:] == [f"[{k}] ..." for k in ("extract", "train", "annotate", "seeds",
                                                                               "report")]
    assert ActivationStore.open(out / "store.zarr").attrs["layer"] == 2
    assert auto["layer_choice"]["layer"] == 2 and auto["layer_choice"]["candidates"] == [1, 2, 3]
    assert "layer 2 chosen by data from 3 candidates" in format_summary(auto)
    assert "layer chosen on the select split" in (out / "annotate" / "report.html").read_text()
    old_rule = default_layer(MotifLayerModel())
    assert old_rule == 3
    s = RunSettings(**SETTINGS)
    fixed = run_pipeline(tmp_path / "fixed", genome=str(genome), model=MotifLayerModel(), layer=old_rule,
                         motifs=str(motifs), settings=s, progress=False, workers=1, threads=1, echo=lambda m: None)
    assert "layer_choice" not in fixed and not (tmp_path / "fixed" / LAYERS_FILE).exists()
    assert fixed["seed_spread"]["measured"] is False and "--seeds 2" in fixed["seed_spread"]["note"]

    def motif_f1(run_dir):
        t = read_tsv(run_dir / "annotate" / "concepts.tsv")
        return [float(f) for f, k in zip(t["f1"], t["kind"]) if k == "motif"]

    assert min(motif_f1(out)) > 0.8 > 0.3 > max(motif_f1(tmp_path / "fixed"))
    msgs.clear()
    run_pipeline(out, genome=str(genome), model=MotifLayerModel(), motifs=str(motifs),
                 settings=RunSettings(seeds=2, **SETTINGS), progress=False, workers=1, threads=1, echo=msgs.append)
    assert msgs[1:] == [f"[{k}] already complete, skipped"
                        for k in ("layers", "extract", "train", "annotate", "seeds", "report")]


def test_extract_stage_brings_the_choice_along(chosen, piped, tmp_path):
    """--stages extract with --layer auto: the choice runs first when layers.tsv is absent
    (here it is copied, so it is skipped and its layer used); train alone does not need it."""
    import shutil

    from genesae_fast.pipeline import RunSettings, run_pipeline
    from genesae_fast.store import ActivationStore

    _, genome, motifs, _ = chosen
    out, _, _ = piped
    (tmp_path / "o").mkdir()
    shutil.copy(out / LAYERS_FILE, tmp_path / "o" / LAYERS_FILE)
    msgs = []
    run_pipeline(tmp_path / "o", genome=str(genome), model=MotifLayerModel(), motifs=str(motifs),
                 settings=RunSettings(**SETTINGS), progress=False, workers=1, only=["extract"], echo=msgs.append)
    assert msgs[1:] == ["[layers] already complete, skipped", "[extract] ..."]
    assert ActivationStore.open(tmp_path / "o" / "store.zarr").attrs["layer"] == 2
    (tmp_path / "o" / LAYERS_FILE).unlink()
    msgs.clear()
    run_pipeline(tmp_path / "o", genome=str(genome), model=MotifLayerModel(), motifs=str(motifs),
                 settings=RunSettings(**SETTINGS), progress=False, workers=1, only=["train"], echo=msgs.append)
    assert msgs[1:] == ["[train] ..."]


def test_seed_spread_table_and_light_annotation_match_the_full_one(piped, tmp_path):
    """seeds.tsv: seed 0's column is the run's own concepts.tsv F1 (the light annotation of the
    extra seeds scores exactly as the full one), seed 1 is another SAE; the summary's spread
    is computed from the table."""
    from genesae_fast.annotate import annotate
    from genesae_fast.annotate.folder import read_tsv
    from genesae_fast.layer_choice import light_config
    from genesae_fast.seed_spread import MIN_F1, spread_summary

    out, auto, _ = piped
    main = read_tsv(out / "annotate" / "concepts.tsv")
    seeds = read_tsv(out / "seeds.tsv")
    assert list(seeds) == ["concept", "kind", "f1_seed0", "f1_seed1", "range"]
    with_hits = [c for c, n in zip(main["concept"], main["n_hits"]) if int(n) > 0]
    assert seeds["concept"] == with_hits
    main_f1 = dict(zip(main["concept"], main["f1"]))
    assert [float(main_f1[c]) for c in with_hits] == [float(x) for x in seeds["f1_seed0"]]
    annotate(out / "store.zarr", out / "sae", tmp_path / "light", genome=str(auto["genome"]), motifs=auto["motif_spec"],
             cfg=light_config(0, 1), progress=False, workers=1)
    light = read_tsv(tmp_path / "light" / "concepts.tsv")
    assert light["f1"] == main["f1"] and light["feature"] == main["feature"]
    assert (out / "sae_seed1" / "config.json").is_file()
    f1 = np.array([[float(a), float(b)] for a, b in zip(seeds["f1_seed0"], seeds["f1_seed1"])])
    keep = f1.max(axis=1) >= MIN_F1
    rng = f1.max(axis=1) - f1.min(axis=1)
    assert [float(x) for x in seeds["range"]] == pytest.approx(list(rng), abs=1e-5)
    spread = spread_summary(out, 2)
    assert auto["seed_spread"] == spread
    assert spread["concepts"] == int(keep.sum()) and spread["median_range"] == pytest.approx(np.median(rng[keep]))
    assert spread["concepts_f1_ge_0.3_per_seed"] == [int(x) for x in (f1 >= 0.3).sum(axis=0)]


def test_a_genome_too_small_for_a_choice_is_a_one_line_error(tmp_path):
    from genesae_fast.layer_choice import write_select_genome
    from genesae_fast.sequences import write_fasta

    write_fasta([("chr", "ACGT" * 40)], tmp_path / "g.fa")
    pieces = select_pieces(str(tmp_path / "g.fa"), split_block=1_000, covered_bp=160, budget_bp=10_000)
    assert pieces == []
    with pytest.raises(InputError, match=r"g\.fa: too small to choose a layer on .*; give --layer N$"):
        write_select_genome(str(tmp_path / "g.fa"), tmp_path / "s.fa", pieces)
    assert not (tmp_path / "s.fa").exists()


def test_a_choice_with_other_settings_does_not_reuse_old_layers(chosen, tmp_path):
    """Per-layer results are reused only by a choice with the same select FASTA and settings."""
    import shutil

    d, genome, motifs, _ = chosen
    shutil.copytree(d / "layers", tmp_path / "layers")
    marker = tmp_path / "layers" / "L1" / "annotate" / "stale"
    marker.write_text("")
    job = Choice(tmp_path / "layers", MotifLayerModel(), ChoiceSettings(budget_bp=30_000, train_tokens=30_000,
                                                                        expansion=2, k=2, batch=512), str(motifs))
    choose_layer(str(genome), job, [1], split_block=SPLIT, covered_bp=GENOME_BP, echo=lambda m: None)
    assert marker.exists()                      # same settings: layer 1 reused
    job.settings.train_tokens = 20_000
    choose_layer(str(genome), job, [1], split_block=SPLIT, covered_bp=GENOME_BP, echo=lambda m: None)
    assert not marker.exists() and not (tmp_path / "layers" / "L2").exists()
    assert (tmp_path / "layers" / "L1" / "annotate" / "summary.json").is_file()


def test_a_layer_no_sae_can_train_on_is_never_chosen():
    from genesae_fast.layer_choice import _unusable_row, pick

    bad = _unusable_row(1, [1, 3, 7], "x: the store has no usable statistics (norm scale 0.0)", 0.5)
    weak = {**bad, "layer": 2, "score": 0, "mean_best_f1": 0.0, "best_concept": ""}
    assert pick([bad, weak]) == 2 and pick([bad]) == 1   # a usable layer wins even with nothing found
    assert bad["best_concept"].startswith("(unusable: the store has no usable statistics")
