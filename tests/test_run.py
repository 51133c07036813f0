"""`genesae run` (genesae_fast.pipeline): the plan printed first, training tokens that grow
with the genome, every stage on a small genome, then a rerun that skips them all."""
from __future__ import annotations

import gzip
import json

import pytest
from click.testing import CliRunner

from genesae_fast.errors import InputError
from genesae_fast.pipeline import RunSettings, estimate_seconds, format_summary, genome_size, make_plan, run_pipeline


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    from genesae_fast.data import genome_path
    from genesae_fast.motifs import load_motifs, write_meme
    from genesae_fast.sequences import read_fasta, write_fasta

    d = tmp_path_factory.mktemp("run")
    rec = read_fasta(genome_path())[0]
    write_fasta([(rec.name, rec.sequence[:20_000])], d / "g.fa")
    write_meme(load_motifs()[:6], d / "m.meme")
    return d


TINY = dict(max_tokens=None, expansion=2, k=4, batch=512, min_train_tokens=20_000, max_train_tokens=20_000)


def test_run_prints_plan_then_rerun_skips_every_stage(inputs):
    out = inputs / "out"
    messages = []
    s = run_pipeline(out, genome=str(inputs / "g.fa"), motifs=str(inputs / "m.meme"), settings=RunSettings(**TINY), layer=3,
                     progress=False, echo=messages.append, workers=1)
    plan = messages[0].splitlines()
    assert plan[0].startswith(f"plan: genome {inputs / 'g.fa'} (20,000 bp in 1 record), 1 worker")
    assert plan[1].split()[:3] == ["extract", "20,000", "tokens"]
    assert plan[2].split()[:3] == ["train", "20,000", "tokens"]
    assert plan[-1].startswith("  estimated total ~")
    assert messages[1:] == [f"[{k}] ..." for k in ("extract", "train", "annotate", "causal", "report")]
    for p in ("store.zarr/zarr.json", "sae/sae.safetensors", "annotate/features.tsv", "annotate/feature_motif.tsv",
              "annotate/examples.parquet", "annotate/report.html"):
        assert (out / p).exists(), p
    assert set(s["stage_seconds"]) == {"extract", "train", "annotate", "causal", "report"}
    # the built-in model reads one direction, so the run pools both strands: up to 2 k codes a base
    assert s["strands"] == "both" and (out / "store.rc.zarr" / "zarr.json").exists()
    assert 0 <= s["fvu"] and s["l0"] <= 2 * 4 + 1e-6 and 0 <= s["dead_fraction"] <= 1
    cfg = json.loads((out / "sae" / "config.json").read_text())
    assert 20_000 <= cfg["training"]["tokens"] < 20_000 + 512   # the planned tokens, in whole batches
    text = format_summary(s)
    assert "FVU" in text and str(out / "annotate" / "report.html") in text
    assert "LM knows" in text and "lm_* columns" in text  # run extracts the built-in model's bits

    assert "both strands pooled; motifs whose best feature reads both / + only / - only / neither: " in text
    messages.clear()
    before = (out / "annotate" / "summary.json").stat().st_mtime
    run_pipeline(out, genome=str(inputs / "g.fa"), motifs=str(inputs / "m.meme"), settings=RunSettings(**TINY), layer=3,
                 progress=False, echo=messages.append)
    assert all(line.endswith("(already complete)") for line in messages[0].splitlines()[1:4])
    assert messages[1:] == [f"[{k}] already complete, skipped" for k in ("extract", "train", "annotate", "causal", "report")]
    assert (out / "annotate" / "summary.json").stat().st_mtime == before
    # a lost report is rebuilt alone
    (out / "annotate" / "report.html").unlink()
    messages.clear()
    run_pipeline(out, genome=str(inputs / "g.fa"), motifs=str(inputs / "m.meme"), settings=RunSettings(**TINY), layer=3,
                 progress=False, echo=messages.append)
    assert messages[-1] == "[report] ..." and (out / "annotate" / "report.html").exists()
    run = json.loads((out / "run.json").read_text())
    assert set(run["stage_seconds"]) == {"extract", "train", "annotate", "causal", "report"}
    assert run["plan"]["tokens"] == 20_000 and run["plan"]["train_tokens"] == 20_000


@pytest.mark.parametrize("rows, expect", [
    (1, 2_000_000), (1_000_000, 2_000_000), (2_463_666, 2_463_666), (24_636_660, 24_636_660),
    (99_999_999, 99_999_999), (100_000_001, 100_000_000), (10**9, 100_000_000)])
def test_default_training_tokens_grow_with_the_genome(rows, expect):
    assert RunSettings().train_tokens(rows) == expect
    assert RunSettings(train_passes=3.0).train_tokens(rows) == min(max(3 * rows, 2_000_000), 100_000_000)
    assert RunSettings.quick().train_tokens(rows) == 150_000
    assert RunSettings(train_tokens_override=777).train_tokens(rows) == 777


