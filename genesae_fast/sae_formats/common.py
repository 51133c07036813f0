"""Small helpers shared by the format readers: JSON, safetensors and shape checks."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from genesae_fast.errors import InputError


def read_json(path: Path) -> dict:
    """A JSON object from ``path``; ``InputError`` if missing, unreadable or not an object."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise InputError(f"{path}: missing") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def read_safetensors(path: Path) -> dict:
    """All tensors of a safetensors file on the CPU; ``InputError`` if unreadable."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not Path(path).is_file():
        raise InputError(f"{path}: missing")
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise InputError(f"{path}: unreadable safetensors file ({exc})") from None


def need(tensors: dict, names, path) -> None:
    """``InputError`` naming the first of ``names`` missing from ``tensors``."""
    for name in names:
        if name not in tensors:
            raise InputError(f"{path}: no tensor {name!r} (holds {sorted(tensors)})")


def check_shape(tensor: torch.Tensor, shape: tuple, name: str, path) -> torch.Tensor:
    """``tensor`` if its shape is ``shape``, else a one-line ``InputError``."""
    if tuple(tensor.shape) != tuple(shape):
        raise InputError(f"{path}: {name} has shape {tuple(tensor.shape)}, expected {tuple(shape)}")
    return tensor


def positive_int(cfg: dict, key: str, path) -> int:
    """``cfg[key]`` as a positive int, else a one-line ``InputError``."""
    value = cfg.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"{path}: '{key}' must be a positive integer, got {value!r}")
    return value


def finite(tensors: dict, path) -> None:
    """``InputError`` if any floating tensor holds NaN or inf."""
    for name, t in tensors.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise InputError(f"{path}: tensor {name!r} holds NaN or inf")


def write_safetensors(path: Path, tensors: dict) -> None:
    """Write ``tensors`` (moved to the CPU, made contiguous) atomically as safetensors."""
    from safetensors.torch import save

    from genesae_fast.outputs import open_output

    blob = save({k: v.detach().cpu().contiguous() for k, v in tensors.items()})
    with open_output(path, "wb") as fh:
        fh.write(blob)


def write_json(path: Path, obj: dict) -> None:
    """Write ``obj`` as indented JSON atomically."""
    from genesae_fast.outputs import open_output

    with open_output(path, "w") as fh:
        fh.write(json.dumps(obj, indent=2) + "\n")
