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
import contextlib
import io
import os
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Sequence

import numpy as np

from genesae_fast.errors import InputError
from genesae_fast.fasta_stream import ReadAhead, iter_pieces
from genesae_fast.motifs import Motif
from genesae_fast.scan import TSV_COLUMNS, PreparedMotifs, effective_threads, prepare_motifs, resolve_background

#: Hits formatted per batch (about 70 bytes of text each).
BATCH_HITS = 1 << 16


#: Decoded FASTA bytes the reader may hold ahead of the scanner: it decodes the start of the
#: genome while the motifs are loaded and prepared, and keeps a block ready afterwards.
READ_AHEAD_BYTES = 8 << 20


def _feed(scanner, pieces, progress) -> None:
    """Hand the decoded pieces (a :class:`ReadAhead`) to ``scanner`` in order."""
    for piece in pieces:
        scanner.add(piece.codes, piece.first, piece.name)
        progress.update(int(piece.codes.size))


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


def _text_bins(scanner, prep: PreparedMotifs, n_str: int, first: int, last: int):
    """Motifs [first, last): per strand entry, the integer scores that occur with their
    reported score, p-value and q-value (the arguments of ``StreamScanner.set_text``)."""
    offsets, scores, counts = scanner.bins(first, last)
    valid = scanner.valid_windows()
    flat = [p for strands in prep.pssms[first:last] for p in strands]
    values = []
    for k in range(last - first):
        entries = range(k * n_str, (k + 1) * n_str)
        s_list = [scores[offsets[i]: offsets[i + 1]] for i in entries]
        p_list = [flat[i].pv[s - flat[i].pv_start] for i, s in zip(entries, s_list, strict=True)]
        n_tests = float(np.float32(int(valid[flat[k * n_str].width]) * n_str))
        q_list = _motif_bins([counts[offsets[i]: offsets[i + 1]] for i in entries], p_list, n_tests)
        for i, s, p, q in zip(entries, s_list, p_list, q_list, strict=True):
            # S / scale + w * offset: the same double operations as ScaledPSSM.raw_score
            values.append((s.astype(np.float64) / flat[i].scale + float(flat[i].width) * flat[i].offset, p, q))
    return offsets, scores, *(_cat_f64([v[j] for v in values]) for j in range(3))


def _cat_f64(parts: list) -> np.ndarray:
    return np.concatenate(parts).astype(np.float64) if parts else np.zeros(0)


def _batches(scanner, max_hits: int):
    """Pieces of pass 2 as (first motif, last motif, first run, last run), about ``max_hits``
    hits each: consecutive motifs together, a motif with more hits split by runs."""
    per_motif = scanner.motif_hits().tolist()
    n_runs = scanner.n_runs
    a = 0
    while a < len(per_motif):
        if per_motif[a] > max_hits and n_runs > 1:
            r0, acc = 0, 0
            for r, n in enumerate(scanner.run_hits(a, a + 1).tolist()):
                acc += n
                if acc >= max_hits or r == n_runs - 1:
                    yield a, a + 1, r0, r + 1, acc
                    r0, acc = r + 1, 0
            a += 1
            continue
        b, acc = a, 0
        while b < len(per_motif) and (b == a or acc + per_motif[b] <= max_hits):
            acc += per_motif[b]
            b += 1
        yield a, b, 0, n_runs, acc
        a = b


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
            self.pending.append(self.pool.submit(self._write, data))
        else:
            self.pending.append(self.pool.submit(self.fh.write_lines, data, *coords))
        while len(self.pending) > self.depth:
            self.pending.popleft().result()

    #: Bytes written between two writeback requests.
    WRITEBACK_BYTES = 32 << 20

    def _write(self, data: bytes) -> None:
        self.fh.write(data)
        self.unsynced = getattr(self, "unsynced", 0) + len(data)
        if self.unsynced >= self.WRITEBACK_BYTES:
            self.unsynced = 0
            _start_writeback(self.fh)

    def close(self) -> None:
        try:
            while self.pending:
                self.pending.popleft().result()
        finally:
            self.pool.shutdown()