def test_plan_counts_the_genome_and_scales_estimates(tmp_path, inputs):
    from genesae_fast.sequences import read_fasta, write_fasta

    recs = [("a", "ACGT" * 1000), ("b", ""), ("c", "N" * 77 + "acgt" * 10)]
    write_fasta(recs, tmp_path / "g.fa")
    (tmp_path / "g.fa.gz").write_bytes(gzip.compress((tmp_path / "g.fa").read_bytes()))
    truth = sum(len(r) for r in read_fasta(tmp_path / "g.fa"))
    assert genome_size(tmp_path / "g.fa") == genome_size(tmp_path / "g.fa.gz") == (truth, 3)
    plan = make_plan(tmp_path / "none", tmp_path / "g.fa", RunSettings(), 2, {})
    assert (plan.genome_bp, plan.n_records, plan.tokens, plan.train_tokens, plan.workers) == (truth, 3, truth,
                                                                                               2_000_000, 2)
    assert make_plan(tmp_path / "none", tmp_path / "g.fa", RunSettings(max_tokens=100), 1, {}).tokens == 100
    # a finished store's row count wins over the estimate
    assert make_plan(inputs / "out", inputs / "g.fa", RunSettings(), 1, {}).tokens == 20_000
    e1, e4 = estimate_seconds(10**6, 10**6, 1), estimate_seconds(4 * 10**6, 4 * 10**6, 1)
    assert all(e4[k] == pytest.approx(4 * e1[k]) for k in e1)
    assert estimate_seconds(10**6, 10**6, 4)["extract"] == pytest.approx(e1["extract"] / 4)
    assert estimate_seconds(10**6, 10**6, 4)["train"] == pytest.approx(e1["train"])
    with pytest.raises(InputError, match="missing.fa: no such file"):
        genome_size(tmp_path / "missing.fa")


def test_plan_lists_causal_and_control_only_when_they_run(tmp_path):
    from genesae_fast.sequences import write_fasta

    write_fasta([("a", "ACGT" * 5000)], tmp_path / "g.fa")
    s = RunSettings(causal_pairs=7, causal_sites=50)
    bare = make_plan(tmp_path / "none", tmp_path / "g.fa", s, 1, {})
    full = make_plan(tmp_path / "none", tmp_path / "g.fa", s, 1, {}, optional=("causal", "control"))
    def stage_lines(plan):
        return {line.split()[0] for line in plan.describe().splitlines()[1:]}

    assert {"causal", "control"}.isdisjoint(stage_lines(bare)) and {"causal", "control"} <= stage_lines(full)
    text = full.describe()
    assert "<= 7 (feature, concept) pairs, <= 50 held-out sites each" in text and "untrained LM" in text
    # the control repeats extraction, training and annotation: its estimate is their sum
    assert full.seconds["control"] == pytest.approx(sum(full.seconds[k] for k in ("extract", "train", "annotate")))
    assert full.seconds["causal"] > 0
    # both strands: twice the extraction, more annotation
    both = make_plan(tmp_path / "none", tmp_path / "g.fa", s, 1, {}, "both")
    assert both.seconds["extract"] == pytest.approx(2 * bare.seconds["extract"])
    assert both.seconds["annotate"] > bare.seconds["annotate"]


def test_run_pipeline_is_reexported_by_annotate():
    from genesae_fast import pipeline
    from genesae_fast.annotate import run_pipeline as again

    assert again is pipeline.run_pipeline


def test_run_cli_quick_prints_plan_and_summary(inputs, tmp_path):
    from genesae_fast.cli import cli

    out = tmp_path / "o"
    r = CliRunner().invoke(cli, ["run", "--genome", str(inputs / "g.fa"), "--motifs", str(inputs / "m.meme"),
                                 "--out", str(out), "--quick", "--train-tokens", "30000", "--workers", "1", "--layer", "3", "-q"])
    assert r.exit_code == 0, r.output
    assert "plan: genome" in r.output and "train     30,000 tokens" in r.output
    assert "FVU" in r.output and "report:" in r.output
    assert json.loads((out / "run.json").read_text())["plan"]["train_tokens"] == 30_000


def test_run_cli_help_and_bad_input(tmp_path):
    from genesae_fast.cli import cli

    r = CliRunner().invoke(cli, ["run", "--help"])
    text = " ".join(r.output.split())
    assert r.exit_code == 0 and "--quick" in text and "--workers" in text
    assert "one pass over the extracted tokens, at least 2M" in text and "at most 100M" in text
    assert "prints the plan" in text
    r = CliRunner().invoke(cli, ["run", "--genome", str(tmp_path / "missing.fa"), "--out", str(tmp_path / "o"), "-q"])
    assert r.exit_code == 2 and "missing.fa" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(cli, ["run", "--train-tokens", "0", "--out", str(tmp_path / "o"), "-q"])
    assert r.exit_code == 2 and "--train-tokens" in r.output


def test_run_stages_option(inputs, tmp_path):
    from genesae_fast.cli import cli

    out = tmp_path / "o"
    base = ["run", "--genome", str(inputs / "g.fa"), "--motifs", str(inputs / "m.meme"), "--out", str(out),
            "--quick", "--workers", "1", "--layer", "3", "-q"]
    r = CliRunner().invoke(cli, base + ["--stages", "extract"])
    assert r.exit_code == 0, r.output
    assert (out / "store.zarr").is_dir() and not (out / "sae").exists()
    assert "stage seconds: extract" in r.output
    r = CliRunner().invoke(cli, base + ["--stages", "extract,tran"])
    assert r.exit_code == 2 and "unknown stage tran" in r.output
