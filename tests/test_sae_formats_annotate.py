"""Annotating SAEs of other formats: the same weights give the same feature tables.

``genesae annotate`` reads the SAE through ``load_any`` (``annotate.folder.load_sae``), in
the main process and in every worker of the streamed annotation.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

GENOME_BP = 12_000


@pytest.fixture(scope="module")
def store_and_sae(tmp_path_factory):
    from genesae_fast.data import genome_path
    from genesae_fast.extract import extract_to_store
    from genesae_fast.sae import TopKSAE
    from genesae_fast.sequences import read_fasta, write_fasta
    from genesae_fast.store import ActivationStore

    d = tmp_path_factory.mktemp("fmt")
    rec = read_fasta(genome_path())[0]
    write_fasta([(rec.name, rec.sequence[:GENOME_BP])], d / "g.fa")
    extract_to_store(d / "g.fa", "builtin", None, d / "s.zarr", progress=False)
    st = ActivationStore.open(d / "s.zarr")
    torch.manual_seed(0)
    sae = TopKSAE(st.d, 32, 3)
    with torch.no_grad():
        sae.b_dec.copy_(torch.as_tensor(st.mean, dtype=torch.float32))  # centre without a normalisation to fold
    sae.save(d / "ours")
    return d, st, sae


def annotate_with(d, sae_dir, name):
    from genesae_fast.annotate import annotate
    from genesae_fast.annotate.core import Config

    out = d / name
    summary = annotate(d / "s.zarr", sae_dir, out, genome=d / "g.fa", motifs=None,
                       cfg=Config(min_active=5, gene_shifts=1, neurons=False), progress=False, overwrite=True)
    return out, summary


def write_dictionary_learning(path, sae):
    path.mkdir()
    torch.save({"encoder.weight": sae.W_enc.detach(), "encoder.bias": sae.b_enc.detach(),
                "decoder.weight": sae.W_dec.detach().T.contiguous(), "b_dec": sae.b_dec.detach(),
                "k": torch.tensor(sae.k, dtype=torch.int), "threshold": torch.tensor(-1.0)}, path / "ae.pt")
    (path / "config.json").write_text(json.dumps({"trainer": {"dict_class": "AutoEncoderTopK", "k": sae.k}}))


def test_each_format_annotates_to_the_same_tables(store_and_sae):
    from genesae_fast.sae_formats.export import export_sae

    d, _, sae = store_and_sae
    export_sae(d / "ours", "saelens", d / "saelens")
    export_sae(d / "ours", "sparsify", d / "sparsify_root" / "layers.2")  # a parent with one hookpoint
    write_dictionary_learning(d / "dl", sae)
    ref, ref_summary = annotate_with(d, d / "ours", "ann_ours")
    for name, folder in (("saelens", d / "saelens"), ("sparsify", d / "sparsify_root"), ("dl", d / "dl")):
        out, summary = annotate_with(d, folder, f"ann_{name}")
        for table in ("features.tsv", "feature_concept.tsv"):
            assert (out / table).read_text() == (ref / table).read_text(), (name, table)
        assert summary["l0"] == ref_summary["l0"] and summary["fvu"] == pytest.approx(ref_summary["fvu"], rel=1e-5)


def test_a_jumprelu_sae_annotates_with_variable_l0(store_and_sae):
    from safetensors.torch import save_file

    d, st, sae = store_and_sae
    x = torch.from_numpy(st.read_rows(0, st.n_rows)).double()
    W, b, b_dec = sae.W_enc.detach().double(), sae.b_enc.detach().double(), sae.b_dec.detach().double()
    pre = (x - b_dec) @ W.T + b
    thr = torch.quantile(pre, 0.97, dim=0).clamp_min(0.05)  # each latent fires on about 3% of tokens
    folder = d / "jump"
    folder.mkdir()
    save_file({"W_enc": sae.W_enc.detach().T.contiguous(), "b_enc": sae.b_enc.detach(), "W_dec": sae.W_dec.detach(),
               "b_dec": sae.b_dec.detach(), "threshold": thr.float()}, str(folder / "sae_weights.safetensors"))
    (folder / "cfg.json").write_text(json.dumps({"architecture": "jumprelu", "d_in": st.d, "d_sae": 32}))
    out, summary = annotate_with(d, folder, "ann_jump")
    counts = (pre > thr).sum(1).numpy()
    assert counts.min() < counts.max()  # the reference itself has variable L0
    assert summary["l0"] == pytest.approx(counts.mean(), rel=1e-3)
    from genesae_fast.annotate.folder import read_tsv

    feats = read_tsv(out / "features.tsv")
    freq = np.array([float(v) for v in feats["frequency"]])
    assert np.allclose(freq, (pre > thr).double().mean(0).numpy()[[int(f) for f in feats["feature"]]], atol=2e-3)
