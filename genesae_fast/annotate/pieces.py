"""Genome-wide text outputs written while streaming: one piece per block, joined in genome order.

Workers write each block's rows (motif hits, track intervals) to ``pieces/<kind>/<block>``
(atomically, so a resumed run can trust any piece it finds); :func:`join_pieces` streams
the pieces of every block, in block order, into the final file. Nothing genome-wide is
held in memory. :func:`join_pieces` is the one place where a compressed/indexed writer
(BGZF + tabix, bigWig: ``genesae_fast.tracks``) plugs in.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from genesae_fast.outputs import open_output


def piece_path(folder, b: int) -> Path:
    return Path(folder) / f"{b:08d}.txt"


def write_piece(folder, b: int, lines: list[str]) -> None:
    """Write block ``b``'s lines (atomically)."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    with open_output(piece_path(folder, b), "w") as fh:
        fh.writelines(lines)


def join_pieces(folder, n_blocks: int, dest, header: str | None = None) -> int:
    """Concatenate the pieces of blocks ``0..n_blocks-1`` (missing ones are empty) into ``dest``.

    Returns the number of pieces found.
    """
    found = 0
    with open_output(dest, "w") as out:
        if header:
            out.write(header)
        for b in range(n_blocks):
            p = piece_path(folder, b)
            if p.is_file():
                found += 1
                with open(p) as fh:
                    shutil.copyfileobj(fh, out)
    return found


def bed_lines(hits: dict, motifs, genome, g0: int, g1: int) -> list[str]:
    """BED6 lines (name = motif id_alt id, score = -10 log10 p) of the hits starting in ``[g0, g1)``,
    sorted by record, start, end, motif and strand."""
    s = hits["start"]
    keep = np.flatnonzero((s >= g0) & (s < g1))
    if keep.size == 0:
        return []
    seq, start, end = hits["seq"][keep], s[keep], hits["end"][keep]
    motif, strand = hits["motif"][keep], np.asarray(hits["strand"])[keep]
    order = np.lexsort((-strand, motif, end, start, seq))
    labels = [m.id + (f"_{m.alt_id}" if m.alt_id else "") for m in motifs]
    pv = np.maximum(np.asarray(hits["pvalue"], np.float64)[keep], 1e-100)
    score = np.clip(np.round(-10 * np.log10(pv)), 0, 1000).astype(np.int64)
    off = genome.offsets[seq]
    return [f"{genome.names[seq[i]]}\t{start[i] - off[i]}\t{end[i] - off[i]}\t{labels[motif[i]]}\t{score[i]}\t"
            f"{'+' if strand[i] > 0 else '-'}\n" for i in order]


def bedgraph_lines(w, own: np.ndarray, f: int, genome) -> list[str]:
    """bedGraph lines of feature ``f`` on the window's own tokens, in token order."""
    a = w.acts
    tok = np.repeat(np.arange(a.n_tokens), np.diff(a.ptr))
    e = np.flatnonzero((a.feat == f) & own[tok])
    t = tok[e]
    s, ln = w.tok_start[t], w.tok_end[t] - w.tok_start[t]
    seq = np.searchsorted(genome.offsets, s, side="right") - 1
    bp = s - genome.offsets[seq]
    return [f"{genome.names[r]}\t{p}\t{p + n}\t{v:.4g}\n" for r, p, n, v in
            zip(seq.tolist(), bp.tolist(), ln.tolist(), a.val[e].tolist())]
