"""One TopK SAE training step's math (Gao et al. 2024), on the fused ops.

Inputs are already normalised (centred by the store mean, divided by its norm scale), so
the mean squared row norm of the data is about 1 and the plain per-row squared error is
the fraction of variance unexplained (FVU) up to that constant. Keeping the main loss a
plain mean over rows (no per-batch denominator) makes data-parallel training exact: the
mean of the ranks' gradients is the gradient of the combined batch.

Loss = mean_b ||x_b - x_hat_b||^2 + aux_coef * AuxK, where AuxK reconstructs the detached
residual ``e = x - x_hat`` from the ``k_aux`` largest *dead* latents only (no decoder bias)::

    AuxK = min(n_dead / k_aux, 1) * mean_b ||e_b - e_hat_b||^2 / mean_b ||e_b||^2

with the denominator detached and, under DDP, averaged over ranks (one scalar all-reduce),
so it too equals the combined-batch value.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn


class StepOutput(NamedTuple):
    """What :meth:`SAELoss.forward` returns; all tensors are scalars except ``fired``."""

    loss: torch.Tensor  # recon + aux_coef * auxk (differentiable)
    recon: torch.Tensor  # mean_b ||x - x_hat||^2 (detached)
    auxk: torch.Tensor  # AuxK loss (detached; 0 when no latent is dead)
    err_sq_sum: torch.Tensor  # sum_b ||x - x_hat||^2, for FVU
    l0_sum: torch.Tensor  # number of non-zero codes in the batch
    fired: torch.Tensor  # bool [n]: latents with a non-zero code in this batch


def _ops():
    from genesae_fast import ops

    return ops


def batch_topk_mask(vals: torch.Tensor, keep: int) -> torch.Tensor:
    """Keep the ``keep`` largest of all ``vals`` in the batch (BatchTopK), zero the rest.

    Parameters
    ----------
    vals : [B, kc] candidate codes (the per-row top kc)
    keep : int, the number of codes kept over the whole batch (B * k)

    Returns
    -------
    [B, kc] ``vals`` with all but the ``keep`` largest entries multiplied by 0 (so the
    gradient of the dropped ones is 0, and the kept ones keep theirs).
    """
    flat = vals.reshape(-1)
    if keep >= flat.numel():
        return vals
    # Ties at the threshold are broken by topk's choice; the count kept is exact.
    chosen = torch.topk(flat.detach().float(), keep, sorted=False).indices
    mask = torch.zeros_like(flat, dtype=torch.bool)
    mask[chosen] = True
    return vals * mask.view_as(vals).to(vals.dtype)


class SAELoss(nn.Module):
    """The training objective of a TopK SAE as a module (so DDP can wrap it).

    Parameters
    ----------
    sae : TopKSAE
        Holds ``W_enc [n, d]``, ``b_enc [n]``, ``W_dec [n, d]``, ``b_dec [d]``.
    k : int
        Codes per row.
    k_aux : int
        Dead latents used by AuxK per row (Gao: d / 2).
    aux_coef : float
        Weight of AuxK (Gao: 1/32).
    batch_topk : bool
        Choose ``B * k`` codes over the whole batch instead of ``k`` per row; each row
        may take up to ``batch_topk_cap`` (default 4k) of them.
    compute_dtype : torch.dtype or None
        Cast inputs and weights to it for the ops (bfloat16 on GPU); the loss stays fp32.
    process_group : optional
        When set (DDP), the AuxK denominator is averaged over the group.
    """

    def __init__(self, sae, k: int, k_aux: int, aux_coef: float, batch_topk: bool = False,
                 batch_topk_cap: int | None = None, compute_dtype=None, process_group=None):
        super().__init__()
        self.sae = sae
        self.k = int(k)
        self.k_aux = int(k_aux)
        self.aux_coef = float(aux_coef)
        self.batch_topk = bool(batch_topk)
        n = sae.W_enc.shape[0]
        self.k_select = min(n, batch_topk_cap or 4 * self.k) if batch_topk else self.k
        self.compute_dtype = compute_dtype
        self.process_group = process_group

    def _cast(self, t):
        return t if self.compute_dtype is None or t.dtype == self.compute_dtype else t.to(self.compute_dtype)

    def forward(self, x: torch.Tensor, dead: torch.Tensor | None = None) -> StepOutput:
        """Losses and statistics of one batch.

        Parameters
        ----------
        x : [B, d] float32, normalised inputs
        dead : bool [n] or None; latents that count as dead (AuxK runs when any is)
        """
        ops = _ops()
        sae = self.sae
        W_enc, b_enc, W_dec, b_dec = (self._cast(p) for p in (sae.W_enc, sae.b_enc, sae.W_dec, sae.b_dec))
        xc = self._cast(x)
        vals, idx = ops.topk_encode(xc, W_enc, b_enc, self.k_select, b_dec=b_dec)
        if self.batch_topk:
            vals = batch_topk_mask(vals, self.k * x.shape[0])
        x_hat = ops.sparse_decode(vals, idx, W_dec, b_dec)
        err = x - x_hat.float()
        row_sq = err.pow(2).sum(1)
        recon = row_sq.mean()
        auxk = torch.zeros((), device=x.device)
        n_dead = 0 if dead is None else int(dead.sum())
        if n_dead > 0 and self.aux_coef > 0 and x.shape[0] > 0:
            auxk = self._auxk(xc, err.detach(), dead, n_dead, (W_enc, b_enc, W_dec, b_dec))
            loss = recon + self.aux_coef * auxk
            auxk = auxk.detach()
        else:
            loss = recon
        with torch.no_grad():
            active = vals > 0
            fired = torch.zeros(W_enc.shape[0], dtype=torch.bool, device=x.device)
            fired[idx[active]] = True
            out = StepOutput(loss, recon.detach(), auxk, row_sq.detach().sum(), active.sum(), fired)
        return out

    def _auxk(self, xc, resid, dead, n_dead: int, weights):
        """AuxK: how well the ``k_aux`` largest dead latents reconstruct the residual ``resid [B, d]``."""
        ops = _ops()
        W_enc, b_enc, W_dec, b_dec = weights
        kk = min(self.k_aux, n_dead)
        a_vals, a_idx = ops.topk_encode(xc, W_enc, b_enc, kk, b_dec=b_dec, latent_mask=dead)
        e_hat = ops.sparse_decode(a_vals, a_idx, W_dec).float()
        denom = resid.pow(2).sum(1).mean()
        if self.process_group is not None:
            import torch.distributed as dist

            denom = denom.clone()
            dist.all_reduce(denom, group=self.process_group)
            denom = denom / dist.get_world_size(self.process_group)
        scale = min(n_dead / self.k_aux, 1.0)
        return scale * (e_hat - resid).pow(2).sum(1).mean() / denom.clamp_min(1e-12)


__all__ = ["SAELoss", "StepOutput", "batch_topk_mask"]
