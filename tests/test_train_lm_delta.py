"""genesae_fast.train.lm_delta, the LM-loss metric: bits/bp with a layer replaced by the SAE reconstruction, and its skips."""
from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
import torch

from genesae_fast.models import load_model
from genesae_fast.sae import TopKSAE
from genesae_fast.sequences import write_fasta
from genesae_fast.train.lm_delta import bits_with_replacement, heldout_stretch, lm_loss_increase, sae_replacement


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model():
    return load_model("builtin", device="cpu")


def _random_seq(n, seed):
    return "".join(np.random.default_rng(seed).choice(list("ACGT"), n))


@pytest.fixture(scope="module")
def genome_seq():
    """The bundled genome's sequence: real DNA, on which the LM beats 2 bits/bp."""
    from genesae_fast.data import genome_path
    from genesae_fast.sequences import read_fasta

    return read_fasta(genome_path())[0].sequence


def _exact_sae(d):
    """An SAE that reconstructs every input exactly: latents +x_i and -x_i, k = d
    (exactly one of each pair is positive, and relu keeps it)."""
    sae = TopKSAE(d, 2 * d, d)
    eye = torch.eye(d)
    with torch.no_grad():
        sae.W_enc.copy_(torch.cat([eye, -eye]))
        sae.W_dec.copy_(torch.cat([eye, -eye]))
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    return sae


def _random_sae(d, seed=0):
    torch.manual_seed(seed)
    sae = TopKSAE(d, 4 * d, 4)
    with torch.no_grad():
        sae.W_enc.copy_(torch.randn(4 * d, d))
        sae.W_dec.copy_(torch.nn.functional.normalize(torch.randn(4 * d, d), dim=1))
    return sae


@pytest.mark.parametrize("layer", [0, 1, "last"])
def test_identity_replacement_changes_nothing(model, genome_seq, layer):
    layer = model.n_layers if layer == "last" else layer
    seq = genome_seq[100_000 * layer : 100_000 * layer + 1500]
    out = bits_with_replacement(model, seq, layer, lambda h: h)
    assert out["bp_scored"] == len(seq) - 1
    assert out["layer"] == layer
    assert abs(out["delta_bits_per_bp"]) <= 1e-6
    assert out["bits_per_bp_clean"] < 2.0  # real DNA: the LM beats a uniform guess
    # and the hook is really in the path: wiping the layer changes the bits
    wiped = bits_with_replacement(model, seq, layer, torch.zeros_like)
    assert abs(wiped["delta_bits_per_bp"]) > 1e-3
    assert wiped["bits_per_bp_clean"] == out["bits_per_bp_clean"]


def test_sae_replacement_matches_rowwise_formula():
    d = 6
    sae = _random_sae(d)
    sae.input_mean.copy_(torch.arange(d, dtype=sae.input_mean.dtype))
    sae.input_scale = 2.5
    h = torch.randn(3, 5, d)
    got = sae_replacement(sae)(h)
    flat = h.reshape(-1, d)
    want = sae.denormalize(sae(sae.normalize(flat)).x_hat).reshape(h.shape)
    assert got.shape == h.shape and got.dtype == torch.float32
    torch.testing.assert_close(got, want)


@pytest.fixture(scope="module")
def store_setup(tmp_path_factory, genome_seq):
    from genesae_fast.extract import extract_to_store
    from genesae_fast.store import ActivationStore

    tmp = tmp_path_factory.mktemp("lmstore")
    genome = tmp / "g.fa"
    write_fasta([("chrA", genome_seq[:1200]), ("chrB", genome_seq[500_000:501_800])], genome)
    path = extract_to_store(str(genome), "builtin", 1, str(tmp / "a.zarr"), dtype="float32",
                            chunk_rows=500, progress=False, device="cpu")
    return tmp, genome, ActivationStore.open(path)


def _fit_scale(sae, store):
    sae.input_mean.copy_(torch.as_tensor(store.mean, dtype=sae.input_mean.dtype))
    sae.input_scale = float(store.norm_scale)
    return sae


def test_heldout_stretch_is_last_sequence(store_setup):
    _, _, store = store_setup
    last = range(store.n_chunks - 1, store.n_chunks)
    name, start, end = heldout_stretch(store, last)
    assert name == "chrB"
    seq, bs, be, _ = store.coordinates(last.start * store.chunk_rows, store.n_rows)
    assert (start, end) == (int(bs.min()), int(be.max()))
    assert heldout_stretch(store, last, max_bp=100)[1:] == (start, start + 100)


def test_store_metric_exact_and_random_sae(store_setup):
    _, _, store = store_setup
    chunks = range(store.n_chunks - 1, store.n_chunks)
    d = store.d
    exact = lm_loss_increase(store, _fit_scale(_exact_sae(d), store), chunks)
    assert set(exact) >= {"bits_per_bp_clean", "bits_per_bp_with_sae", "delta_bits_per_bp", "bp_scored", "layer"}
    assert exact["layer"] == 1 and exact["sequence"] == "chrB"
    assert exact["bp_scored"] == exact["end"] - exact["start"] - 1
    assert abs(exact["delta_bits_per_bp"]) < 1e-4  # fp32 round trip through normalise/denormalise
    rnd = lm_loss_increase(store, _fit_scale(_random_sae(d), store), chunks)
    assert math.isfinite(rnd["delta_bits_per_bp"]) and rnd["delta_bits_per_bp"] > -1e-3
    assert rnd["bits_per_bp_clean"] == exact["bits_per_bp_clean"]
    assert rnd["delta_bits_per_bp"] > exact["delta_bits_per_bp"]


def test_skipped_when_genome_missing_or_changed(store_setup, tmp_path):
    tmp, genome, store = store_setup
    from genesae_fast.store import ActivationStore

    moved = tmp_path / "a.zarr"
    shutil.copytree(store.path, moved)
    copy = ActivationStore.open(str(moved))
    sae = _exact_sae(store.d)
    chunks = range(store.n_chunks - 1, store.n_chunks)
    copy.attrs["genome"] = dict(copy.attrs["genome"], path=str(tmp_path / "gone.fa"))
    out = lm_loss_increase(copy, sae, chunks)
    assert set(out) == {"skipped"} and "genome file not found" in out["skipped"]
    changed = tmp_path / "g2.fa"
    write_fasta([("chrA", _random_seq(1200, 9))], changed)
    copy.attrs["genome"] = dict(copy.attrs["genome"], path=str(changed))
    out = lm_loss_increase(copy, sae, chunks)
    assert set(out) == {"skipped"} and "changed" in out["skipped"]


def test_skipped_for_imported_store(tmp_path):
    from genesae_fast.store import ActivationStore
    from genesae_fast.train.synthetic import write_store

    X = np.random.default_rng(0).normal(size=(300, 8)).astype(np.float32)
    store = ActivationStore.open(str(write_store(X, tmp_path / "s.zarr", chunk_rows=100)))
    out = lm_loss_increase(store, _exact_sae(8), range(2, 3))
    assert set(out) == {"skipped"}
