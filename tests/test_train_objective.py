"""genesae_fast.train.objective: the loss and its gradients against the dense reference
(genesae_fast.train.reference), AuxK, BatchTopK, and the decoder constraint the loop applies."""
from __future__ import annotations

import pytest
import torch

from genesae_fast.train.objective import SAELoss, batch_topk_mask
from genesae_fast.train.reference import ReferenceSAELoss

pytestmark = pytest.mark.usefixtures("one_thread")


def _sae(d, n, k, seed=0):
    from genesae_fast.sae import TopKSAE

    torch.manual_seed(seed)
    sae = TopKSAE(d, n, k)
    with torch.no_grad():
        sae.W_enc.copy_(torch.randn(n, d))
        sae.b_enc.copy_(0.1 * torch.randn(n))
        sae.W_dec.copy_(torch.nn.functional.normalize(torch.randn(n, d), dim=1))
        sae.b_dec.copy_(0.1 * torch.randn(d))
    return sae



# --------------------------------------------------------------------------- the step


@pytest.mark.parametrize("B,d,n,k", [(16, 8, 24, 3), (7, 5, 12, 1), (9, 6, 10, 10), (1, 4, 6, 2)])
@pytest.mark.parametrize("n_dead", [0, 1, 4, "all"])
def test_step_matches_dense_reference(B, d, n, k, n_dead):
    torch.manual_seed(1)
    x = torch.randn(B, d)
    dead = torch.zeros(n, dtype=torch.bool)
    dead[torch.randperm(n)[: n if n_dead == "all" else n_dead]] = True
    k_aux = max(1, d // 2)
    outs, grads = [], []
    for cls in (SAELoss, ReferenceSAELoss):
        sae = _sae(d, n, k)
        res = cls(sae, k, k_aux, 1 / 32)(x, dead)
        res.loss.backward()
        outs.append(res)
        grads.append([p.grad.clone() for p in (sae.W_enc, sae.b_enc, sae.W_dec, sae.b_dec)])
    fast, ref = outs
    for name in ("loss", "recon", "auxk", "err_sq_sum", "l0_sum"):
        torch.testing.assert_close(getattr(fast, name).float(), getattr(ref, name).float(), rtol=1e-5, atol=1e-6,
                                   msg=name)
    assert torch.equal(fast.fired, ref.fired)
    if n_dead:
        assert float(fast.auxk) > 0
    for g_fast, g_ref, name in zip(*grads, ("W_enc", "b_enc", "W_dec", "b_dec")):
        torch.testing.assert_close(g_fast, g_ref, rtol=1e-4, atol=1e-5, msg=name)


@pytest.mark.parametrize("aux_coef", [0.0, 1 / 32])
def test_auxk_gives_dead_latents_gradient(aux_coef):
    torch.manual_seed(2)
    d, n, k = 6, 20, 2
    x = torch.randn(32, d)
    dead = torch.zeros(n, dtype=torch.bool)
    dead[:5] = True
    sae = _sae(d, n, k)
    with torch.no_grad():
        sae.b_enc[5:] = 100.0  # the dead latents never win the main top-k
    res = SAELoss(sae, k, d // 2, aux_coef)(x, dead)
    res.loss.backward()
    assert not res.fired[:5].any()
    # Only AuxK reaches the dead latents' rows.
    for g in (sae.W_dec.grad[:5], sae.W_enc.grad[:5], sae.b_enc.grad[:5]):
        assert (g.abs().sum() > 0) == (aux_coef > 0)
    assert (float(res.auxk) > 0) == (aux_coef > 0)


def test_batch_topk_mask_keeps_the_largest():
    torch.manual_seed(3)
    vals = torch.rand(6, 5)
    kept = batch_topk_mask(vals, 7)
    assert int((kept > 0).sum()) == 7
    thresh = torch.sort(vals.reshape(-1), descending=True).values[6]
    assert torch.equal(kept > 0, vals >= thresh)
    assert torch.equal(batch_topk_mask(vals, 30), vals)


@pytest.mark.parametrize("seed", range(4))
def test_decoder_helpers_match_the_former_trainer_formulas(seed):
    """The trainer now calls TopKSAE.set_decoder_norm_ / remove_parallel_grad_; its former
    helpers were ``W / max(|W|, 1e-8)`` and ``g - <g, W> W`` (rows assumed unit)."""
    from genesae_fast.sae import TopKSAE

    torch.manual_seed(seed)
    sae = TopKSAE(7, 10, 2)
    with torch.no_grad():
        sae.W_dec.copy_(3 * torch.randn(10, 7))
    W = sae.W_dec.detach().clone()
    sae.set_decoder_norm_()
    assert torch.equal(sae.W_dec.detach(), W / W.norm(dim=1, keepdim=True).clamp_min(1e-8))  # bit for bit
    W = sae.W_dec.detach().clone()  # unit rows, as in training
    g = torch.randn(10, 7)
    sae.W_dec.grad = g.clone()
    sae.remove_parallel_grad_()
    torch.testing.assert_close(sae.W_dec.grad, g - (g * W).sum(1, keepdim=True) * W, rtol=0, atol=1e-6)
    assert float((sae.W_dec.grad * W).sum(1).abs().max()) < 1e-6
