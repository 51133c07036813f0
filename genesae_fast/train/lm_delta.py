"""LM loss increase when a layer's output is replaced by the SAE reconstruction (optional).

The metric needs the store's own model (loadable here, same weights) with a
``next_base_bits(sequence, layer, replace)`` method (the built-in CNN has one) and the
store's genome file; otherwise it reports why it was skipped (never a failure). It is
scored on a held-out stretch of the genome (the bases behind the held-out rows, capped
at ``max_bp`` so it stays quick on CPU).
"""
from __future__ import annotations

import os

DEFAULT_MAX_BP = 20_000


def sae_replacement(sae):
    """``replace(h)`` for ``next_base_bits``: ``h [..., d]`` float32 -> its SAE reconstruction.

    Maps ``h`` to ``sae.denormalize(sae(sae.normalize(h)).x_hat)`` row by row, in the
    SAE's device and dtype, and returns float32 of ``h``'s shape on ``h``'s device.
    """
    import torch

    dev = sae.W_enc.device

    def replace(h):
        with torch.no_grad():
            flat = h.reshape(-1, h.shape[-1]).to(dev)
            out = sae.denormalize(sae(sae.normalize(flat)).x_hat)
        return out.to(device=h.device, dtype=h.dtype).reshape(h.shape)

    return replace


def bits_with_replacement(model, sequence: str, layer: int, replace) -> dict:
    """The LM's bits/bp on ``sequence`` as it is and with ``layer``'s output passed through ``replace``.

    Returns ``{"bits_per_bp_clean", "bits_per_bp_with_sae", "delta_bits_per_bp",
    "bp_scored", "layer"}`` (bases with context only: the first base is not scored).
    """
    clean_bits, n = model.next_base_bits(sequence)
    sae_bits, n2 = model.next_base_bits(sequence, layer=layer, replace=replace)
    if n == 0 or n2 != n:
        return {"skipped": f"nothing to score ({n} bases)"}
    clean, with_sae = clean_bits / n, sae_bits / n
    return {"bits_per_bp_clean": clean, "bits_per_bp_with_sae": with_sae,
            "delta_bits_per_bp": with_sae - clean, "bp_scored": int(n), "layer": int(layer)}


def heldout_stretch(store, chunks, max_bp: int = DEFAULT_MAX_BP):
    """``(sequence_name, start, end)``: the genome span behind the held-out rows of the
    sequence the last of them come from, at most ``max_bp`` long (its first bases)."""
    import numpy as np

    lo = chunks.start * store.chunk_rows
    hi = min(chunks.stop * store.chunk_rows, store.n_rows)
    seq, bp_start, bp_end, _ = store.coordinates(lo, hi)
    if len(seq) == 0:
        return None
    last = int(seq[-1])
    mine = seq == last
    start = int(np.min(bp_start[mine]))
    end = min(int(np.max(bp_end[mine])), start + int(max_bp))
    return store.sequence_names[last], start, end


def _load_store_model(store, device):
    """The store's model, or a str saying why it cannot be used."""
    from genesae_fast.errors import InputError
    from genesae_fast.models import load_model

    info = store.attrs.get("model") or {}
    name, path = info.get("name", ""), info.get("path", "")
    if not name and not path:
        return "the store does not name its model (made by 'genesae import'?)"
    spec = "builtin" if name == "builtin" else path
    try:
        model = load_model(spec, device=device)
    except InputError as e:
        return f"cannot load the store's model: {e}"
    if not hasattr(model, "next_base_bits"):
        return f"model {model.name} has no next-base loss (only the built-in CNN family has)"
    want = info.get("sha256", "")
    if want and model.identity.get("sha256") != want:
        return f"model {spec}: its weights differ from those the store was made with"
    return model


def lm_loss_increase(store, sae, chunks, device="cpu", progress=False, max_bp: int = DEFAULT_MAX_BP) -> dict:
    """``{"skipped": reason}`` or the LM's bits/bp with and without the SAE in the layer.

    Parameters
    ----------
    store : ActivationStore whose attrs name the model, layer and genome
    sae : TopKSAE trained on the store (with its input mean/scale set)
    chunks : range of held-out chunks; their rows choose the genome stretch
    device : where the model runs
    max_bp : longest stretch scored (bases)

    Returns
    -------
    dict with ``bits_per_bp_clean``, ``bits_per_bp_with_sae``, ``delta_bits_per_bp``,
    ``bp_scored``, ``layer``, ``sequence``, ``start``, ``end`` (0-based half-open), or
    ``{"skipped": reason}``.
    """
    from genesae_fast.sequences import file_sha256, read_fasta

    attrs = store.attrs
    if not store.has_coordinates or not store.sequence_names:
        return {"skipped": "the store has no genome coordinates"}
    if "layer" not in attrs:
        return {"skipped": "the store does not record its layer"}
    genome = attrs.get("genome") or {}
    gpath = genome.get("path", "")
    if not gpath or not os.path.isfile(gpath):
        return {"skipped": f"genome file not found: {gpath or '(not recorded)'}"}
    model = _load_store_model(store, device)
    if isinstance(model, str):
        return {"skipped": model}
    layer = int(attrs["layer"])
    if int(model.d_model) != int(sae.W_enc.shape[1]):
        return {"skipped": f"model width {model.d_model} differs from the SAE's input width {sae.W_enc.shape[1]}"}
    if genome.get("sha256") and file_sha256(gpath) != genome["sha256"]:
        return {"skipped": f"genome file {gpath} changed since the store was made"}
    span = heldout_stretch(store, chunks, max_bp)
    if span is None:
        return {"skipped": "no held-out rows"}
    name, start, end = span
    rec = next((r for r in read_fasta(gpath) if r.name == name), None)
    if rec is None:
        return {"skipped": f"sequence {name} not in {gpath}"}
    out = bits_with_replacement(model, rec.sequence[start:end], layer, sae_replacement(sae))
    if "skipped" not in out:
        out.update(sequence=name, start=start, end=end)
    return out


__all__ = ["bits_with_replacement", "heldout_stretch", "lm_loss_increase", "sae_replacement"]
