"""FASTA reading and writing; sequences as uint8 base codes.

Records decode in C++ (``genesae_fast._native.parse_fasta``) into a code array with
A=0, C=1, G=2, T=3 and 4 for anything else (N, IUPAC ambiguity codes, gaps), plus a boolean
soft-mask that is True where the file had a lowercase base. Plain, gzip and BGZF
(multi-member gzip) files are accepted, with LF, CRLF or CR line endings.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from genesae_fast.errors import InputError

_GZIP_MAGIC = b"\x1f\x8b"
_LETTERS = np.frombuffer(b"ACGTN", dtype=np.uint8)
_COMPLEMENT = np.array([3, 2, 1, 0, 4], dtype=np.uint8)


@dataclass
class Record:
    """One FASTA record.

    Attributes
    ----------
    name : str
        First word of the header line.
    description : str
        Rest of the header line (may be empty).
    codes : numpy.ndarray, shape (L,), uint8
        A=0, C=1, G=2, T=3, anything else 4.
    softmask : numpy.ndarray, shape (L,), bool
        True where the base was lowercase in the file.
    """

    name: str
    description: str
    codes: np.ndarray
    softmask: np.ndarray

    def __len__(self) -> int:
        return int(self.codes.shape[0])

    @property
    def sequence(self) -> str:
        """The record as an upper-case ``ACGTN`` string (ambiguity codes become N)."""
        return decode(self.codes)


def open_error(path, exc: OSError) -> InputError:
    """The one-line error for a FASTA file that cannot be opened (missing, a folder, no access)."""
    if isinstance(exc, FileNotFoundError):
        return InputError(f"{path}: no such file")
    if isinstance(exc, IsADirectoryError):
        return InputError(f"{path}: is a directory, expected a FASTA file")
    if isinstance(exc, PermissionError):
        return InputError(f"{path}: permission denied")
    return InputError(f"{path}: cannot read ({exc.strerror or exc})")


def read_bytes(path: str | os.PathLike) -> bytes:
    """Read a file, decompressing gzip or BGZF transparently."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise open_error(path, exc) from None
    if raw[:2] == _GZIP_MAGIC:
        try:
            # gzip.decompress reads every member, so BGZF (many small members) works too.
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise InputError(f"{path}: corrupt or truncated gzip data ({exc})") from None
    return raw


def parse_fasta_bytes(data: bytes, source: str = "<bytes>") -> list[Record]:
    """Decode FASTA text already in memory; ``source`` names it in error messages."""
    from genesae_fast import _native

    if not isinstance(data, (bytes, bytearray)):
        data = _byte_buffer(data)
    try:
        parsed = _native.parse_fasta(data)
    except ValueError as exc:
        raise InputError(f"{source}: {exc}") from None
    records = []
    for header, codes, mask in parsed:
        parts = header.strip().split(maxsplit=1)
        name = parts[0] if parts else ""
        description = parts[1] if len(parts) > 1 else ""
        records.append(Record(name, description, codes, mask))
    return records


def read_fasta(path: str | os.PathLike) -> list[Record]:
    """Read every record of a FASTA file (plain, gzip or BGZF).

    Raises
    ------
    InputError
        One line naming the file, the line number and the problem.
    """
    return parse_fasta_bytes(read_bytes(path), str(path))


def _byte_buffer(sequence) -> bytes | bytearray | memoryview | np.ndarray:
    """A C-contiguous single-byte buffer of ``sequence``, copied when it is strided."""
    if isinstance(sequence, str):
        return sequence.encode("ascii", errors="replace")
    if isinstance(sequence, (bytes, bytearray)):
        return sequence
    if isinstance(sequence, np.ndarray):
        if sequence.dtype not in (np.uint8, np.int8) and sequence.dtype != np.dtype("S1"):
            raise InputError(f"encode: expected text or a uint8/int8/S1 array, got a {sequence.dtype} array")
        return np.ascontiguousarray(sequence.reshape(-1)).view(np.uint8)
    if isinstance(sequence, memoryview):
        if sequence.itemsize != 1 or sequence.format not in ("B", "b", "c"):
            raise InputError(f"encode: expected a view of bytes, got items of format {sequence.format!r}")
        # tobytes() copies in logical order, so reversed or strided views read correctly.
        return sequence if sequence.c_contiguous else sequence.tobytes()
    raise InputError(f"encode: expected str, bytes or a uint8 array, got {type(sequence).__name__}")


def encode(sequence: str | bytes | bytearray | memoryview | np.ndarray) -> np.ndarray:
    """Encode a sequence into base codes (any case; non-ACGT becomes 4).

    Parameters
    ----------
    sequence : str, bytes, bytearray, memoryview of bytes, or uint8/int8/S1 array
        Strided or reversed views are copied first; wider items (int32, float64) are refused.

    Returns
    -------
    numpy.ndarray, shape (L,), uint8
    """
    from genesae_fast import _native

    return _native.encode_bases(_byte_buffer(sequence))


def decode(codes: np.ndarray, softmask: np.ndarray | None = None) -> str:
    """Turn base codes back into an ``ACGTN`` string; lowercase where ``softmask`` is True."""
    codes = np.asarray(codes, dtype=np.uint8)
    letters = _LETTERS[np.minimum(codes, 4)]
    if softmask is not None:
        letters = letters.copy()
        letters[np.asarray(softmask, dtype=bool)] += ord("a") - ord("A")
    return letters.tobytes().decode("ascii")


def reverse_complement(codes: np.ndarray) -> np.ndarray:
    """Reverse complement of a code array (unknown bases stay 4)."""
    return _COMPLEMENT[np.minimum(np.asarray(codes, dtype=np.uint8), 4)][::-1].copy()


def write_fasta(
    records: Iterable[Record | tuple[str, str]],
    path: str | os.PathLike,
    width: int = 60,
    compress: bool | None = None,
) -> None:
    """Write records (``Record`` or ``(header, sequence)`` pairs) as FASTA.

    ``compress`` defaults to True when the path ends in ``.gz``.
    """
    path = Path(path)
    if compress is None:
        compress = path.suffix == ".gz"
    lines: list[str] = []
    for rec in records:
        if isinstance(rec, Record):
            header = rec.name + (f" {rec.description}" if rec.description else "")
            seq = decode(rec.codes, rec.softmask)
        else:
            header, seq = rec
        lines.append(f">{header}\n")
        for i in range(0, len(seq), width):
            lines.append(seq[i : i + width] + "\n")
    data = "".join(lines).encode("ascii")
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(gzip.compress(data) if compress else data)
    os.replace(tmp, path)


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def summarize(records: Sequence[Record]) -> dict:
    """Per-file summary: record count, lengths, GC, N and soft-masked fractions.

    GC is counted over A/C/G/T bases only; the N fraction counts every non-ACGT base.
    """
    total = sum(len(r) for r in records)
    counts = np.zeros(5, dtype=np.int64)
    masked = 0
    for r in records:
        counts += np.bincount(r.codes, minlength=5)[:5]
        masked += int(r.softmask.sum())
    acgt = int(counts[:4].sum())
    return {
        "records": len(records),
        "total_bp": total,
        "lengths": {r.name: len(r) for r in records},
        "gc_fraction": float(counts[1] + counts[2]) / acgt if acgt else float("nan"),
        "n_fraction": float(counts[4]) / total if total else 0.0,
        "softmasked_fraction": masked / total if total else 0.0,
    }
