"""One SAE module for weights read from other libraries' folders.

Every architecture these readers accept is ``codes = act(pre)`` with
``pre = (x_n - b_dec?) @ W_enc.T + b_enc`` on normalised input ``x_n``, and the linear
decoder ``x_hat_n = codes @ W_dec + b_dec``. Only ``act`` differs:

- ``topk``: the k largest of ``pre`` per row, through ReLU (our :class:`~genesae_fast.sae.TopKSAE`);
- ``groupmax``: the maximum of each of k equal groups of latents (sparsify), through ReLU;
- ``jumprelu``: ``relu(pre)`` where ``pre > threshold`` (per latent; a scalar threshold, as
  BatchTopK uses at inference, is broadcast; a threshold of 0 is a plain ReLU SAE).

Codes come back as ``(vals [b, k], idx [b, k] int64)``. For ``jumprelu`` the number of
active latents varies per row, so rows are padded with value 0 to the batch's largest
count; a value <= 0 means "not firing" everywhere in the annotation.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from genesae_fast import ops

ACTIVATIONS = ("topk", "groupmax", "jumprelu")
# rows encoded at once by the dense (threshold) path: bounds the [rows, n] pre-activation
DENSE_BLOCK_ROWS = 4096


def _wide(x: Tensor) -> Tensor:
    """``x`` as float32, or float64 if it already is (normalisation never narrows float64)."""
    return x if x.dtype == torch.float64 else x.float()


class Normalizer(nn.Module):
    """Input normalisation an SAE was trained with, and its inverse.

    ``x_n = ((x - mean) / scale) @ matrix`` (``matrix`` optional: whitening), or a per-row
    mode: ``"constant_norm_rescale"`` (each row scaled to norm sqrt(d)) or ``"layer_norm"``
    (each row centred and divided by its std). Per-row modes keep the last batch's
    statistics so :meth:`denormalize` can undo them, as SAELens does.
    """

    def __init__(self, d: int, *, mean: Optional[Tensor] = None, scale: float = 1.0,
                 matrix: Optional[Tensor] = None, inverse: Optional[Tensor] = None, per_row: str = "none"):
        super().__init__()
        self.register_buffer("mean", torch.zeros(d, dtype=torch.float64) if mean is None else mean.detach().double())
        self.scale = float(scale)
        self.register_buffer("matrix", None if matrix is None else matrix.detach().double())
        self.register_buffer("inverse", None if inverse is None else inverse.detach().double())
        if per_row not in ("none", "constant_norm_rescale", "layer_norm"):
            raise ValueError(f"unknown per-row normalisation {per_row!r}")
        self.per_row = per_row
        self._row_state: Optional[tuple] = None

    def forward(self, x: Tensor) -> Tensor:
        """Normalised ``x [b, d]`` (float32, or float64 for float64 input)."""
        x = _wide(x)
        if self.per_row == "constant_norm_rescale":
            coeff = x.shape[-1] ** 0.5 / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)
            self._row_state = (coeff,)
            x = x * coeff
        elif self.per_row == "layer_norm":
            mu = x.mean(dim=-1, keepdim=True)
            std = (x - mu).std(dim=-1, keepdim=True)
            self._row_state = (mu, std)
            x = (x - mu) / (std + 1e-5)
        x = (x - self.mean.to(x.dtype)) / self.scale
        return x if self.matrix is None else x @ self.matrix.to(x.dtype)

    def inverse_map(self, z: Tensor) -> Tensor:
        """Inverse of :meth:`forward` (per-row modes use the last batch's statistics)."""
        z = _wide(z)
        if self.inverse is not None:
            z = z @ self.inverse.to(z.dtype)
        x = z * self.scale + self.mean.to(z.dtype)
        if self.per_row == "constant_norm_rescale" and self._row_state is not None:
            x = x / self._row_state[0]
        elif self.per_row == "layer_norm" and self._row_state is not None:
            x = x * (self._row_state[1] + 1e-5) + self._row_state[0]
        return x


class ForeignSAE(nn.Module):
    """An SAE read from another library's folder, with the interface the annotation uses.

    Parameters
    ----------
    W_enc : [n, d] encoder (one row per latent, as in :class:`~genesae_fast.sae.TopKSAE`)
    b_enc : [n]
    W_dec : [n, d] decoder rows
    b_dec : [d]
    activation : "topk", "groupmax" or "jumprelu"
    k : latents per row for topk/groupmax (also the nominal k reported for others)
    threshold : [n] or scalar tensor for jumprelu
    subtract_b_dec : subtract b_dec from the input before encoding
    normalizer : :class:`Normalizer` or None
    config : metadata; ``n_latents`` and ``d_in`` are filled in
    """

    def __init__(self, W_enc: Tensor, b_enc: Tensor, W_dec: Tensor, b_dec: Tensor, *, activation: str,
                 k: Optional[int] = None, threshold: Optional[Tensor] = None, subtract_b_dec: bool = True,
                 normalizer: Optional[Normalizer] = None, config: Optional[dict] = None):
        super().__init__()
        n, d = W_enc.shape
        # half-precision checkpoints are widened: codes are computed in float32 (float64 kept)
        dtype = torch.float64 if W_enc.dtype == torch.float64 else torch.float32
        W_enc, b_enc, W_dec, b_dec = (t.to(dtype) for t in (W_enc, b_enc, W_dec, b_dec))
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
        self.W_enc = nn.Parameter(W_enc.detach().contiguous(), requires_grad=False)
        self.b_enc = nn.Parameter(b_enc.detach().reshape(n).contiguous(), requires_grad=False)
        self.W_dec = nn.Parameter(W_dec.detach().contiguous(), requires_grad=False)
        self.b_dec = nn.Parameter(b_dec.detach().reshape(d).contiguous(), requires_grad=False)
        thr = torch.zeros(n) if threshold is None else threshold.detach().float().reshape(-1).expand(n)
        self.register_buffer("threshold", thr.to(W_enc.dtype).contiguous())
        self.activation, self.subtract_b_dec = activation, bool(subtract_b_dec)
        self.k = int(k) if k is not None else None
        self.normalizer = normalizer if normalizer is not None else Normalizer(d)
        self.d_in, self.n_latents = int(d), int(n)
        self.config = dict(config or {})
        self.config.update(d_in=self.d_in, n_latents=self.n_latents, activation=activation, k=self.k)

    def normalize(self, x: Tensor) -> Tensor:
        """Normalised input ``[b, d]`` in the parameters' dtype."""
        return self.normalizer(x.to(self.normalizer.mean.device)).to(self.W_enc.dtype)

    def denormalize(self, x_n: Tensor) -> Tensor:
        """Inverse of :meth:`normalize`."""
        return self.normalizer.inverse_map(x_n)

    def pre_activation(self, x: Tensor) -> Tensor:
        """Dense pre-activations ``[b, n]`` of normalised ``x [b, d]``."""
        x = x.to(self.W_enc.dtype)
        if self.subtract_b_dec:
            x = x - self.b_dec
        return torch.addmm(self.b_enc, x, self.W_enc.T)

    @torch.no_grad()
    def encode(self, x: Tensor):
        """Codes of normalised ``x [b, d]``: ``(vals [b, k'], idx int64 [b, k'])``.

        ``k' = k`` for topk/groupmax; for jumprelu the batch's largest active count (at
        least 1), rows padded with value 0.
        """
        if self.activation == "topk":
            return ops.topk_encode(x.to(self.W_enc.dtype), self.W_enc, self.b_enc, self.k,
                                   b_dec=self.b_dec if self.subtract_b_dec else None)
        if self.activation == "groupmax":
            pre = self.pre_activation(x).relu()
            vals, idx = pre.unflatten(-1, (self.k, -1)).max(dim=-1)
            return vals, idx + torch.arange(0, self.n_latents, self.n_latents // self.k, device=idx.device)
        return self._encode_threshold(x)

    def _encode_threshold(self, x: Tensor):
        parts = []
        for s in range(0, max(x.shape[0], 1), DENSE_BLOCK_ROWS):
            pre = self.pre_activation(x[s:s + DENSE_BLOCK_ROWS])
            acts = torch.where(pre > self.threshold, pre.relu(), torch.zeros_like(pre))
            width = max(int((acts > 0).sum(dim=1).max()) if acts.shape[0] else 0, 1)
            parts.append(torch.topk(acts, width, dim=1))
        width = max(p.values.shape[1] for p in parts)
        vals = torch.cat([nn.functional.pad(p.values, (0, width - p.values.shape[1])) for p in parts])
        idx = torch.cat([nn.functional.pad(p.indices, (0, width - p.indices.shape[1])) for p in parts])
        return vals, idx.to(torch.int64)

    def decode(self, vals: Tensor, idx: Tensor, *, bias: bool = True) -> Tensor:
        """Normalised reconstruction ``[b, d]`` from codes (padding entries of value 0 add nothing)."""
        return ops.sparse_decode(vals.to(self.W_dec.dtype), idx, self.W_dec, self.b_dec if bias else None)

    def forward(self, x: Tensor):
        """``(x_hat, vals, idx)`` of normalised ``x``."""
        vals, idx = self.encode(x)
        return self.decode(vals, idx), vals, idx
