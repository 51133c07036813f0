"""`genesae export`: folders SAELens and sparsify load unchanged, with the same codes as ours."""
from __future__ import annotations

import json
import warnings

import pytest
import torch
from click.testing import CliRunner

from genesae_fast.cli import cli
from genesae_fast.sae import TopKSAE
from genesae_fast.sae_formats import load_any


def our_sae(path, d, n, k, dtype, scale, seed=0):
    torch.manual_seed(seed)
    sae = TopKSAE(d, n, k, dtype=dtype)
    with torch.no_grad():
        sae.b_enc.normal_(0, 0.3)
        sae.b_dec.normal_(0, 0.3)
        sae.input_mean.normal_(0, 2)
    sae.input_scale = scale
    sae.save(path, extra_config={"store": {"model": {"name": "builtin"}, "layer": 3}})
    return sae


def raw_inputs(sae, rows=80, seed=1):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(rows, sae.d_in, generator=g, dtype=torch.float64) * sae.input_scale
            + sae.input_mean.double()).to(sae.W_enc.dtype)


def dense(vals, idx, n):
    return torch.zeros(vals.shape[0], n, dtype=torch.float64).scatter_add_(1, idx, vals.double())


def ours_dense(sae, x):
    vals, idx = sae.encode(sae.normalize(x))
    return dense(vals, idx, sae.n_latents), sae.denormalize(sae.decode(vals, idx)).double()


def export(tmp_path, to):
    r = CliRunner().invoke(cli, ["export", str(tmp_path / "ours"), "--to", to, "--out", str(tmp_path / to)])
    assert r.exit_code == 0, r.output
    assert r.output.strip() == str(tmp_path / to)
    return tmp_path / to


GRID = [(8, 16, 1, torch.float64, 1.0), (12, 48, 5, torch.float64, 0.37), (7, 7, 7, torch.float64, 4.0),
        (16, 64, 4, torch.float32, 2.5)]


def tol(dtype):
    return 1e-9 if dtype == torch.float64 else 2e-4


@pytest.mark.parametrize("d,n,k,dtype,scale", GRID)
def test_export_saelens_loads_in_saelens_with_our_codes(tmp_path, d, n, k, dtype, scale):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sae_lens = pytest.importorskip("sae_lens", reason="sae-lens is an optional peer (dev extra)")
    sae = our_sae(tmp_path / "ours", d, n, k, dtype, scale)
    out = export(tmp_path, "saelens")
    lib = sae_lens.SAE.load_from_disk(str(out))
    assert type(lib).__name__ == "TopKSAE" and lib.cfg.k == k and lib.cfg.metadata.model_name == "builtin"
    x = raw_inputs(sae)
    with torch.no_grad():
        codes, recon = ours_dense(sae, x)
        got = lib.encode(x)
        assert torch.allclose(got.double(), codes, atol=tol(dtype), rtol=tol(dtype))
        assert torch.allclose(lib.decode(got).double(), recon, atol=10 * tol(dtype), rtol=10 * tol(dtype))
        # and our reader gives the same codes from the exported folder
        back = load_any(out)
        v, i = back.encode(back.normalize(x))
        assert torch.allclose(dense(v, i, n), codes, atol=tol(dtype), rtol=tol(dtype))


@pytest.mark.parametrize("d,n,k,dtype,scale", GRID)
def test_export_sparsify_loads_in_sparsify_with_our_codes(tmp_path, monkeypatch, d, n, k, dtype, scale):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sparsify = pytest.importorskip("sparsify", reason="eai-sparsify is an optional peer (dev extra)")
    import sparsify.sparse_coder
    import sparsify.utils

    # sparsify decodes with Triton whenever it is installed, which needs a GPU: use its eager path
    monkeypatch.setattr(sparsify.sparse_coder, "decoder_impl", sparsify.utils.eager_decode)
    sae = our_sae(tmp_path / "ours", d, n, k, dtype, scale)
    out = export(tmp_path, "sparsify")
    lib = sparsify.SparseCoder.load_from_disk(out)
    assert lib.num_latents == n and lib.cfg.k == k and lib.dtype == dtype
    x = raw_inputs(sae)
    with torch.no_grad():
        codes, recon = ours_dense(sae, x)
        o = lib.encode(x)
        assert torch.allclose(dense(o.top_acts, o.top_indices, n), codes, atol=tol(dtype), rtol=tol(dtype))
        assert torch.allclose(lib.decode(o.top_acts, o.top_indices).double(), recon, atol=10 * tol(dtype),
                              rtol=10 * tol(dtype))


def test_export_errors_are_one_line(tmp_path):
    our_sae(tmp_path / "ours", 8, 16, 2, torch.float32, 1.0)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("keep me")
    runner = CliRunner()
    r = runner.invoke(cli, ["export", str(tmp_path / "ours"), "--to", "sparsify", "--out", str(tmp_path / "full")])
    assert r.exit_code == 2 and "not an empty folder" in r.output and (tmp_path / "full" / "x").read_text() == "keep me"
    r = runner.invoke(cli, ["export", str(tmp_path / "missing"), "--to", "saelens", "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "missing" in r.output and "Traceback" not in r.output
    r = runner.invoke(cli, ["export", str(tmp_path / "ours"), "--to", "nnsight", "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "nnsight" in r.output
    assert not (tmp_path / "o").exists() and not (tmp_path / "o.partial").exists()


def test_export_metadata_and_help(tmp_path):
    our_sae(tmp_path / "ours", 8, 16, 2, torch.float32, 1.0)
    out = export(tmp_path, "saelens")
    cfg = json.loads((out / "cfg.json").read_text())
    assert cfg["architecture"] == "topk" and cfg["normalize_activations"] == "none" and cfg["apply_b_dec_to_input"]
    assert cfg["metadata"]["hook_name"] == "layer_3" and "input_mean" not in cfg["metadata"]["genesae_config"]
    assert not (tmp_path / "saelens.partial").exists()
    r = CliRunner().invoke(cli, ["export", "--help"])
    assert r.exit_code == 0 and "folded" in r.output
