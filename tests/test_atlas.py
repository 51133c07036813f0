"""The notebook API: genesae_fast.atlas.open over a real (small) annotation."""
from __future__ import annotations

import builtins

import numpy as np
import pytest
import torch

from genesae_fast.errors import InputError

GENOME_BP = 10_000


@pytest.fixture(scope="module")
def annotated(tmp_path_factory):
    from genesae_fast.annotate import annotate
    from genesae_fast.annotate.core import Config
    from genesae_fast.data import genome_path
    from genesae_fast.extract import extract_to_store
    from genesae_fast.sae import TopKSAE
    from genesae_fast.sequences import read_fasta, write_fasta
    from genesae_fast.store import ActivationStore

    d = tmp_path_factory.mktemp("atlas")
    rec = read_fasta(genome_path())[0]
    write_fasta([(rec.name, rec.sequence[:GENOME_BP])], d / "g.fa")
    extract_to_store(d / "g.fa", "builtin", None, d / "s.zarr", progress=False)
    st = ActivationStore.open(d / "s.zarr")
    torch.manual_seed(1)
    sae = TopKSAE(st.d, 24, 3)
    sae.input_mean.copy_(torch.as_tensor(st.mean, dtype=torch.float32))
    sae.input_scale = float(st.norm_scale)
    sae.save(d / "sae")
    annotate(d / "s.zarr", d / "sae", d / "ann", genome=d / "g.fa", motifs=None,
             cfg=Config(min_active=5, gene_shifts=1, neurons=False), progress=False)
    return {"dir": d, "store": st, "sae": sae, "name": rec.name}


def reference_track(store, sae, name, start, end):
    """Dense float64 TopK codes of the store rows overlapping [start, end), by hand."""
    seq, bp0, bp1, _ = store.coordinates()
    rows = np.nonzero((np.asarray(store.sequence_names)[seq] == name) & (bp0 < end) & (bp1 > start))[0]
    x = torch.from_numpy(store.read_rows(int(rows[0]), int(rows[-1]) + 1)).double()
    xn = (x - sae.input_mean.double()) / sae.input_scale
    pre = (xn - sae.b_dec.double()) @ sae.W_enc.double().T + sae.b_enc.double()
    v, i = pre.topk(sae.k, dim=1)
    return bp0[rows], bp1[rows], torch.zeros_like(pre).scatter_(1, i, v.relu()).detach().numpy()


def test_features_examples_logo_and_matches(annotated):
    from genesae_fast import atlas

    a = atlas.open(annotated["dir"] / "ann")
    pd = pytest.importorskip("pandas", reason="pandas is optional; the pyarrow path is tested below")
    assert isinstance(a.features, pd.DataFrame) and len(a.features) == 24
    assert a.features["frequency"].dtype.kind == "f" and a.features["feature"].tolist() == list(range(24))
    f = a.feature(int(a.features.sort_values("frequency").iloc[-1]["feature"]))
    assert len(f.examples) > 0 and set(f.examples["feature"]) == {f.index}
    assert f.row["feature"] == f.index and f.row["frequency"] > 0
    assert f.logo.ndim == 2 and f.logo.shape[1] == 4 and np.allclose(f.logo.sum(1), 1, atol=1e-3)
    assert len(f.motifs) == 0 and "qvalue" in f.motifs.columns  # annotated without motifs: no rows
    assert len(f.concepts) > 0 and set(f.concepts["feature"]) == {f.index}


def test_track_matches_a_dense_reference(annotated):
    from genesae_fast import atlas

    a = atlas.open(annotated["dir"] / "ann")
    bp0, bp1, ref = reference_track(annotated["store"], annotated["sae"], annotated["name"], 2_000, 2_300)
    whole = a.track(annotated["name"], 2_000, 2_300)
    assert np.array_equal(whole.start, bp0) and np.array_equal(whole.end, bp1)
    assert whole.values.shape == (len(bp0), 24) and np.allclose(whole.values, ref, atol=1e-4)
    one = a.track(annotated["name"], 2_000, 2_300, feature=5)
    assert np.array_equal(one.values, whole.values[:, 5])
    frame = one.to_frame()
    assert list(frame.columns) == ["chrom", "start", "end", "activation"] and len(frame) == len(bp0)


def test_track_through_an_exported_sae(annotated, tmp_path):
    from genesae_fast import atlas
    from genesae_fast.sae_formats.export import export_sae

    export_sae(annotated["dir"] / "sae", "saelens", tmp_path / "sl")
    ours = atlas.open(annotated["dir"] / "ann").track(annotated["name"], 500, 900)
    theirs = atlas.open(annotated["dir"] / "ann", sae=tmp_path / "sl").track(annotated["name"], 500, 900)
    assert np.allclose(ours.values, theirs.values, atol=1e-4)


def test_without_pandas_tables_are_pyarrow(annotated, monkeypatch):
    import pyarrow as pa

    from genesae_fast import atlas

    real_import = builtins.__import__

    def no_pandas(name, *args, **kwargs):
        if name == "pandas" or name.startswith("pandas."):
            raise ImportError("no pandas here")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pandas)
    a = atlas.open(annotated["dir"] / "ann")
    assert isinstance(a.features, pa.Table) and a.features.num_rows == 24
    f = a.feature(0)
    assert isinstance(f.examples, pa.Table) and isinstance(f.concepts, pa.Table)
    assert isinstance(a.track(annotated["name"], 100, 200, feature=0).to_frame(), pa.Table)


def test_errors(annotated, tmp_path):
    from genesae_fast import atlas

    with pytest.raises(InputError, match="not an annotation folder"):
        atlas.open(tmp_path)
    a = atlas.open(annotated["dir"] / "ann")
    with pytest.raises(InputError, match="no feature 99"):
        a.feature(99)
    with pytest.raises(InputError, match="no sequence 'chrZ'"):
        a.track("chrZ", 0, 10)
    with pytest.raises(InputError, match="start < end"):
        a.track(annotated["name"], 10, 10)
    with pytest.raises(InputError, match="out of range"):
        a.track(annotated["name"], 0, 10, feature=24)
    b = atlas.open(annotated["dir"] / "ann", store=annotated["dir"] / "s.zarr", sae=tmp_path / "nothing")
    with pytest.raises(InputError, match="not a folder"):
        b.track(annotated["name"], 0, 10)
