"""SAELens 6 folders: ``cfg.json`` + ``sae_weights.safetensors``.

Layout (SAELens ``SAE.save_model``): ``W_enc [d_in, d_sae]``, ``b_enc [d_sae]``,
``W_dec [d_sae, d_in]``, ``b_dec [d_in]``, ``threshold [d_sae]`` for JumpReLU (also what a
BatchTopK SAE becomes when saved for inference) or ``topk_threshold`` (scalar) in a
BatchTopK training checkpoint. ``cfg.json`` keys read here: ``architecture``
(standard, topk, jumprelu, batchtopk, matryoshka_batchtopk), ``d_in``, ``d_sae``, ``k``,
``apply_b_dec_to_input``, ``normalize_activations``, ``rescale_acts_by_decoder_norm``.

Input normalisation: ``none``; ``constant_norm_rescale`` and ``layer_norm`` (per row);
``expected_average_only_in`` and ``covariance_whitening`` only where the folder also holds
``activation_scaler.json`` (+ ``activation_whitening.safetensors``), since otherwise the
factor was folded into the weights (it is then recorded as ``none``) or is unknown.
"""
from __future__ import annotations

from pathlib import Path

import torch

from genesae_fast.errors import InputError
from genesae_fast.sae_formats.common import (check_shape, finite, need, positive_int, read_json, read_safetensors,
                                             write_json, write_safetensors)
from genesae_fast.sae_formats.generic import ForeignSAE, Normalizer

CONFIG = "cfg.json"
WEIGHTS = "sae_weights.safetensors"
SCALER = "activation_scaler.json"
WHITENING = "activation_whitening.safetensors"
TOPK_ARCHS = ("topk",)
THRESHOLD_ARCHS = ("standard", "jumprelu", "batchtopk", "matryoshka_batchtopk")


def is_saelens(folder: Path) -> bool:
    """True if ``folder`` looks like a SAELens SAE folder."""
    return (folder / CONFIG).is_file() and (folder / WEIGHTS).is_file()


def _normalizer(folder: Path, cfg: dict, d: int) -> Normalizer:
    mode = cfg.get("normalize_activations", "none") or "none"
    if mode in ("none", "constant_norm_rescale", "layer_norm"):
        return Normalizer(d, per_row=mode)
    if mode not in ("expected_average_only_in", "covariance_whitening"):
        raise InputError(f"{folder / CONFIG}: unknown normalize_activations {mode!r}")
    if not (folder / SCALER).is_file():
        raise InputError(f"{folder / CONFIG}: normalize_activations is {mode!r} but the folder has no {SCALER} "
                         "with its factor (save the SAE for inference to fold it in)")
    scaler = read_json(folder / SCALER)
    factor = scaler.get("scaling_factor")
    factor = 1.0 if factor is None else float(factor)
    if not factor > 0 or factor == float("inf"):
        raise InputError(f"{folder / SCALER}: scaling_factor must be a positive number, got {factor!r}")
    if not (folder / WHITENING).is_file():
        return Normalizer(d, scale=1.0 / factor)
    w = read_safetensors(folder / WHITENING)
    need(w, ("mean", "matrix", "inverse_matrix"), folder / WHITENING)
    # SAELens: z = (x * factor - mean) @ matrix = ((x - mean / factor) / (1 / factor)) @ matrix
    return Normalizer(d, mean=w["mean"].double() / factor, scale=1.0 / factor, matrix=w["matrix"],
                      inverse=w["inverse_matrix"])


