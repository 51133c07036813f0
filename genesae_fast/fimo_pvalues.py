"""FIMO's score model: backgrounds, pseudocounts, integer score matrices, exact p-values.

Everything here follows the MEME suite's C code step for step, in the same floating-point
order, so that the integer matrices and p-value tables are the ones FIMO builds:

* background: the source frequencies (MEME's built-in nrdb DNA frequencies by default) are
  normalised, averaged with their reverse complement when both strands are scanned, then
  given MEME's tiny 5e-7 pseudocount and normalised again;
* pseudocount: with ``sites = int(nsites)`` (20 when unknown),
  ``p' = (p * sites + pseudo * bg) / (sites + pseudo)``;
* log-odds ``log(p'/bg) * 1.44269504`` (MEME's ``my_log2``), scaled per strand matrix:
  ``offset = floor(min)``, ``scale = floor(1000 / (max - offset))``, cell =
  ``nint((x - offset) * scale)`` in 0..1000;
* p-value table by dynamic programming over integer scores; a window of integer score S has
  p-value ``pv[S] = P(score >= S)``; reported score ``S / scale + w * offset``.

The reverse strand uses the reverse-complemented probability matrix scored on its own, as FIMO
does (identical to the forward one whenever the background is strand-symmetric).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from genesae_fast.errors import InputError

#: MEME's built-in non-redundant database DNA frequencies (A, C, G, T).
NRDB_DNA = (0.281774, 0.222020, 0.228876, 0.267330)
#: Scaled cells lie in 0..PSSM_RANGE (MEME's PSSM_RANGE).
PSSM_RANGE = 1000
#: Site count MEME assumes when a motif gives none.
DEFAULT_SITE_COUNT = 20
_LOG2E = 1.44269504  # MEME's my_log2 multiplies the natural log by this truncated constant


def _normalize_exact(freqs: list[float]) -> list[float]:
    """MEME ``normalize_subarray`` with zero tolerance: divide only if the sum is not 1."""
    total = 0.0
    for f in freqs:
        total += f
    if total <= 0.0:
        raise InputError("background frequencies sum to zero")
    if total == 1.0:
        return list(freqs)
    return [f / total for f in freqs]


def finish_background(freqs: Sequence[float], both_strands: bool = True) -> np.ndarray:
    """Turn source frequencies into the background FIMO scores with.

    Parameters
    ----------
    freqs : sequence of 4 floats
        A, C, G, T frequencies (need not be normalised).
    both_strands : bool
        Average with the reverse complement, as FIMO does when it scans both strands.

    Returns
    -------
    numpy.ndarray, shape (4,), float64
    """
    f = [float(x) for x in freqs]
    if len(f) != 4 or any(not math.isfinite(x) or x < 0 for x in f):
        raise InputError(f"background must be 4 non-negative frequencies (A C G T), got {list(freqs)}")
    f = _normalize_exact(f)
    if both_strands:
        at = (f[0] + f[3]) / 2.0
        cg = (f[1] + f[2]) / 2.0
        f = [at, cg, cg, at]
    pseudo = 0.0000005  # normalize_frequencies(..., 0.0000005) in MEME's set_pseudo_bg
    total = pseudo * 4
    for x in f:
        total += x
    f = [(x + pseudo) / total for x in f]
    return np.array(_normalize_exact(f), dtype=np.float64)


def nrdb_background(both_strands: bool = True) -> np.ndarray:
    """FIMO's default background: built-in nrdb frequencies (see :func:`finish_background`)."""
    return finish_background(NRDB_DNA, both_strands)


def uniform_background(both_strands: bool = True) -> np.ndarray:
    """A uniform background, finished as FIMO finishes ``--bfile --uniform--``."""
    return finish_background((0.25, 0.25, 0.25, 0.25), both_strands)


def sequence_background(records, both_strands: bool = True, pseudo: float = 1.0) -> np.ndarray:
    """Base frequencies of the scanned sequences (non-ACGT ignored), with ``pseudo`` spread evenly."""
    counts = np.zeros(4, dtype=np.float64)
    for r in records:
        codes = r.codes if hasattr(r, "codes") else np.asarray(r, dtype=np.uint8)
        counts += np.bincount(codes, minlength=5)[:4]
    total = counts.sum()
    freqs = [(c + pseudo / 4) / (total + pseudo) for c in counts]
    return finish_background(freqs, both_strands)


def read_background_file(path) -> list[float]:
    """Order-0 frequencies from a MEME background (``fasta-get-markov``) file.

    Lines are ``LETTER FREQ``; ``#`` comments and higher-order lines (multi-letter words)
    are ignored. Raises InputError when A, C, G or T is missing.
    """
    got: dict[str, float] = {}
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            text = fh.read()
    except OSError as exc:
        raise InputError(f"{path}: cannot read background file ({exc.strerror})") from None
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 2:
            raise InputError(f"{path}:{lineno}: expected 'LETTER FREQUENCY', got {line!r}")
        if len(parts[0]) != 1:
            continue  # higher-order Markov entry: FIMO's p-values use order 0
        try:
            got[parts[0].upper()] = float(parts[1])
        except ValueError:
            raise InputError(f"{path}:{lineno}: frequency {parts[1]!r} is not a number") from None
    missing = [b for b in "ACGT" if b not in got]
    if missing:
        raise InputError(f"{path}: background file lacks frequencies for {''.join(missing)}")
    return [got[b] for b in "ACGT"]


