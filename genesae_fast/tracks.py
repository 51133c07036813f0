"""Genome-wide tracks written while streaming: sorted BGZF BED + tabix index, bigWig, bedGraph.

Every writer takes rows block by block, in genome order: chromosomes in the order given
at construction, start positions non-decreasing within a chromosome. A row out of order
is refused with an :class:`~genesae_fast.errors.InputError` naming the file, the
chromosome and the positions, so a streaming producer can never emit a file a genome
browser would misread. Nothing genome-wide is held in memory: the BED writer keeps one
64 KiB BGZF block and the index (a few bytes per 16 kbp window), the bigWig writer keeps
libBigWig's block buffer and zoom summaries.

Files are written to a hidden temporary name beside the destination and moved into place
by :meth:`close` (or the end of a ``with`` block); a writer left by an exception removes
its temporary files, so a half-written track never looks complete.

API
---
``SortedBedWriter(path, chroms, *, header=None, index="tbi", float_format="{:.4g}")``
    ``path`` usually ends in ``.bed.gz``; ``chroms`` is the chromosome order (names, or
    ``(name, length)`` pairs). ``write(chrom, starts, ends, *columns, sort=False)`` appends
    a block: ``chrom`` is one name, one integer index into ``chroms``, or an array of
    either (one per row); ``starts``/``ends`` are 0-based half-open int arrays ``[n]``;
    each extra column is an array ``[n]`` of str, int or float (floats formatted with
    ``float_format``). ``sort=True`` sorts the block's rows first (by chromosome order,
    then start, stably); the order against earlier blocks is always checked. ``close()``
    writes the BGZF end-of-file block and ``path + ".tbi"`` (tabix BED preset: column 1
    chromosome, 2 start, 3 end, 0-based). ``index=None`` writes no index.
``BigWigWriter(path, chroms, *, max_zooms=10)``
    ``chroms``: ``(name, length)`` pairs (bigWig needs the lengths). ``write(chrom,
    starts, ends, values)`` appends non-overlapping intervals in order (float values);
    ``close()`` lets libBigWig (``pyBigWig``) write the zoom levels and index.
``BedGraphWriter(path, chroms, *, name=None, description=None, float_format="{:.4g}")``
    The same ``write(chrom, starts, ends, values)`` as plain-text bedGraph with a
    ``track type=bedGraph`` line.
``bgzf_blocks(data, level=6)`` / ``BGZF_EOF``: the BGZF encoding, for other writers (from
:mod:`genesae_fast.bgzf`, whose ``BgzfWriter`` also writes the BED files and indexes here).

All writers are context managers; ``rows_written`` counts the rows so far.
"""
from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path

import numpy as np

# BGZF and the tabix index: the one writer, shared with ``genesae scan``
from genesae_fast.bgzf import BGZF_EOF, BGZF_MAX_INPUT, BgzfWriter, bgzf_blocks, reg2bin  # noqa: F401 - re-exported
from genesae_fast.errors import InputError
from genesae_fast.outputs import check_output_path, is_special_file

class _AtomicPaths:
    """Temporary names beside each destination, moved into place by ``commit``."""

    def __init__(self, *paths):
        self.final = [Path(p) for p in paths]
        self.through = [is_special_file(p) for p in self.final]
        self.tmp = [p if through else p.with_name(f".{p.name}.{uuid.uuid4().hex[:8]}.tmp")
                    for p, through in zip(self.final, self.through)]

    def commit(self):
        for p, t, through in zip(self.final, self.tmp, self.through):
            if not through:
                os.replace(t, p)

    def discard(self):
        for t, through in zip(self.tmp, self.through):
            if not through:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(t)