def load_saelens(folder, device="cpu") -> ForeignSAE:
    """A SAELens 6 folder as a :class:`ForeignSAE` (see the module docstring for what is read)."""
    folder = Path(folder)
    cfg = read_json(folder / CONFIG)
    arch = cfg.get("architecture", "standard")
    if arch not in TOPK_ARCHS + THRESHOLD_ARCHS:
        raise InputError(f"{folder / CONFIG}: SAELens architecture {arch!r} is not supported "
                         f"(supported: {', '.join(TOPK_ARCHS + THRESHOLD_ARCHS)})")
    if cfg.get("reshape_activations", "none") not in ("none", None):
        raise InputError(f"{folder / CONFIG}: reshape_activations={cfg['reshape_activations']!r} is not supported")
    d, n = positive_int(cfg, "d_in", folder / CONFIG), positive_int(cfg, "d_sae", folder / CONFIG)
    t = read_safetensors(folder / WEIGHTS)
    need(t, ("W_enc", "b_enc", "W_dec", "b_dec"), folder / WEIGHTS)
    finite(t, folder / WEIGHTS)
    W_enc = check_shape(t["W_enc"], (d, n), "W_enc", folder / WEIGHTS).T
    W_dec = check_shape(t["W_dec"], (n, d), "W_dec", folder / WEIGHTS)
    b_enc = check_shape(t["b_enc"], (n,), "b_enc", folder / WEIGHTS)
    b_dec = check_shape(t["b_dec"], (d,), "b_dec", folder / WEIGHTS)
    threshold, activation, k = _activation(folder, cfg, arch, t, n)
    if cfg.get("rescale_acts_by_decoder_norm"):
        # codes are pre * |W_dec row| and decoding divides by it: fold it into the weights
        norms = W_dec.norm(dim=1).clamp_min(1e-8)
        W_enc, b_enc, W_dec = W_enc * norms[:, None], b_enc * norms, W_dec / norms[:, None]
    sae = ForeignSAE(W_enc, b_enc, W_dec, b_dec, activation=activation, k=k, threshold=threshold,
                     subtract_b_dec=bool(cfg.get("apply_b_dec_to_input", True)),
                     normalizer=_normalizer(folder, cfg, d),
                     config={"format": "saelens", "architecture": arch, "path": str(folder.resolve())})
    return sae.to(device)


def _activation(folder: Path, cfg: dict, arch: str, t: dict, n: int):
    """(threshold, activation, k) of a SAELens architecture."""
    if arch == "topk":
        k = positive_int(cfg, "k", folder / CONFIG)
        if k > n:
            raise InputError(f"{folder / CONFIG}: k={k} exceeds d_sae={n}")
        return None, "topk", k
    if arch == "standard":
        return None, "jumprelu", None
    if "threshold" in t:
        return check_shape(t["threshold"], (n,), "threshold", folder / WEIGHTS), "jumprelu", None
    if "topk_threshold" in t:
        return t["topk_threshold"].reshape(()).float(), "jumprelu", None
    raise InputError(f"{folder / WEIGHTS}: a {arch} SAE needs a 'threshold' (or 'topk_threshold') tensor")


def save_saelens(folder, W_enc: torch.Tensor, b_enc: torch.Tensor, W_dec: torch.Tensor, b_dec: torch.Tensor, *,
                 k: int, metadata: dict) -> Path:
    """Write a TopK SAE in SAELens 6's inference layout (weights act on raw inputs).

    Parameters
    ----------
    W_enc : [n, d] (our layout; written transposed as SAELens' [d, n])
    b_enc : [n]; W_dec : [n, d]; b_dec : [d] (subtracted from the input, added to the output)
    k : active latents per row
    metadata : SAELens ``metadata`` (model and hook names ...)
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    n, d = W_enc.shape
    tensors = {"W_enc": W_enc.T.contiguous(), "b_enc": b_enc.contiguous(), "W_dec": W_dec.contiguous(),
               "b_dec": b_dec.contiguous()}
    cfg = {"architecture": "topk", "d_in": int(d), "d_sae": int(n), "k": int(k),
           "dtype": str(W_enc.dtype).removeprefix("torch."), "device": "cpu", "apply_b_dec_to_input": True,
           "normalize_activations": "none", "reshape_activations": "none", "rescale_acts_by_decoder_norm": False,
           "metadata": dict(metadata, sae_lens_version="6.0.0")}
    write_safetensors(folder / WEIGHTS, tensors)
    write_json(folder / CONFIG, cfg)
    return folder
