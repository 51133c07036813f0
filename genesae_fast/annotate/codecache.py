"""SAE codes of each block kept on disk between the passes, so every token is encoded once.

Pass 1 encodes the rows a block owns and writes their top-k codes to
``<folder>/<block>-<first row>.npy`` (one structured array: ``val`` float32 [k] and ``idx``
uint16/int32 [k] per row, 4 + 2 bytes per code when the SAE has at most 65,536 features).
Passes 2 and 3 read a window's rows back (plain reads); rows no file holds (a
missing or foreign file, e.g. a block of another torchrun rank on another machine) are
encoded again, which gives the same codes. Files are written atomically, so a killed run
never leaves a file that is read as complete.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def code_dtype(n_latents: int, k: int) -> np.dtype:
    """Row layout of a cache file: ``k`` values and ``k`` feature indices."""
    idx = np.uint16 if n_latents <= np.iinfo(np.uint16).max + 1 else np.int32
    return np.dtype([("val", np.float32, (k,)), ("idx", idx, (k,))])


class CodeCache:
    """The cached codes of one annotation run (one folder; shared by workers and ranks).

    Parameters
    ----------
    folder : where the block files go
    n_latents : features of the SAE (sets the index dtype)
    """

    def __init__(self, folder, n_latents: int):
        self.folder = Path(folder)
        self.n_latents = int(n_latents)
        self._index: dict[int, tuple[int, Path]] = {}  # block -> (first row, file)
        self._headers: dict[Path, tuple] = {}

    def write(self, b: int, r0: int, vals: np.ndarray, idx: np.ndarray) -> None:
        """Store block ``b``'s codes of rows ``[r0, r0 + n)``: vals (n, k) float32, idx (n, k)."""
        vals = np.asarray(vals, np.float32)
        rows = np.empty(vals.shape[0], code_dtype(self.n_latents, vals.shape[1] if vals.ndim == 2 else 1))
        rows["val"] = vals.reshape(rows["val"].shape)
        rows["idx"] = np.asarray(idx).reshape(rows["idx"].shape)
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{b:08d}-{int(r0)}.npy"
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        with open(tmp, "wb") as fh:
            np.save(fh, rows, allow_pickle=False)
        os.replace(tmp, path)
        self._index[b] = (int(r0), path)

    def _refresh(self) -> None:
        self._index = {}
        if self.folder.is_dir():
            for p in self.folder.glob("*-*.npy"):
                b, r0 = p.stem.split("-")
                self._index[int(b)] = (int(r0), p)

    def _header(self, path: Path) -> tuple[int, np.dtype, int]:
        """(data offset, row dtype, rows) of a cache file."""
        h = self._headers.get(path)
        if h is None:
            with open(path, "rb") as fh:
                version = np.lib.format.read_magic(fh)
                read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                shape, _, dtype = read(fh)
                h = self._headers[path] = (fh.tell(), dtype, int(shape[0]))
        return h

    def _slice(self, path: Path, a: int, z: int) -> np.ndarray:
        """Rows ``a:z`` of a file, read (not memory-mapped: pages read once do not stay in this
        process's resident memory)."""
        off, dtype, _ = self._header(path)
        return np.fromfile(path, dtype=dtype, count=z - a, offset=off + a * dtype.itemsize)

    def read(self, r0: int, r1: int, blocks) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Codes of rows ``[r0, r1)`` found in the files of ``blocks``.

        Returns
        -------
        vals : (n, k) float32 ; idx : (n, k) int64 ; have : (n,) bool, rows found
        """
        n = r1 - r0
        if any(b not in self._index for b in blocks):
            self._refresh()
        vals = idx = None
        have = np.zeros(n, bool)
        for b in blocks:
            if b not in self._index:
                continue
            f0, path = self._index[b]
            _, dtype, rows = self._header(path)
            a, z = max(r0, f0), min(r1, f0 + rows)
            if z <= a:
                continue
            if vals is None:
                k = dtype["val"].shape[0] if dtype["val"].shape else 1
                vals, idx = np.zeros((n, k), np.float32), np.zeros((n, k), np.int64)
            part = self._slice(path, a - f0, z - f0)
            vals[a - r0:z - r0] = part["val"].reshape(z - a, -1)
            idx[a - r0:z - r0] = part["idx"].reshape(z - a, -1)
            have[a - r0:z - r0] = True
        return vals, idx, have
