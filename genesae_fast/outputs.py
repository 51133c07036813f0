"""Writing a command's output file safely.

A regular file (or a new path) is written to a hidden temporary file beside it and moved
into place only when the writer finishes, so a failed or interrupted command never leaves
a truncated file that looks complete. Anything else that already exists at the path (a
FIFO, a character device such as ``/dev/stdout``, a socket) is written through directly:
replacing it with a regular file would break the pipe the user set up.
"""
from __future__ import annotations

import contextlib
import os
import stat
import uuid
from pathlib import Path

from genesae_fast.errors import InputError


def is_special_file(path: str | os.PathLike) -> bool:
    """True when ``path`` exists and is not a regular file or a directory (FIFO, device, socket)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def check_output_path(path: str | os.PathLike) -> Path:
    """Refuse, with a one-line :class:`InputError`, a path that cannot be written as a file."""
    p = Path(path)
    if p.is_dir():
        raise InputError(f"{p}: is a directory; give a file name for the output")
    if not is_special_file(p) and not p.parent.exists():
        raise InputError(f"{p}: folder {p.parent} does not exist")
    return p


@contextlib.contextmanager
def open_output(path: str | os.PathLike, mode: str = "w", **kwargs):
    """Open ``path`` for writing; commit it atomically when the ``with`` block succeeds.

    Parameters
    ----------
    path : destination; regular files are replaced atomically, FIFOs and devices written through
    mode : ``"w"`` or ``"wb"`` (anything :func:`open` takes for writing)
    kwargs : passed to :func:`open` (``encoding``, ``newline``, ``buffering``)
    """
    p = check_output_path(path)
    if is_special_file(p):
        with open(p, mode, **kwargs) as fh:
            yield fh
        return
    tmp = p.with_name(f".{p.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, mode, **kwargs) as fh:
            yield fh
        os.replace(tmp, p)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def write_binary(out, write) -> object:
    """``write(fh)`` into ``out`` opened for bytes, returning its result: standard output for
    None or "-", else :func:`open_output` (atomic for a regular file, written through for a
    FIFO or device)."""
    import sys

    if out is None or str(out) == "-":
        result = write(sys.stdout.buffer)
        sys.stdout.flush()
        return result
    check_output_path(out)
    with open_output(out, "wb") as fh:
        return write(fh)
