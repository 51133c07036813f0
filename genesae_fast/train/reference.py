"""Plain-torch reference of the training objective in :mod:`genesae_fast.train.objective`.

Dense and obvious: the encoder is the op reference (:mod:`genesae_fast.kernels.reference`),
its codes scattered into a full ``[B, n]`` matrix,
and autograd through dense matmuls. Tests compare :class:`SAELoss` against it (losses and
every gradient) and the training benchmark uses it as the baseline loop.
"""
from __future__ import annotations

import torch
from torch import nn

from genesae_fast.kernels.reference import topk_encode_reference
from genesae_fast.train.objective import StepOutput


def dense_codes(x, W_enc, b_enc, b_dec, k, latent_mask=None):
    """``[B, n]`` TopK codes: the op reference's k values scattered into a dense matrix."""
    vals, idx = topk_encode_reference(x, W_enc, b_enc, k, b_dec=b_dec, latent_mask=latent_mask)
    return torch.zeros(x.shape[0], W_enc.shape[0], dtype=vals.dtype, device=x.device).scatter(1, idx, vals)


class ReferenceSAELoss(nn.Module):
    """Same objective and outputs as :class:`genesae_fast.train.objective.SAELoss` (TopK only,
    no BatchTopK, fp32, one process)."""

    def __init__(self, sae, k: int, k_aux: int, aux_coef: float):
        super().__init__()
        self.sae = sae
        self.k, self.k_aux, self.aux_coef = int(k), int(k_aux), float(aux_coef)

    def forward(self, x, dead=None) -> StepOutput:
        """Losses of one batch of normalised rows ``x [B, d]``; ``dead`` bool [n] or None."""
        s = self.sae
        codes = dense_codes(x, s.W_enc, s.b_enc, s.b_dec, self.k)
        x_hat = codes @ s.W_dec + s.b_dec
        err = x - x_hat
        row_sq = err.pow(2).sum(1)
        recon = row_sq.mean()
        loss = recon
        auxk = torch.zeros(())
        n_dead = 0 if dead is None else int(dead.sum())
        if n_dead > 0 and self.aux_coef > 0:
            resid = err.detach()
            aux_codes = dense_codes(x, s.W_enc, s.b_enc, s.b_dec, min(self.k_aux, n_dead), latent_mask=dead)
            e_hat = aux_codes @ s.W_dec
            scale = min(n_dead / self.k_aux, 1.0)
            auxk = scale * (e_hat - resid).pow(2).sum(1).mean() / resid.pow(2).sum(1).mean().clamp_min(1e-12)
            loss = loss + self.aux_coef * auxk
            auxk = auxk.detach()
        with torch.no_grad():
            active = codes > 0
            return StepOutput(loss, recon.detach(), auxk, row_sq.detach().sum(), active.sum(), active.any(0))


__all__ = ["ReferenceSAELoss", "dense_codes"]
