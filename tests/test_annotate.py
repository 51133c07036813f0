"""`genesae annotate` end to end on a small real store, and its pieces against references."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from genesae_fast.errors import InputError

GENOME_BP = 24_000


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """A 24 kbp genome, its built-in LM store, a random (untrained) SAE, 8 motifs."""
    import torch

    from genesae_fast.data import genome_path
    from genesae_fast.extract import extract_to_store
    from genesae_fast.motifs import load_motifs, write_meme
    from genesae_fast.sae import TopKSAE
    from genesae_fast.sequences import read_fasta, write_fasta
    from genesae_fast.store import ActivationStore

    d = tmp_path_factory.mktemp("ann")
    rec = read_fasta(genome_path())[0]
    fasta = d / "g.fa"
    write_fasta([(rec.name, rec.sequence[:GENOME_BP])], fasta)
    store = d / "s.zarr"
    extract_to_store(fasta, "builtin", None, store, progress=False)
    st = ActivationStore.open(store)
    torch.manual_seed(0)
    sae = TopKSAE(st.d, 64, 4)
    sae.input_mean.copy_(torch.as_tensor(st.mean, dtype=torch.float32))
    sae.input_scale = float(st.norm_scale)
    sae.save(d / "sae")
    motifs = d / "m.meme"
    write_meme(load_motifs()[:8], motifs)
    return {"dir": d, "fasta": fasta, "store": store, "sae": d / "sae", "motifs": motifs}


@pytest.fixture(scope="module")
def annotated(small_run):
    from genesae_fast.annotate import annotate
    from genesae_fast.annotate.core import Config

    out = small_run["dir"] / "ann"
    summary = annotate(small_run["store"], small_run["sae"], out, motifs=str(small_run["motifs"]),
                       cfg=Config(min_active=5, gene_shifts=2), progress=False)
    return out, summary


def test_encode_store_matches_dense_reference(small_run):
    import torch

    from genesae_fast.annotate.encode import encode_store
    from genesae_fast.sae import TopKSAE
    from genesae_fast.store import ActivationStore

    st = ActivationStore.open(small_run["store"])
    sae = TopKSAE.load(small_run["sae"])
    enc = encode_store(st, sae, block_rows=5000)
    x = torch.from_numpy(st.read_rows(0, st.n_rows))
    with torch.no_grad():
        pre = torch.relu((sae.normalize(x) - sae.b_dec) @ sae.W_enc.T + sae.b_enc)
        v, i = torch.topk(pre, sae.k, dim=1)
        dense = torch.zeros_like(pre).scatter_(1, i, v).numpy()
        x_hat = sae.denormalize(sae.decode(*sae.encode(sae.normalize(x))))
    np.testing.assert_allclose(enc.features.dense(), dense, rtol=1e-4, atol=1e-5)
    xc = x.numpy().astype(np.float64) - st.mean
    fvu = float(((x.numpy() - x_hat.numpy()) ** 2).sum() / (xc ** 2).sum())
    assert enc.fvu == pytest.approx(fvu, rel=1e-4)
    assert enc.l0 == pytest.approx((dense > 0).sum() / st.n_rows)
    # neurons: both directions of the centered activations, above 15% of their maximum
    nd = enc.neurons.dense()
    both = np.concatenate([xc, -xc], axis=1)
    keep = both > 0.15 * both.max(axis=0)
    np.testing.assert_allclose(nd, np.where(keep, both, 0), rtol=1e-3, atol=1e-3)


def test_folder_contents(annotated, small_run):
    import pyarrow.parquet as pq

    from genesae_fast.annotate.folder import read_tsv
    from genesae_fast.sequences import read_fasta

    out, summary = annotated
    for name in ("features.tsv", "feature_motif.tsv", "feature_concept.tsv", "concepts.tsv", "examples.parquet",
                 "logos.json", "summary.json", "motif_hits.bed"):
        assert (out / name).is_file(), name
    assert not (out.parent / "ann.partial").exists()
    feats = read_tsv(out / "features.tsv")
    assert len(feats["feature"]) == 64
    for col in ("frequency", "max_activation", "mean_activation", "motif", "motif_f1", "motif_qvalue", "concept",
                "concept_f1", "top_kmer", "logo_consensus", "logo_match"):
        assert col in feats
    fm = read_tsv(out / "feature_motif.tsv")
    for col in ("feature", "motif_id", "precision", "recall", "f1", "qvalue"):
        assert col in fm
    q = np.array([float(v) for v in fm["qvalue"]])
    assert np.all((q >= 0) & (q <= 1))
    seq = read_fasta(small_run["fasta"])[0].sequence
    ex = pq.read_table(out / "examples.parquet").to_pydict()
    assert ex["feature"], "no examples"
    top = {}
    for i in range(len(ex["feature"])):
        cs = ex["context_start"][i]
        ctx = ex["context"][i]
        assert ctx == seq[cs:cs + len(ctx)]
        acts = np.array(ex["context_activation"][i])
        peak = ex["start"][i] - cs
        assert acts[peak] == pytest.approx(ex["activation"][i], abs=1e-4)  # stored to 4 decimals
        f, rank = ex["feature"][i], ex["rank"][i]
        if rank == 0:
            # the first example is the feature's highest activation anywhere: nothing in its window is higher
            assert acts.max() <= ex["activation"][i] + 1e-4
            top[f] = ex["activation"][i]
        else:
            # later examples come in order of decreasing activation, never above the first
            assert ex["feature"][i - 1] == f and ex["rank"][i - 1] == rank - 1
            assert ex["activation"][i] <= ex["activation"][i - 1] and ex["activation"][i] <= top[f]
    assert max(ex["rank"]) > 0, "no feature has a second example: the ordering checks ran on nothing"
    assert summary["n_features"] == 64 and 0 <= summary["dead_fraction"] <= 1
    hits = (out / "motif_hits.bed").read_text().splitlines()
    assert all(len(h.split("\t")) == 6 for h in hits)


def test_describe_and_info(annotated):
    from genesae_fast.annotate import describe
    from genesae_fast.cli import cli

    out, _ = annotated
    d = describe(out)
    assert d["n_features"] == 64
    res = CliRunner().invoke(cli, ["info", str(out)])
    assert res.exit_code == 0 and "features_with_motif" in res.output
    with pytest.raises(InputError):
        describe(out.parent)


def test_refuses_to_overwrite_and_bad_inputs(annotated, small_run, tmp_path):
    from genesae_fast.annotate import annotate
    from genesae_fast.cli import cli

    out, _ = annotated
    with pytest.raises(InputError, match="already"):
        annotate(small_run["store"], small_run["sae"], out, motifs=None, progress=False)
    r = CliRunner().invoke(cli, ["annotate", "--store", str(tmp_path / "nope.zarr"), "--sae", str(small_run["sae"]),
                                 "--out", str(tmp_path / "a")])
    assert r.exit_code == 2 and "Traceback" not in r.output
    r = CliRunner().invoke(cli, ["annotate", "--store", str(small_run["store"]), "--sae", str(tmp_path),
                                 "--out", str(tmp_path / "a")])
    assert r.exit_code == 2 and "not an SAE folder" in r.output
    assert not (tmp_path / "a").exists()


def test_cli_annotate_without_motifs(small_run, tmp_path):
    from genesae_fast.cli import cli

    out = tmp_path / "ann2"
    r = CliRunner().invoke(cli, ["annotate", "--store", str(small_run["store"]), "--sae", str(small_run["sae"]),
                                 "--motifs", "none", "--no-neurons", "--min-active", "5", "--out", str(out), "-q"])
    assert r.exit_code == 0, r.output
    s = json.loads((out / "summary.json").read_text())
    assert s["n_motifs"] == 0 and s["motif_spec"] == "" and s["gene_concepts"]


def test_gff_and_a_store_of_a_slice(small_run, tmp_path):
    """A store made with --max-tokens covers a prefix: concepts are cut to it, and GFF
    features beyond it are dropped rather than counted as hits never found."""
    import pyarrow.parquet as pq

    from genesae_fast.annotate import annotate
    from genesae_fast.annotate.core import Config
    from genesae_fast.annotate.genes import predict_genes
    from genesae_fast.extract import extract_to_store
    from genesae_fast.sequences import read_fasta

    recs = read_fasta(small_run["fasta"])
    gff = tmp_path / "g.gff3"
    rows = ["##gff-version 3"] + [
        f"{recs[0].name}\tx\tCDS\t{g.start + 1}\t{g.end}\t.\t{'+' if g.strand > 0 else '-'}\t0\tID=c{i}"
        for i, g in enumerate(predict_genes(recs))]
    gff.write_text("\n".join(rows) + "\n")
    store = tmp_path / "slice.zarr"
    extract_to_store(small_run["fasta"], "builtin", None, store, max_tokens=10_000, progress=False)
    out = tmp_path / "ann"
    s = annotate(store, small_run["sae"], out, motifs=None, gff=gff, cfg=Config(min_active=5, neurons=False),
                 progress=False)
    assert s["genome_bp"] == 10_000 and s["gene_source"] == str(gff)
    n_in_slice = sum(1 for r in rows[1:] if int(r.split("\t")[4]) <= 10_000)
    assert s["n_genes"] == n_in_slice > 0
    ex = pq.read_table(out / "examples.parquet").to_pydict()
    assert max(e for e in ex["end"]) <= 10_000


def test_genes_bed_holds_the_gene_calls_of_the_concepts(annotated, small_run):
    """genes.bed (the atlas's gene track) is the pyrodigal calls the gene concepts came from."""
    from genesae_fast.annotate.genes import predict_genes
    from genesae_fast.sequences import read_fasta

    out, summary = annotated
    recs = read_fasta(small_run["fasta"])
    calls = sorted(predict_genes(recs), key=lambda c: (c.seq, c.start, c.end))
    rows = [line.split("\t") for line in (out / "genes.bed").read_text().splitlines()]
    assert len(rows) == len(calls) == summary["n_genes"] > 0
    for n, (row, c) in enumerate(zip(rows, calls, strict=True), 1):
        assert row == [recs[c.seq].name, str(c.start), str(c.end), f"gene_{n}", "0", "+" if c.strand > 0 else "-"]
