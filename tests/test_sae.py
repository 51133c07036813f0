"""genesae_fast.TopKSAE: construction, save/load, normalisation, training helpers, training."""
from __future__ import annotations

import json

import pytest
import torch

import genesae_fast
from genesae_fast.errors import InputError
from genesae_fast.sae import TopKSAE, describe


@pytest.fixture
def sae():
    torch.manual_seed(0)
    return TopKSAE(12, 48, 4)


def test_init(sae):
    assert genesae_fast.TopKSAE is TopKSAE
    assert sae.W_enc.shape == (48, 12) and sae.W_dec.shape == (48, 12)
    assert sae.b_enc.shape == (48,) and sae.b_dec.shape == (12,)
    torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(48))
    assert torch.equal(sae.W_enc, sae.W_dec)
    assert sae.W_enc.data_ptr() != sae.W_dec.data_ptr()


@pytest.mark.parametrize("args", [(12, 48, 0), (12, 48, 49), (0, 48, 4)])
def test_init_rejects_bad_sizes(args):
    with pytest.raises(ValueError):
        TopKSAE(*args)


def test_forward_matches_dense_reference(sae):
    with torch.no_grad():
        sae.b_enc.normal_()
        sae.b_dec.normal_()
    x = torch.randn(10, 12)
    out = sae(x)
    pre = (x - sae.b_dec) @ sae.W_enc.T + sae.b_enc
    top = torch.topk(pre, 4, dim=1)
    codes = torch.zeros(10, 48).scatter(1, top.indices, top.values.relu())
    torch.testing.assert_close(out.x_hat, codes @ sae.W_dec + sae.b_dec)
    torch.testing.assert_close(out.vals.sort(1).values, top.values.relu().sort(1).values)
    assert out.idx.dtype == torch.int64


def test_encode_auxk_mask(sae):
    x = torch.randn(5, 12)
    dead = torch.zeros(48, dtype=torch.bool)
    dead[10:20] = True
    vals, idx = sae.encode(x, k=6, latent_mask=dead)
    assert vals.shape == (5, 6) and ((idx >= 10) & (idx < 20)).all()


def test_normalize_roundtrip(sae):
    sae.input_mean.copy_(torch.linspace(-1, 1, 12))
    sae.input_scale = 3.0
    x = torch.randn(7, 12)
    xn = sae.normalize(x)
    torch.testing.assert_close(xn, (x - sae.input_mean) / 3.0)
    torch.testing.assert_close(sae.denormalize(xn), x)


def test_save_load_roundtrip(sae, tmp_path):
    with torch.no_grad():
        sae.b_enc.normal_()
    sae.input_mean.copy_(torch.arange(12.0))
    sae.input_scale = 2.5
    sae.save(tmp_path / "s", extra_config={"layer": 3, "store": "x.zarr"})
    from safetensors import safe_open

    with safe_open(str(tmp_path / "s" / "sae.safetensors"), framework="pt") as fh:
        assert sorted(fh.keys()) == ["W_dec", "W_enc", "b_dec", "b_enc"]
    cfg = json.loads((tmp_path / "s" / "config.json").read_text())
    assert (cfg["d_in"], cfg["n_latents"], cfg["k"], cfg["layer"]) == (12, 48, 4, 3)
    assert cfg["input_mean"] == list(range(12)) and cfg["input_scale"] == 2.5
    loaded = TopKSAE.load(tmp_path / "s")
    for name in ("W_enc", "b_enc", "W_dec", "b_dec", "input_mean"):
        assert torch.equal(getattr(loaded, name), getattr(sae, name)), name
    assert loaded.input_scale == 2.5 and loaded.config["store"] == "x.zarr"
    x = torch.randn(3, 12)
    torch.testing.assert_close(loaded(x).x_hat, sae(x).x_hat)
    info = describe(tmp_path / "s")
    assert (info["d_in"], info["n_latents"], info["k"], info["layer"]) == (12, 48, 4, 3)
    assert info["tensors"] == ["W_dec", "W_enc", "b_dec", "b_enc"]
    assert not list((tmp_path / "s").glob("*.tmp"))


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda d: (d / "config.json").unlink(), "config.json: missing"),
        (lambda d: (d / "sae.safetensors").unlink(), "sae.safetensors: missing"),
        (lambda d: (d / "config.json").write_text("{not json"), "not valid JSON"),
        (lambda d: (d / "sae.safetensors").write_bytes(b"garbage"), "unreadable safetensors"),
        (lambda d: (d / "config.json").write_text(json.dumps({"d_in": 12, "n_latents": 48, "k": 99})),
         "k=99 exceeds"),
        (lambda d: (d / "config.json").write_text(json.dumps({"d_in": 13, "n_latents": 48, "k": 4})),
         "W_enc has shape"),
    ],
)
def test_load_rejects_bad_folder(sae, tmp_path, damage, message):
    sae.save(tmp_path)
    damage(tmp_path)
    with pytest.raises(InputError, match=message):
        TopKSAE.load(tmp_path)


def test_set_decoder_norm(sae):
    with torch.no_grad():
        sae.W_dec.mul_(torch.rand(48, 1) * 5 + 0.1)
    direction = sae.W_dec / sae.W_dec.norm(dim=1, keepdim=True)
    sae.set_decoder_norm_()
    torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(48))
    torch.testing.assert_close(sae.W_dec, direction)


def test_remove_parallel_grad(sae):
    g = torch.randn(48, 12)
    sae.W_dec.grad = g.clone()
    sae.remove_parallel_grad_()
    dots = (sae.W_dec.grad * sae.W_dec).sum(1)
    torch.testing.assert_close(dots, torch.zeros(48), atol=1e-5, rtol=0)
    # the orthogonal part is untouched
    W = sae.W_dec.detach()
    torch.testing.assert_close(sae.W_dec.grad, g - (g * W).sum(1, keepdim=True) * W)


def test_training_reduces_loss(backend):
    torch.manual_seed(0)
    # data on a few sparse directions: an SAE can fit it well
    atoms = torch.randn(24, 16)
    codes = torch.rand(256, 24) * (torch.rand(256, 24) < 0.15)
    data = codes @ atoms
    sae = TopKSAE(16, 32, 4)
    opt = torch.optim.Adam(sae.parameters(), lr=1e-2)

    def loss():
        return (sae(data).x_hat - data).pow(2).sum(1).mean()

    with torch.no_grad():
        first = loss().item()
    for _ in range(30 if backend == "torch" else 8):
        opt.zero_grad()
        loss().backward()
        sae.remove_parallel_grad_()
        opt.step()
        sae.set_decoder_norm_()
    with torch.no_grad():
        last = loss().item()
    assert last < 0.7 * first, (first, last)
