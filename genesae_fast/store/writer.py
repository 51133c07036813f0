"""``StoreWriter``: create (or resume) a store and write it chunk by chunk, crash-safely.

Protocol (notes/activation-store.md, 3.4): every array is created at its final shape;
each row chunk is written whole, fsynced, and only then gets its durable commit record
(``records.py``). A killed writer leaves at worst an uncommitted chunk, which a resume
rewrites; a chunk's bytes never depend on which process wrote it or when, so a resumed
store equals an uninterrupted one byte for byte. ``finalize`` folds the per-chunk
statistics in chunk order and marks the store complete.
"""
from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import zarr

from genesae_fast import __version__
from genesae_fast.errors import InputError
from genesae_fast.store import layout
from genesae_fast.store.backend import Backend, check_not_file
from genesae_fast.store.records import (
    COORDS_KEY,
    chunk_key,
    chunk_stats,
    combine_stats,
    crc32,
    make_chunk_record,
    parse_record,
)


_STATS_POOL = ThreadPoolExecutor(max_workers=1, thread_name_prefix="genesae-store-stats")
_COMMIT_POOL = ThreadPoolExecutor(max_workers=1, thread_name_prefix="genesae-store-commit")


def config_hash(config: dict) -> str:
    """SHA-256 of a configuration dict (canonical JSON)."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()


def _codecs(codec: str, dtype: str):
    if codec == "none":
        return None
    if codec == "lz4":
        return [zarr.codecs.BloscCodec(cname="lz4", clevel=5, shuffle="bitshuffle")]
    if codec == "zstd":
        return [zarr.codecs.ZstdCodec(level=1)]
    raise InputError(f"--codec {codec}: expected one of {', '.join(layout.CODECS)}")


def _fill(dtype: str):
    # Unwritten rows read as NaN, never as plausible zeros (0x7FC0 is a bfloat16 NaN).
    return 0x7FC0 if dtype == "bfloat16" else float("nan")


def _describe_differences(old: dict, new: dict) -> str:
    diffs = []
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            a, b = old.get(key), new.get(key)
            if isinstance(a, str) and len(a) > 16:
                a = a[:12] + "..."
            if isinstance(b, str) and len(b) > 16:
                b = b[:12] + "..."
            diffs.append(f"{key} {a} -> {b}")
    return "; ".join(diffs[:6]) or "unknown difference"


class StoreWriter:
    """Writes one store. Make it with :meth:`create` (one process) or :meth:`attach`."""

    def __init__(self, backend: Backend, group: zarr.Group, attrs: dict):
        self.backend = backend
        self.path = str(backend)
        self.group = group
        self.attrs = attrs
        self.config = attrs["config"]
        self.n_rows = int(attrs["n_rows"])
        self.d = int(attrs["d"])
        self.dtype = attrs["dtype"]
        self.chunk_rows = int(attrs["chunk_rows"])
        self.n_chunks = layout.n_chunks(self.n_rows, self.chunk_rows)
        self.has_coordinates = bool(attrs["has_coordinates"])
        self.has_lm_bits = bool(attrs.get("has_lm_bits", False))
        self._acts = group[layout.ACTIVATIONS]
        self._commit = None
        from genesae_fast.store.reader import ActivationStore

        self._raw_local = backend.local and ActivationStore._is_raw(self._acts) and np.little_endian

    # -- creation -------------------------------------------------------------------------
    @classmethod
    def create(cls, path, *, n_rows: int, d: int, dtype: str = "float16", config: dict, attrs: dict | None = None,
               chunk_rows: int | None = None, codec: str = "none", coordinates: bool = True,
               overwrite: bool = False, lm_bits: bool = False) -> "StoreWriter":
        """Create a store, or reopen an unfinished/finished one made with the same config.

        Parameters
        ----------
        path : local folder or fsspec URL
        n_rows, d : final shape of ``activations``
        config : everything that determines the stored bytes (model hash, layer, genome hash,
            window, ...); reopening with a different config is refused
        attrs : extra provenance kept under ``attrs["genesae"]`` (model, genome, layer, ...)
        overwrite : delete whatever is at ``path`` first
        lm_bits : also keep the LM's bits per token, ``lm_bits [n_rows]`` float32 (:meth:`write_chunk`)

        Raises
        ------
        InputError
            ``path`` holds something else (another store, a file, a non-store folder).
        """
        layout.check_dtype(dtype)
        _codecs(codec, dtype)
        if n_rows < 0 or d < 1:
            raise InputError(f"{path}: cannot make a store of shape ({n_rows}, {d})")
        backend = Backend(path)
        check_not_file(backend)
        chunk_rows = int(chunk_rows or layout.default_chunk_rows(d, dtype))
        full_config = dict(config, n_rows=int(n_rows), d=int(d), dtype=dtype, chunk_rows=chunk_rows, codec=codec,
                           has_coordinates=bool(coordinates))
        full_config.update({"has_lm_bits": True} if lm_bits else {})  # other stores keep their digests
        digest = config_hash(full_config)
        if overwrite:
            backend.remove_store()
        elif backend.exists():
            existing = cls._existing(backend)
            if existing is not None:
                if existing.get("config") != digest:
                    raise InputError(
                        f"{path}: store exists with different settings ({_describe_differences(existing.get('config_fields', {}), full_config)}); "
                        "use --overwrite to replace it, or another --out"
                    )
                backend.remove_orphans()
                return cls(backend, backend.open_group("r+"), existing)
        all_attrs = {
            "format_version": layout.FORMAT_VERSION,
            "complete": False,
            "n_rows": int(n_rows),
            "d": int(d),
            "dtype": dtype,
            "chunk_rows": chunk_rows,
            "codec": codec,
            "has_coordinates": bool(coordinates), "has_lm_bits": bool(lm_bits),
            "config": digest,
            "config_fields": full_config,
            **(attrs or {}),
            "tool": {"name": "genesae_fast", "version": __version__, "zarr": zarr.__version__},
        }
        group = cls._new_group(backend, all_attrs)
        backend.sync_files(cls._metadata_keys(coordinates, lm_bits))
        return cls(backend, group, all_attrs)

    @staticmethod
    def _new_group(backend: Backend, attrs: dict) -> zarr.Group:
        """The group and its arrays at their final shapes (nothing written yet)."""
        n_rows, d, dtype, chunk_rows = max(int(attrs["n_rows"]), 0), int(attrs["d"]), attrs["dtype"], attrs["chunk_rows"]
        group = zarr.open_group(backend.zarr_location(), mode="w", zarr_format=3)
        group.create_array(
            layout.ACTIVATIONS, shape=(n_rows, d), chunks=(chunk_rows, d),
            dtype=layout.STORED_DTYPE[dtype], compressors=_codecs(attrs["codec"], dtype), fill_value=_fill(dtype),
            config={"write_empty_chunks": True},
        )
        if attrs["has_coordinates"]:
            # Coordinates are monotone integers: byte-shuffled zstd shrinks them ~10x.
            coord_codec = [zarr.codecs.BloscCodec(cname="zstd", clevel=3, shuffle="shuffle")]
            for name in layout.COORDINATES:
                group.create_array(name, shape=(n_rows,), chunks=(chunk_rows,), dtype=layout.COORD_DTYPES[name],
                                   compressors=coord_codec, fill_value=-1, config={"write_empty_chunks": True})
        if attrs.get("has_lm_bits"):
            # raw float32: next-base bits are close to incompressible noise
            group.create_array(layout.LM_BITS, shape=(n_rows,), chunks=(chunk_rows,), dtype=np.float32,
                               compressors=None, fill_value=float("nan"), config={"write_empty_chunks": True})
        group.attrs[layout.ATTRS_KEY] = attrs
        return group

    @staticmethod
    def _metadata_keys(coordinates: bool, lm_bits: bool = False) -> list[str]:
        names = [layout.ACTIVATIONS] + (list(layout.COORDINATES) if coordinates else [])
        names += [layout.LM_BITS] if lm_bits else []
        return ["zarr.json"] + [f"{n}/zarr.json" for n in names]

    @staticmethod
    def _existing(backend: Backend) -> dict | None:
        """genesae attrs of an existing store; InputError if the folder is something else."""
        raw = backend.read_bytes("zarr.json")
        if raw is None:
            if backend.local and backend.root.is_dir() and not any(backend.root.iterdir()):
                return None  # an empty folder is fine
            raise InputError(f"{backend.url}: exists and is not an activation store; use --overwrite or another --out")
        try:
            attrs = json.loads(raw).get("attributes", {}).get(layout.ATTRS_KEY)
        except ValueError:
            attrs = None
        if not isinstance(attrs, dict) or "config" not in attrs:
            raise InputError(f"{backend.url}: exists and is not a genesae activation store; use --overwrite or another --out")
        return attrs

    @classmethod
    def attach(cls, path, config_digest: str | None = None) -> "StoreWriter":
        """Open a store another process created (other torchrun ranks)."""
        backend = Backend(path)
        attrs = cls._existing(backend)
        if attrs is None or (config_digest is not None and attrs["config"] != config_digest):
            raise InputError(f"{path}: store missing or made with other settings")
        return cls(backend, backend.open_group("r+"), attrs)

    # -- progress -------------------------------------------------------------------------
    def chunk_bounds(self, k: int) -> tuple[int, int]:
        """Rows ``[start, stop)`` of chunk ``k``."""
        return layout.chunk_bounds(k, self.n_rows, self.chunk_rows)

    def committed(self, verify: bool = False) -> set[int]:
        """Chunks with a valid commit record (``verify``: and data matching its CRC-32).

        A chunk whose data fails the check loses its record, so it is written again.
        """
        self.flush()
        out = {}
        for name in self.backend.list(layout.PROGRESS):
            if name.startswith("chunk-") and name.endswith(".json"):
                rec = parse_record(self.backend.read_bytes(f"{layout.PROGRESS}/{name}"), self.config)
                if rec is not None and 0 <= int(rec["chunk"]) < self.n_chunks:
                    out[int(rec["chunk"])] = rec
        if verify and out:
            from genesae_fast.store.reader import ActivationStore

            reader = ActivationStore(self.backend, self.backend.open_group("r"), self.attrs)
            buf = np.empty((self.chunk_rows, self.d), dtype=reader._stored_dtype)
            for k in sorted(out):
                try:
                    reader.read_chunk(k, out=buf, verify=False)
                    ok = crc32(buf[:out[k]["rows"]]) == out[k]["crc32"] and self._lm_bits_ok(k, out[k])
                except InputError:
                    ok = False
                if not ok:
                    self.backend.delete(chunk_key(k))
                    del out[k]
        return set(out)

    def _lm_bits_ok(self, k: int, rec: dict) -> bool:
        """Whether chunk ``k``'s LM bits (if the store keeps them) match its commit record."""
        if not self.has_lm_bits:
            return True
        a, b = self.chunk_bounds(k)
        try:
            bits = np.asarray(self.group[layout.LM_BITS][a:b], dtype=np.float32)
        except Exception:  # noqa: BLE001 - zarr raises many types on a damaged chunk: redo it
            return False
        return crc32(bits) == rec.get("lm_bits_crc32")

    def coordinates_committed(self) -> bool:
        """Whether the coordinate arrays were written and committed."""
        return parse_record(self.backend.read_bytes(COORDS_KEY), self.config) is not None

    # -- writing --------------------------------------------------------------------------
    def write_chunk(self, k: int, x: np.ndarray, lm_bits: np.ndarray | None = None) -> None:
        """Write chunk ``k`` (all its rows), make it durable, then commit it.

        Parameters
        ----------
        x : numpy.ndarray, shape (rows of chunk k, d)
            Any float dtype (converted to the store's dtype), or uint16 bfloat16 bits.
        lm_bits : numpy.ndarray, shape (rows of chunk k,), optional
            The chunk's LM bits; required exactly when the store keeps them.
        """
        if not 0 <= k < self.n_chunks:
            raise IndexError(f"chunk {k} out of range [0, {self.n_chunks})")
        a, b = self.chunk_bounds(k)
        if x.shape != (b - a, self.d):
            raise ValueError(f"chunk {k} needs shape {(b - a, self.d)}, got {x.shape}")
        bits_crc = self._write_lm_bits(k, lm_bits)
        stored = layout.to_stored(x, self.dtype)
        # The checksum and float64 sums run on a second core while the data is written.
        summary = _STATS_POOL.submit(lambda: (crc32(stored), *chunk_stats(stored, self.dtype)))
        key = f"{layout.ACTIVATIONS}/c/{k}/0"
        if self._raw_local:
            self._write_raw_chunk(key, stored)
        else:
            self._acts[a:b] = stored
            self.backend.sync_files([key])
        crc, s1, s2 = summary.result()
        record = make_chunk_record(k, b - a, self.config, crc, s1, s2, bits_crc)
        # The data is durable: the commit record may go. It is written by a background
        # thread while the caller prepares the next chunk (one commit in flight at most).
        self.flush()
        self._commit = _COMMIT_POOL.submit(self.backend.write_durable, chunk_key(k), record)

    def _write_lm_bits(self, k: int, lm_bits: np.ndarray | None) -> int | None:
        """Write (durably) chunk ``k`` of ``lm_bits``; its CRC-32 for the commit record, or None."""
        if (lm_bits is not None) != self.has_lm_bits:
            raise ValueError(f"chunk {k}: LM bits {'missing' if self.has_lm_bits else 'given'} "
                             f"for a store {'with' if self.has_lm_bits else 'without'} them")
        if lm_bits is None:
            return None
        a, b = self.chunk_bounds(k)
        bits = np.ascontiguousarray(lm_bits, dtype=np.float32)
        if bits.shape != (b - a,):
            raise ValueError(f"chunk {k} needs LM bits of shape {(b - a,)}, got {bits.shape}")
        self.group[layout.LM_BITS][a:b] = bits
        self.backend.sync_files([f"{layout.LM_BITS}/c/{k}"])
        return crc32(bits)

    def flush(self) -> None:
        """Wait until the last chunk's commit record is durable (re-raises its error)."""
        pending, self._commit = self._commit, None
        if pending is not None:
            pending.result()

    def _write_raw_chunk(self, key: str, stored: np.ndarray) -> None:
        """Write an uncompressed chunk file as zarr would (raw little-endian bytes, edge
        chunks padded with the fill value), durably: temp file, fsync, rename, fsync folder.

        Bypassing zarr's write path halves the cost of a durable chunk write; tests check
        the files are byte-identical to zarr's own.
        """
        if len(stored) < self.chunk_rows:
            full = np.empty((self.chunk_rows, self.d), dtype=stored.dtype)
            full[:len(stored)] = stored
            full[len(stored):] = _fill(self.dtype)
            stored = full
        self.backend.write_durable(key, memoryview(np.ascontiguousarray(stored).reshape(-1).view(np.uint8)))

    def write_coordinates(self, seq, bp_start, bp_end, token_id) -> None:
        """Write the four coordinate arrays (shape [n_rows] each) and commit them."""
        n = self.n_rows
        for name, arr in zip(layout.COORDINATES, (seq, bp_start, bp_end, token_id)):
            if np.shape(arr) != (n,):
                raise ValueError(f"{name} needs shape ({n},), got {np.shape(arr)}")
        self.write_coordinate_pieces([(seq, bp_start, bp_end, token_id)])

    def write_coordinate_pieces(self, pieces) -> None:
        """Write the coordinates from pieces in row order, one chunk in memory at a time, and
        commit them (the same bytes as :meth:`write_coordinates` of the concatenation).

        Parameters
        ----------
        pieces : iterable of (seq, bp_start, bp_end, token_id) arrays, each [m]
            Consecutive rows; their lengths add up to ``n_rows``.
        """
        if not self.has_coordinates:
            raise ValueError("this store was created without coordinates")
        crcs = {name: [] for name in layout.COORDINATES}
        pending = {name: [] for name in layout.COORDINATES}
        k = filled = 0
        for piece in pieces:
            arrays = [np.ascontiguousarray(a, dtype=layout.COORD_DTYPES[name])
                      for name, a in zip(layout.COORDINATES, piece)]
            pos, m = 0, len(arrays[0])
            while pos < m:
                if k >= self.n_chunks:
                    raise ValueError(f"coordinates: more than {self.n_rows} rows")
                c0, c1 = self.chunk_bounds(k)
                take = min(c1 - c0 - filled, m - pos)
                for name, a in zip(layout.COORDINATES, arrays):
                    pending[name].append(a[pos:pos + take])
                filled, pos = filled + take, pos + take
                if filled == c1 - c0:
                    self._write_coordinate_chunk(k, pending, crcs)
                    k, filled = k + 1, 0
        if k != self.n_chunks:
            raise ValueError(f"coordinates: {self.chunk_bounds(k)[0] + filled} rows given, {self.n_rows} expected")
        self.backend.sync_files([f"{name}/c/{j}" for name in layout.COORDINATES for j in range(self.n_chunks)])
        rec = {"config": self.config, "crc32": crcs}
        self.backend.write_durable(COORDS_KEY, json.dumps(rec, separators=(",", ":")).encode())

    def _write_coordinate_chunk(self, k: int, pending: dict, crcs: dict) -> None:
        c0, c1 = self.chunk_bounds(k)
        for name in layout.COORDINATES:
            arr = np.concatenate(pending[name]) if len(pending[name]) > 1 else pending[name][0]
            self.group[name][c0:c1] = arr
            crcs[name].append(crc32(arr))
            pending[name].clear()

    def finalize(self) -> dict:
        """Fold the statistics, mark the store complete; returns the final attrs.

        Raises InputError when a chunk (or the coordinates) was never committed.
        """
        self.flush()
        records = {}
        for k in range(self.n_chunks):
            rec = parse_record(self.backend.read_bytes(chunk_key(k)), self.config)
            if rec is None:
                raise InputError(f"{self.path}: chunk {k} was never committed; rerun to finish the store")
            records[k] = rec
        if self.has_coordinates and not self.coordinates_committed():
            raise InputError(f"{self.path}: coordinates were never committed; rerun to finish the store")
        n, mean, scale = combine_stats(list(records.values()), self.d)
        attrs = dict(self.attrs)
        attrs["complete"] = True
        attrs["stats"] = {"count": n, "mean": mean.tolist(), "norm_scale": scale}
        self.group.attrs[layout.ATTRS_KEY] = attrs
        self.backend.sync_files(["zarr.json"])
        self.attrs = attrs
        return attrs
