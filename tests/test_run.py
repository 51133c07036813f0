"""`genesae run`: every stage on a small genome, then a rerun that skips them all."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from genesae_fast.annotate.pipeline import RunSettings, format_summary, run_pipeline


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


def test_run_then_rerun_skips_every_stage(inputs):
    tiny = RunSettings(max_tokens=None, expansion=2, k=4, batch=512, epochs=1.0, max_train_tokens=20_000)
    out = inputs / "out"
    messages = []
    s = run_pipeline(out, genome=str(inputs / "g.fa"), motifs=str(inputs / "m.meme"), settings=tiny, progress=False,
                     echo=messages.append)
    for p in ("store.zarr/zarr.json", "sae/sae.safetensors", "annotate/features.tsv", "annotate/feature_motif.tsv",
              "annotate/examples.parquet", "annotate/report.html"):
        assert (out / p).exists(), p
    assert set(s["stage_seconds"]) == {"extract", "train", "annotate", "report"}
    assert 0 <= s["fvu"] and s["l0"] <= 4 + 1e-6 and 0 <= s["dead_fraction"] <= 1
    text = format_summary(s)
    assert "FVU" in text and str(out / "annotate" / "report.html") in text
    messages.clear()
    before = (out / "annotate" / "summary.json").stat().st_mtime
    run_pipeline(out, genome=str(inputs / "g.fa"), motifs=str(inputs / "m.meme"), settings=tiny, progress=False,
                 echo=messages.append)
    assert messages == [f"[{k}] already complete, skipped" for k in ("extract", "train", "annotate", "report")]
    assert (out / "annotate" / "summary.json").stat().st_mtime == before
    # a lost report is rebuilt alone
    (out / "annotate" / "report.html").unlink()
    messages.clear()
    run_pipeline(out, genome=str(inputs / "g.fa"), motifs=str(inputs / "m.meme"), settings=tiny, progress=False,
                 echo=messages.append)
    assert messages[-1] == "[report] ..." and (out / "annotate" / "report.html").exists()
    times = json.loads((out / "run.json").read_text())["stage_seconds"]
    assert set(times) == {"extract", "train", "annotate", "report"}


def test_run_cli_help_and_bad_genome(tmp_path):
    from genesae_fast.cli import cli

    r = CliRunner().invoke(cli, ["run", "--help"])
    assert r.exit_code == 0 and "--quick" in r.output
    r = CliRunner().invoke(cli, ["run", "--genome", str(tmp_path / "missing.fa"), "--out", str(tmp_path / "o"), "-q"])
    assert r.exit_code == 2 and "missing.fa" in r.output and "Traceback" not in r.output
