"""Gene-structure concepts from a GFF3 file or from genes predicted by pyrodigal.

Concepts, each on each strand: CDS, start codon, stop codon, ribosome binding site (RBS),
codon positions 1/2/3; plus intergenic (no strand). Every concept is a set of hits in global
coordinates (records concatenated in file order), ready for :mod:`.concepts`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from genesae_fast.annotate.concepts import Hits
from genesae_fast.errors import InputError

# Shine-Dalgarno core; an RBS is the longest piece of it found upstream of the start.
_SD = "AGGAGG"
# longest first, then alphabetical: a fixed order (set order changes between processes)
_SD_WORDS = sorted({_SD[i:j] for i in range(len(_SD)) for j in range(i + 3, len(_SD) + 1)}, key=lambda w: (-len(w), w))
_UPSTREAM = 20
_COMP = str.maketrans("ACGTN", "TGCAN")


@dataclass
class GeneCall:
    """One gene: 0-based half-open on the + strand of record ``seq``.

    ``has_start`` / ``has_stop``: False for genes running off a record's edge.
    ``rbs``: (start, end) of the RBS in record coordinates, or None.
    """

    seq: int
    start: int
    end: int
    strand: int
    has_start: bool = True
    has_stop: bool = True
    rbs: tuple[int, int] | None = None


def _upstream(sequence: str, g: GeneCall) -> tuple[str, int]:
    """The ``_UPSTREAM`` bases before the start codon, 5'->3' on the gene's strand, and
    the record coordinate of the base adjacent to the start (for mapping back)."""
    if g.strand > 0:
        lo = max(0, g.start - _UPSTREAM)
        return sequence[lo:g.start], lo
    hi = min(len(sequence), g.end + _UPSTREAM)
    return sequence[g.end:hi].translate(_COMP)[::-1], hi


def find_rbs(sequence: str, g: GeneCall, spacer: tuple[int, int] = (5, 10)) -> tuple[int, int] | None:
    """Locate a Shine-Dalgarno site (>= 3 bases of AGGAGG) upstream of a gene.

    The longest word wins; among equals, one whose spacer (bases between it and the start
    codon) lies in ``spacer``, then the one nearest to a spacer of 7.
    """
    up, anchor = _upstream(sequence, g)
    best = None
    for word in _SD_WORDS:
        if best is not None and best[0][0] > len(word):
            break  # every word of the best length has been tried; shorter ones cannot win
        for m in re.finditer(f"(?={word})", up):
            gap = len(up) - (m.start() + len(word))
            # ties: the position nearest the start codon (larger start), whatever the word order
            key = (len(word), spacer[0] <= gap <= spacer[1], -abs(gap - 7), m.start())
            if best is None or key > best[0]:
                best = (key, m.start(), len(word))
    if best is None:
        return None
    _, off, w = best
    if g.strand > 0:
        return anchor + off, anchor + off + w
    return anchor - off - w, anchor - off


def _spacer_range(text: str | None) -> tuple[int, int]:
    m = re.match(r"(\d+)-(\d+)bp", text or "")
    return (int(m.group(1)), int(m.group(2))) if m else (5, 10)


def predict_genes(records, closed: bool = False) -> list[GeneCall]:
    """Genes of ``records`` (genesae_fast Records) predicted by pyrodigal.

    Single-genome mode when the records hold at least 100 kbp (below that pyrodigal warns
    that training is unreliable), metagenomic mode otherwise.
    """
    import pyrodigal

    seqs = [r.sequence for r in records]
    total = sum(len(s) for s in seqs)
    if total >= 100_000:
        finder = pyrodigal.GeneFinder(closed=closed)
        finder.train(*[s for s in seqs if s])
    else:
        finder = pyrodigal.GeneFinder(meta=True, closed=closed)
    calls = []
    for i, s in enumerate(seqs):
        if len(s) < 100:
            continue
        for gene in finder.find_genes(s):
            strand = int(gene.strand)
            g = GeneCall(i, gene.begin - 1, gene.end, strand)
            five_partial, three_partial = (gene.partial_begin, gene.partial_end) if strand > 0 else (gene.partial_end, gene.partial_begin)
            g.has_start, g.has_stop = not five_partial, not three_partial
            if g.has_start and gene.rbs_motif is not None:
                g.rbs = find_rbs(s, g, _spacer_range(gene.rbs_spacer))
            calls.append(g)
    return calls


_GFF_FEATURES = ("CDS", "RBS", "ribosome_entry_site", "Shine_Dalgarno_sequence")
_GFF_STRANDS = {"+": 1, "-": -1}
_GFF_INT = re.compile(r"[0-9]+")


def _gff_lines(path) -> list[str]:
    """The lines of a GFF3 file, strictly UTF-8 (one-line InputError otherwise)."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read GFF3 ({exc.strerror or exc})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise InputError(f"{path}: line {line}: not UTF-8 text (byte {exc.start}); is it a GFF3 file?") from None
    # Only \n, \r\n and \r end a line (str.splitlines would also split at \x85, \u2028, ...)
    return re.split(r"\r\n|\r|\n", text)