def _start_writeback(fh) -> None:
    """Ask the kernel to start writing ``fh``'s dirty pages now (and drop them from the page
    cache once written), without waiting. Replacing an existing file makes ext4 write back the
    new one's data on the rename (auto_da_alloc): 0.1 s with the second core idle at the end of
    a 150 MB output, unless most of it is already on its way. Pipes and the like are skipped."""
    try:
        fh.flush()
        os.posix_fadvise(fh.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        pass


def _write_genome_order(scanner, prep: PreparedMotifs, n_str: int, writer: "_OrderedWriter", progress,
                        batch_hits: int) -> None:
    """Pass 2 for an index: BED lines run by run, each run sorted by position."""
    scanner.set_text(0, len(prep.pssms), *_text_bins(scanner, prep, n_str, 0, len(prep.pssms)))
    with_coords = hasattr(writer.fh, "write_lines")
    for r in range(scanner.n_runs):
        n = scanner.sort_run(r)
        for lo in range(0, n, batch_hits):
            hi = min(n, lo + batch_hits)
            writer.write(scanner.format_sorted(lo, hi), scanner.sorted_coords(lo, hi) if with_coords else None)
            progress.update(hi - lo)


def _write_motif_order(scanner, prep: PreparedMotifs, n_str: int, writer: "_OrderedWriter", progress, *,
                       bed: bool, batch_hits: int) -> None:
    """Pass 2 in FIMO's order: batches of motifs. The next batch's q-values (numpy, holding the
    GIL) are worked out on a helper thread while the native code formats this batch."""
    batches = list(_batches(scanner, batch_hits))
    ranges = list(dict.fromkeys((a, b) for a, b, *_ in batches))  # motif ranges, in order
    with ThreadPoolExecutor(1, thread_name_prefix="genesae-scan-qvalues") as helper:
        ahead = {}

        def start(i: int) -> None:
            if i < len(ranges):
                ahead[i] = helper.submit(_text_bins, scanner, prep, n_str, *ranges[i])

        start(0)
        current = -1
        for a, b, r0, r1, n in batches:
            if current < 0 or ranges[current] != (a, b):
                current += 1
                values = ahead.pop(current).result()
                start(current + 1)
                scanner.set_text(a, b, *values)
            writer.write(scanner.format_motifs(a, b, bed, r0, r1))
            progress.update(n)


def _write_text(scanner, prep: PreparedMotifs, n_str: int, fh, *, bed: bool, genome_order: bool, progress,
                batch_hits: int = BATCH_HITS) -> None:
    """Pass 2: every hit as a line, motif by motif (FIMO's order) or in genome order."""
    writer = _OrderedWriter(fh)
    try:
        if not bed:
            writer.write(("\t".join(TSV_COLUMNS) + "\n").encode())
        if genome_order:
            _write_genome_order(scanner, prep, n_str, writer, progress, batch_hits)
        else:
            _write_motif_order(scanner, prep, n_str, writer, progress, bed=bed, batch_hits=batch_hits)
    finally:
        writer.close()


class _NoProgress:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(enabled: bool, desc: str, unit: str):
    # tqdm hides itself off a terminal anyway; not importing it then saves start-up time
    if not enabled or not sys.stderr.isatty():
        return _NoProgress()
    from tqdm import tqdm

    return tqdm(desc=desc, unit=unit, unit_scale=True, file=sys.stderr, disable=None, leave=False)


@contextlib.contextmanager
def _spill_file(tmp_dir):
    """The anonymous temporary file hits wait in; its problems become one-line errors."""
    where = tmp_dir or tempfile.gettempdir()
    try:
        spill = tempfile.TemporaryFile(dir=tmp_dir, prefix="genesae-scan-")
    except OSError as exc:
        raise InputError(f"{where}: cannot create the temporary hit file ({exc.strerror}); "
                         "choose another folder with --tmp-dir") from None
    with spill:
        try:
            yield spill
        except RuntimeError as exc:
            if "spill file" not in str(exc):
                raise
            raise InputError(f"{where}: {exc}; choose a folder with more space with --tmp-dir") from None


def _scan_pieces(pieces, prep: PreparedMotifs, n_str: int, n_threads: int, spill, progress: bool, **sizes):
    """Pass 1: a StreamScanner fed every piece, finished."""
    from genesae_fast import _native

    scanner = _native.StreamScanner(prep.cells, prep.col_offsets, prep.thresholds, n_str, n_threads,
                                    spill.fileno(), **sizes)
    bar = _progress(progress, "scanning", "bp")
    try:
        _feed(scanner, pieces, bar)
        scanner.finish()
    finally:
        bar.close()
    return scanner


def scan_genome_file(genome, motifs: Sequence[Motif] | Callable[[], Sequence[Motif]], out, *, bed: bool = False,
                     genome_order: bool = False, pvalue: float = 1e-4, threads: int | None = None,
                     background="nrdb", motif_pseudo: float = 0.1, both_strands: bool = True, motif_file=None,
                     tmp_dir=None, block_bases: int = 1 << 20, run_bytes: int = 8 << 20,
                     piece_bytes: int = 1 << 20, batch_hits: int = BATCH_HITS, progress: bool = False,
                     _fault_unit: int = -1) -> dict:
    """Scan a FASTA file and write every hit to ``out`` in bounded memory.

    Parameters
    ----------
    genome : FASTA path (plain, gzip, BGZF)
    motifs : list of Motif, or a function that loads them (called while the genome's first
        pieces are being decoded on another thread)
    out : binary file object (``write(bytes)``) that receives the text; in genome order, an
        object with ``write_lines(text, rec, start, end)`` gets each line's coordinates too
    bed : BED6+3 lines (as :func:`genesae_fast.scan.write_bed`) instead of FIMO's TSV
    genome_order : order lines by position (what an index needs) instead of FIMO's motif order
    pvalue, background, motif_pseudo, both_strands, motif_file : as for ``scan_motifs``
    threads : scanning threads (all cores when None; capped at the cores)
    tmp_dir : folder of the spill file (the system's temporary folder when None)
    block_bases, run_bytes, piece_bytes, batch_hits : sizes of a scanned block, an in-memory hit
        run, a decoded FASTA piece and a formatted batch; they change memory and speed, never
        the output
    progress : show progress bars on stderr (when it is a terminal)

    Returns
    -------
    dict with ``hits``, ``motifs``, ``records`` and ``bases`` counts, and the record ``names``.
    """
    n_threads = effective_threads(threads)
    # --bg sequence needs a whole pass over the genome before anything else can start
    bg = resolve_background(background, iter_pieces(genome, piece_bytes), motif_file, both_strands) \
        if background == "sequence" else None
    with ReadAhead(genome, piece_bytes, depth=max(2, READ_AHEAD_BYTES // max(1, piece_bytes))) as pieces:
        if callable(motifs):
            motifs = motifs()
        if bg is None:
            bg = resolve_background(background, None, motif_file, both_strands)
        prep = prepare_motifs(motifs, bg, pvalue, motif_pseudo, both_strands, n_threads)
        n_str = 2 if both_strands else 1
        with _spill_file(tmp_dir) as spill:
            scanner = _scan_pieces(pieces, prep, n_str, n_threads, spill, progress, block_bases=block_bases,
                                   run_bytes=run_bytes, _fault_unit=_fault_unit)
            scanner.set_names([m.id.encode() for m in motifs], [str(m.alt_id).encode() for m in motifs])
            n_hits = int(scanner.motif_hits().sum())
            bar = _progress(progress, "writing", "hits")
            try:
                _write_text(scanner, prep, n_str, out, bed=bed, genome_order=genome_order, progress=bar,
                            batch_hits=batch_hits)
            finally:
                bar.close()
            return {"hits": n_hits, "motifs": len(motifs), "records": scanner.n_records,
                    "bases": scanner.total_bases, "names": scanner.record_names()}
