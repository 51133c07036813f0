"""Motif scanning with FIMO's hits and p-values, in C++ (``genesae_fast._native.scan_pssms``).

Each motif becomes two integer score matrices (forward and reverse-complement strand) in
FIMO's scaled domain, with their exact p-value tables (``genesae_fast.fimo_pvalues``). The
p-value threshold becomes an integer score threshold per strand matrix before the scan, so
the C++ scanner decides every hit with integer arithmetic and finds exactly FIMO's hits.
Nothing is dropped: every window with p < threshold is returned.

q-values are FIMO's Benjamini-Hochberg values per motif, over all windows scored on both
strands, with pi0 = 1 (FIMO estimates pi0 from a random sample of p-values; genome-wide
it is close to 1, so our q-values are FIMO's conservative bound).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from genesae_fast.errors import InputError
from genesae_fast.fimo_pvalues import (
    ScaledPSSM,
    apply_pseudocount,
    build_pssm,
    finish_background,
    nrdb_background,
    read_background_file,
    reverse_complement_probs,
    sequence_background,
    uniform_background,
)
from genesae_fast.motifs import Motif

BACKGROUNDS = ("nrdb", "uniform", "motif", "sequence")
#: Widest motif the scanner takes (17 column pairs of 16-bit sums; JASPAR's widest is 33).
MAX_WIDTH = 33


def effective_threads(threads: int | None) -> int:
    """Worker threads for ``threads`` (all usable cores when None or < 1; never more than them)."""
    from genesae_fast.threads import usable_cores

    cores = usable_cores()
    if not threads or threads < 1:
        return cores
    return min(int(threads), cores)


def check_scan_options(motifs: Sequence[Motif], pvalue: float, motif_pseudo: float) -> None:
    """One-line :class:`InputError` for options or motifs the scanner cannot take."""
    if not (0 < pvalue <= 1):
        raise InputError(f"--pvalue must be in (0, 1], got {pvalue}")
    if not (math.isfinite(motif_pseudo) and motif_pseudo >= 0):
        raise InputError(f"--motif-pseudo must be a finite number >= 0, got {motif_pseudo}")
    for m in motifs:
        if not 1 <= m.width <= MAX_WIDTH:
            raise InputError(f"motif {m.id} is {m.width} columns wide; the scanner takes widths 1 to {MAX_WIDTH}")


@dataclass
class ScanHits:
    """Motif hits as columns (one entry per hit).

    Attributes
    ----------
    motif : int32 [n]      index into the motif list
    seq : int32 [n]        index into the records
    start : int64 [n]      0-based leftmost position
    end : int64 [n]        exclusive end (start + motif width)
    strand : int8 [n]      +1 or -1
    score : float64 [n]    FIMO's (rounded-domain) log-odds score in bits
    pvalue : float64 [n]
    qvalue : float64 [n]
    """

    motif: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    seq: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    start: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    end: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    strand: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int8))
    score: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float64))
    pvalue: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float64))
    qvalue: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float64))

    def __len__(self) -> int:
        return int(self.motif.shape[0])

    def take(self, index) -> "ScanHits":
        """The hits selected by an index array or boolean mask."""
        return ScanHits(**{k: getattr(self, k)[index] for k in self.__dataclass_fields__})


@dataclass
class PreparedMotifs:
    """Per-motif strand matrices and integer thresholds, ready for the scanner."""

    pssms: list[list[ScaledPSSM]]  # [motif][strand 0 = +, 1 = -]
    cells: np.ndarray  # int16 [n_columns, 4], all entries concatenated
    col_offsets: np.ndarray  # int64 [n_entries + 1]
    thresholds: np.ndarray  # int32 [n_entries]; entry = n_strands * motif + strand index
    background: np.ndarray


def _codes_of(records) -> list[np.ndarray]:
    out = []
    for r in records:
        codes = r.codes if hasattr(r, "codes") else r
        out.append(np.ascontiguousarray(codes, dtype=np.uint8))
    return out


def resolve_background(background, records=None, motif_file=None, both_strands: bool = True) -> np.ndarray:
    """The scoring background for a ``--bg`` choice.

    Parameters
    ----------
    background : str or sequence of 4 floats
        ``nrdb`` (FIMO's default), ``uniform``, ``motif`` (the motif file's
        ``Background letter frequencies``, uniform when it has none), ``sequence`` (the
        scanned sequences' base composition), a MEME background file, or A/C/G/T frequencies.
    """
    if background is None or (isinstance(background, str) and background == "nrdb"):
        return nrdb_background(both_strands)
    if not isinstance(background, (str, os.PathLike)):
        return finish_background(list(background), both_strands)
    b = str(background)
    if b == "uniform":
        return uniform_background(both_strands)
    if b == "sequence":
        if records is None:
            raise InputError("--bg sequence needs the sequences")
        return sequence_background(records, both_strands)
    if b == "motif":
        freqs = None
        if motif_file is not None and Path(str(motif_file)).is_file():
            from genesae_fast.motifs import read_meme_background, sniff_format, _read_text

            if sniff_format(_read_text(Path(str(motif_file))), motif_file) == "meme":
                freqs = read_meme_background(motif_file)
        elif motif_file is not None:  # the shipped default set: its file says uniform
            freqs = (0.25, 0.25, 0.25, 0.25)
        return finish_background(freqs or (0.25, 0.25, 0.25, 0.25), both_strands)
    if Path(b).is_file():
        return finish_background(read_background_file(b), both_strands)
    raise InputError(f"--bg {b!r}: expected nrdb, uniform, motif, sequence or a background file")


def prepare_motifs(motifs: Sequence[Motif], background: np.ndarray, pvalue: float = 1e-4,
                   motif_pseudo: float = 0.1, both_strands: bool = True, threads: int = 1) -> PreparedMotifs:
    """Integer matrices, p-value tables and score thresholds of every motif strand."""
    from genesae_fast import _native

    check_scan_options(motifs, pvalue, motif_pseudo)
    pssms = []
    mats = []
    bgf = [float(x) for x in background]
    # With a strand-symmetric background (always, when FIMO scans both strands) the reverse
    # strand's log-odds are the forward ones permuted, bit for bit, so its cells are too.
    symmetric = bgf[0] == bgf[3] and bgf[1] == bgf[2]
    for m in motifs:
        probs = apply_pseudocount(m.probs, m.nsites, background, motif_pseudo)
        fwd = build_pssm(probs, background, table=False)
        strands = [fwd]
        if both_strands and symmetric:
            rc = np.ascontiguousarray(fwd.cells[::-1, ::-1])
            strands.append(ScaledPSSM(cells=rc, scale=fwd.scale, offset=fwd.offset, pv=fwd.pv))
        elif both_strands:
            strands.append(build_pssm(reverse_complement_probs(probs), background, table=False))
        pssms.append(strands)
        mats += [p.cells for p in strands]
    widths = np.array([c.shape[0] for c in mats], dtype=np.int64)
    col_offsets = np.concatenate([[0], np.cumsum(widths)]).astype(np.int64)
    cells = np.ascontiguousarray(np.concatenate(mats) if mats else np.zeros((0, 4), np.int16), dtype=np.int16)
    # Exact p-value tables in C++ (MEME's DP in the same arithmetic order), kept from the
    # threshold up: hits never need lower scores.
    tables, starts, thresholds = _native.pvalue_tables(cells, col_offsets, np.asarray(background, dtype=np.float64),
                                                       float(pvalue), threads, from_threshold=True)
    e = 0
    for strands in pssms:
        for p in strands:
            p.pv, p.pv_start = tables[e], int(starts[e])
            e += 1
    return PreparedMotifs(pssms, cells, col_offsets, np.asarray(thresholds, dtype=np.int32), np.asarray(background))


def _valid_window_counts(codes_list: list[np.ndarray], widths: np.ndarray) -> dict[int, int]:
    """Number of windows of each width that hold only A, C, G, T (over all records)."""
    runs = []
    for codes in codes_list:
        bad = np.concatenate([[True], codes > 3, [True]])
        edges = np.flatnonzero(bad)
        lens = np.diff(edges) - 1
        runs.append(lens[lens > 0])
    runs = np.concatenate(runs) if runs else np.zeros(0, np.int64)
    return {int(w): int(np.maximum(runs - w + 1, 0).sum()) for w in np.unique(widths)}


def fimo_qvalues(pvalues: np.ndarray, n_tests: int) -> np.ndarray:
    """FIMO's q-values (MEME ``compute_qvalues`` with pi0 = 1) for one motif's hits.

    Parameters
    ----------
    pvalues : float64 [n]   the motif's reported p-values (any order)
    n_tests : int           windows scored (both strands)

    Returns
    -------
    float64 [n], aligned with ``pvalues``.
    """
    p = np.asarray(pvalues, dtype=np.float64)
    if p.size == 0:
        return p.copy()
    order = np.argsort(p, kind="stable")
    ps = p[order]
    # MEME: (pi0 * p * (float) total) / (float) (rank): float32 casts of both counts
    ranks = np.arange(1, p.size + 1, dtype=np.float32).astype(np.float64)
    fdr = np.minimum(1.0, ps * float(np.float32(n_tests)) / ranks)
    q = np.minimum.accumulate(fdr[::-1])[::-1]
    out = np.empty_like(q)
    out[order] = q
    return out


def scan_motifs(records, motifs: Sequence[Motif], pvalue: float = 1e-4, threads: int | None = None,
                background="nrdb", motif_pseudo: float = 0.1, both_strands: bool = True,
                motif_file=None) -> ScanHits:
    """Find every window whose FIMO p-value is below ``pvalue``, on both strands.

    Parameters
    ----------
    records : list of sequences.Record (or uint8 code arrays, A=0 C=1 G=2 T=3 other 4)
    motifs : list of Motif
    pvalue : float
        Report windows with p < pvalue (FIMO's ``--thresh``, strict).
    threads : int or None
        Worker threads (all cores when None; capped at the cores); the GIL is released.
    background : str, path or sequence of 4 floats
        See :func:`resolve_background`; ``nrdb`` is FIMO's default.
    motif_pseudo : float
        FIMO's ``--motif-pseudo``.
    both_strands : bool
        Scan the reverse complement too (FIMO's default; ``--norc`` turns it off).
    motif_file : path or None
        Where the motifs came from (for ``background="motif"``).

    Returns
    -------
    ScanHits sorted by motif, record, start and strand (+ before -).
    """
    from genesae_fast import _native

    codes_list = _codes_of(records)
    bg = resolve_background(background, records, motif_file, both_strands)
    n_threads = effective_threads(threads)
    prep = prepare_motifs(motifs, bg, pvalue, motif_pseudo, both_strands, n_threads)
    found = _native.scan_pssms(codes_list, prep.cells, prep.col_offsets, prep.thresholds, n_threads)
    n_str = 2 if both_strands else 1
    hits = _hits_in_order(prep, found, n_str, len(motifs), codes_list)
    widths = np.diff(prep.col_offsets)[::n_str] if len(motifs) else np.zeros(0, np.int64)
    _fill_qvalues(hits, _valid_window_counts(codes_list, widths), widths, n_str, len(motifs))
    return hits


def _hits_in_order(prep: PreparedMotifs, found, n_str: int, n_motifs: int, codes_list) -> ScanHits:
    """The scanner's (entry, seq, start, score) hits as ScanHits, sorted by motif, record,
    start, + before -, with p-values and reported scores (q-values left at 0)."""
    entry, seq, start, scaled = found
    widths = np.diff(prep.col_offsets)[::n_str] if n_motifs else np.zeros(0, np.int64)
    motif_idx = (entry // n_str).astype(np.int32)
    # one int64 key (unique per hit) sorts faster than a 4-key lexsort
    span = max([len(c) for c in codes_list] + [1]) + 1
    key = ((motif_idx.astype(np.int64) * max(1, len(codes_list)) + seq) * span + start) * n_str + entry % n_str
    if n_motifs * max(1, len(codes_list)) * span * n_str < 2**62:
        order = np.argsort(key)
    else:  # astronomically large inputs: fall back to the lexsort
        order = np.lexsort((entry % n_str, start, seq, motif_idx))
    entry, seq, start, scaled, motif_idx = entry[order], seq[order], start[order], scaled[order], motif_idx[order]
    # p-values from the entries' table tails laid end to end; scores from scale and offset
    # (S / scale + w * offset, the same double operations as ScaledPSSM.raw_score).
    flat_pssms = [p for strands in prep.pssms for p in strands]
    if flat_pssms:
        tails = np.concatenate([p.pv for p in flat_pssms])
        base = np.concatenate([[0], np.cumsum([p.pv.size for p in flat_pssms])[:-1]]).astype(np.int64)
        starts = np.array([p.pv_start for p in flat_pssms], dtype=np.int64)
        scales = np.array([p.scale for p in flat_pssms], dtype=np.float64)
        offsets = np.array([p.offset for p in flat_pssms], dtype=np.float64)
        ewidth = np.diff(prep.col_offsets).astype(np.float64)
        pv = tails[base[entry] + scaled - starts[entry]]
        score = scaled.astype(np.float64) / scales[entry] + ewidth[entry] * offsets[entry]
    else:
        pv = score = np.zeros(0, dtype=np.float64)
    return ScanHits(motif=motif_idx, seq=seq.astype(np.int32), start=start.astype(np.int64),
                    end=start.astype(np.int64) + widths[motif_idx],
                    strand=np.where(entry % n_str == 0, 1, -1).astype(np.int8), score=score, pvalue=pv,
                    qvalue=np.zeros(len(entry), dtype=np.float64))


def _fill_qvalues(hits: ScanHits, n_valid: dict, widths: np.ndarray, n_str: int, n_motifs: int) -> None:
    """q-values per motif over all scored windows (both strands); one sort by (motif, p-value)."""
    if not len(hits):
        return
    n_tests = np.array([float(np.float32(n_valid[int(w)] * n_str)) for w in widths], dtype=np.float64)
    by_p = np.lexsort((hits.pvalue, hits.motif))  # stable: ties keep the hit order
    m_sorted = hits.motif[by_p]
    group_start = np.searchsorted(m_sorted, np.arange(n_motifs + 1))
    rank = np.arange(len(hits), dtype=np.int64) - group_start[m_sorted] + 1
    fdr = np.minimum(1.0, hits.pvalue[by_p] * n_tests[m_sorted] / rank.astype(np.float32).astype(np.float64))
    q = np.empty_like(fdr)
    for mi in np.unique(m_sorted):
        a, b = group_start[mi], group_start[mi + 1]
        q[a:b] = np.minimum.accumulate(fdr[a:b][::-1])[::-1]
    hits.qvalue[by_p] = q


# --------------------------------------------------------------------------- output

TSV_COLUMNS = ("motif_id", "motif_alt_id", "sequence_name", "start", "stop", "strand", "score",
               "p-value", "q-value", "matched_sequence")
_COMP = np.frombuffer(b"TGCAN", dtype=np.uint8)
_LET = np.frombuffer(b"ACGTN", dtype=np.uint8)


def matched_sequences(hits: ScanHits, records) -> list[str]:
    """The matched word of every hit, as FIMO prints it (reverse complement on the - strand)."""
    out = np.empty(len(hits), dtype=object)
    if len(hits) == 0:
        return []
    codes = np.concatenate([np.asarray(r.codes, dtype=np.uint8) for r in records])
    rec_off = np.concatenate([[0], np.cumsum([len(r.codes) for r in records])]).astype(np.int64)
    widths = hits.end - hits.start
    for w in np.unique(widths):
        sel = np.flatnonzero(widths == w)
        idx = (rec_off[hits.seq[sel]] + hits.start[sel])[:, None] + np.arange(w)[None, :]
        minus = hits.strand[sel] < 0
        letters = _LET[codes[idx]]
        letters[minus] = _COMP[codes[idx[minus][:, ::-1]]]
        out[sel] = np.ascontiguousarray(letters).view(f"S{int(w)}")[:, 0].astype(f"U{int(w)}")
    return out.tolist()


def _columns(hits: ScanHits, records, motifs):
    names = [r.name for r in records]
    ids = [m.id for m in motifs]
    alts = [m.alt_id for m in motifs]
    mot = hits.motif.tolist()
    return (
        [ids[m] for m in mot],
        [alts[m] for m in mot],
        [names[s] for s in hits.seq.tolist()],
        hits.start.tolist(),
        hits.end.tolist(),
        ["+" if s > 0 else "-" for s in hits.strand.tolist()],
        hits.score.tolist(),
        hits.pvalue.tolist(),
        hits.qvalue.tolist(),
    )


def write_tsv(hits: ScanHits, records, motifs, out) -> None:
    """FIMO's TSV (1-based inclusive start/stop, start < stop on both strands; FIMO's number formats)."""
    out.write("\t".join(TSV_COLUMNS) + "\n")
    mid, alt, seq, start, end, strand, score, pv, qv = _columns(hits, records, motifs)
    words = matched_sequences(hits, records)
    step = 100_000
    for a in range(0, len(hits), step):
        b = min(len(hits), a + step)
        out.write("".join(
            f"{mid[i]}\t{alt[i]}\t{seq[i]}\t{start[i] + 1}\t{end[i]}\t{strand[i]}\t{score[i]:g}\t{pv[i]:.3g}\t"
            f"{qv[i]:.3g}\t{words[i]}\n"
            for i in range(a, b)
        ))


def write_bed(hits: ScanHits, records, motifs, out) -> None:
    """BED6+3: chrom, 0-based start, end, motif_id, score (bits), strand, p-value, q-value, alt id."""
    mid, alt, seq, start, end, strand, score, pv, qv = _columns(hits, records, motifs)
    step = 100_000
    for a in range(0, len(hits), step):
        b = min(len(hits), a + step)
        out.write("".join(
            f"{seq[i]}\t{start[i]}\t{end[i]}\t{mid[i]}\t{score[i]:g}\t{strand[i]}\t{pv[i]:.3g}\t{qv[i]:.3g}\t{alt[i]}\n"
            for i in range(a, b)
        ))
