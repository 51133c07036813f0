"""The streamed annotation equals the in-memory one: block sizes, workers, resume, torchrun."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
from annotate_compare import annotate_as_rank, assert_same_annotation, make_store, random_records

from genesae_fast.annotate.core import Config
from genesae_fast.errors import InputError


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """Several records: two long ones with N runs, short ones (shorter than a block, than
    pyrodigal's 100 bp and than a motif), a run of N at a record end."""
    rng = np.random.default_rng(7)
    recs = random_records(rng, [6000, 40, 3500, 7, 900], n_runs=3)
    recs.append(("tailN", "ACGT" * 300 + "N" * 200))
    d = tmp_path_factory.mktemp("syn")
    return make_store(d, recs)


@pytest.fixture(scope="module")
def bundled(tmp_path_factory):
    """A 40 kbp slice of the bundled genome (its first record) in two records."""
    from genesae_fast.data import genome_path
    from genesae_fast.sequences import read_fasta

    seq = read_fasta(genome_path())[0].sequence
    d = tmp_path_factory.mktemp("bun")
    return make_store(d, [("part1", seq[:30_000]), ("part2", seq[500_000:510_000])], latents=96, k=6, n_motifs=12)


def _reference(run, cfg, name="ref"):
    from genesae_fast.annotate.folder import annotate_in_memory

    out = run["dir"] / name
    if not out.exists():
        annotate_in_memory(run["store"], run["sae"], out, motifs=str(run["motifs"]), cfg=cfg)
    return out


def _streamed(run, cfg, name, **kw):
    from genesae_fast.annotate import annotate

    out = run["dir"] / name
    shutil.rmtree(out, ignore_errors=True)
    annotate(run["store"], run["sae"], out, motifs=str(run["motifs"]), cfg=cfg, progress=False, **kw)
    return out


CFG = dict(min_active=3, gene_shifts=2, n_tracks=4)


@pytest.mark.parametrize("block_bp", [613, 4096, 1_000_000])
def test_streamed_equals_in_memory_on_synthetic_records(synthetic, block_bp):
    cfg = Config(**CFG, block_bp=block_bp)
    ref = _reference(synthetic, Config(**CFG))
    out = _streamed(synthetic, cfg, f"s{block_bp}", workers=1)
    assert_same_annotation(ref, out)


def test_streamed_equals_in_memory_on_the_bundled_genome_with_two_workers(bundled):
    # q <= 1: every pair is "significant", so every table row and the tracks are exercised
    cfg = dict(CFG, qvalue=1.0)
    ref = _reference(bundled, Config(**cfg))
    out = _streamed(bundled, Config(**cfg, block_bp=7000), "w2", workers=2)
    assert_same_annotation(ref, out)
    one = _streamed(bundled, Config(**cfg, block_bp=7000), "w1", workers=1)
    assert_same_annotation(one, out)
    # the comparison has something to compare: motifs were found and features tested
    assert (out / "motif_hits.bed").read_text().count("\n") > 10
    assert len(list((out / "tracks").iterdir())) > 0


def test_without_motifs_genes_or_neurons(synthetic):
    cfg = Config(**CFG, neurons=False, n_shuffles=1, block_bp=2000)
    from genesae_fast.annotate import annotate
    from genesae_fast.annotate.folder import annotate_in_memory

    a, b = synthetic["dir"] / "nm_ref", synthetic["dir"] / "nm"
    annotate_in_memory(synthetic["store"], synthetic["sae"], a, motifs=None, cfg=cfg)
    annotate(synthetic["store"], synthetic["sae"], b, motifs=None, cfg=cfg, progress=False, workers=1)
    assert_same_annotation(a, b, motif_bed=False)
    assert not (b / "motif_hits.bed").exists()


class _Stop(Exception):
    pass


@pytest.mark.parametrize("stage,after", [("moments", 2), ("counts", 3), ("counts", 1), ("contexts", 4)])
def test_interrupted_run_resumes_with_identical_tables(synthetic, monkeypatch, stage, after):
    from genesae_fast.annotate import stream

    cfg = Config(**CFG, block_bp=1500)
    whole = _streamed(synthetic, cfg, "whole", workers=1)
    seen = []

    def hook(name, b):
        if name == stage:
            seen.append(b)
            if len(seen) == after:
                raise _Stop

    monkeypatch.setattr(stream, "BLOCK_HOOK", hook)
    out = synthetic["dir"] / f"res_{stage}_{after}"
    with pytest.raises(_Stop):
        _streamed(synthetic, cfg, out.name, workers=1, checkpoint_blocks=1)
    assert not out.exists()
    assert (out.parent / (out.name + ".partial") / ".work" / "state").is_dir()
    # the second run starts after the last finished block of the interrupted stage
    resumed = []
    monkeypatch.setattr(stream, "BLOCK_HOOK", lambda name, b: resumed.append((name, b)))
    from genesae_fast.annotate import annotate

    annotate(synthetic["store"], synthetic["sae"], out, motifs=str(synthetic["motifs"]), cfg=cfg, progress=False,
             workers=1, checkpoint_blocks=1)
    again = [b for name, b in resumed if name == stage]
    assert again[0] == seen[-1] + 1 and not set(again) & set(seen)
    assert_same_annotation(whole, out)
    assert not (out.parent / (out.name + ".partial")).exists()


def test_state_of_other_inputs_is_not_reused(synthetic, monkeypatch):
    from genesae_fast.annotate import stream

    cfg = Config(**CFG, block_bp=1500)
    calls = []

    def stop(name, b):
        calls.append(b)
        if len(calls) == 2:
            raise _Stop

    monkeypatch.setattr(stream, "BLOCK_HOOK", stop)
    with pytest.raises(_Stop):
        _streamed(synthetic, cfg, "other", workers=1, checkpoint_blocks=1)
    monkeypatch.setattr(stream, "BLOCK_HOOK", None)
    cfg2 = Config(**{**CFG, "min_active": 4}, block_bp=1500)
    out = _streamed(synthetic, cfg2, "other", workers=1)
    assert_same_annotation(_reference(synthetic, Config(**{**CFG, "min_active": 4}), "ref_min4"), out)


def test_bad_worker_count(synthetic, tmp_path):
    from genesae_fast.annotate import annotate

    with pytest.raises(InputError, match="--workers 0"):
        annotate(synthetic["store"], synthetic["sae"], tmp_path / "x", motifs=None, progress=False, workers=0)


def synthetic_records_lengths(run):
    from genesae_fast.sequences import read_fasta

    return [(r.name, r.sequence) for r in read_fasta(run["fasta"])]


def test_two_ranks_under_gloo_equal_one_process(synthetic, tmp_path):
    import torch.multiprocessing as mp

    one = _streamed(synthetic, Config(**CFG, block_bp=1100), "rank1", workers=1)
    out = tmp_path / "two"
    mp.spawn(annotate_as_rank, args=(2, str(tmp_path / "pg"), synthetic, str(out), Config(**CFG, block_bp=1100)),
             nprocs=2, join=True)
    assert_same_annotation(one, out)
    assert not (tmp_path / "two.partial").exists()
    # the ranks really split the blocks: disjoint, together all of them
    done = [{ln for ln in (tmp_path / f"two.blocks{r}").read_text().splitlines() if ln.startswith("counts")}
            for r in range(2)]
    assert done[0] and done[1] and not done[0] & done[1]
    n_blocks = -(-sum(len(s) for _, s in synthetic_records_lengths(synthetic)) // 1100)
    assert len(done[0] | done[1]) == n_blocks
