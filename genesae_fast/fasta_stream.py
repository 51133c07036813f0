"""Reading a FASTA file piece by piece, so a whole genome never sits in memory at once.

The file (plain, gzip or BGZF) is read in pieces of about ``piece_bytes`` decompressed
bytes, cut after a line ending. Each piece is decoded by the same native parser as
:func:`genesae_fast.sequences.read_fasta`; a piece that continues a record gets a synthetic
empty header in front, so the parser sees valid FASTA and its line numbers can be shifted
back to the file's. Concatenating the pieces of a record gives exactly ``read_fasta``'s
codes, and bad input gives ``read_fasta``'s one-line errors.
"""
from __future__ import annotations

import contextlib
import gzip
import os
import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

import numpy as np

from genesae_fast.errors import InputError
from genesae_fast.sequences import open_error

_GZIP_MAGIC = b"\x1f\x8b"
_LINE_RE = re.compile(r"^line (\d+): (.*)$")


@dataclass
class Piece:
    """The next bases of one record.

    Attributes
    ----------
    record : int          index of the record in the file (0-based)
    name : str            the record's name (first word of its header)
    codes : uint8 [n]     A=0, C=1, G=2, T=3, anything else 4
    first : bool          True for the record's first piece (possibly with n = 0)
    """

    record: int
    name: str
    codes: np.ndarray
    first: bool


@contextlib.contextmanager
def _open(path: Path) -> Iterator[BinaryIO]:
    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed below, after the gzip layer
    except OSError as exc:
        raise open_error(path, exc) from None
    with fh:
        if fh.peek(2)[:2] == _GZIP_MAGIC:
            # GzipFile(fileobj=...) does not close the file it wraps: both are closed here
            with gzip.GzipFile(fileobj=fh) as gz:  # reads every member: BGZF too
                yield gz
        else:
            yield fh


def _line_count(piece: bytes) -> int:
    """Lines in ``piece`` as the parser counts them (CRLF is one line end)."""
    n = piece.count(b"\n") + piece.count(b"\r") - piece.count(b"\r\n")
    return n + (1 if piece and piece[-1:] not in (b"\n", b"\r") else 0)


def _cut(data: bytes) -> int:
    """Length of the longest prefix of ``data`` that ends a line (0 if none can be cut yet).

    Never cuts between the CR and LF of a CRLF pair."""
    i = data.rfind(b"\n")
    if i >= 0:
        return i + 1
    i = data.rfind(b"\r")
    return i + 1 if 0 <= i < len(data) - 1 else 0


def _has_header(data: bytes, stream: BinaryIO, piece_bytes: int) -> bool:
    """Whether any line of ``data`` or of the rest of the stream starts with '>'."""
    tail = b"\n"
    while data:
        text = tail + data
        if re.search(rb"[\r\n]>", text):
            return True
        tail = text[-1:]
        data = stream.read(piece_bytes)
    return False


class _PieceParser:
    """Decodes the pieces of one file in order, keeping the record count and line numbers."""

    def __init__(self, path: Path):
        self.path = path
        self.line = 1  # the file line of the next piece's first line
        self.record = -1
        self.name = ""

    def error(self, exc: ValueError, shift: int) -> InputError:
        m = _LINE_RE.match(str(exc))
        if not m:
            return InputError(f"{self.path}: {exc}")
        return InputError(f"{self.path}: line {int(m.group(1)) + shift}: {m.group(2)}")

    def parse(self, piece: bytes) -> list[Piece]:
        from genesae_fast import _native

        continuing = self.record >= 0
        # Before the first header a synthetic header goes at the end, so that blank or
        # comment lines alone parse, and sequence data still fails with the parser's error.
        text = b">\n" + piece if continuing else piece + b"\n>\n"
        shift = self.line - 2 if continuing else self.line - 1
        try:
            parsed = _native.parse_fasta(text)
        except ValueError as exc:
            raise self.error(exc, shift) from None
        if not continuing:
            parsed = parsed[:-1]
        self.line += _line_count(piece)
        out = []
        for k, (header, codes, _mask) in enumerate(parsed):
            if k > 0 or not continuing:
                parts = header.strip().split(maxsplit=1)
                self.record += 1
                self.name = parts[0] if parts else ""
                out.append(Piece(self.record, self.name, codes, True))
            elif codes.size:
                out.append(Piece(self.record, self.name, codes, False))
        return out


def iter_pieces(path: str | os.PathLike, piece_bytes: int = 1 << 22) -> Iterator[Piece]:
    """Yield the records of a FASTA file as :class:`Piece` objects, in file order.

    Parameters
    ----------
    path : FASTA file (plain, gzip or BGZF)
    piece_bytes : decompressed bytes read at a time (memory is a few times this)

    Raises
    ------
    InputError
        The same one-line messages as :func:`genesae_fast.sequences.read_fasta`.
    """
    path = Path(path)
    parser = _PieceParser(path)
    with _open(path) as stream:
        carry = b""
        while True:
            try:
                chunk = stream.read(piece_bytes)
            except (OSError, EOFError, zlib.error) as exc:
                raise InputError(f"{path}: corrupt or truncated gzip data ({exc})") from None
            data = carry + chunk
            cut = _cut(data) if chunk else len(data)
            if cut == 0:
                carry = data
                if not chunk:
                    break
                continue
            piece, carry = data[:cut], data[cut:]
            try:
                yield from parser.parse(piece)
            except InputError as exc:
                # The parser saw our synthetic header; the file may have none at all.
                before = "sequence data before the first '>' header"
                if parser.record < 0 and str(exc).endswith(before) and not _has_header(
                        piece + carry, stream, piece_bytes):
                    raise InputError(str(exc)[: -len(before)] + "not a FASTA file (no line starts with '>')") from None
                raise
            if not chunk:
                break
    if parser.record < 0:
        raise InputError(f"{path}: line {parser.line}: not a FASTA file (no '>' record found)")


class ReadAhead:
    """:func:`iter_pieces` on a background thread, up to ``depth`` pieces ahead of the consumer.

    Decoding (gzip inflation, the native parser) releases the GIL, so it overlaps whatever the
    consumer does meanwhile: start it before slow set-up work, then iterate. Iterating yields
    the pieces in file order and re-raises the reader's error (an :class:`InputError` for bad
    input) where the bad piece would have come. Use as a context manager, or call
    :meth:`close`, so the thread stops when the consumer gives up early.
    """

    def __init__(self, path: str | os.PathLike, piece_bytes: int = 1 << 22, depth: int = 2):
        import queue
        import threading

        self._pieces: queue.Queue = queue.Queue(maxsize=max(1, int(depth)))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, args=(path, piece_bytes),
                                        name="genesae-fasta-reader", daemon=True)
        self._thread.start()

    def _put(self, item) -> bool:
        """Queue ``item``; False once the consumer has closed the reader."""
        import queue

        while not self._stop.is_set():
            try:
                self._pieces.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self, path, piece_bytes: int) -> None:
        try:
            for piece in iter_pieces(path, piece_bytes):
                if not self._put(piece):
                    return
            self._put(None)
        except BaseException as exc:  # noqa: BLE001 - re-raised on the consuming thread
            self._put(exc)

    def __iter__(self) -> Iterator[Piece]:
        if self._stop.is_set():
            raise RuntimeError("ReadAhead is single use: it was read to the end or closed")
        try:
            while (item := self._pieces.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self.close()

    def close(self) -> None:
        """Stop the reader thread (pieces not yet taken are dropped)."""
        self._stop.set()
        self._thread.join()

    def __enter__(self) -> "ReadAhead":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
