"""BGZF compression and a tabix index for text written in large chunks: the one BGZF writer,
used by ``genesae scan`` (millions of hit lines) and the sorted BED tracks
(:class:`genesae_fast.tracks.SortedBedWriter`).

Lines arrive as one ``bytes`` chunk with numpy arrays of their reference, start and end, and
everything per line (block packing, virtual offsets, bins, linear index) is computed with
numpy; only runs of lines in one tabix bin are visited in Python. Blocks are compressed on a
thread pool (zlib releases the GIL).

Formats (SAM specification, sections 4.1-4.2, and the tabix specification): BGZF blocks hold
at most 0xff00 input bytes; a line that fits in a block never spans two. The index uses the
BED preset (0-based starts, columns 1/2/3, '#' comment lines), 16 kbp linear windows and
tabix's binning.
"""
from __future__ import annotations

import struct
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np

BGZF_MAX_INPUT = 0xFF00
BGZF_EOF = bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000")
_HEADER = struct.Struct("<4BI2BH2BHH")
_MIN_SHIFT, _DEPTH = 14, 5
_LEVEL_FIRST = [4681, 585, 73, 9, 1]  # first bin of each level, 16 kbp leaves first
_PSEUDO_BIN = 37450
_TBX_UCSC = 0x10000


def bgzf_block(raw: bytes, level: int = 6) -> bytes:
    """One BGZF member holding ``raw`` (at most 0xff00 bytes)."""
    comp = zlib.compressobj(level, zlib.DEFLATED, -15)
    data = comp.compress(raw) + comp.flush()
    size = _HEADER.size + len(data) + 8
    head = _HEADER.pack(0x1F, 0x8B, 8, 4, 0, 0, 0xFF, 6, ord("B"), ord("C"), 2, size - 1)
    return head + data + struct.pack("<II", zlib.crc32(raw) & 0xFFFFFFFF, len(raw))


def bgzf_blocks(data: bytes, level: int = 6) -> bytes:
    """``data`` as BGZF blocks (no end-of-file marker; append :data:`BGZF_EOF` at the end)."""
    return b"".join(bgzf_block(data[i:i + BGZF_MAX_INPUT], level) for i in range(0, len(data), BGZF_MAX_INPUT))


def reg2bin(beg, end):
    """tabix bins of 0-based half-open intervals (``end > beg``): int arrays [n], or one int."""
    if np.isscalar(beg) and np.isscalar(end):
        return int(reg2bin(np.array([int(beg)], np.int64), np.array([int(end)], np.int64))[0])
    last = end - 1
    out = np.zeros(beg.shape, np.int64)
    done = np.zeros(beg.shape, bool)
    for lev in range(_DEPTH):
        shift = _MIN_SHIFT + 3 * lev
        here = ~done & ((beg >> shift) == (last >> shift))
        out[here] = _LEVEL_FIRST[lev] + (beg[here] >> shift)
        done |= here
    return out


def _cuts(data: bytes, line_ends: np.ndarray, final: bool) -> list[int]:
    """Block boundaries in ``data``: as many whole lines as fit, a too-long line split."""
    cuts, start, n = [], 0, len(data)
    while n - start >= BGZF_MAX_INPUT or (final and start < n):
        k = int(np.searchsorted(line_ends, start + BGZF_MAX_INPUT, side="right")) - 1
        end = int(line_ends[k]) if k >= 0 and line_ends[k] > start else min(n, start + BGZF_MAX_INPUT)
        cuts.append(end)
        start = end
    return cuts


class _RefIndex:
    """Bins (as chunks of virtual offsets) and the linear index of one reference."""

    def __init__(self):
        self.bins: dict[int, list[list[int]]] = {}
        self.linear = np.zeros(0, np.uint64)
        self.first = self.last = None
        self.n = 0
        self.run = None  # [bin, voff_beg, voff_end] of the open run of lines in one bin

    def add(self, bins, beg, last, v0, v1) -> None:
        if self.first is None:
            self.first = int(v0[0])
        self.last, self.n = int(v1[-1]), self.n + len(bins)
        w0, w1 = beg >> _MIN_SHIFT, last >> _MIN_SHIFT
        if self.linear.size <= int(w1.max()):
            grown = np.full(int(w1.max()) + 1, np.iinfo(np.uint64).max, np.uint64)
            grown[: self.linear.size] = self.linear
            self.linear = grown
        for d in range(int((w1 - w0).max()) + 1):  # windows each line touches (1 or 2 here)
            sel = w0 + d <= w1
            np.minimum.at(self.linear, w0[sel] + d, v0[sel])
        starts = np.flatnonzero(np.r_[True, bins[1:] != bins[:-1]])
        ends = np.r_[starts[1:], len(bins)] - 1
        for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
            if self.run is not None and self.run[0] == int(bins[s]):
                self.run[2] = int(v1[e])
                continue
            self._close_run()
            self.run = [int(bins[s]), int(v0[s]), int(v1[e])]

    def _close_run(self) -> None:
        if self.run is None:
            return
        b, u, v = self.run
        chunks = self.bins.setdefault(b, [])
        if chunks and chunks[-1][1] >> 16 >= u >> 16:  # touching chunks merge, as htslib does
            chunks[-1][1] = v
        else:
            chunks.append([u, v])
        self.run = None

    def encode(self) -> bytes:
        self._close_run()
        out = [struct.pack("<i", len(self.bins) + 1)]
        for b in sorted(self.bins):
            out.append(struct.pack("<Ii", b, len(self.bins[b])))
            out.extend(struct.pack("<QQ", u, v) for u, v in self.bins[b])
        out.append(struct.pack("<IiQQQQ", _PSEUDO_BIN, 2, self.first, self.last, self.n, 0))
        lin = self.linear.copy()
        unset = lin == np.iinfo(np.uint64).max
        # an empty window takes the offset of the window before it (0 before the first)
        idx = np.maximum.accumulate(np.where(unset, 0, np.arange(lin.size)))
        lin = np.where(unset[idx], np.uint64(0), lin[idx])
        out.append(struct.pack("<i", lin.size) + lin.astype("<u8").tobytes())
        return b"".join(out)


