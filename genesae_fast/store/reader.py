"""``ActivationStore``: read access to an activation store (training, annotation, info)."""
from __future__ import annotations

import os
from typing import Iterator

import numpy as np

from genesae_fast.errors import InputError
from genesae_fast.store import layout
from genesae_fast.store.backend import Backend
from genesae_fast.store.checks import check_attrs, check_finite, check_stats, check_stats_match_records
from genesae_fast.store.records import (
    COORDS_KEY,
    check_chunk_record,
    check_coords_record,
    chunk_key,
    chunk_stats,
    crc32,
    parse_record,
)


def _one_line(exc: BaseException) -> str:
    """An exception's message on one line (zarr's may span several)."""
    return " ".join(str(exc).split()) or type(exc).__name__


# coordinate chunks kept by a reader (see ActivationStore._coord_chunk)
_COORD_CHUNKS_KEPT = 16


class ActivationStore:
    """An activation store opened for reading.

    Use :meth:`open`. Attributes: ``n_rows``, ``d``, ``dtype`` ("float16", "bfloat16" or
    "float32"), ``chunk_rows``, ``n_chunks``, ``attrs`` (provenance dict), ``sequence_names``,
    ``has_coordinates``, ``has_lm_bits`` (see :meth:`lm_bits`), ``mean`` (float64 [d]) and
    ``norm_scale`` (float).
    """

    def __init__(self, backend: Backend, group, attrs: dict, verify: bool = False):
        self._backend = backend
        self.path = str(backend)
        self._group = group
        self.attrs = attrs
        self.n_rows = int(attrs["n_rows"])
        self.d = int(attrs["d"])
        self.dtype = str(attrs["dtype"])
        self.chunk_rows = int(attrs["chunk_rows"])
        self.n_chunks = layout.n_chunks(self.n_rows, self.chunk_rows)
        self.complete = bool(attrs.get("complete", False))
        genome = attrs.get("genome") or {}
        seqs = genome.get("sequences") or []
        self.sequence_names = [s["name"] for s in seqs]
        self._seq_rows = {i: (int(s["row_start"]), int(s["row_end"])) for i, s in enumerate(seqs)}
        self.has_coordinates = bool(attrs.get("has_coordinates", False))
        self.has_lm_bits = attrs.get("has_lm_bits", False) is True
        self.mean, self.norm_scale = np.zeros(self.d), 0.0  # set by open() once validated
        self.verify_reads = bool(verify)
        self._acts = self._array(layout.ACTIVATIONS)
        self._stored_dtype = np.dtype(layout.STORED_DTYPE[self.dtype]).newbyteorder("<")
        self._fast = backend.local and self._is_raw(self._acts)
        self._crcs: dict[int, int] | None = None
        self._coord_crcs: dict[str, list[int]] | None = None
        self._records: dict[int, dict] = {}
        self._stats_problem: str | None = None  # set by open(stats_must_match=False)
        self._coords_cache: dict[tuple[str, int], np.ndarray] = {}
        self._resident: dict = {}
        self._last_chunk: tuple[int, np.ndarray] | None = None
        self._free_buffers: list[np.ndarray] = []  # stream buffers kept between epochs

    # -- opening ------------------------------------------------------------------------
    @classmethod
    def open(cls, path, verify: bool = True, allow_partial: bool = False, *,
             stats_must_match: bool = True) -> "ActivationStore":
        """Open a store for reading.

        Attributes, statistics and commit records are validated here (a record's column
        sums must be finite); with ``verify`` (the default) every chunk read is also
        checked against its record's CRC-32, so no corrupt, swapped or NaN/inf chunk is
        returned (cost: ``benchmarks/bench_store.py --verify-cost``).

        Parameters
        ----------
        path : str or os.PathLike
            Local folder or fsspec URL of the store.
        verify : bool
            Check every chunk read against the CRC-32 in its commit record.
        allow_partial : bool
            Open an extraction that has not finished (uncommitted rows read as NaN,
            unverified).
        stats_must_match : bool
            Refuse statistics that differ from what the commit records fold to (False:
            leave it to :meth:`verify`, which names the chunk whose record was edited).

        Raises
        ------
        InputError
            Missing path, not a genesae store, unfinished, damaged or corrupt (one line
            naming the store and, where one is at fault, the chunk).
        """
        backend = Backend(path)
        if not backend.exists("zarr.json"):
            if not backend.exists():
                raise InputError(f"{path}: no such store")
            raise InputError(f"{path}: not a Zarr store (no zarr.json)")
        try:
            group = backend.open_group("r")
            attrs = dict(group.attrs).get(layout.ATTRS_KEY)
        except Exception as exc:  # zarr raises many types for a damaged zarr.json
            raise InputError(f"{path}: cannot open as a Zarr v3 group ({_one_line(exc)})") from None
        if not isinstance(attrs, dict) or "n_rows" not in attrs:
            raise InputError(f"{path}: not a genesae activation store (no '{layout.ATTRS_KEY}' attributes)")
        check_attrs(attrs, path)
        if not attrs.get("complete", False) and not allow_partial:
            raise InputError(
                f"{path}: extraction not finished (rerun the same extract command to resume it)"
            )
        store = cls(backend, group, attrs, verify=verify)
        store._check_arrays()
        store._load_records(stats_must_match)
        return store

    def _array(self, name: str):
        """The Zarr array ``name``; InputError when it is missing or its metadata is damaged."""
        try:
            return self._group[name]
        except KeyError:
            raise InputError(f"{self.path}: array '{name}' is missing") from None
        except Exception as exc:  # zarr raises many types (ValueError, TypeError, ...) on damaged metadata
            raise InputError(f"{self.path}: array '{name}' has damaged metadata ({_one_line(exc)})") from None

    def _check_arrays(self) -> None:
        shape, chunks = tuple(self._acts.shape), tuple(self._acts.chunks)
        if shape != (self.n_rows, self.d):
            raise InputError(f"{self.path}: activations have shape {shape}, attributes say {(self.n_rows, self.d)}")
        if chunks != (self.chunk_rows, self.d):
            raise InputError(f"{self.path}: activations are chunked {chunks}, "
                             f"attributes say {(self.chunk_rows, self.d)}")
        if np.dtype(self._acts.dtype) != np.dtype(layout.STORED_DTYPE[self.dtype]):
            raise InputError(f"{self.path}: activations are stored as {self._acts.dtype}, attributes say {self.dtype}")
        columns = list(layout.COORDINATES) if self.has_coordinates else []
        for name in columns + ([layout.LM_BITS] if self.has_lm_bits else []):
            arr = self._array(name)
            if tuple(arr.shape) != (self.n_rows,) or tuple(arr.chunks) != (self.chunk_rows,):
                kind = "coordinate array" if name in columns else "array"
                raise InputError(f"{self.path}: {kind} '{name}' has shape {tuple(arr.shape)}, "
                                 f"chunks {tuple(arr.chunks)}; expected ({self.n_rows},), ({self.chunk_rows},)")

    def _load_records(self, stats_must_match: bool = True) -> None:
        """Validate every commit record (all must exist in a complete store) and check
        the statistics against them; keeps the chunks' CRC-32s for verified reads."""
        config = self.attrs.get("config")
        crcs, records = {}, []
        for k in range(self.n_chunks):
            data = self._backend.read_bytes(chunk_key(k))
            if data is None and not self.complete:
                continue  # not extracted yet
            a, b = self.chunk_bounds(k)
            rec = check_chunk_record(data, k, rows=b - a, d=self.d, config=config, source=self.path)
            rec["sum"] = np.asarray(rec["sum"], dtype=np.float64)  # compact: d floats, not d objects
            crcs[k] = rec["crc32"]
            records.append(rec)
        self._crcs = crcs
        self._records = {r["chunk"]: r for r in records}
        if self.complete:
            self.mean, self.norm_scale = check_stats(self.attrs.get("stats"), self.n_rows, self.d, self.path)
            try:
                check_stats_match_records(self.mean, self.norm_scale, records, self.d, self.path)
            except InputError as exc:
                if stats_must_match:
                    raise
                self._stats_problem = str(exc).removeprefix(f"{self.path}: ")
            if self.has_coordinates:
                self._coord_crcs = check_coords_record(self._backend.read_bytes(COORDS_KEY), layout.COORDINATES,
                                                       self.n_chunks, config=config, source=self.path)

    @staticmethod
    def _is_raw(arr) -> bool:
        # The fast path reads chunk files directly: only for plain little-endian bytes
        # with the default chunk key encoding ("c/<row chunk>/0").
        meta = arr.metadata.to_dict()
        codecs = meta.get("codecs", [])
        enc = meta.get("chunk_key_encoding", {})
        return (
            len(codecs) == 1
            and codecs[0].get("name") == "bytes"
            and (codecs[0].get("configuration") or {}).get("endian", "little") in ("little", None)
            and enc.get("name") == "default"
            and (enc.get("configuration") or {}).get("separator", "/") == "/"
        )

    def __repr__(self) -> str:
        return f"ActivationStore({self.path!r}, n_rows={self.n_rows}, d={self.d}, dtype={self.dtype})"

    def __len__(self) -> int:
        return self.n_rows

    # -- chunks -------------------------------------------------------------------------
    def chunk_bounds(self, k: int) -> tuple[int, int]:
        """Rows ``[start, stop)`` of chunk ``k``."""
        return layout.chunk_bounds(k, self.n_rows, self.chunk_rows)

    def _chunk_crcs(self) -> dict[int, int]:
        if self._crcs is None:  # made by the writer, not open(): lenient, as for a resume
            crcs = {}
            for name in self._backend.list(layout.PROGRESS):
                if name.startswith("chunk-"):
                    rec = parse_record(self._backend.read_bytes(f"{layout.PROGRESS}/{name}"), self.attrs.get("config"))
                    if rec is not None:
                        crcs[int(rec["chunk"])] = int(rec["crc32"])
            self._crcs = crcs
        return self._crcs

    def committed_chunks(self) -> list[int]:
        """Chunks with a valid commit record, in order."""
        return sorted(self._chunk_crcs())

    def read_chunk(self, k: int, out: np.ndarray | None = None, verify: bool | None = None) -> np.ndarray:
        """Chunk ``k`` as stored (float16, float32 or bfloat16 bits as uint16).

        Parameters
        ----------
        out : numpy.ndarray, optional
            Buffer of at least the chunk's rows, stored dtype, C-contiguous rows of d.

        Returns
        -------
        numpy.ndarray, shape (rows of chunk k, d)

        Raises
        ------
        InputError
            The chunk file is missing or truncated, or (``verify``) its CRC-32 does not
            match its commit record.
        """
        if not 0 <= k < self.n_chunks:
            raise IndexError(f"chunk {k} out of range [0, {self.n_chunks})")
        start, stop = self.chunk_bounds(k)
        rows = stop - start
        if out is None:
            out = np.empty((rows, self.d), dtype=self._stored_dtype)
        else:
            out = out[:rows]
        if self._fast:
            self._read_chunk_file(k, rows, out)
        else:
            try:
                out[...] = self._acts[start:stop]
            except Exception as exc:
                raise InputError(f"{self.path}: cannot read activation chunk {k} ({exc})") from None
        if (self.verify_reads if verify is None else verify) and (self.complete or k in self._chunk_crcs()):
            self._check_crc(k, out)
        return out

    def _read_chunk_file(self, k: int, rows: int, out: np.ndarray) -> None:
        key = f"{layout.ACTIVATIONS}/c/{k}/0"
        path = self._backend.local_path(key)
        full = self.chunk_rows * self.d * self._stored_dtype.itemsize
        want = rows * self.d * self._stored_dtype.itemsize
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            if not self.complete:  # an unfinished extraction: unwritten rows are NaN
                out[...] = 0x7FC0 if self.dtype == "bfloat16" else np.nan
                return
            raise InputError(f"{self.path}: activation chunk {k} is missing ({key})") from None
        try:
            size = os.fstat(fd).st_size
            if size != full:
                raise InputError(
                    f"{self.path}: activation chunk {k} is truncated or damaged ({key}: {size} bytes, expected {full})"
                )
            view = memoryview(out.reshape(-1).view(np.uint8))
            got = 0
            while got < want:
                n = os.readv(fd, [view[got:want]])
                if n <= 0:
                    raise InputError(f"{self.path}: activation chunk {k} is truncated ({key})")
                got += n
        finally:
            os.close(fd)

    def _check_crc(self, k: int, data: np.ndarray) -> None:
        expected = self._chunk_crcs().get(k)
        if expected is None:
            raise InputError(f"{self.path}: activation chunk {k} has no commit record ({chunk_key(k)})")
        if crc32(data) != expected:
            raise InputError(f"{self.path}: activation chunk {k} is corrupt (CRC-32 mismatch with its commit record)")
        # No NaN/inf scan here: open() made sure the record's column sums are finite, and
        # they were computed from exactly the bytes this CRC-32 matches (a float64 column
        # sum of stored values is finite iff every value is), so verified data is finite.
        # verify() still scans, against a record rewritten by hand.

    def verify(self, chunks=None) -> int:
        """Check chunks (all by default) against their commit records; returns how many.

        Raises
        ------
        InputError
            One line listing every bad chunk (CRC-32 mismatch, NaN/inf values, missing or
            truncated file, a record whose sums are not the chunk's), damaged
            coordinates and damaged LM bits.
        """
        buf = np.empty((self.chunk_rows, self.d), dtype=self._stored_dtype)
        ks = list(range(self.n_chunks) if chunks is None else chunks)
        bad = []
        for k in ks:
            try:
                data = self.read_chunk(k, out=buf, verify=True)
            except InputError as exc:
                bad.append(str(exc).removeprefix(f"{self.path}: "))
                continue
            if not check_finite(data, self.dtype):
                bad.append(f"activation chunk {k} holds NaN or infinite values")
            elif k in self._records and not self._sums_match(k, data):
                bad.append(f"commit record of activation chunk {k} ({chunk_key(k)}): sums do not match the chunk")
        if self.has_coordinates and ks:
            bad += self._verify_coordinates(ks)
        bad += self._verify_lm_bits(ks) if self.has_lm_bits else []
        if self._stats_problem and not bad:
            bad.append(self._stats_problem)
        if bad:
            shown = "; ".join(bad[:5]) + (f"; ... ({len(bad)} problems in all)" if len(bad) > 5 else "")
            raise InputError(f"{self.path}: verification failed: {shown}")
        return len(ks)

    def _sums_match(self, k: int, data: np.ndarray) -> bool:
        """Whether chunk ``k``'s record holds the sums of ``data`` (the writer computed
        them with the same function from the same bytes)."""
        s1, s2 = chunk_stats(data, self.dtype)
        rec = self._records[k]
        return bool(np.allclose(s1, rec["sum"], rtol=1e-12, atol=1e-12) and np.isclose(s2, rec["sumsq"], rtol=1e-12))

    def _verify_coordinates(self, ks) -> list[str]:
        try:
            crcs = self._coord_crcs or check_coords_record(
                self._backend.read_bytes(COORDS_KEY), layout.COORDINATES, self.n_chunks,
                config=self.attrs.get("config"), source=self.path)
        except InputError as exc:
            return [str(exc).removeprefix(f"{self.path}: ")]
        bad = []
        for name in layout.COORDINATES:
            arr = self._array(name)
            for k in ks:
                start, stop = self.chunk_bounds(k)
                try:
                    values = np.asarray(arr[start:stop])
                except Exception as exc:  # zarr/numcodecs raise many types on damaged data
                    bad.append(f"coordinate array '{name}' chunk {k} is damaged ({_one_line(exc)})")
                    continue
                if crc32(values) != crcs[name][k]:
                    bad.append(f"coordinate array '{name}' chunk {k} is corrupt (CRC-32 mismatch)")
        return bad

    # -- sequential access --------------------------------------------------------------
    def _check_range(self, start: int, stop: int | None) -> tuple[int, int]:
        stop = self.n_rows if stop is None else int(stop)
        start = int(start)
        if not 0 <= start <= stop <= self.n_rows:
            raise IndexError(f"rows [{start}, {stop}) out of range [0, {self.n_rows}]")
        return start, stop

    def read_rows_stored(self, start: int, stop: int) -> np.ndarray:
        """Rows ``[start, stop)`` in the stored dtype, shape (stop - start, d)."""
        start, stop = self._check_range(start, stop)
        out = np.empty((stop - start, self.d), dtype=self._stored_dtype)
        if stop == start:
            return out
        R = self.chunk_rows
        for k in range(start // R, (stop - 1) // R + 1):
            c0, c1 = self.chunk_bounds(k)
            lo, hi = max(start, c0), min(stop, c1)
            if lo == c0 and hi == c1:
                self.read_chunk(k, out=out[lo - start:hi - start])
            else:
                out[lo - start:hi - start] = self._cached_chunk(k)[lo - c0:hi - c0]
        return out

    def _cached_chunk(self, k: int) -> np.ndarray:
        # Small sequential reads (iter_rows blocks, annotation contexts) hit the same chunk
        # many times in a row: keep the last one. The cached array is never written after
        # it is published, so readers in several threads are safe.
        cached = self._last_chunk
        if cached is not None and cached[0] == k:
            return cached[1]
        data = self.read_chunk(k)
        self._last_chunk = (k, data)
        return data

    def read_rows(self, start: int, stop: int) -> np.ndarray:
        """Rows ``[start, stop)`` as float32, shape (stop - start, d)."""
        return layout.stored_to_float32(self.read_rows_stored(start, stop), self.dtype)

    def iter_rows(self, block_rows: int, start: int = 0, stop: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(row_start, float32 [b, d])`` blocks of at most ``block_rows`` rows in order."""
        if block_rows < 1:
            raise ValueError("block_rows must be at least 1")
        start, stop = self._check_range(start, stop)
        for a in range(start, stop, block_rows):
            b = min(a + block_rows, stop)
            yield a, self.read_rows(a, b)

    # -- LM bits ------------------------------------------------------------------------
    def lm_bits(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """The LM's bits of rows ``[start, stop)``: float32 (stop - start,), NaN where none.

        Bits of a token are ``-log2 P(token | the tokens before it)`` under the model that
        made the store (``attrs["lm_bits"]`` says how). Each chunk read is checked against
        the CRC-32 in its commit record.

        Raises
        ------
        InputError
            The store keeps no LM bits (``attrs["lm_bits_absent"]`` says why), or a chunk is
            damaged.
        """
        if not self.has_lm_bits:
            why = self.attrs.get("lm_bits_absent") or "extracted without --lm-bits"
            raise InputError(f"{self.path}: this store has no LM bits ({why})")
        start, stop = self._check_range(start, stop)
        parts = [np.zeros(0, np.float32)]
        for k in range(start // self.chunk_rows, (stop - 1) // self.chunk_rows + 1 if stop > start else 0):
            a, b = self.chunk_bounds(k)
            parts.append(self._lm_bits_chunk(k)[max(start - a, 0):min(stop, b) - a])
        return np.concatenate(parts)

    def _verify_lm_bits(self, ks) -> list[str]:
        """Problems of the LM bits chunks ``ks`` (read afresh, checked against their records)."""
        bad = []
        for k in ks:
            self._coords_cache.pop((layout.LM_BITS, k), None)
            try:
                if self._records.get(k) is None:
                    raise InputError(f"{self.path}: LM bits chunk {k} has no commit record")
                self._lm_bits_chunk(k, verify=True)
            except InputError as exc:
                bad.append(str(exc).removeprefix(f"{self.path}: "))
        return bad

    def _lm_bits_chunk(self, k: int, verify: bool | None = None) -> np.ndarray:
        cached = self._coords_cache.get((layout.LM_BITS, k))
        if cached is not None:
            return cached
        a, b = self.chunk_bounds(k)
        try:
            values = np.asarray(self._array(layout.LM_BITS)[a:b], dtype=np.float32)
        except Exception as exc:  # zarr/numcodecs raise many types on damaged data
            raise InputError(f"{self.path}: LM bits chunk {k} is damaged ({_one_line(exc)})") from None
        rec = self._records.get(k)
        if (self.verify_reads if verify is None else verify) and rec is not None \
                and crc32(values) != rec.get("lm_bits_crc32"):
            raise InputError(f"{self.path}: LM bits chunk {k} is corrupt (CRC-32 mismatch with its commit record)")
        if len(self._coords_cache) >= _COORD_CHUNKS_KEPT:
            self._coords_cache.pop(next(iter(self._coords_cache)))
        self._coords_cache[(layout.LM_BITS, k)] = values
        return values

    # -- coordinates --------------------------------------------------------------------
    def _require_coordinates(self) -> None:
        if not self.has_coordinates:
            raise InputError(f"{self.path}: this store has no genome coordinates (made by 'genesae import')")

    def _coord_chunk(self, name: str, k: int) -> np.ndarray:
        """Chunk ``k`` of a coordinate column, checked against its commit record's CRC-32.

        Coordinates are read chunk by chunk, never whole: at 28 bytes a token they would
        otherwise grow every reader (annotation workers included) with the genome. The few
        chunks read last are kept, since searches and block reads revisit them.
        """
        cached = self._coords_cache.get((name, k))
        if cached is not None:
            return cached
        a, b = self.chunk_bounds(k)
        try:
            values = np.asarray(self._array(name)[a:b])
        except Exception as exc:  # zarr/numcodecs raise many types on damaged data
            raise InputError(f"{self.path}: coordinate array '{name}' is damaged ({_one_line(exc)})") from None
        if self.verify_reads and self._coord_crcs is not None and crc32(values) != self._coord_crcs[name][k]:
            raise InputError(f"{self.path}: coordinate array '{name}' chunk {k} is corrupt "
                             "(CRC-32 mismatch with its commit record)")
        if len(self._coords_cache) >= _COORD_CHUNKS_KEPT:
            self._coords_cache.pop(next(iter(self._coords_cache)))
        self._coords_cache[(name, k)] = values
        return values

    def _coord(self, name: str, start: int, stop: int) -> np.ndarray:
        """Rows ``[start, stop)`` of a coordinate column (a new array)."""
        if stop <= start:
            return np.asarray(self._array(name)[0:0])
        parts = []
        for k in range(start // self.chunk_rows, (stop - 1) // self.chunk_rows + 1):
            a, _ = self.chunk_bounds(k)
            chunk = self._coord_chunk(name, k)
            parts.append(chunk[max(start - a, 0):min(stop - a, len(chunk))])
        return np.concatenate(parts)

    def _search_column(self, name: str, r0: int, r1: int, value: int, side: str) -> int:
        """``np.searchsorted`` on rows ``[r0, r1)`` of a non-decreasing coordinate column,
        reading only the chunks the bisection visits."""
        lo, hi = r0, r1
        while lo < hi:
            mid = (lo + hi) // 2
            a, _ = self.chunk_bounds(mid // self.chunk_rows)
            v = int(self._coord_chunk(name, mid // self.chunk_rows)[mid - a])
            if v < value or (side == "right" and v == value):
                lo = mid + 1
            else:
                hi = mid
        return lo - r0

    def coordinates(self, start: int = 0, stop: int | None = None):
        """Genome coordinates of rows ``[start, stop)``.

        Returns
        -------
        (seq int32, bp_start int64, bp_end int64, token_id int64), each shape (stop - start,)
            ``seq`` indexes ``sequence_names``; bp coordinates are 0-based half-open on
            the + strand.
        """
        self._require_coordinates()
        start, stop = self._check_range(start, stop)
        return tuple(self._coord(name, start, stop) for name in layout.COORDINATES)

    def _seq_index(self, seq) -> int:
        if isinstance(seq, (str, np.str_)):
            try:
                return self.sequence_names.index(str(seq))
            except ValueError:
                raise InputError(f"{self.path}: no sequence named {seq!r} in this store") from None
        i = int(seq)
        if not 0 <= i < len(self.sequence_names):
            raise InputError(f"{self.path}: sequence index {i} out of range (store has {len(self.sequence_names)})")
        return i

    def rows_for_interval(self, seq, start: int, end: int) -> np.ndarray:
        """Rows whose token overlaps ``[start, end)`` (bp, 0-based) of sequence ``seq``.

        Parameters
        ----------
        seq : int or str
            Index into ``sequence_names`` or a sequence name.

        Returns
        -------
        numpy.ndarray, int64, sorted
            Row indices; no activations are read.
        """
        self._require_coordinates()
        lo, hi = self.interval_row_ranges(seq, np.array([start]), np.array([end]))
        return np.arange(lo[0], hi[0], dtype=np.int64)

    def interval_row_ranges(self, seq, starts, ends) -> tuple[np.ndarray, np.ndarray]:
        """Vectorised :meth:`rows_for_interval`: row ranges ``[lo, hi)`` for many intervals.

        Parameters
        ----------
        seq : int or str
            One sequence for all intervals.
        starts, ends : array-like of int, shape (m,)

        Returns
        -------
        (lo, hi) : numpy.ndarray int64 shape (m,)
            Tokens are stored in + strand order, so the overlapping rows are contiguous.
        """
        self._require_coordinates()
        i = self._seq_index(seq)
        r0, r1 = self._seq_rows[i]
        starts = np.asarray(starts, dtype=np.int64).reshape(-1)
        ends = np.asarray(ends, dtype=np.int64).reshape(-1)
        # A token overlaps [s, e) iff bp_end > s and bp_start < e; both columns are
        # non-decreasing along a sequence, so two binary searches bound the run.
        lo = np.array([self._search_column("bp_end", r0, r1, int(v), "right") for v in starts], dtype=np.int64)
        hi = np.array([self._search_column("bp_start", r0, r1, int(v), "left") for v in ends], dtype=np.int64)
        hi = np.maximum(hi, lo)
        return lo + r0, hi + r0

    # -- training batches ---------------------------------------------------------------
    def batches(self, batch_size: int, shuffle: bool = True, seed: int = 0, *, rank: int = 0, world_size: int = 1,
                epoch: int = 0, chunks: range | None = None, drop_last: bool = False,
                memory_budget: int | None = None, buffer_chunks: int | None = None, mode: str = "auto"):
        """Float32 batches ``[b, d]`` for one epoch (see ``genesae_fast.store.batches``).

        Chunk order is shuffled per epoch (seeded by ``seed`` and ``epoch``), chunks are
        dealt to ranks, rows are mixed in a buffer of many chunks read ahead by a
        background thread; across ranks every row of ``chunks`` comes exactly once.
        When the selected rows fit ``memory_budget`` bytes (default 4 GiB) they are loaded
        once and batches are drawn from memory (``mode`` "memory" / "stream" forces one).
        """
        from genesae_fast.store.batches import iterate_batches

        return iterate_batches(self, batch_size, shuffle=shuffle, seed=seed, rank=rank, world_size=world_size,
                               epoch=epoch, chunks=chunks, drop_last=drop_last, memory_budget=memory_budget,
                               buffer_chunks=buffer_chunks, mode=mode)

    def epoch_rows(self, rank: int = 0, world_size: int = 1, seed: int = 0, epoch: int = 0,
                   chunks: range | None = None, *, shuffle: bool = True, memory_budget: int | None = None,
                   mode: str = "auto") -> int:
        """How many rows :meth:`batches` gives ``rank`` in this epoch (for equal DDP steps)."""
        from genesae_fast.store.batches import plan_epoch

        return plan_epoch(self, rank=rank, world_size=world_size, seed=seed, epoch=epoch, chunks=chunks,
                          shuffle=shuffle, memory_budget=memory_budget, mode=mode).n_rows

    def summary(self) -> dict:
        """The dict that ``describe`` returns."""
        a = self.attrs
        model = a.get("model") or {}
        genome = a.get("genome") or {}
        out = {
            "kind": "activation store",
            "path": self.path,
            "shape": [self.n_rows, self.d],
            "dtype": self.dtype,
            "chunk_rows": self.chunk_rows,
            "chunks": self.n_chunks,
            "chunks_committed": len(self.committed_chunks()),
            "complete": self.complete,
            "codec": a.get("codec", "none"),
            "has_coordinates": self.has_coordinates,
            "has_lm_bits": self.has_lm_bits,
        }
        if model:
            out["model"] = model.get("name", "")
            out["model_path"] = model.get("path", "")
            out["model_sha256"] = model.get("sha256", "")
        if "layer" in a:
            out["layer"] = a["layer"]
        if a.get("strand"):  # "-": the reverse-complement pass (genesae_fast.store.strands)
            out["strand"] = a["strand"]
        if a.get("window") is not None:
            out["window"] = a["window"]
            out["stride"] = a["stride"]
        if genome:
            out["genome"] = genome.get("path", "")
            out["genome_sha256"] = genome.get("sha256", "")
            out["sequences"] = len(self.sequence_names)
        if a.get("source"):
            out["source"] = a["source"]
        if self.complete:
            out["mean_norm"] = float(np.linalg.norm(self.mean))
            out["norm_scale"] = self.norm_scale
            out["mean"] = [round(float(v), 6) for v in self.mean]
        out["tool_version"] = (a.get("tool") or {}).get("version", "")
        return out


def describe(path, verify: bool = False) -> dict:
    """Summary of a store for ``genesae info``: shape, dtype, model, layer, genome,
    chunks committed and normalisation statistics.

    ``verify`` reads every committed chunk and checks it against its CRC-32 (InputError
    listing the bad ones); adds ``verified_chunks``.
    """
    store = ActivationStore.open(path, allow_partial=True, stats_must_match=not verify)
    out = store.summary()
    if verify:
        out["verified_chunks"] = store.verify(store.committed_chunks())
    return out

