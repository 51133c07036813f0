"""Stream an activation store through an SAE: sparse feature activations and neuron baselines.

Nothing of size tokens x latents is built: each block of rows is encoded to its top-k
(values, indices) and kept in CSR form (:class:`~genesae_fast.annotate.concepts.SparseActs`),
tokens x k in all. Raw model dimensions ("neurons") are kept the same way, each as two
directions (+ and - around the store's mean), only where they exceed a floor.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from genesae_fast.annotate.concepts import SparseActs

# neurons are dense: keep an entry only above this fraction of its direction's maximum
# (the lowest non-zero threshold of the grid, so no threshold of the neuron grid is affected)
NEURON_FLOOR = 0.15


@dataclass
class Encoded:
    """Result of :func:`encode_store`.

    Attributes
    ----------
    features : SparseActs -- SAE feature activations (N tokens, n_latents features)
    neurons : SparseActs or None -- 2*d directions of the centered raw activations
    fvu : float -- fraction of variance unexplained by the SAE reconstruction
    l0 : float -- mean number of non-zero features per token
    """

    features: SparseActs
    neurons: SparseActs | None
    fvu: float
    l0: float


def encode_rows(sae, x: np.ndarray):
    """Top-k codes and reconstruction of one block: (vals [b,k], idx [b,k], x_hat [b,d])."""
    import torch

    if hasattr(type(sae), "encode_rows"):  # annotate.strands.PooledSAE: both passes at once
        return sae.encode_rows(x)

    with torch.no_grad():
        xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        dev = next(sae.parameters()).device if hasattr(sae, "parameters") else torch.device("cpu")
        xt = xt.to(dev)
        vals, idx = sae.encode(sae.normalize(xt))
        x_hat = sae.denormalize(sae.decode(vals, idx))
        return vals.float().cpu().numpy(), idx.cpu().numpy(), x_hat.float().cpu().numpy()


def encode_store(store, sae, block_rows: int = 32768, neurons: bool = True, progress: bool = False) -> Encoded:
    """Encode every row of ``store`` with ``sae`` (two passes when ``neurons``).

    Parameters
    ----------
    store : ActivationStore (or any object with n_rows, d, mean and iter_rows)
    sae : TopKSAE (encode, decode, normalize, denormalize; n_latents from its config)
    block_rows : rows per block
    neurons : also collect the neuron baseline
    progress : tqdm bars
    """
    from tqdm import tqdm

    n_latents = int(sae.config["n_latents"]) if hasattr(sae, "config") and "n_latents" in sae.config else int(sae.W_enc.shape[0])
    mean = np.asarray(store.mean, dtype=np.float64)
    parts, sse, sst, nnz = [], 0.0, 0.0, 0
    dmax = np.zeros(2 * store.d, dtype=np.float32)
    bar = tqdm(total=store.n_rows, unit="tok", desc="encode", disable=not progress)
    for _, x in store.iter_rows(block_rows):
        vals, idx, x_hat = encode_rows(sae, x)
        a = SparseActs.from_topk(vals, idx, n_latents)
        parts.append(a)
        nnz += int(a.ptr[-1])
        c = x.astype(np.float64) - mean
        sse += float(np.sum((x - x_hat) ** 2, dtype=np.float64))
        sst += float(np.sum(c * c))
        if neurons and x.shape[0]:
            dmax = np.maximum(dmax, np.concatenate([c.max(axis=0), (-c).max(axis=0)]).astype(np.float32))
        bar.update(x.shape[0])
    bar.close()
    features = SparseActs.concat(parts) if parts else SparseActs(np.zeros(1, np.int64), np.zeros(0, np.int32), np.zeros(0, np.float32), n_latents)
    neuron_acts = None
    if neurons:
        floor = NEURON_FLOOR * np.maximum(dmax, 1e-12)
        nparts = []
        bar = tqdm(total=store.n_rows, unit="tok", desc="neurons", disable=not progress)
        for _, x in store.iter_rows(block_rows):
            c = (x.astype(np.float64) - mean).astype(np.float32)
            nparts.append(SparseActs.from_dense(np.concatenate([c, -c], axis=1), floor))
            bar.update(x.shape[0])
        bar.close()
        if nparts:
            neuron_acts = SparseActs.concat(nparts)
    n = max(store.n_rows, 1)
    return Encoded(features, neuron_acts, sse / sst if sst > 0 else float("nan"), nnz / n)