class _OrderCheck:
    """Chromosome order and per-row order checks shared by the writers."""

    def __init__(self, path, chroms, need_lengths: bool):
        self.path = str(path)
        names, lengths = [], []
        for c in chroms:
            if isinstance(c, str):
                if need_lengths:
                    raise InputError(f"{path}: chromosome {c!r} needs a length (give (name, length) pairs)")
                names.append(c)
                lengths.append(None)
            else:
                names.append(str(c[0]))
                lengths.append(int(c[1]))
        if len(set(names)) != len(names):
            raise InputError(f"{path}: chromosome names repeat")
        self.names, self.lengths = names, lengths
        self.index = {n: i for i, n in enumerate(names)}
        self.cur = -1           # chromosome index of the last row
        self.last_start = -1
        self.last_end = -1
        self.rows = 0

    def codes(self, chrom, n: int) -> np.ndarray:
        """Chromosome indices ``[n]`` from one name/index or an array of names/indices."""
        if isinstance(chrom, (str, int, np.integer)):
            chrom = [chrom] * n
        arr = np.asarray(chrom)
        if arr.shape != (n,):
            raise InputError(f"{self.path}: {arr.shape[0] if arr.ndim else 1} chromosomes for {n} rows")
        if arr.dtype.kind in "iu":
            bad = (arr < 0) | (arr >= len(self.names))
            if bad.any():
                raise InputError(f"{self.path}: chromosome index {int(arr[bad][0])} out of range 0..{len(self.names) - 1}")
            return arr.astype(np.int64)
        try:
            return np.fromiter((self.index[str(c)] for c in arr), dtype=np.int64, count=n)
        except KeyError as exc:
            raise InputError(f"{self.path}: chromosome {exc.args[0]!r} not among the {len(self.names)} given") from None

    def check(self, codes, starts, ends, *, disjoint: bool) -> None:
        """Refuse rows out of order against each other and against the rows before."""
        n = len(codes)
        if n == 0:
            return
        if (starts < 0).any() or (ends < starts).any():
            i = int(np.flatnonzero((starts < 0) | (ends < starts))[0])
            raise InputError(f"{self.path}: bad interval {self.names[codes[i]]}:{starts[i]}-{ends[i]}")
        lens = np.asarray([(x if x is not None else np.iinfo(np.int64).max) for x in self.lengths], dtype=np.int64)
        over = ends > lens[codes]
        if over.any():
            i = int(np.flatnonzero(over)[0])
            raise InputError(f"{self.path}: interval {self.names[codes[i]]}:{starts[i]}-{ends[i]} ends past the "
                             f"chromosome's length {lens[codes[i]]}")
        prev_c = np.concatenate([[self.cur], codes[:-1]])
        prev_s = np.concatenate([[self.last_start], starts[:-1]])
        prev_e = np.concatenate([[self.last_end], ends[:-1]])
        same = codes == prev_c
        bad = (codes < prev_c) | (same & (starts < (prev_e if disjoint else prev_s)))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            what = "overlaps" if disjoint and same[i] and starts[i] >= prev_s[i] else "comes after"
            raise InputError(
                f"{self.path}: rows out of order: {self.names[codes[i]]}:{starts[i]}-{ends[i]} {what} "
                f"{self.names[prev_c[i]] if prev_c[i] >= 0 else '(start)'}:{prev_s[i]}-{prev_e[i]} "
                f"(chromosomes in the given order, starts ascending{', intervals disjoint' if disjoint else ''})")
        self.cur, self.last_start, self.last_end = int(codes[-1]), int(starts[-1]), int(ends[-1])
        self.rows += n


def _as_intervals(path, starts, ends):
    s = np.asarray(starts, dtype=np.int64).reshape(-1)
    e = np.asarray(ends, dtype=np.int64).reshape(-1)
    if s.shape != e.shape:
        raise InputError(f"{path}: {len(s)} starts but {len(e)} ends")
    return s, e


def _format_column(col, n: int, fmt: str, path) -> list[str]:
    arr = np.asarray(col)
    if arr.shape != (n,):
        raise InputError(f"{path}: a column of {arr.size} values for {n} rows")
    if arr.dtype.kind == "f":
        return [fmt.format(x) for x in arr.tolist()]
    out = [str(x) for x in arr.tolist()]
    if any(("\t" in x or "\n" in x) for x in out):
        raise InputError(f"{path}: a column value contains a tab or a newline")
    return out


