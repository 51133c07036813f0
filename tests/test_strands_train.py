"""Both strands, training side: the interleaved view of a store and its RC store."""
from __future__ import annotations

import numpy as np
import pytest
from test_extract_model import TinyModel


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    from genesae_fast.extract import extract_to_store
    from genesae_fast.sequences import write_fasta

    d = tmp_path_factory.mktemp("both")
    rng = np.random.default_rng(5)
    write_fasta([(f"r{i}", "".join(rng.choice(list("ACGT"), n))) for i, n in enumerate([3000, 1700])], d / "g.fa")
    extract_to_store(d / "g.fa", TinyModel(), 2, d / "s.zarr", progress=False, chunk_rows=1024, workers=1,
                     dtype="float32", strands="both")
    return d


def _rows(store) -> np.ndarray:
    return np.concatenate([store.read_chunk(k) for k in range(store.n_chunks)]).astype(np.float64)


def test_view_interleaves_chunks_and_folds_statistics(stores):
    from genesae_fast.store import ActivationStore
    from genesae_fast.store.strands import BothStrandsStore, open_for_training

    fwd, rc = ActivationStore.open(stores / "s.zarr"), ActivationStore.open(stores / "s.rc.zarr")
    view = open_for_training(stores / "s.zarr")
    assert isinstance(view, BothStrandsStore)
    assert view.n_chunks == fwd.n_chunks + rc.n_chunks and view.n_rows == fwd.n_rows + rc.n_rows
    for j in range(fwd.n_chunks):  # forward chunk j, then RC chunk j
        np.testing.assert_array_equal(view.read_chunk(2 * j), fwd.read_chunk(j))
        np.testing.assert_array_equal(view.read_chunk(2 * j + 1), rc.read_chunk(j))
    x = np.concatenate([_rows(fwd), _rows(rc)])
    np.testing.assert_allclose(view.mean, x.mean(0), rtol=1e-9, atol=1e-12)
    scale = np.sqrt(((x - x.mean(0)) ** 2).sum(1).mean())
    assert view.norm_scale == pytest.approx(scale, rel=1e-9)
    # coordinates of view rows are those of the store row behind them
    a, b = view.chunk_bounds(1)
    got = view.coordinates(a - 5, b + 5)
    want = [np.concatenate([f[-5:], r, f2[:5]]) for f, r, f2 in
            zip(fwd.coordinates(fwd.chunk_bounds(0)[0], fwd.chunk_bounds(0)[1]),
                rc.coordinates(*rc.chunk_bounds(0)), fwd.coordinates(*fwd.chunk_bounds(1)))]
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("mode", ["memory", "stream"])
def test_every_row_of_both_passes_once_per_epoch(stores, mode):
    from genesae_fast.store.strands import open_for_training

    view = open_for_training(stores / "s.zarr")
    seen = np.concatenate([b.numpy() for b in view.batches(333, seed=3, epoch=1, mode=mode, buffer_chunks=2)])
    want = _rows(view)
    assert seen.shape == want.shape
    key = lambda a: a[np.lexsort(a.T[::-1])]  # noqa: E731 - rows as a multiset
    np.testing.assert_array_equal(key(seen.astype(np.float64)), key(want))
    assert view.epoch_rows(0, 1, 3, 1, mode=mode) == len(want)


def test_forward_option_and_a_store_without_companion(stores, tmp_path):
    from genesae_fast.store import ActivationStore
    from genesae_fast.store.strands import open_for_training

    assert isinstance(open_for_training(stores / "s.zarr", "forward"), ActivationStore)
    assert isinstance(open_for_training(stores / "s.rc.zarr", "auto"), ActivationStore)  # RC store alone: itself


def test_training_uses_both_passes_and_forward_is_unchanged(stores, tmp_path):
    import shutil

    import torch

    from genesae_fast.sae import TopKSAE
    from genesae_fast.store.strands import open_for_training
    from genesae_fast.train import train_sae

    opts = dict(latents=32, k=4, batch_size=256, tokens=4096, progress=False, lm_loss=False, threads=1)
    # one pass: a copy of the forward store without its companion trains exactly as strands="forward"
    alone = tmp_path / "alone.zarr"
    shutil.copytree(stores / "s.zarr", alone)
    a = TopKSAE.load(train_sae(alone, tmp_path / "a", **opts))
    b = TopKSAE.load(train_sae(stores / "s.zarr", tmp_path / "b", strands="forward", **opts))
    for name, t in a.state_dict().items():
        torch.testing.assert_close(t, b.state_dict()[name], rtol=0, atol=0)
    c_dir = train_sae(stores / "s.zarr", tmp_path / "c", **opts)
    c = TopKSAE.load(c_dir)
    assert not torch.equal(c.W_enc, a.W_enc)
    import json

    cfg = json.loads((c_dir / "config.json").read_text())
    assert "both" in json.dumps(cfg)
    # the held-out chunks are both passes of the last stretch (1% alone would be one RC chunk)
    held = json.loads((c_dir / "eval.json").read_text())["heldout_chunks"]
    view = open_for_training(stores / "s.zarr")
    assert held == [view.n_chunks - 2, view.n_chunks]
