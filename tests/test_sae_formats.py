"""Reading other libraries' SAE folders: codes against each library's own encode.

SAELens and sparsify are installed in the dev extra, so their folders are written and
read back by the libraries themselves. dictionary_learning pulls a CUDA build of torch,
so its folders are written from its documented layout (``ae.pt`` state dict +
``config.json``) and checked against a plain re-implementation of its encoders below.
"""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

from genesae_fast.errors import InputError
from genesae_fast.sae_formats import check_compatible, detect_format, load_any

D, N, K = 12, 48, 5


def dense(vals, idx, n=N):
    """Codes as a dense [b, n] matrix (padding entries of value 0 vanish)."""
    return torch.zeros(vals.shape[0], n, dtype=torch.float64).scatter_add_(1, idx, vals.double())


def codes(sae, x):
    vals, idx = sae.encode(sae.normalize(x))
    assert idx.dtype == torch.int64 and vals.shape == idx.shape
    return dense(vals, idx, sae.config["n_latents"])


def weights(seed=0, d=D, n=N, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return {"W_enc": torch.randn(n, d, generator=g, dtype=dtype), "b_enc": torch.randn(n, generator=g, dtype=dtype) * 0.3,
            "W_dec": torch.randn(n, d, generator=g, dtype=dtype), "b_dec": torch.randn(d, generator=g, dtype=dtype) * 0.3}


def inputs(rows=64, seed=1, d=D):
    return torch.randn(rows, d, generator=torch.Generator().manual_seed(seed)) * 2


# ---------------------------------------------------------------- references (plain torch, float64)

def ref_pre(w, x, subtract=True):
    x = x.double() - (w["b_dec"].double() if subtract else 0)
    return x @ w["W_enc"].double().T + w["b_enc"].double()


def ref_topk(w, x, k, subtract=True):
    pre = ref_pre(w, x, subtract).relu()
    v, i = pre.topk(k, dim=1)
    return torch.zeros_like(pre).scatter_(1, i, v)


def ref_jumprelu(w, x, thr, subtract=True):
    pre = ref_pre(w, x, subtract)
    return pre.relu() * (pre > thr.double())


def close(a, b, tol=1e-4):
    assert a.shape == b.shape
    assert torch.allclose(a, b, atol=tol, rtol=tol), (a - b).abs().max()


# ---------------------------------------------------------------- SAELens, through the library

sae_lens = None


def _sae_lens():
    global sae_lens
    if sae_lens is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sae_lens = pytest.importorskip("sae_lens", reason="sae-lens is an optional peer (dev extra)")
    return sae_lens


def saelens_folder(path, arch, w, *, k=K, threshold=None, **cfg_extra):
    """An SAELens folder written by SAELens' own save_model."""
    sl = _sae_lens()
    cls = {"topk": (sl.TopKSAE, sl.TopKSAEConfig), "jumprelu": (sl.JumpReLUSAE, sl.JumpReLUSAEConfig),
           "standard": (sl.StandardSAE, sl.StandardSAEConfig)}[arch]
    kw = {"k": k} if arch == "topk" else {}
    sae = cls[0](cls[1](d_in=w["W_enc"].shape[1], d_sae=w["W_enc"].shape[0], **kw, **cfg_extra))
    with torch.no_grad():
        sae.W_enc.copy_(w["W_enc"].T)
        sae.b_enc.copy_(w["b_enc"])
        sae.W_dec.copy_(w["W_dec"])
        sae.b_dec.copy_(w["b_dec"])
        if threshold is not None:
            sae.threshold.copy_(threshold)
    sae.save_model(str(path))
    return sae


@pytest.mark.parametrize("arch", ["topk", "jumprelu", "standard"])
@pytest.mark.parametrize("norm", ["none", "constant_norm_rescale", "layer_norm"])
@pytest.mark.parametrize("apply_b_dec", [True, False])
def test_saelens_codes_and_reconstruction_match_the_library(tmp_path, arch, norm, apply_b_dec):
    w = weights(3)
    thr = torch.rand(N, generator=torch.Generator().manual_seed(4)) * 2 if arch == "jumprelu" else None
    lib = saelens_folder(tmp_path, arch, w, threshold=thr, normalize_activations=norm, apply_b_dec_to_input=apply_b_dec)
    x = inputs()
    sae = load_any(tmp_path)
    assert sae.config["format"] == "saelens" and sae.config["n_latents"] == N and sae.config["d_in"] == D
    with torch.no_grad():
        expected = lib.encode(x).double()
        got = codes(sae, x)
        close(got, expected)
        vals, idx = sae.encode(sae.normalize(x))
        close(sae.denormalize(sae.decode(vals, idx)).double(), lib.decode(lib.encode(x)).double(), 1e-3)
    l0 = (expected > 0).sum(1)
    if arch == "topk":
        assert vals.shape[1] == K
    else:  # variable L0: padded to the batch's largest count, padding is value 0
        assert vals.shape[1] == int(l0.max()) and l0.min() < l0.max()
        assert torch.equal((vals > 0).sum(1), l0)


def test_saelens_rescale_by_decoder_norm_and_batchtopk_checkpoint(tmp_path):
    w = weights(5)
    lib = saelens_folder(tmp_path / "r", "topk", w, rescale_acts_by_decoder_norm=True)
    x = inputs()
    with torch.no_grad():
        close(codes(load_any(tmp_path / "r"), x), lib.encode(x).double())
    # a BatchTopK training checkpoint keeps one scalar threshold: relu(pre) > threshold
    (tmp_path / "b").mkdir()
    from safetensors.torch import save_file

    save_file({"W_enc": w["W_enc"].T.contiguous(), "b_enc": w["b_enc"], "W_dec": w["W_dec"], "b_dec": w["b_dec"],
               "topk_threshold": torch.tensor(0.7)}, str(tmp_path / "b" / "sae_weights.safetensors"))
    (tmp_path / "b" / "cfg.json").write_text(json.dumps({"architecture": "batchtopk", "d_in": D, "d_sae": N, "k": K}))
    close(codes(load_any(tmp_path / "b"), x), ref_jumprelu(w, x, torch.full((N,), 0.7)))


def test_saelens_scaling_factor_from_activation_scaler(tmp_path):
    w = weights(6)
    saelens_folder(tmp_path, "topk", w, normalize_activations="expected_average_only_in")
    with pytest.raises(InputError, match="activation_scaler.json"):
        load_any(tmp_path)
    (tmp_path / "activation_scaler.json").write_text(json.dumps({"scaling_factor": 0.25}))
    x = inputs()
    close(codes(load_any(tmp_path), x), ref_topk(w, x * 0.25, K))


# ---------------------------------------------------------------- sparsify, through the library

def sparsify_folder(path, w, k=K, activation="topk"):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sp = pytest.importorskip("sparsify", reason="eai-sparsify is an optional peer (dev extra)")
    coder = sp.SparseCoder(w["W_enc"].shape[1], sp.SparseCoderConfig(num_latents=w["W_enc"].shape[0], k=k,
                                                                      activation=activation))
    with torch.no_grad():
        coder.encoder.weight.copy_(w["W_enc"])
        coder.encoder.bias.copy_(w["b_enc"])
        coder.W_dec.copy_(w["W_dec"])
        coder.b_dec.copy_(w["b_dec"])
    coder.save_to_disk(path)
    return coder


@pytest.mark.parametrize("activation", ["topk", "groupmax"])
def test_sparsify_codes_match_the_library(tmp_path, monkeypatch, activation):
    import sparsify.sparse_coder
    import sparsify.utils

    # sparsify decodes with Triton whenever it is installed, which needs a GPU: use its eager path
    monkeypatch.setattr(sparsify.sparse_coder, "decoder_impl", sparsify.utils.eager_decode)
    w = weights(7)
    lib = sparsify_folder(tmp_path / "layers.3", w, K if activation == "topk" else 4, activation)
    x = inputs()
    with torch.no_grad():
        out = lib.encode(x)
        expected = dense(out.top_acts, out.top_indices)
        for path in (tmp_path / "layers.3", tmp_path):  # the hookpoint folder, or its parent with one
            sae = load_any(path)
            assert sae.config["format"] == "sparsify"
            close(codes(sae, x), expected)
            vals, idx = sae.encode(sae.normalize(x))
            close(sae.denormalize(sae.decode(vals, idx)).double(), lib.decode(out.top_acts, out.top_indices).double())


def test_sparsify_parent_with_two_hookpoints_is_ambiguous(tmp_path):
    sparsify_folder(tmp_path / "a", weights(1))
    sparsify_folder(tmp_path / "b", weights(2))
    with pytest.raises(InputError, match="2 sparsify hookpoint folders"):
        load_any(tmp_path)
    assert detect_format(tmp_path / "b") == ("sparsify", tmp_path / "b")


# ---------------------------------------------------------------- dictionary_learning, from its layout

def dl_folder(path, cls, w, *, k=K, threshold=None):
    """ae.pt + config.json as dictionary_learning's trainers save them."""
    path.mkdir(parents=True)
    if cls in ("AutoEncoderTopK", "BatchTopKSAE"):
        sd = {"encoder.weight": w["W_enc"], "encoder.bias": w["b_enc"], "decoder.weight": w["W_dec"].T.contiguous(),
              "b_dec": w["b_dec"], "k": torch.tensor(k, dtype=torch.int),
              "threshold": torch.tensor(-1.0 if threshold is None else threshold)}
    elif cls == "AutoEncoder":
        sd = {"bias": w["b_dec"], "encoder.weight": w["W_enc"], "encoder.bias": w["b_enc"],
              "decoder.weight": w["W_dec"].T.contiguous()}
    else:
        sd = {"W_enc": w["W_enc"].T.contiguous(), "b_enc": w["b_enc"], "W_dec": w["W_dec"], "b_dec": w["b_dec"],
              "threshold": threshold}
    torch.save(sd, path / "ae.pt")
    trainer = {"dict_class": cls, "activation_dim": w["W_enc"].shape[1], "dict_size": w["W_enc"].shape[0], "k": k}
    (path / "config.json").write_text(json.dumps({"trainer": trainer, "buffer": {"d_submodule": D}}))


def test_dictionary_learning_architectures(tmp_path):
    w, x = weights(8), inputs()
    thr = torch.rand(N, generator=torch.Generator().manual_seed(9)) * 2
    cases = {
        "topk": (dl_folder(tmp_path / "t", "AutoEncoderTopK", w), ref_topk(w, x, K)),
        # BatchTopK before a threshold was learnt (-1): per-row top k; after: relu(pre) > threshold
        "btk_unset": (dl_folder(tmp_path / "b0", "BatchTopKSAE", w), ref_topk(w, x, K)),
        "btk": (dl_folder(tmp_path / "b1", "BatchTopKSAE", w, threshold=0.9), ref_jumprelu(w, x, torch.full((N,), 0.9))),
        # JumpReLU does not subtract b_dec from its input (apply_b_dec_to_input = False)
        "jump": (dl_folder(tmp_path / "j", "JumpReluAutoEncoder", w, threshold=thr), ref_jumprelu(w, x, thr, False)),
        "relu": (dl_folder(tmp_path / "r", "AutoEncoder", w), ref_jumprelu(w, x, torch.zeros(N))),
    }
    folders = {"topk": "t", "btk_unset": "b0", "btk": "b1", "jump": "j", "relu": "r"}
    for name, (_, expected) in cases.items():
        sae = load_any(tmp_path / folders[name])
        assert sae.config["format"] == "dictionary_learning", name
        close(codes(sae, x), expected)
        vals, idx = sae.encode(sae.normalize(x))
        x_hat = dense(vals, idx) @ w["W_dec"].double() + w["b_dec"].double()
        close(sae.denormalize(sae.decode(vals, idx)).double(), x_hat)


def test_dictionary_learning_backup_checkpoint_and_bad_pickle(tmp_path):
    w, x = weights(10), inputs()
    dl_folder(tmp_path / "a", "AutoEncoderTopK", w)
    sd = torch.load(tmp_path / "a" / "ae.pt")
    torch.save({"step": 5, "ae": sd, "config": {}}, tmp_path / "a" / "ae.pt")
    close(codes(load_any(tmp_path / "a"), x), ref_topk(w, x, K))
    (tmp_path / "a" / "ae.pt").write_bytes(b"not a pickle")
    with pytest.raises(InputError, match="unreadable torch checkpoint"):
        load_any(tmp_path / "a")


# ---------------------------------------------------------------- ours, detection, errors

def test_ours_is_loaded_by_topksae(tmp_path):
    from genesae_fast.sae import TopKSAE

    torch.manual_seed(0)
    sae = TopKSAE(D, N, K)
    sae.input_scale = 3.0
    sae.save(tmp_path)
    got = load_any(tmp_path)
    assert isinstance(got, TopKSAE) and not got.training and got.source_format == "genesae"
    x = inputs()
    assert torch.equal(codes(got, x), codes(sae, x))
    assert "format" not in got.config  # nothing foreign leaks into a config TopKSAE.save would write


def test_variable_l0_padding_over_blocks(tmp_path, monkeypatch):
    """Blocks of the dense path are padded to the whole batch's largest count."""
    from genesae_fast.sae_formats import generic

    w, x = weights(11), inputs(rows=50)
    dl_folder(tmp_path / "j", "JumpReluAutoEncoder", w, threshold=torch.rand(N) * 3)
    sae = load_any(tmp_path / "j")
    whole = sae.encode(sae.normalize(x))
    monkeypatch.setattr(generic, "DENSE_BLOCK_ROWS", 7)
    blocks = sae.encode(sae.normalize(x))
    assert blocks[0].shape == whole[0].shape
    # the same active set; values equal up to the matmul's blocking (low bits)
    assert torch.equal(dense(*blocks) > 0, dense(*whole) > 0)
    close(dense(*blocks), dense(*whole), 1e-6)
    empty = sae.encode(sae.normalize(x[:0]))
    assert empty[0].shape[0] == 0


@pytest.mark.parametrize("case,message", [
    ("empty", "not an SAE folder of a known format"),
    ("saelens_arch", "architecture 'gated' is not supported"),
    ("saelens_shape", "W_enc has shape"),
    ("saelens_nan", "holds NaN or inf"),
    ("saelens_json", "not valid JSON"),
    ("sparsify_transcoder", "transcoder"),
    ("dl_class", "dictionary class 'GatedAutoEncoder' is not supported"),
])
def test_bad_folders_are_one_line_errors(tmp_path, case, message):
    from safetensors.torch import save_file

    w = weights(12)
    sl = {"W_enc": w["W_enc"].T.contiguous(), "b_enc": w["b_enc"], "W_dec": w["W_dec"], "b_dec": w["b_dec"]}
    cfg = {"architecture": "topk", "d_in": D, "d_sae": N, "k": K}
    if case.startswith("saelens"):
        if case == "saelens_arch":
            cfg["architecture"] = "gated"
        if case == "saelens_shape":
            sl["W_enc"] = w["W_enc"]
        if case == "saelens_nan":
            sl["b_enc"] = sl["b_enc"].clone()
            sl["b_enc"][3] = float("nan")
        save_file(sl, str(tmp_path / "sae_weights.safetensors"))
        (tmp_path / "cfg.json").write_text("{oops" if case == "saelens_json" else json.dumps(cfg))
    elif case == "sparsify_transcoder":
        save_file({"encoder.weight": w["W_enc"]}, str(tmp_path / "sae.safetensors"))
        (tmp_path / "cfg.json").write_text(json.dumps({"d_in": D, "k": K, "num_latents": N, "transcode": True}))
    elif case == "dl_class":
        torch.save({}, tmp_path / "ae.pt")
        (tmp_path / "config.json").write_text(json.dumps({"trainer": {"dict_class": "GatedAutoEncoder"}}))
    with pytest.raises(InputError, match=message) as exc:
        load_any(tmp_path)
    assert "\n" not in str(exc.value)


def test_not_a_folder(tmp_path):
    with pytest.raises(InputError, match="not a folder"):
        load_any(tmp_path / "missing")


def test_check_compatible_names_both_widths(tmp_path):
    dl_folder(tmp_path / "t", "AutoEncoderTopK", weights(13))
    sae = load_any(tmp_path / "t")

    class Store:
        path, d = "acts.zarr", D + 1

    with pytest.raises(InputError, match=rf"d_in={D} does not match the store acts.zarr with d={D + 1}"):
        check_compatible(sae, Store())
    Store.d = D
    check_compatible(sae, Store())


def test_encodes_on_the_parameters_device_and_dtype(tmp_path):
    w = {k: v.double() for k, v in weights(14).items()}
    dl_folder(tmp_path / "t", "AutoEncoderTopK", w)
    sae = load_any(tmp_path / "t", device=None)  # TopKSAE.load's default spelling
    assert next(sae.parameters()).dtype == torch.float64 and next(sae.parameters()).device.type == "cpu"
    x = inputs().numpy().astype(np.float32)
    close(codes(sae, torch.from_numpy(x)), ref_topk(w, torch.from_numpy(x), K), 1e-9)


def test_half_precision_checkpoints_are_widened(tmp_path):
    w = {k: v.to(torch.bfloat16) for k, v in weights(15).items()}
    dl_folder(tmp_path / "t", "AutoEncoderTopK", w)
    sae = load_any(tmp_path / "t")
    assert next(sae.parameters()).dtype == torch.float32
    x = inputs()
    close(codes(sae, x), ref_topk({k: v.float() for k, v in w.items()}, x, K), 1e-4)
