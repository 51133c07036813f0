"""EleutherAI sparsify folders: ``cfg.json`` + ``sae.safetensors``, one folder per hookpoint.

Layout (``SparseCoder.save_to_disk``): ``encoder.weight [n, d]``, ``encoder.bias [n]``,
``W_dec [n, d]``, ``b_dec [d]`` (``W_skip [d, d]`` with a skip connection). ``cfg.json``:
``d_in``, ``k``, ``num_latents`` (0: ``d_in * expansion_factor``), ``activation``
(``topk`` or ``groupmax``), ``transcode``, ``skip_connection``. Encoding is
``relu((x - b_dec) @ encoder.weight.T + encoder.bias)`` then top-k; sparsify records no
input normalisation. A parent folder holding exactly one hookpoint folder is accepted.
"""
from __future__ import annotations

from pathlib import Path

import torch

from genesae_fast.errors import InputError
from genesae_fast.sae_formats.common import (check_shape, finite, need, positive_int, read_json, read_safetensors,
                                             write_json, write_safetensors)
from genesae_fast.sae_formats.generic import ForeignSAE

CONFIG = "cfg.json"
WEIGHTS = "sae.safetensors"


def is_sparsify(folder: Path) -> bool:
    """True if ``folder`` looks like one sparsify hookpoint folder."""
    return (folder / CONFIG).is_file() and (folder / WEIGHTS).is_file()


def hookpoint_folders(folder: Path) -> list:
    """Sub-folders of ``folder`` that are sparsify hookpoint folders, sorted by name."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_dir() and is_sparsify(p))


def load_sparsify(folder, device="cpu") -> ForeignSAE:
    """A sparsify hookpoint folder as a :class:`ForeignSAE`."""
    folder = Path(folder)
    cfg = read_json(folder / CONFIG)
    if cfg.get("transcode"):
        raise InputError(f"{folder / CONFIG}: a transcoder (transcode=true) is not an autoencoder; not supported")
    if cfg.get("skip_connection"):
        raise InputError(f"{folder / CONFIG}: SAEs with a skip connection are not supported")
    activation = cfg.get("activation", "topk")
    if activation not in ("topk", "groupmax"):
        raise InputError(f"{folder / CONFIG}: unknown activation {activation!r} (expected topk or groupmax)")
    d, k = positive_int(cfg, "d_in", folder / CONFIG), positive_int(cfg, "k", folder / CONFIG)
    n = cfg.get("num_latents") or d * positive_int(cfg, "expansion_factor", folder / CONFIG)
    t = read_safetensors(folder / WEIGHTS)
    need(t, ("encoder.weight", "encoder.bias", "W_dec", "b_dec"), folder / WEIGHTS)
    finite(t, folder / WEIGHTS)
    if k > n or (activation == "groupmax" and n % k):
        raise InputError(f"{folder / CONFIG}: k={k} does not fit num_latents={n} for activation {activation}")
    sae = ForeignSAE(check_shape(t["encoder.weight"], (n, d), "encoder.weight", folder / WEIGHTS),
                     check_shape(t["encoder.bias"], (n,), "encoder.bias", folder / WEIGHTS),
                     check_shape(t["W_dec"], (n, d), "W_dec", folder / WEIGHTS),
                     check_shape(t["b_dec"], (d,), "b_dec", folder / WEIGHTS),
                     activation=activation, k=k, subtract_b_dec=True,
                     config={"format": "sparsify", "architecture": activation, "path": str(folder.resolve())})
    return sae.to(device)


def save_sparsify(folder, W_enc: torch.Tensor, b_enc: torch.Tensor, W_dec: torch.Tensor, b_dec: torch.Tensor, *,
                  k: int) -> Path:
    """Write a TopK SAE as one sparsify hookpoint folder (weights act on raw inputs).

    Parameters
    ----------
    W_enc : [n, d]; b_enc : [n]; W_dec : [n, d]; b_dec : [d]
    k : active latents per row
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    n, d = W_enc.shape
    write_safetensors(folder / WEIGHTS, {"encoder.weight": W_enc, "encoder.bias": b_enc, "W_dec": W_dec,
                                         "b_dec": b_dec})
    # normalize_decoder only matters when training resumes: our folded decoder rows are not unit norm
    write_json(folder / CONFIG, {"activation": "topk", "expansion_factor": max(n // d, 1), "normalize_decoder": False,
                                 "num_latents": int(n), "k": int(k), "multi_topk": False, "skip_connection": False,
                                 "transcode": False, "d_in": int(d)})
    return folder
