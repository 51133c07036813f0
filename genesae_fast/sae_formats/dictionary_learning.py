"""dictionary_learning checkpoints: ``ae.pt`` (a torch state dict) + ``config.json``.

``config.json["trainer"]["dict_class"]`` names the dictionary; layouts of its state dict:

- ``AutoEncoderTopK`` / ``BatchTopKSAE``: ``encoder.weight [n, d]``, ``encoder.bias [n]``,
  ``decoder.weight [d, n]``, ``b_dec [d]``, ``k`` and ``threshold`` (scalars). TopK encodes
  the top k of ``relu((x - b_dec) W^T + b)`` per row; BatchTopK at inference keeps
  ``relu(...) > threshold`` (variable L0) once a threshold was learnt (>= 0), else top k.
- ``MatryoshkaBatchTopKSAE``: ``W_enc [d, n]``, ``b_enc``, ``W_dec [n, d]``, ``b_dec``,
  ``k``, ``threshold`` (as BatchTopK).
- ``JumpReluAutoEncoder``: ``W_enc [d, n]``, ``b_enc``, ``W_dec [n, d]``, ``b_dec``,
  ``threshold [n]``; ``b_dec`` is not subtracted from the input.
- ``AutoEncoder`` (ReLU): ``bias [d]``, ``encoder.weight [n, d]``, ``encoder.bias``,
  ``decoder.weight [d, n]``.

The final ``ae.pt`` already has any activation normalisation folded in (``scale_biases``),
so no normalisation is applied here. The state dict is read with ``weights_only=True``.
"""
from __future__ import annotations

from pathlib import Path

import torch

from genesae_fast.errors import InputError
from genesae_fast.sae_formats.common import check_shape, finite, need, read_json
from genesae_fast.sae_formats.generic import ForeignSAE

CONFIG = "config.json"
WEIGHTS = "ae.pt"
CLASSES = ("AutoEncoderTopK", "BatchTopKSAE", "MatryoshkaBatchTopKSAE", "JumpReluAutoEncoder", "AutoEncoder")


def is_dictionary_learning(folder: Path) -> bool:
    """True if ``folder`` looks like a dictionary_learning checkpoint folder."""
    return (folder / CONFIG).is_file() and (folder / WEIGHTS).is_file()


def _state_dict(path: Path) -> dict:
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad pickle; all mean "unreadable"
        raise InputError(f"{path}: unreadable torch checkpoint ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})") from None
    if isinstance(obj, dict) and isinstance(obj.get("ae"), dict):
        obj = obj["ae"]  # a mid-training backup: {"ae": state_dict, "optimizer": ...}
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise InputError(f"{path}: not a state dict of tensors")
    return obj


def _weights(cls: str, t: dict, path: Path):
    """(W_enc [n, d], b_enc, W_dec [n, d], b_dec) of a state dict, with shape checks."""
    if cls in ("MatryoshkaBatchTopKSAE", "JumpReluAutoEncoder"):
        need(t, ("W_enc", "b_enc", "W_dec", "b_dec"), path)
        d, n = t["W_enc"].shape
        return (t["W_enc"].T, check_shape(t["b_enc"], (n,), "b_enc", path),
                check_shape(t["W_dec"], (n, d), "W_dec", path), check_shape(t["b_dec"], (d,), "b_dec", path))
    bias = "bias" if cls == "AutoEncoder" else "b_dec"
    need(t, ("encoder.weight", "encoder.bias", "decoder.weight", bias), path)
    n, d = t["encoder.weight"].shape
    return (t["encoder.weight"], check_shape(t["encoder.bias"], (n,), "encoder.bias", path),
            check_shape(t["decoder.weight"], (d, n), "decoder.weight", path).T,
            check_shape(t[bias], (d,), bias, path))


def _activation(cls: str, t: dict, cfg: dict, n: int, path: Path):
    """(activation, k, threshold, subtract_b_dec) of a dictionary class."""
    if cls == "AutoEncoder":
        return "jumprelu", None, None, True
    if cls == "JumpReluAutoEncoder":
        need(t, ("threshold",), path)
        return "jumprelu", None, check_shape(t["threshold"], (n,), "threshold", path), False
    k = int(t["k"]) if "k" in t else cfg.get("k")
    if not isinstance(k, int) or not 1 <= k <= n:
        raise InputError(f"{path}: k={k!r} is not an integer in [1, {n}]")
    thr = t.get("threshold")
    if cls != "AutoEncoderTopK" and thr is not None and float(thr) >= 0:
        return "jumprelu", k, thr.reshape(()).float(), True
    return "topk", k, None, True


def load_dictionary_learning(folder, device="cpu") -> ForeignSAE:
    """A dictionary_learning checkpoint folder as a :class:`ForeignSAE`."""
    folder = Path(folder)
    cfg = read_json(folder / CONFIG)
    trainer = cfg.get("trainer") if isinstance(cfg.get("trainer"), dict) else {}
    cls = trainer.get("dict_class")
    if cls not in CLASSES:
        raise InputError(f"{folder / CONFIG}: dictionary class {cls!r} is not supported (supported: {', '.join(CLASSES)})")
    t = _state_dict(folder / WEIGHTS)
    finite(t, folder / WEIGHTS)
    W_enc, b_enc, W_dec, b_dec = _weights(cls, t, folder / WEIGHTS)
    activation, k, thr, sub = _activation(cls, t, trainer, W_enc.shape[0], folder / WEIGHTS)
    sae = ForeignSAE(W_enc, b_enc, W_dec, b_dec, activation=activation, k=k, threshold=thr, subtract_b_dec=sub,
                     config={"format": "dictionary_learning", "architecture": cls, "path": str(folder.resolve())})
    return sae.to(device)