def _gff_feature(path, n: int, cols: list[str], names: dict, records) -> tuple[int, int, int, int]:
    """(record index, start, end, strand) of one CDS/RBS line: 0-based half-open, +1/-1.

    Coordinates must be plain decimal integers (``int()`` would read ``1_0`` as 10) and
    the strand + or -: an unstranded (.) or unknown (?) strand cannot place a CDS or RBS.
    """
    seqid, start, end, strand = cols[0], cols[3], cols[4], cols[6]
    if seqid not in names:
        raise InputError(f"{path}: line {n}: sequence {seqid!r} is not in the genome")
    if not (_GFF_INT.fullmatch(start) and _GFF_INT.fullmatch(end)):
        raise InputError(f"{path}: line {n}: start/end {start!r}/{end!r} are not integers")
    s0, e0 = int(start) - 1, int(end)
    if s0 < 0 or e0 <= s0 or e0 > len(records[names[seqid]]):
        raise InputError(f"{path}: line {n}: interval {start}-{end} is outside sequence {seqid}")
    if strand in (".", "?"):
        raise InputError(f"{path}: line {n}: {cols[2]} with strand {strand!r} "
                         f"({'unstranded' if strand == '.' else 'unknown'}); expected + or -")
    if strand not in _GFF_STRANDS:
        raise InputError(f"{path}: line {n}: strand {strand!r} is not +, -, . or ?")
    return names[seqid], s0, e0, _GFF_STRANDS[strand]


def _gff_records(path, records) -> tuple[dict, list]:
    """CDS parts grouped by (seqid, strand, ID) and the RBS features of a GFF3 file."""
    names = {r.name: i for i, r in enumerate(records)}
    cds: dict[tuple, list] = {}
    rbs: list[tuple[int, int, int, int]] = []
    for n, line in enumerate(_gff_lines(path), 1):
        if line.startswith("##FASTA"):
            break
        if not line.strip() or line.startswith("#"):
            continue
        cols = line.split("\t")
        if len(cols) != 9:
            raise InputError(f"{path}: line {n}: expected 9 tab-separated columns, got {len(cols)}")
        if cols[2] not in _GFF_FEATURES:
            continue
        feature = _gff_feature(path, n, cols, names, records)
        if cols[2] == "CDS":
            ident = re.search(r"(?:^|;)ID=([^;]+)", cols[8])
            # Parts of one multi-line CDS share seqid, strand and ID; the same ID on another
            # seqid or strand (trans-splicing, or a clash) is a separate gene, never merged.
            key = (feature[0], feature[3], ident.group(1) if ident else n)
            cds.setdefault(key, []).append(feature)
        else:
            rbs.append(feature)
    return cds, rbs


