"""Annotation of both strands: SAE codes pooled per base over the forward and RC passes.

With a reverse-complement store beside the forward one (``genesae_fast.store.strands``),
the annotation reads each token as ``[forward row | RC row]`` (:class:`SideBySideStore`)
and encodes it with :class:`PooledSAE`: the SAE encodes each pass on its own and a token's
code for feature ``f`` is the larger of its two codes (:func:`pool_topk`; a feature in the
top-k of neither pass is 0). Every concept (motifs, their controls, gene structure) is then
scored on these pooled codes, so a feature that fires on a site read in the direction of
either strand finds it. The neuron baseline sees the 2 d raw dimensions of both passes.
One pass (no RC store, or ``strands="forward"``) takes none of this code.
"""
from __future__ import annotations

import functools

import numpy as np


def pool_topk(vals_a, idx_a, vals_b, idx_b):
    """Per row, the union of two top-k code sets with the larger value where a feature is in both.

    Parameters
    ----------
    vals_a, idx_a, vals_b, idx_b : numpy.ndarray or torch.Tensor, shape (n, k)
        Codes of the two passes (indices unique within a row, as top-k gives them).

    Returns
    -------
    (vals, idx) : shape (n, 2 k), sorted by feature within a row; the smaller of a duplicate
    pair is set to 0 (so ``SparseActs.from_topk`` keeps each feature once).
    """
    va, vb = np.asarray(vals_a, dtype=np.float32), np.asarray(vals_b, dtype=np.float32)
    idx = np.concatenate([np.asarray(idx_a, np.int64), np.asarray(idx_b, np.int64)], axis=1)
    vals = np.concatenate([va, vb], axis=1)
    order = np.argsort(idx, axis=1, kind="stable")
    idx = np.take_along_axis(idx, order, axis=1)
    vals = np.take_along_axis(vals, order, axis=1)
    if idx.shape[1] > 1:
        dup = idx[:, 1:] == idx[:, :-1]  # pairs at most: each pass lists a feature once
        best = np.maximum(vals[:, 1:], vals[:, :-1])
        vals[:, :-1] = np.where(dup, best, vals[:, :-1])
        # no slot is the second of one pair and the first of another (that needs three
        # equal indices), so zeroing the second slots after writing the first is safe
        vals[:, 1:] = np.where(dup, 0.0, vals[:, 1:])
    return vals.astype(np.float32), idx


class PooledSAE:
    """An SAE that reads ``[forward | RC]`` rows (width 2 d) and gives pooled codes.

    ``normalize`` and ``encode`` keep the contract of the wrapped SAE (``encode_topk`` and
    ``encode_rows`` call them); :meth:`encode_rows` also reconstructs each pass, so the
    reconstruction error is that of both passes. Everything else is the wrapped SAE's.
    """

    def __init__(self, sae):
        self.sae = sae  # may be a LazySAE (annotate.passes): nothing below loads it until used

    @functools.cached_property
    def d(self) -> int:
        sae = self.sae
        return int(sae.config["d_in"]) if hasattr(sae, "config") and "d_in" in sae.config else int(sae.W_enc.shape[1])

    @functools.cached_property
    def config(self) -> dict:
        return {"n_latents": int(self.sae.W_enc.shape[0]), **(getattr(self.sae, "config", {}) or {}), "d_in": 2 * self.d}

    def __getattr__(self, name):
        return getattr(self.__dict__["sae"], name)

    def normalize(self, x):
        import torch

        return torch.cat([self.sae.normalize(x[:, :self.d]), self.sae.normalize(x[:, self.d:])], dim=1)

    def encode(self, xn):
        """Pooled codes ``(vals [n, 2k], idx [n, 2k])`` of normalised ``[forward | RC]`` rows."""
        import torch

        va, ia = self.sae.encode(xn[:, :self.d])
        vb, ib = self.sae.encode(xn[:, self.d:])
        vals, idx = pool_topk(va.float().cpu().numpy(), ia.cpu().numpy(), vb.float().cpu().numpy(),
                              ib.cpu().numpy())
        return torch.from_numpy(vals), torch.from_numpy(idx)

    def encode_rows(self, x: np.ndarray):
        """``(vals, idx, x_hat)`` as ``annotate.encode.encode_rows`` gives them: pooled codes and
        each pass's own reconstruction side by side (``x_hat [n, 2 d]``)."""
        from genesae_fast.annotate.encode import encode_rows

        va, ia, ha = encode_rows(self.sae, x[:, :self.d])
        vb, ib, hb = encode_rows(self.sae, x[:, self.d:])
        vals, idx = pool_topk(va, ia, vb, ib)
        return vals, idx, np.concatenate([ha, hb], axis=1)


def load_pooled_sae(sae_path, device: str = "cpu") -> PooledSAE:
    """The SAE of a folder (any format ``load_any`` reads) wrapped in :class:`PooledSAE` (workers call this)."""
    from genesae_fast.sae_formats import load_any

    sae = load_any(sae_path, device=device)
    sae.eval()
    return PooledSAE(sae)


__all__ = ["PooledSAE", "load_pooled_sae", "pool_topk"]
