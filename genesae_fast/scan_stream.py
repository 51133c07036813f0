"""Whole-genome motif scanning in bounded memory: ``genesae scan``'s engine.

The same hits, p-values, q-values and text as :func:`genesae_fast.scan.scan_motifs` followed
by :func:`~genesae_fast.scan.write_tsv` / :func:`~genesae_fast.scan.write_bed` (the in-memory
reference), but the genome is read piece by piece and the hits never sit in memory all at once:

1. a reader thread decodes the FASTA file (:mod:`genesae_fast.fasta_stream`) while the native
   :class:`genesae_fast._native.StreamScanner` scans blocks on every core, files each hit in a
   compact run (spilled to a temporary file past ``run_bytes``) and counts it in its motif
   strand's score histogram;
2. q-values come from those histograms: a p-value is a function of the integer score, so the
   histograms give every p-value's rank exactly, as the sorted hit list did;
3. the hits are read back and formatted natively, motif by motif in FIMO's order (or in genome
   order for a bgzipped, indexed BED), while a writer thread writes the previous batch.
"""
from __future__ import annotations

import collections
import os
import queue
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

import numpy as np

from genesae_fast.fasta_stream import iter_pieces
from genesae_fast.motifs import Motif
from genesae_fast.scan import TSV_COLUMNS, PreparedMotifs, effective_threads, prepare_motifs, resolve_background

#: Hits formatted per batch (about 70 bytes of text each).
BATCH_HITS = 1 << 16