def read_gff3(path: str | Path, records) -> list[GeneCall]:
    """CDS features of a GFF3 file (lines of one ID, seqid and strand are merged) and
    any RBS features.

    Raises InputError naming the file and line for malformed lines (not UTF-8, not 9
    columns, coordinates that are not plain integers or outside the sequence, a strand
    other than + or -) or unknown sequences.
    """
    cds, rbs = _gff_records(path, records)
    calls = []
    for parts in cds.values():
        seq, sgn = parts[0][0], parts[0][3]
        calls.append(GeneCall(seq, min(p[1] for p in parts), max(p[2] for p in parts), sgn))
    calls.sort(key=lambda g: (g.seq, g.start))
    if rbs:
        _attach_rbs(calls, rbs)
    else:
        seqs = {}
        for g in calls:
            s = seqs.setdefault(g.seq, records[g.seq].sequence)
            g.rbs = find_rbs(s, g)
    return calls


def _attach_rbs(calls: list[GeneCall], rbs) -> None:
    """Attach each RBS feature to the nearest gene downstream of it on its strand (<= 30 bp)."""
    for seq, s0, e0, sgn in rbs:
        best = None
        for g in calls:
            if g.seq != seq or g.strand != sgn:
                continue
            gap = g.start - e0 if sgn > 0 else s0 - g.end
            if 0 <= gap <= 30 and (best is None or gap < best[0]):
                best = (gap, g)
        if best is not None:
            best[1].rbs = (s0, e0)


def gene_concepts(calls: list[GeneCall], offsets: np.ndarray, lengths: np.ndarray) -> dict[str, Hits]:
    """Concept hits from gene calls.

    Parameters
    ----------
    calls : gene calls
    offsets : (R,) int64 -- global coordinate of each record's first base
    lengths : (R,) int64 -- record lengths

    Returns
    -------
    dict name -> Hits, names like ``"CDS(+)"``, ``"start codon(-)"``, ``"codon pos 2(+)"``,
    ``"intergenic"``; concepts with no hits are left out.
    """
    acc: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}

    def add(name, s, e):
        acc.setdefault(name, []).append((np.atleast_1d(np.asarray(s, np.int64)), np.atleast_1d(np.asarray(e, np.int64))))

    covered = [np.zeros(int(n) + 1, np.int64) for n in lengths]
    for g in calls:
        off = int(offsets[g.seq])
        sg = "+" if g.strand > 0 else "-"
        s, e = g.start + off, g.end + off
        add(f"CDS({sg})", s, e)
        covered[g.seq][g.start] += 1
        covered[g.seq][g.end] -= 1
        if g.has_start:
            add(f"start codon({sg})", *((s, s + 3) if g.strand > 0 else (e - 3, e)))
        if g.has_stop:
            add(f"stop codon({sg})", *((e - 3, e) if g.strand > 0 else (s, s + 3)))
        if g.rbs is not None:
            add(f"RBS({sg})", g.rbs[0] + off, g.rbs[1] + off)
        pos = np.arange(s, e, dtype=np.int64)
        # codon phase counted from the 3' end, which is in frame even for 5'-partial genes
        cp = 3 - ((e - 1 - pos) % 3) if g.strand > 0 else 3 - ((pos - s) % 3)
        for c in (1, 2, 3):
            p = pos[cp == c]
            add(f"codon pos {c}({sg})", p, p + 1)
    for r, cov in enumerate(covered):
        inside = np.cumsum(cov)[:-1] > 0
        edges = np.flatnonzero(np.diff(np.concatenate([[1], inside.astype(np.int8), [1]])))
        starts, ends = edges[0::2], edges[1::2]
        if starts.size:
            add("intergenic", starts + offsets[r], ends + offsets[r])
    order = ["CDS", "start codon", "stop codon", "RBS", "codon pos 1", "codon pos 2", "codon pos 3"]
    names = [f"{o}({sg})" for o in order for sg in "+-"] + ["intergenic"]
    out = {}
    for name in names:
        if name in acc:
            s = np.concatenate([a for a, _ in acc[name]])
            e = np.concatenate([b for _, b in acc[name]])
            out[name] = Hits(s, e)
    return out
