"""Strict validation of a store's attributes and statistics, for readers.

A store's ``zarr.json`` is a plain text file anyone can edit; every value the reader
relies on (sizes, dtype, sequence row ranges, the normalisation statistics) is checked
here once on open, so damage gives one line naming the store and the field instead of
a traceback deep in training, or a silently NaN SAE.
"""
from __future__ import annotations

import math

import numpy as np

from genesae_fast.errors import InputError
from genesae_fast.store import layout

# Below this the normalisation would blow float16/bfloat16 activations up past float32's
# range (max 3.4e38 / max float16 65504 ~ 5e33); real layers have scales of 0.1-1000.
MIN_NORM_SCALE = 1e-12


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _int_field(attrs: dict, key: str, minimum: int, path) -> int:
    v = attrs.get(key)
    if not _is_int(v) or v < minimum:
        raise InputError(f"{path}: store attribute '{key}' is {v!r}, expected an integer >= {minimum}")
    return v


def check_attrs(attrs: dict, path) -> None:
    """Validate the ``genesae`` attributes of a store (types, ranges, sequence rows); the
    statistics' values are checked by :func:`check_stats` once the commit records are
    (a NaN in a chunk's record names the chunk, not just the mean it spoiled).

    Raises
    ------
    InputError
        One line naming ``path`` and the first bad field.
    """
    version = attrs.get("format_version", 0)
    if not _is_int(version):
        raise InputError(f"{path}: store attribute 'format_version' is {version!r}, expected an integer")
    if version > layout.FORMAT_VERSION:
        raise InputError(f"{path}: store format {version} is newer than this genesae_fast")
    n_rows = _int_field(attrs, "n_rows", 0, path)
    d = _int_field(attrs, "d", 1, path)
    _int_field(attrs, "chunk_rows", 1, path)
    if not isinstance(attrs.get("dtype"), str) or attrs["dtype"] not in layout.STORED_DTYPE:
        raise InputError(f"{path}: store attribute 'dtype' is {attrs.get('dtype')!r}, "
                         f"expected one of {', '.join(layout.STORED_DTYPE)}")
    for key in ("complete", "has_coordinates", "has_lm_bits"):
        if not isinstance(attrs.get(key, False), bool):
            raise InputError(f"{path}: store attribute '{key}' is {attrs.get(key)!r}, expected true or false")
    if not isinstance(attrs.get("config", ""), str):
        raise InputError(f"{path}: store attribute 'config' is {attrs.get('config')!r}, expected a string")
    _check_sequences(attrs.get("genome"), n_rows, path)
    if d > 0 and attrs.get("complete", False) and not isinstance(attrs.get("stats"), dict):
        raise InputError(f"{path}: store statistics are missing or damaged (expected a 'stats' object)")


def _check_sequences(genome, n_rows: int, path) -> None:
    if genome is None:
        return
    seqs = genome.get("sequences", []) if isinstance(genome, dict) else None
    if not isinstance(seqs, list):
        raise InputError(f"{path}: store attribute 'genome' is damaged (expected a 'sequences' list)")
    for i, s in enumerate(seqs):
        ok = (isinstance(s, dict) and isinstance(s.get("name"), str) and _is_int(s.get("row_start"))
              and _is_int(s.get("row_end")) and 0 <= s["row_start"] <= s["row_end"] <= n_rows)
        if not ok:
            raise InputError(f"{path}: store attribute genome.sequences[{i}] is damaged "
                             f"(needs a name and 0 <= row_start <= row_end <= {n_rows})")


def check_stats(stats, n_rows: int, d: int, path) -> tuple[np.ndarray, float]:
    """Validate the normalisation statistics of a complete store.

    Returns
    -------
    (numpy.ndarray [d] float64, float)
        The mean and the norm scale.

    Raises
    ------
    InputError
        Missing, wrong type or length, non-finite mean, norm scale not finite, negative
        or in (0, ``MIN_NORM_SCALE``).
    """
    if not isinstance(stats, dict):
        raise InputError(f"{path}: store statistics are missing or damaged (expected a 'stats' object)")
    count = stats.get("count", n_rows)
    if not _is_int(count) or count != n_rows:
        raise InputError(f"{path}: store statistics count {count!r} does not match its {n_rows} rows")
    mean = stats.get("mean")
    if (not isinstance(mean, list) or len(mean) != d
            or not all((_is_int(v) or isinstance(v, float)) and math.isfinite(v) for v in mean)):
        raise InputError(f"{path}: store statistics 'mean' is not a list of {d} finite numbers")
    scale = stats.get("norm_scale")
    # 0 is honest (one row, or all rows equal: training refuses such a store by itself);
    # anything else below MIN_NORM_SCALE is damage.
    if (not (_is_int(scale) or isinstance(scale, float)) or not math.isfinite(scale)
            or (scale != 0 and scale < MIN_NORM_SCALE)):
        raise InputError(f"{path}: store statistics 'norm_scale' is {scale!r}, expected 0 or a finite number "
                         f">= {MIN_NORM_SCALE:g}")
    return np.asarray(mean, dtype=np.float64), float(scale)


def check_stats_match_records(mean: np.ndarray, scale: float, records: list[dict], d: int, path) -> None:
    """The statistics in the attributes must be what the commit records fold to.

    ``finalize`` computes them from exactly these records, so any difference beyond
    rounding means the attributes or a record were edited.
    """
    from genesae_fast.store.records import combine_stats

    with np.errstate(all="ignore"):  # edited sums may overflow: that is a mismatch, not a warning
        _, want_mean, want_scale = combine_stats(records, d)
    tol = 1e-9 * max(1.0, want_scale) if math.isfinite(want_scale) else 0.0
    if not (np.all(np.isfinite(want_mean)) and math.isfinite(want_scale)
            and np.allclose(mean, want_mean, rtol=1e-9, atol=tol) and math.isclose(scale, want_scale, rel_tol=1e-9)):
        raise InputError(f"{path}: store statistics (mean, norm_scale) do not match the chunks' commit records "
                         "(zarr.json or _progress/ was edited)")


# Stored dtype -> (unsigned view, mask without the sign bit, smallest non-finite pattern)
_NONFINITE = {"float16": (np.uint16, 0x7FFF, 0x7C00), "bfloat16": (np.uint16, 0x7FFF, 0x7F80),
              "float32": (np.uint32, 0x7FFFFFFF, 0x7F800000)}


def check_finite(x: np.ndarray, dtype: str) -> bool:
    """Whether every stored activation of ``x`` (stored dtype) is finite.

    Works on the bits (an all-ones exponent is inf or NaN): ~2x faster than a float
    test on float16, which numpy and single-threaded torch do slowly.
    """
    view, mask, low = _NONFINITE[dtype]
    bits = np.ascontiguousarray(x).reshape(-1).view(view)
    return bits.size == 0 or int(np.bitwise_and(bits, mask).max()) < low