class _TrackWriter:
    """Shared context-manager and commit logic."""

    _paths: _AtomicPaths

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.abort()
        return False

    @property
    def rows_written(self) -> int:
        return self._order.rows

    def abort(self) -> None:
        """Stop without leaving anything at the destination (temporary files removed)."""
        self._release()
        self._paths.discard()

    def _release(self) -> None:  # pragma: no cover - overridden
        pass


class SortedBedWriter(_TrackWriter):
    """A sorted BED file, BGZF-compressed, with a tabix index; rows appended block by block.

    Parameters
    ----------
    path : destination (``.bed.gz``); the index goes to ``path + ".tbi"``
    chroms : chromosome order: names, or ``(name, length)`` pairs (lengths are then checked)
    header : optional lines written first, each prefixed with ``#`` when it lacks one
    index : ``"tbi"`` or None
    float_format : format of float columns
    level : zlib level of the BGZF blocks
    """

    def __init__(self, path, chroms, *, header=None, index: str | None = "tbi", float_format: str = "{:.4g}",
                 level: int = 6):
        if index not in ("tbi", None):
            raise InputError(f"{path}: index {index!r}: expected 'tbi' or None")
        path = check_output_path(path)
        self._order = _OrderCheck(path, chroms, need_lengths=False)
        want_index = index is not None and not is_special_file(path)
        self._paths = _AtomicPaths(path, Path(str(path) + ".tbi")) if want_index else _AtomicPaths(path)
        self._fmt = float_format
        self._fh = open(self._paths.tmp[0], "wb")
        self._bgzf = BgzfWriter(self._fh, index=want_index, level=level)
        self._closed = False
        lines = [(line if line.startswith("#") else "#" + line).rstrip("\n") + "\n" for line in header or []]
        if lines:
            self._bgzf.write("".join(lines).encode())

    def write(self, chrom, starts, ends, *columns, sort: bool = False) -> None:
        """Append rows ``[n]``; see the module docstring for the argument forms."""
        if self._closed:
            raise InputError(f"{self._paths.final[0]}: writer already closed")
        s, e = _as_intervals(self._paths.final[0], starts, ends)
        n = len(s)
        codes = self._order.codes(chrom, n)
        cols = [_format_column(c, n, self._fmt, self._paths.final[0]) for c in columns]
        if sort and n:
            order = np.lexsort((s, codes))
            codes, s, e = codes[order], s[order], e[order]
            cols = [[c[i] for i in order.tolist()] for c in cols]
        self._order.check(codes, s, e, disjoint=False)
        if not n:
            return
        names = self._order.names
        text = "".join("\t".join([names[c], str(a), str(b)] + [col[i] for col in cols]) + "\n"
                       for i, (c, a, b) in enumerate(zip(codes.tolist(), s.tolist(), e.tolist())))
        self._bgzf.write_lines(text.encode(), codes, s, e)

    def close(self) -> None:
        """Write the end-of-file block and the index, and move both into place."""
        if self._closed:
            return
        try:
            index = self._bgzf.close(self._order.names)
            self._fh.close()
            if index is not None:
                with open(self._paths.tmp[1], "wb") as fh:
                    fh.write(index)
        except BaseException:
            self.abort()
            raise
        self._closed = True
        self._paths.commit()

    def _release(self) -> None:
        self._closed = True
        self._bgzf.pool.shutdown()
        with contextlib.suppress(Exception):
            self._fh.close()


