"""Evaluation of a trained SAE on held-out store rows (what ``eval.json`` holds).

FVU (fraction of variance unexplained) is ``sum ||x - x_hat||^2 / sum ||x - mean||^2``
over the held-out rows, with their own mean; it is the same in raw and normalised units,
so it is computed in the normalised space the SAE works in. L0 is the mean number of
non-zero codes per row; the dead fraction is the share of latents that never fire on the
held-out rows.
"""
from __future__ import annotations

import math

import torch


def heldout_chunks(n_chunks: int, fraction: float = 0.01) -> int:
    """How many chunks (the last ones) are held out: 1% rounded up, at least one when the
    store has more than one chunk, none for a one-chunk store."""
    if n_chunks <= 1:
        return 0
    return max(1, math.ceil(n_chunks * fraction))


@torch.no_grad()
def evaluate_rows(sae, batches, device="cpu", compute_dtype=None) -> dict:
    """FVU, L0 and dead fraction of ``sae`` over raw activation batches.

    Parameters
    ----------
    sae : TopKSAE (its ``normalize``, ``W_enc``, ``b_enc``, ``W_dec``, ``b_dec``, ``k``)
    batches : iterable of float32 tensors [b, d] (raw activations)

    Returns
    -------
    dict with ``rows``, ``fvu``, ``mse`` (normalised units), ``l0``, ``dead_fraction``
    (NaN values when there were no rows).
    """
    from genesae_fast import ops

    n, d = sae.W_enc.shape
    k = int(sae.k)
    err_sq = 0.0
    x_sum = torch.zeros(d, dtype=torch.float64)
    x_sq = 0.0
    rows = 0
    l0 = 0
    fired = torch.zeros(n, dtype=torch.bool, device=device)

    def cast(t):
        return t if compute_dtype is None else t.to(compute_dtype)

    W_enc, b_enc, W_dec, b_dec = (cast(p) for p in (sae.W_enc, sae.b_enc, sae.W_dec, sae.b_dec))
    for x in batches:
        x = sae.normalize(x.to(device))
        vals, idx = ops.topk_encode(cast(x), W_enc, b_enc, k, b_dec=b_dec)
        x_hat = ops.sparse_decode(vals, idx, W_dec, b_dec).float()
        err_sq += float((x - x_hat).double().pow(2).sum())
        xd = x.double()
        x_sum += xd.sum(0).cpu()
        x_sq += float(xd.pow(2).sum())
        active = vals > 0
        l0 += int(active.sum())
        fired[idx[active]] = True
        rows += x.shape[0]
    if rows == 0:
        nan = float("nan")
        return {"rows": 0, "fvu": nan, "mse": nan, "l0": nan, "dead_fraction": nan}
    total_var = x_sq - float(x_sum.pow(2).sum()) / rows
    return {
        "rows": rows,
        "fvu": err_sq / total_var if total_var > 0 else float("nan"),
        "mse": err_sq / rows,
        "l0": l0 / rows,
        "dead_fraction": 1.0 - float(fired.sum()) / n,
    }


def evaluate_store(store, sae, run_config: dict, dev="cpu", compute_dtype=None, lm_loss=True, progress=False,
                   batch_size: int = 4096) -> dict:
    """The ``eval.json`` report: held-out metrics (training rows for a one-chunk store, with
    a note) and, when asked and possible, the LM loss increase.

    Parameters
    ----------
    store : ActivationStore
    sae : TopKSAE, as loaded from the folder being written
    run_config : dict, the trainer's run settings (``heldout_chunks`` = [first, stop))
    """
    first, stop = run_config["heldout_chunks"]
    report: dict = {"store": str(store.path)}
    if stop > first:
        chunks = range(first, stop)
        report["heldout_chunks"] = [first, stop]
    else:
        chunks = range(0, store.n_chunks)
        report["note"] = "the store has one chunk: nothing could be held out, metrics are on training rows"
    batches = store.batches(batch_size, shuffle=False, chunks=chunks)
    try:
        report["heldout"] = evaluate_rows(sae, batches, device=dev, compute_dtype=compute_dtype)
    finally:
        batches.close()
    if lm_loss:
        from genesae_fast.train.lm_delta import lm_loss_increase

        report["lm_loss"] = lm_loss_increase(store, sae, chunks, device=dev, progress=progress)
    return report


__all__ = ["evaluate_rows", "evaluate_store", "heldout_chunks"]
