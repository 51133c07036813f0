"""``import_array``: a store from activations computed elsewhere (.npy or .safetensors).

The array is streamed one row chunk at a time (a memory map for .npy, safetensors'
lazy slices), so it never has to fit in memory. Imported stores have no coordinates.
Rerunning an interrupted import with the same arguments resumes it.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from genesae_fast.errors import InputError
from genesae_fast.store import layout

_SOURCE_DTYPES = {"float16": "float16", "bfloat16": "bfloat16", "float32": "float32", "float64": "float32"}


class _NpySource:
    def __init__(self, path: Path):
        try:
            self.arr = np.load(path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise InputError(f"{path}: not a readable .npy file ({exc})") from None
        if not isinstance(self.arr, np.ndarray):
            raise InputError(f"{path}: expected one array in a .npy file")
        self.shape = tuple(self.arr.shape)
        self.dtype = str(self.arr.dtype)
        self.key = None

    def rows(self, a: int, b: int) -> np.ndarray:
        return np.asarray(self.arr[a:b])


class _SafetensorsSource:
    def __init__(self, path: Path, key: str | None):
        from safetensors import safe_open

        try:
            self.f = safe_open(str(path), framework="pt")
            keys = list(self.f.keys())
        except Exception as exc:  # safetensors raises its own error types
            raise InputError(f"{path}: not a readable .safetensors file ({exc})") from None
        if key is None:
            if len(keys) != 1:
                raise InputError(f"{path}: holds {len(keys)} tensors ({', '.join(keys[:8])}); choose one with --key")
            key = keys[0]
        elif key not in keys:
            raise InputError(f"{path}: no tensor named {key!r} (has {', '.join(keys[:8])})")
        self.key = key
        self.slice = self.f.get_slice(key)
        self.shape = tuple(self.slice.get_shape())
        self.dtype = {"F16": "float16", "BF16": "bfloat16", "F32": "float32", "F64": "float64"}.get(
            self.slice.get_dtype(), self.slice.get_dtype().lower())

    def rows(self, a: int, b: int) -> np.ndarray:
        import torch

        t = self.slice[a:b]
        if t.dtype == torch.bfloat16:
            return t.view(torch.int16).numpy().view(np.uint16)  # keep the exact bits
        return t.numpy()


def _open_source(path, key):
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        if key is not None:
            raise InputError(f"{path}: --key applies to .safetensors files only")
        return _NpySource(path)
    if suffix == ".safetensors":
        return _SafetensorsSource(path, key)
    raise InputError(f"{path}: expected a .npy or .safetensors file")


def _converter(src_dtype: str, dtype: str):
    """Function turning source rows into values ``to_stored`` accepts for ``dtype``."""
    if src_dtype == "bfloat16":
        if dtype == "bfloat16":
            return lambda x: x  # uint16 bits unchanged
        return lambda x: (x.astype(np.uint32) << 16).view(np.float32)
    return lambda x: x


def import_array(path, out, key=None, dtype=None, overwrite=False, progress=False, chunk_rows=None,
                 codec="none") -> str:
    """Write a 2-D activation array ``[N, d]`` from a file into a new store.

    Parameters
    ----------
    path : str or os.PathLike
        ``.npy`` (read through a memory map) or ``.safetensors`` (one tensor, or ``key``).
    out : str or os.PathLike
        Store path (local folder or fsspec URL).
    key : str, optional
        Tensor name inside a .safetensors file holding several.
    dtype : {"float16", "bfloat16", "float32"}, optional
        Stored dtype; default the source's (float64 becomes float32).
    overwrite : bool
        Replace whatever is at ``out``.

    Returns
    -------
    str
        ``out``.
    """
    from tqdm.auto import tqdm

    from genesae_fast.store.writer import StoreWriter

    src = _open_source(path, key)
    if len(src.shape) != 2 or src.shape[1] < 1:
        raise InputError(f"{path}: expected a 2-D array [tokens, d], got shape {src.shape}")
    if src.dtype not in _SOURCE_DTYPES:
        raise InputError(f"{path}: activations must be floating point, got {src.dtype}")
    dtype = layout.check_dtype(dtype or _SOURCE_DTYPES[src.dtype])
    n, d = int(src.shape[0]), int(src.shape[1])
    stat = os.stat(path)
    config = {"kind": "import", "source": os.path.abspath(path), "source_size": stat.st_size,
              "source_mtime_ns": stat.st_mtime_ns, "key": src.key, "source_dtype": src.dtype}
    attrs = {"source": {"path": os.path.abspath(path), "key": src.key, "dtype": src.dtype}}
    writer = StoreWriter.create(out, n_rows=n, d=d, dtype=dtype, config=config, attrs=attrs,
                                chunk_rows=chunk_rows, codec=codec, coordinates=False, overwrite=overwrite)
    done = writer.committed(verify=True)
    convert = _converter(src.dtype, dtype)
    todo = [k for k in range(writer.n_chunks) if k not in done]
    with tqdm(total=n, initial=n - sum(writer.chunk_bounds(k)[1] - writer.chunk_bounds(k)[0] for k in todo),
              unit="row", unit_scale=True, desc="import", disable=not progress) as bar:
        for k in todo:
            a, b = writer.chunk_bounds(k)
            writer.write_chunk(k, convert(src.rows(a, b)))
            bar.update(b - a)
    writer.finalize()
    return str(out)