class BgzfWriter:
    """BGZF text written to ``fh`` chunk by chunk, with an optional tabix (BED) index.

    Parameters
    ----------
    fh : binary file object
    index : build the tabix index (:meth:`close` returns it as bytes)
    threads : compression threads
    """

    def __init__(self, fh, *, index: bool = False, threads: int = 1, level: int = 6):
        self.fh, self.index, self.level = fh, index, level
        self.pool = ThreadPoolExecutor(max(1, threads), thread_name_prefix="genesae-bgzf")
        self.buf = b""
        self.coff = 0  # compressed bytes written: the next block's file offset
        self.refs: dict[int, _RefIndex] = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.pool.shutdown()  # after close(), or when the scan failed: stop the compression threads

    def write(self, text: bytes) -> None:
        """Append whole lines that the index does not cover (headers, comments)."""
        self.write_lines(text, None, None, None)

    def write_lines(self, text: bytes, rec, beg, end) -> None:
        """Append whole lines; with an index, ``rec``/``beg``/``end`` [n] give each line's
        reference index (into the names given to :meth:`close`), start and end (None: lines
        left out of the index)."""
        data = self.buf + text
        line_ends = np.flatnonzero(np.frombuffer(data, np.uint8) == 10) + 1
        cuts = _cuts(data, line_ends, final=False)
        indexed = self.index and rec is not None
        self._emit(data, cuts, line_ends[line_ends > len(self.buf)] if indexed else None, rec, beg, end)

    def _emit(self, data: bytes, cuts: list[int], new_ends, rec, beg, end) -> None:
        bounds = [0] + cuts
        spans = zip(bounds[:-1], bounds[1:], strict=True)
        blocks = list(self.pool.map(lambda ab: bgzf_block(data[ab[0]:ab[1]], self.level), spans))
        offs = np.cumsum([self.coff] + [len(b) for b in blocks])
        if new_ends is not None and len(new_ends):
            starts = np.r_[len(self.buf), new_ends[:-1]]
            self._index(starts, new_ends, np.asarray(bounds), offs, rec, beg, end)
        for b in blocks:
            self.fh.write(b)
        self.coff = int(offs[-1])
        self.buf = data[bounds[-1]:]

    def _index(self, starts, ends, bounds, offs, rec, beg, end) -> None:
        """Virtual offsets of lines [starts, ends) of the data (``bounds``: block starts)."""
        blk = np.searchsorted(bounds, starts, side="right") - 1
        v0 = (offs[blk].astype(np.uint64) << np.uint64(16)) | (starts - bounds[blk]).astype(np.uint64)
        blk_end = np.searchsorted(bounds, ends, side="left") - 1
        v1 = (offs[blk_end].astype(np.uint64) << np.uint64(16)) | (ends - bounds[blk_end]).astype(np.uint64)
        beg = np.asarray(beg, np.int64)
        end = np.maximum(np.asarray(end, np.int64), beg + 1)  # tabix counts an empty interval as one base
        bins = reg2bin(beg, end)
        rec = np.asarray(rec, np.int64)
        for r in np.unique(rec).tolist():  # lines are sorted: one reference after another
            sel = rec == r
            self.refs.setdefault(r, _RefIndex()).add(bins[sel], beg[sel], end[sel] - 1, v0[sel], v1[sel])

    def close(self, names=()) -> bytes | None:
        """Flush and write the end-of-file marker; returns the BGZF-compressed tabix index
        (None without one). ``names``: the reference names ``rec`` indexes."""
        try:
            data = self.buf
            self.buf = b""
            self._emit(data, _cuts(data, np.flatnonzero(np.frombuffer(data, np.uint8) == 10) + 1, True),
                       None, None, None, None)
            self.fh.write(BGZF_EOF)
        finally:
            self.pool.shutdown()
        return self._tabix(names) if self.index else None

    def _tabix(self, all_names) -> bytes:
        used = sorted(self.refs)
        names = b"".join(all_names[r].encode() + b"\0" for r in used)
        head = struct.pack("<4s8i", b"TBI\1", len(used), _TBX_UCSC, 1, 2, 3, ord("#"), 0, len(names))
        raw = head + names + b"".join(self.refs[r].encode() for r in used) + struct.pack("<Q", 0)
        return b"".join(bgzf_block(raw[i:i + BGZF_MAX_INPUT]) for i in range(0, len(raw), BGZF_MAX_INPUT)) + BGZF_EOF