class BigWigWriter(_TrackWriter):
    """A bigWig track (through ``pyBigWig``), intervals appended block by block.

    Parameters
    ----------
    path : destination (``.bw``)
    chroms : ``(name, length)`` pairs in genome order
    max_zooms : zoom levels libBigWig computes at close
    """

    def __init__(self, path, chroms, *, max_zooms: int = 10):
        try:
            import pyBigWig
        except ImportError:  # pragma: no cover - a declared dependency
            raise InputError(f"{path}: bigWig output needs the pyBigWig package (pip install pyBigWig)") from None
        path = check_output_path(path)
        if is_special_file(path):
            raise InputError(f"{path}: a bigWig file must be a regular file (it is written with seeks)")
        self._order = _OrderCheck(path, chroms, need_lengths=True)
        self._paths = _AtomicPaths(path)
        self._bw = pyBigWig.open(str(self._paths.tmp[0]), "w")
        if self._bw is None:
            raise InputError(f"{path}: cannot be opened for writing")
        self._bw.addHeader(list(zip(self._order.names, self._order.lengths)), maxZooms=int(max_zooms))
        self._closed = False

    def write(self, chrom, starts, ends, values) -> None:
        """Append intervals ``[n]`` (disjoint, in order) with float values ``[n]``."""
        if self._closed:
            raise InputError(f"{self._paths.final[0]}: writer already closed")
        s, e = _as_intervals(self._paths.final[0], starts, ends)
        v = np.asarray(values, dtype=np.float64).reshape(-1)
        if v.shape != s.shape:
            raise InputError(f"{self._paths.final[0]}: {len(v)} values for {len(s)} intervals")
        codes = self._order.codes(chrom, len(s))
        keep = e > s                           # bigWig has no empty intervals
        codes, s, e, v = codes[keep], s[keep], e[keep], v[keep]
        self._order.check(codes, s, e, disjoint=True)
        if not len(s):
            return
        if not np.isfinite(v).all():
            raise InputError(f"{self._paths.final[0]}: values must be finite")
        cuts = np.flatnonzero(np.diff(codes)) + 1
        for a, b in zip(np.concatenate([[0], cuts]), np.concatenate([cuts, [len(s)]])):
            name = self._order.names[int(codes[a])]
            self._bw.addEntries([name] * int(b - a), s[a:b].tolist(), ends=e[a:b].tolist(), values=v[a:b].tolist())

    def close(self) -> None:
        """Write zoom levels and the index, and move the file into place."""
        if self._closed:
            return
        self._closed = True
        try:
            self._bw.close()
        except BaseException:
            self._paths.discard()
            raise
        self._paths.commit()

    def _release(self) -> None:
        if not self._closed:
            self._closed = True
            with contextlib.suppress(Exception):
                self._bw.close()


class BedGraphWriter(_TrackWriter):
    """A plain-text bedGraph track, intervals appended block by block.

    Parameters
    ----------
    path : destination (``.bedGraph``)
    chroms : chromosome order (names or ``(name, length)`` pairs)
    name, description : the ``track`` line's fields
    float_format : format of the values
    """

    def __init__(self, path, chroms, *, name=None, description=None, float_format: str = "{:.4g}"):
        path = check_output_path(path)
        self._order = _OrderCheck(path, chroms, need_lengths=False)
        self._paths = _AtomicPaths(path)
        self._fmt = float_format
        self._fh = open(self._paths.tmp[0], "w")
        track = "track type=bedGraph"
        if name is not None:
            track += f' name="{name}"'
        if description is not None:
            track += f' description="{description}"'
        self._fh.write(track + "\n")
        self._closed = False

    def write(self, chrom, starts, ends, values) -> None:
        """Append intervals ``[n]`` (disjoint, in order) with values ``[n]``."""
        if self._closed:
            raise InputError(f"{self._paths.final[0]}: writer already closed")
        s, e = _as_intervals(self._paths.final[0], starts, ends)
        vals = _format_column(np.asarray(values, dtype=np.float64).reshape(-1), len(s), self._fmt, self._paths.final[0])
        codes = self._order.codes(chrom, len(s))
        self._order.check(codes, s, e, disjoint=True)
        names = self._order.names
        self._fh.writelines(f"{names[c]}\t{a}\t{b}\t{x}\n"
                            for c, a, b, x in zip(codes.tolist(), s.tolist(), e.tolist(), vals))

    def close(self) -> None:
        """Move the file into place."""
        if self._closed:
            return
        self._closed = True
        self._fh.close()
        self._paths.commit()

    def _release(self) -> None:
        self._closed = True
        with contextlib.suppress(Exception):
            self._fh.close()


__all__ = ["SortedBedWriter", "BigWigWriter", "BedGraphWriter", "bgzf_blocks", "BGZF_EOF", "reg2bin"]