def apply_pseudocount(probs: np.ndarray, nsites: float | None, bg: np.ndarray, pseudo: float) -> np.ndarray:
    """MEME ``apply_pseudocount_to_motif``: ``(p * sites + pseudo * bg) / (sites + pseudo)``.

    ``sites`` is ``int(nsites)`` (MEME stores it in an int), or 20 when absent or not positive.
    """
    if not (math.isfinite(pseudo) and pseudo >= 0):
        raise InputError(f"--motif-pseudo must be a finite number >= 0, got {pseudo}")
    if pseudo == 0:
        return np.array(probs, dtype=np.float64)
    sites = int(nsites) if nsites is not None and nsites > 0 else DEFAULT_SITE_COUNT
    total = sites + pseudo
    probs = np.asarray(probs, dtype=np.float64)
    bg = np.asarray(bg, dtype=np.float64)
    # elementwise, in MEME's order: (prob * sites) + (pseudo * bg), then / total
    return (probs * sites + pseudo * bg[None, :]) / total


def reverse_complement_probs(probs: np.ndarray) -> np.ndarray:
    """Reverse-complemented probability matrix: row i, base b <- row w-1-i, base 3-b."""
    return np.ascontiguousarray(np.asarray(probs)[::-1, ::-1])


@dataclass
class ScaledPSSM:
    """One strand of a motif in FIMO's integer domain.

    Attributes
    ----------
    cells : numpy.ndarray, shape (w, 4), int16
        Scaled cells in 0..1000.
    scale, offset : float
        Raw score = S / scale + w * offset.
    pv : numpy.ndarray, float64
        pv[S - pv_start] = P(score >= S) under the background, for S from ``pv_start`` up
        (the whole table 0..w*1000 from :func:`build_pssm`; the scanner keeps only the tail
        that holds its threshold).
    pv_start : int
    """

    cells: np.ndarray
    scale: float
    offset: float
    pv: np.ndarray
    pv_start: int = 0

    @property
    def width(self) -> int:
        return int(self.cells.shape[0])

    def raw_score(self, scaled):
        """Reported (unscaled) score of integer score(s) ``scaled``."""
        return np.asarray(scaled, dtype=np.float64) / self.scale + self.width * self.offset

    def pvalue(self, scaled):
        """p-value(s) of integer score(s) ``scaled`` (at least ``pv_start``)."""
        return self.pv[np.asarray(scaled) - self.pv_start]

    def threshold(self, pvalue: float) -> int:
        """Smallest integer score S with P(score >= S) < pvalue (one past the table when none)."""
        below = np.flatnonzero(self.pv < pvalue)
        return self.pv_start + (int(below[0]) if below.size else int(self.pv.shape[0]))


def build_pssm(probs: np.ndarray, bg: np.ndarray, table: bool = True) -> ScaledPSSM:
    """Scaled integer matrix and exact p-value table of a (pseudocounted) probability matrix.

    Parameters
    ----------
    probs : numpy.ndarray, shape (w, 4)
        Probabilities after the pseudocount.
    bg : numpy.ndarray, shape (4,)
        Background used for the log-odds and the p-value DP.
    table : bool
        Compute the p-value table here (the numpy reference); False leaves ``pv`` empty
        for the caller to fill (the scanner uses the C++ ``pvalue_tables``).
    """
    rows = np.asarray(probs, dtype=np.float64).tolist()
    bgl = [float(x) for x in bg]
    log = math.log  # the C library's log, as MEME calls it (numpy's SIMD log may differ in the last bit)
    # MEME's my_log2: log(x) * 1.44269504, and SMALL_POS (1e-300) for a zero probability
    raw = [[log(p / b) * _LOG2E if p > 0.0 else 1e-300 for p, b in zip(row, bgl)] for row in rows]
    small = min(min(r) for r in raw)
    large = max(max(r) for r in raw)
    if large == small:
        small = large - 1
    offset = float(math.floor(small))
    scale = float(math.floor(PSSM_RANGE / (large - offset)))
    # raw_to_scaled: nint((x - offset) * scale); nint rounds half away from zero, y >= 0 here
    cells = np.array([[int((x - offset) * scale + 0.5) for x in r] for r in raw], dtype=np.int16).reshape(-1, 4)
    pv = pvalue_table(cells, bg) if table else np.zeros(0, dtype=np.float64)
    return ScaledPSSM(cells=cells, scale=scale, offset=offset, pv=pv)


def pvalue_table(cells: np.ndarray, bg: np.ndarray) -> np.ndarray:
    """pv[S] = P(sum of cells >= S) for S in 0..w*1000, by MEME's DP (same addition order).

    Parameters
    ----------
    cells : numpy.ndarray, shape (w, 4), integer
    bg : numpy.ndarray, shape (4,)

    Returns
    -------
    numpy.ndarray, shape (w * 1000 + 1,), float64
    """
    w = cells.shape[0]
    size = w * PSSM_RANGE + 1
    pdf = np.zeros(size, dtype=np.float64)
    pdf[0] = 1.0
    for i in range(w):
        top = i * PSSM_RANGE  # scores reachable so far are 0..top
        old = pdf[: top + 1].copy()
        new = np.zeros(size, dtype=np.float64)
        for b in range(4):
            s = int(cells[i, b])
            new[s : s + top + 1] += old * float(bg[b])
        pdf = new
    # pv[i] = min(1, pdf[i] + pv[i+1]) from the top, as a sequential sum
    pv = np.cumsum(pdf[::-1])[::-1]
    return np.minimum(pv, 1.0)
