"""Write one of our SAE folders in another library's format, normalisation folded in.

Our SAE encodes ``x_n = (x - mean) / s`` and reconstructs ``x = x_hat_n * s + mean``.
With ``B = mean + s * b_dec`` the same codes and reconstruction come from weights that act
on raw inputs: ``W_enc' = W_enc / s``, ``b_enc' = b_enc``, ``W_dec' = s * W_dec`` and
``b_dec' = B`` (subtracted before encoding, added after decoding), which is the form both
SAELens (``apply_b_dec_to_input``) and sparsify use.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch

from genesae_fast.errors import InputError

TARGETS = ("saelens", "sparsify")


def folded_weights(sae) -> dict:
    """Weights of a :class:`~genesae_fast.sae.TopKSAE` acting on raw (unnormalised) inputs.

    Returns ``{"W_enc": [n, d], "b_enc": [n], "W_dec": [n, d], "b_dec": [d]}`` in the SAE's
    dtype, computed in float64.
    """
    s = float(sae.input_scale)
    mean = sae.input_mean.detach().double().cpu()
    W_enc, b_enc, W_dec, b_dec = (getattr(sae, n).detach().double().cpu() for n in ("W_enc", "b_enc", "W_dec", "b_dec"))
    out = {"W_enc": W_enc / s, "b_enc": b_enc, "W_dec": W_dec * s, "b_dec": mean + s * b_dec}
    return {k: v.to(sae.W_enc.dtype) for k, v in out.items()}


def export_sae(sae_dir, to: str, out) -> Path:
    """Write our SAE folder ``sae_dir`` as a ``to`` ("saelens" or "sparsify") folder ``out``.

    The folder loads unchanged in that library (SAELens ``SAE.load_from_disk(out)``,
    sparsify ``SparseCoder.load_from_disk(out)``) and gives the same codes on raw inputs
    as ``TopKSAE`` on normalised ones. Provenance from our ``config.json`` goes into
    SAELens' ``metadata``.
    """
    from genesae_fast.sae import TopKSAE

    if to not in TARGETS:
        raise InputError(f"--to {to!r}: expected one of {', '.join(TARGETS)}")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"{out}: already exists and is not an empty folder")
    sae = TopKSAE.load(sae_dir, device="cpu")
    w = folded_weights(sae)
    # written beside, then renamed: an interrupted export never looks complete
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    with torch.no_grad():
        if to == "saelens":
            from genesae_fast.sae_formats.saelens import save_saelens

            save_saelens(tmp, **w, k=sae.k, metadata=_metadata(sae))
        else:
            from genesae_fast.sae_formats.sparsify import save_sparsify

            save_sparsify(tmp, **w, k=sae.k)
    os.replace(tmp, out)
    return out


def _metadata(sae) -> dict:
    cfg = sae.config
    store = cfg.get("store") if isinstance(cfg.get("store"), dict) else {}
    model = store.get("model") if isinstance(store.get("model"), dict) else {}
    layer = cfg.get("layer", store.get("layer"))
    return {"model_name": model.get("name") or cfg.get("model"), "hook_name": f"layer_{layer}" if layer is not None else None,
            "exported_by": "genesae export", "genesae_config": {k: v for k, v in cfg.items() if k != "input_mean"}}
