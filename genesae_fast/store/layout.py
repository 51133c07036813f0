"""Names, dtypes and sizes shared by the store's writer and reader.

A store is one Zarr v3 group::

    S.zarr/
      zarr.json            group attrs: attrs["genesae"] (provenance, stats, "complete")
      activations [N, d]   float16 | float32 | bfloat16 bits kept as uint16
      seq [N] int32, bp_start [N] int64, bp_end [N] int64, token_id [N] int64
                           (absent in stores made by ``genesae import``)
      lm_bits [N] float32  optional (attrs["has_lm_bits"]): the LM's bits for each token
                           given the tokens before it, NaN where it made no prediction;
                           each chunk's CRC-32 is in the activation chunk's commit record
      _progress/           commit records, plain JSON files (not Zarr nodes)

Every array is chunked by the same whole rows, so row chunk ``k`` is one unit of work,
of commit and of shuffling.

A both-strand extraction writes a second, ordinary store beside ``S.zarr``: ``S.rc.zarr``,
the reverse-complement pass in + strand coordinates (``genesae_fast.store.strands``).
"""
from __future__ import annotations

import numpy as np

from genesae_fast.errors import InputError

FORMAT_VERSION = 1
ATTRS_KEY = "genesae"
ACTIVATIONS = "activations"
COORDINATES = ("seq", "bp_start", "bp_end", "token_id")
COORD_DTYPES = {"seq": np.int32, "bp_start": np.int64, "bp_end": np.int64, "token_id": np.int64}
PROGRESS = "_progress"
LM_BITS = "lm_bits"

# Logical dtype -> dtype of the Zarr array. zarr-python has no bfloat16 data type
# (zarr-python #2656), so bfloat16 values are stored as their raw uint16 bits.
STORED_DTYPE = {"float16": np.float16, "bfloat16": np.uint16, "float32": np.float32}
CODECS = ("none", "lz4", "zstd")
TARGET_CHUNK_BYTES = 8 << 20


def check_dtype(dtype: str) -> str:
    """Return ``dtype`` if it is a supported activation dtype, else raise InputError."""
    if dtype not in STORED_DTYPE:
        raise InputError(f"--dtype {dtype}: expected one of {', '.join(STORED_DTYPE)}")
    return dtype


def default_chunk_rows(d: int, dtype: str) -> int:
    """Rows per chunk: the power of two nearest 8 MiB of activations, in [1024, 65536].

    4-16 MiB chunks read fastest with zarr-python (notes/activation-store.md, 2.5):
    smaller ones pay per-call overhead, larger ones page faults.
    """
    row_bytes = max(1, int(d) * np.dtype(STORED_DTYPE[dtype]).itemsize)
    rows = 1 << max(0, round(np.log2(TARGET_CHUNK_BYTES / row_bytes)))
    return int(min(65536, max(1024, rows)))


def n_chunks(n_rows: int, chunk_rows: int) -> int:
    """Number of row chunks of an ``n_rows`` array."""
    return -(-int(n_rows) // int(chunk_rows))


def chunk_bounds(k: int, n_rows: int, chunk_rows: int) -> tuple[int, int]:
    """Rows ``[start, stop)`` of chunk ``k``."""
    start = int(k) * int(chunk_rows)
    return start, min(start + int(chunk_rows), int(n_rows))


def to_stored(x: np.ndarray, dtype: str) -> np.ndarray:
    """Activations of any float dtype as the stored array (C-contiguous).

    bfloat16 is rounded to nearest even from float32 and returned as uint16 bits.
    """
    if dtype == "bfloat16":
        if x.dtype == np.uint16:  # already bfloat16 bits
            return np.ascontiguousarray(x)
        import torch

        t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(torch.bfloat16)
        return t.view(torch.int16).numpy().view(np.uint16)
    return np.ascontiguousarray(x, dtype=STORED_DTYPE[dtype])


def stored_to_float32(x: np.ndarray, dtype: str, out: np.ndarray | None = None) -> np.ndarray:
    """Stored activations ``[r, d]`` as float32 (exact for every stored dtype)."""
    if out is None:
        out = np.empty(x.shape, dtype=np.float32)
    if dtype == "bfloat16":
        # bfloat16 is the top half of a float32: shift the bits into place.
        out.view(np.uint32)[...] = x.astype(np.uint32) << 16
    else:
        import torch

        x = np.ascontiguousarray(x)
        if x.flags.writeable:
            src = torch.from_numpy(x)
        else:  # a read-only memory map: torch warns about writes, but only reads it here
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                src = torch.from_numpy(x)
        # torch converts float16 -> float32 several times faster than numpy.
        torch.from_numpy(out).copy_(src)
    return out