def _feed(scanner, genome, piece_bytes: int, progress) -> None:
    """Decode ``genome`` on a reader thread and hand its pieces to ``scanner`` in order."""
    pieces: queue.Queue = queue.Queue(maxsize=2)
    stop = threading.Event()

    def produce():
        try:
            for piece in iter_pieces(genome, piece_bytes):
                while not stop.is_set():
                    try:
                        pieces.put(piece, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            pieces.put(None)
        except BaseException as exc:  # noqa: BLE001 - re-raised on the scanning thread
            pieces.put(exc)

    reader = threading.Thread(target=produce, name="genesae-scan-reader", daemon=True)
    reader.start()
    try:
        while (item := pieces.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            scanner.add(item.codes, item.first, item.name)
            progress.update(int(item.codes.size))
    finally:
        stop.set()
        reader.join()


def _motif_bins(counts_by_entry, pvals_by_entry, n_tests: float):
    """q-values of one motif's occurring p-values from their hit counts (MEME's BH, pi0 = 1).

    Every hit with the same p-value gets the q-value of the last of them in p order, which is
    what the per-hit computation over the sorted list gives (see ``scan_motifs``)."""
    p = np.concatenate(pvals_by_entry)
    c = np.concatenate(counts_by_entry)
    if p.size == 0:
        return [np.zeros(0) for _ in pvals_by_entry]
    order = np.argsort(p, kind="stable")
    ps = p[order]
    last = np.r_[ps[1:] != ps[:-1], True]  # last bin of each group of equal p-values
    rank = np.cumsum(c[order])[last]
    # MEME: (pi0 * p * (float) total) / (float) rank, then the running minimum from the top
    fdr = np.minimum(1.0, ps[last] * n_tests / rank.astype(np.float32).astype(np.float64))
    group_q = np.minimum.accumulate(fdr[::-1])[::-1]
    q = np.empty_like(p)
    q[order] = group_q[np.cumsum(np.r_[0, last[:-1]])]
    return np.split(q, np.cumsum([x.size for x in pvals_by_entry])[:-1])


def _text_bins(scanner, prep: PreparedMotifs, n_str: int):
    """Per motif strand, the integer scores that occur with their score, p-value and q-value."""
    offsets, thr, counts = scanner.histograms()
    valid = scanner.valid_windows()
    flat = [p for strands in prep.pssms for p in strands]
    scores, values = [], []
    for strands_of_motif in range(len(prep.pssms)):
        entries = range(strands_of_motif * n_str, (strands_of_motif + 1) * n_str)
        s_list, c_list, p_list = [], [], []
        for e in entries:
            c = counts[offsets[e]: offsets[e + 1]]
            k = np.flatnonzero(c)
            s = thr[e] + k
            s_list.append(s.astype(np.int32))
            c_list.append(c[k])
            p_list.append(flat[e].pv[s - flat[e].pv_start])
        w = flat[entries[0]].width
        n_tests = float(np.float32(int(valid[w]) * n_str))
        q_list = _motif_bins(c_list, p_list, n_tests)
        for e, s, p, q in zip(entries, s_list, p_list, q_list):
            pssm = flat[e]
            score = s.astype(np.float64) / pssm.scale + float(pssm.width) * pssm.offset
            scores.append(s)
            values.append((score, p, q))
    sizes = [s.size for s in scores]
    bin_off = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    cat = (lambda xs, dt: np.concatenate(xs).astype(dt) if xs else np.zeros(0, dt))
    return (bin_off, cat(scores, np.int32), cat([v[0] for v in values], np.float64),
            cat([v[1] for v in values], np.float64), cat([v[2] for v in values], np.float64))


def _hits_per_motif(scanner, n_motifs: int, n_str: int) -> np.ndarray:
    offsets, _, counts = scanner.histograms()
    per_entry = np.add.reduceat(counts, offsets[:-1]) if counts.size else np.zeros(len(offsets) - 1, np.int64)
    per_entry[np.diff(offsets) == 0] = 0  # reduceat of an empty slice gives the next element
    return per_entry.reshape(n_motifs, n_str).sum(1) if n_motifs else np.zeros(0, np.int64)


def _batches(hits_per_motif: np.ndarray, max_hits: int):
    """Consecutive motif ranges [a, b) of about ``max_hits`` hits each."""
    a, acc = 0, 0
    for m, n in enumerate(hits_per_motif.tolist()):
        acc += n
        if acc >= max_hits:
            yield a, m + 1
            a, acc = m + 1, 0
    if a < len(hits_per_motif):
        yield a, len(hits_per_motif)


class _OrderedWriter:
    """Writes byte strings on a background thread, in order, at most ``depth`` pending."""

    def __init__(self, fh, depth: int = 2):
        self.fh = fh
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="genesae-scan-writer")
        self.pending: collections.deque = collections.deque()
        self.depth = depth

    def write(self, data: bytes, coords=None) -> None:
        """Queue ``data``; ``coords`` (rec, start, end arrays) go to the sink's ``write_lines``."""
        if coords is None:
            self.pending.append(self.pool.submit(self.fh.write, data))
        else:
            self.pending.append(self.pool.submit(self.fh.write_lines, data, *coords))
        while len(self.pending) > self.depth:
            self.pending.popleft().result()

    def close(self) -> None:
        try:
            while self.pending:
                self.pending.popleft().result()
        finally:
            self.pool.shutdown()


def _write_text(scanner, n_motifs: int, n_str: int, fh, *, bed: bool, genome_order: bool, progress) -> None:
    """Pass 2: every hit as a line, motif by motif (FIMO's order) or in genome order."""
    writer = _OrderedWriter(fh)
    try:
        if not bed:
            writer.write(("\t".join(TSV_COLUMNS) + "\n").encode())
        if genome_order:
            for r in range(scanner.n_runs):
                n = scanner.sort_run(r)
                for lo in range(0, n, BATCH_HITS):
                    hi = min(n, lo + BATCH_HITS)
                    coords = scanner.sorted_coords(lo, hi) if hasattr(fh, "write_lines") else None
                    writer.write(scanner.format_sorted(lo, hi), coords)
                    progress.update(hi - lo)
        else:
            per_motif = _hits_per_motif(scanner, n_motifs, n_str)
            for a, b in _batches(per_motif, BATCH_HITS):
                writer.write(scanner.format_motifs(a, b, bed))
                progress.update(int(per_motif[a:b].sum()))
    finally:
        writer.close()


class _NoProgress:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(enabled: bool, desc: str, unit: str):
    if not enabled:
        return _NoProgress()
    from tqdm import tqdm

    return tqdm(desc=desc, unit=unit, unit_scale=True, file=sys.stderr, disable=None, leave=False)


def scan_genome_file(genome, motifs: Sequence[Motif], out, *, bed: bool = False, genome_order: bool = False,
                     pvalue: float = 1e-4, threads: int | None = None, background="nrdb",
                     motif_pseudo: float = 0.1, both_strands: bool = True, motif_file=None,
                     tmp_dir=None, block_bases: int = 1 << 20, run_bytes: int = 8 << 20,
                     piece_bytes: int = 1 << 20, progress: bool = False, _fault_unit: int = -1) -> dict:
    """Scan a FASTA file and write every hit to ``out`` in bounded memory.

    Parameters
    ----------
    genome : FASTA path (plain, gzip, BGZF)
    motifs : list of Motif
    out : binary file object (``write(bytes)``) that receives the text; in genome order, an
        object with ``write_lines(text, rec, start, end)`` gets each line's coordinates too
    bed : BED6+3 lines (as :func:`genesae_fast.scan.write_bed`) instead of FIMO's TSV
    genome_order : order lines by position (what an index needs) instead of FIMO's motif order
    pvalue, background, motif_pseudo, both_strands, motif_file : as for ``scan_motifs``
    threads : scanning threads (all cores when None; capped at the cores)
    tmp_dir : folder of the spill file (the system's temporary folder when None)
    block_bases, run_bytes, piece_bytes : sizes of a scanned block, an in-memory hit run and a
        decoded FASTA piece; they change memory and speed, never the output

    Returns
    -------
    dict with ``hits``, ``motifs``, ``records`` and ``bases`` counts, and the record ``names``.
    """
    from genesae_fast import _native

    n_threads = effective_threads(threads)
    sequences = iter_pieces(genome, piece_bytes) if background == "sequence" else None
    bg = resolve_background(background, sequences, motif_file, both_strands)
    prep = prepare_motifs(motifs, bg, pvalue, motif_pseudo, both_strands, n_threads)
    n_str = 2 if both_strands else 1
    with tempfile.TemporaryFile(dir=tmp_dir, prefix="genesae-scan-") as spill:
        scanner = _native.StreamScanner(prep.cells, prep.col_offsets, prep.thresholds, n_str, n_threads,
                                        spill.fileno(), block_bases=block_bases, run_bytes=run_bytes,
                                        _fault_unit=_fault_unit)
        bar = _progress(progress, "scanning", "bp")
        try:
            _feed(scanner, genome, piece_bytes, bar)
            scanner.finish()
        finally:
            bar.close()
        scanner.set_text([m.id.encode() for m in motifs], [str(m.alt_id).encode() for m in motifs],
                         *_text_bins(scanner, prep, n_str))
        n_hits = int(_hits_per_motif(scanner, len(motifs), n_str).sum())
        bar = _progress(progress, "writing", "hits")
        try:
            _write_text(scanner, len(motifs), n_str, out, bed=bed, genome_order=genome_order, progress=bar)
        finally:
            bar.close()
        return {"hits": n_hits, "motifs": len(motifs), "records": scanner.n_records, "bases": scanner.total_bases,
                "names": scanner.record_names()}

