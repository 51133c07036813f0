"""The TopK sparse autoencoder (Gao et al. 2024) as an ``nn.Module`` on :mod:`genesae_fast.ops`.

>>> sae = TopKSAE(d_in=256, n_latents=4096, k=32)
>>> out = sae(sae.normalize(x))          # SAEOutput(x_hat, vals, idx)
>>> sae.save("run/sae"); sae = TopKSAE.load("run/sae")

Parameters: ``W_enc [n, d]``, ``b_enc [n]``, ``W_dec [n, d]`` (unit-norm rows, one per
latent), ``b_dec [d]``. ``W_enc`` starts as a copy of ``W_dec`` (the decoder's transpose
in ``x @ W_enc.T`` form). The SAE works on normalised inputs: ``input_mean`` (buffer [d])
and ``input_scale`` (float) hold the normalisation the trainer chose.

A checkpoint folder holds ``config.json`` (``d_in``, ``n_latents``, ``k``, ``input_mean``,
``input_scale`` and any extra keys) and ``sae.safetensors`` with exactly the tensors
``W_enc``, ``b_enc``, ``W_dec``, ``b_dec``.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import NamedTuple, Optional

import torch
from torch import Tensor, nn

from . import ops
from .errors import InputError

__all__ = ["TopKSAE", "SAEOutput", "describe"]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "sae.safetensors"
TENSOR_NAMES = ("W_enc", "b_enc", "W_dec", "b_dec")
FORMAT_VERSION = 1


class SAEOutput(NamedTuple):
    """``x_hat [B, d]``, ``vals [B, k]`` and ``idx int64 [B, k]`` of one forward pass."""

    x_hat: Tensor
    vals: Tensor
    idx: Tensor


class TopKSAE(nn.Module):
    """TopK sparse autoencoder: ``x_hat = decode(topk(relu((x - b_dec) W_enc^T + b_enc)))``.

    Parameters
    ----------
    d_in : int, input width d
    n_latents : int, number of latents n
    k : int, active latents per row, 1 <= k <= n
    device, dtype : where and how to allocate the parameters
    """

    def __init__(self, d_in: int, n_latents: int, k: int, *, device=None, dtype=None):
        super().__init__()
        if d_in < 1 or n_latents < 1:
            raise ValueError(f"d_in and n_latents must be positive, got d_in={d_in}, n_latents={n_latents}")
        if not 1 <= k <= n_latents:
            raise ValueError(f"k={k} is out of range: need 1 <= k <= n_latents={n_latents}")
        self.d_in, self.n_latents, self.k = int(d_in), int(n_latents), int(k)
        kw = {"device": device, "dtype": dtype}
        W_dec = torch.randn(n_latents, d_in, **kw)
        W_dec /= W_dec.norm(dim=1, keepdim=True).clamp_min(torch.finfo(W_dec.dtype).tiny)
        self.W_dec = nn.Parameter(W_dec)
        self.W_enc = nn.Parameter(W_dec.clone())
        self.b_enc = nn.Parameter(torch.zeros(n_latents, **kw))
        self.b_dec = nn.Parameter(torch.zeros(d_in, **kw))
        self.register_buffer("input_mean", torch.zeros(d_in, **kw))
        self.input_scale = 1.0
        self.config: dict = {}

    # ------------------------------------------------------------------ model

    def encode(self, x: Tensor, *, k: Optional[int] = None, latent_mask: Optional[Tensor] = None):
        """Top-k codes of normalised ``x [B, d]``: ``(vals [B, k], idx int64 [B, k])``.

        ``k`` overrides the SAE's k (e.g. AuxK) and ``latent_mask`` (bool [n]) restricts
        the choice to the latents where it is True. ``x`` is cast to the parameters' dtype.
        """
        x = x.to(self.W_enc.dtype)
        return ops.topk_encode(
            x, self.W_enc, self.b_enc, self.k if k is None else k, b_dec=self.b_dec, latent_mask=latent_mask
        )

    def decode(self, vals: Tensor, idx: Tensor, *, bias: bool = True) -> Tensor:
        """Reconstruction ``[B, d]`` from codes ``vals [B, k]``, ``idx [B, k]`` (+ ``b_dec`` if ``bias``)."""
        return ops.sparse_decode(vals.to(self.W_dec.dtype), idx, self.W_dec, self.b_dec if bias else None)

    def forward(self, x: Tensor) -> SAEOutput:
        """Encode and decode normalised ``x [B, d]``: ``SAEOutput(x_hat, vals, idx)``."""
        vals, idx = self.encode(x)
        return SAEOutput(self.decode(vals, idx), vals, idx)

    def normalize(self, x: Tensor) -> Tensor:
        """``(x - input_mean) / input_scale``, in the parameters' dtype."""
        return ((x.to(self.input_mean.dtype) - self.input_mean) / self.input_scale).to(self.W_enc.dtype)

    def denormalize(self, x_n: Tensor) -> Tensor:
        """Inverse of :meth:`normalize`: ``x_n * input_scale + input_mean``."""
        return x_n.to(self.input_mean.dtype) * self.input_scale + self.input_mean

    # ------------------------------------------------------------------ training helpers

    @torch.no_grad()
    def set_decoder_norm_(self) -> None:
        """Rescale every decoder row to unit L2 norm (in place)."""
        norms = self.W_dec.norm(dim=1, keepdim=True)
        self.W_dec.div_(norms.clamp_min(torch.finfo(norms.dtype).tiny))

    @torch.no_grad()
    def remove_parallel_grad_(self) -> None:
        """Remove from ``W_dec.grad`` each row's component along that decoder row (in place).

        With unit-norm rows, an optimizer step then changes row directions, not lengths
        (to first order), which :meth:`set_decoder_norm_` would undo anyway.
        """
        g = self.W_dec.grad
        if g is None:
            return
        W = self.W_dec
        unit = W / W.norm(dim=1, keepdim=True).clamp_min(torch.finfo(W.dtype).tiny)
        g.sub_((g * unit).sum(dim=1, keepdim=True) * unit)

    # ------------------------------------------------------------------ persistence

    def _config(self, extra: Optional[dict]) -> dict:
        cfg = dict(self.config)
        cfg.update(extra or {})
        cfg.update(
            format_version=FORMAT_VERSION,
            d_in=self.d_in,
            n_latents=self.n_latents,
            k=self.k,
            input_mean=[float(v) for v in self.input_mean.detach().cpu().double().tolist()],
            input_scale=float(self.input_scale),
            dtype=str(self.W_enc.dtype).removeprefix("torch."),
        )
        return cfg

    def save(self, directory, extra_config: Optional[dict] = None) -> None:
        """Write ``config.json`` and ``sae.safetensors`` into ``directory`` (created if needed).

        Each file is written to a temporary name and renamed, so a crash never leaves a
        half-written file under the final name.
        """
        from safetensors.torch import save_file

        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        cfg = self._config(extra_config)
        tensors = {name: getattr(self, name).detach().cpu().contiguous() for name in TENSOR_NAMES}
        tmp_w = out / (WEIGHTS_NAME + ".tmp")
        save_file(tensors, str(tmp_w))
        os.replace(tmp_w, out / WEIGHTS_NAME)
        tmp_c = out / (CONFIG_NAME + ".tmp")
        tmp_c.write_text(json.dumps(cfg, indent=2) + "\n")
        os.replace(tmp_c, out / CONFIG_NAME)
        self.config = cfg

    @classmethod
    def load(cls, directory, device=None) -> "TopKSAE":
        """Read a folder written by :meth:`save`; ``InputError`` if it is missing or corrupt."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        folder = Path(directory)
        cfg = _read_config(folder)
        wpath = folder / WEIGHTS_NAME
        if not wpath.is_file():
            raise InputError(f"{wpath}: missing (not an SAE folder written by TopKSAE.save)")
        try:
            tensors = load_file(str(wpath), device="cpu")
        except (SafetensorError, OSError, ValueError) as exc:
            raise InputError(f"{wpath}: unreadable safetensors file ({exc})") from None
        d, n = cfg["d_in"], cfg["n_latents"]
        shapes = {"W_enc": (n, d), "b_enc": (n,), "W_dec": (n, d), "b_dec": (d,)}
        if set(tensors) != set(TENSOR_NAMES):
            raise InputError(f"{wpath}: holds tensors {sorted(tensors)}, expected {list(TENSOR_NAMES)}")
        for name, shape in shapes.items():
            if tuple(tensors[name].shape) != shape:
                raise InputError(f"{wpath}: {name} has shape {tuple(tensors[name].shape)}, config.json says {shape}")
        dtype = tensors["W_enc"].dtype
        sae = cls(d, n, cfg["k"], device="meta", dtype=dtype)
        sae = sae.to_empty(device=device or "cpu")
        with torch.no_grad():
            for name in TENSOR_NAMES:
                getattr(sae, name).copy_(tensors[name])
            sae.input_mean.copy_(torch.tensor(cfg.get("input_mean", [0.0] * d), dtype=dtype))
        sae.input_scale = float(cfg.get("input_scale", 1.0))
        sae.config = cfg
        return sae


def _read_config(folder: Path) -> dict:
    cpath = folder / CONFIG_NAME
    if not cpath.is_file():
        raise InputError(f"{cpath}: missing (not an SAE folder written by TopKSAE.save)")
    try:
        cfg = json.loads(cpath.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{cpath}: not valid JSON ({exc})") from None
    for key in ("d_in", "n_latents", "k"):
        if not isinstance(cfg.get(key), int) or cfg[key] < 1:
            raise InputError(f"{cpath}: '{key}' must be a positive integer, got {cfg.get(key)!r}")
    if cfg["k"] > cfg["n_latents"]:
        raise InputError(f"{cpath}: k={cfg['k']} exceeds n_latents={cfg['n_latents']}")
    mean = cfg.get("input_mean")
    if mean is not None and (not isinstance(mean, list) or len(mean) != cfg["d_in"]):
        raise InputError(f"{cpath}: input_mean must be a list of d_in={cfg['d_in']} numbers")
    return cfg


def describe(path) -> dict:
    """Summary of an SAE folder for ``genesae info``: sizes, k, dtype, normalisation, extras."""
    from safetensors import safe_open

    folder = Path(path)
    cfg = _read_config(folder)
    wpath = folder / WEIGHTS_NAME
    if not wpath.is_file():
        raise InputError(f"{wpath}: missing (not an SAE folder written by TopKSAE.save)")
    with safe_open(str(wpath), framework="pt") as fh:
        names = sorted(fh.keys())
        dtype = str(fh.get_slice("W_enc").get_dtype()) if "W_enc" in names else "?"
    info = {
        "kind": "TopK SAE",
        "path": str(folder),
        "d_in": cfg["d_in"],
        "n_latents": cfg["n_latents"],
        "k": cfg["k"],
        "expansion": round(cfg["n_latents"] / cfg["d_in"], 3),
        "dtype": dtype,
        "tensors": names,
        "parameters": 2 * cfg["n_latents"] * cfg["d_in"] + cfg["n_latents"] + cfg["d_in"],
        "size_bytes": wpath.stat().st_size,
        "input_scale": cfg.get("input_scale", 1.0),
    }
    skip = {"d_in", "n_latents", "k", "input_mean", "input_scale", "dtype"}
    for key, value in cfg.items():
        if key not in skip and key not in info:
            info[key] = value
    return info
