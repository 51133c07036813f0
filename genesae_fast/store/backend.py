"""Where a store lives: a local folder or any fsspec URL that zarr accepts.

Zarr writes the arrays; this module adds what zarr-python lacks for crash safety:
durable small files (commit records) and fsync of chunk files. zarr-python's
``LocalStore`` renames each key into place (atomic) but never fsyncs
(notes/activation-store.md, pitfall 3); object stores are durable when a PUT returns.
"""
from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import zarr

from genesae_fast.errors import InputError


def _is_url(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


class Backend:
    """File-level access to one store location (local path or fsspec URL)."""

    def __init__(self, path):
        text = str(path)
        self.url = text
        self.local = not _is_url(text)
        if self.local:
            self.root = Path(text[len("file://"):] if text.startswith("file://") else text)
            self.fs = None
        else:
            import fsspec

            self.fs, self.root = fsspec.core.url_to_fs(text)
            self.root = self.root.rstrip("/")

    def __str__(self) -> str:
        return self.url

    # -- zarr -------------------------------------------------------------------------
    def zarr_location(self):
        """What to pass to ``zarr.open_group``."""
        return str(self.root) if self.local else self.url

    def open_group(self, mode: str) -> zarr.Group:
        """The Zarr group of the store."""
        return zarr.open_group(self.zarr_location(), mode=mode, zarr_format=3)

    # -- small files ----------------------------------------------------------------
    def _local(self, key: str) -> Path:
        return self.root / key

    def _remote(self, key: str) -> str:
        return f"{self.root}/{key}"

    def exists(self, key: str = "") -> bool:
        """Whether ``key`` (a file or folder under the store) exists; "" = the store."""
        if self.local:
            return self._local(key).exists() if key else self.root.exists()
        return self.fs.exists(self._remote(key) if key else self.root)

    def read_bytes(self, key: str) -> bytes | None:
        """Contents of ``key``, or None if missing."""
        try:
            if self.local:
                return self._local(key).read_bytes()
            return self.fs.cat_file(self._remote(key))
        except (FileNotFoundError, IsADirectoryError):
            return None

    def write_durable(self, key: str, data: bytes) -> None:
        """Write ``key`` atomically and durably (temp file, fsync, rename, fsync folder)."""
        if not self.local:
            self.fs.pipe_file(self._remote(key), data)
            return
        target = self._local(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
        fsync_dir(target.parent)

    def list(self, prefix: str) -> list[str]:
        """File names directly under folder ``prefix`` (empty if missing)."""
        if self.local:
            folder = self._local(prefix)
            return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
        try:
            return sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in self.fs.ls(self._remote(prefix), detail=False))
        except FileNotFoundError:
            return []

    def delete(self, key: str) -> None:
        """Delete one file, ignoring a missing one."""
        try:
            if self.local:
                self._local(key).unlink()
            else:
                self.fs.rm_file(self._remote(key))
        except FileNotFoundError:
            pass

    def remove_store(self) -> None:
        """Delete the whole store (``--overwrite``)."""
        if self.local:
            if self.root.is_dir():
                shutil.rmtree(self.root)
            elif self.root.exists():
                self.root.unlink()
        elif self.fs.exists(self.root):
            self.fs.rm(self.root, recursive=True)

    def sync_files(self, keys) -> None:
        """Make files written through zarr durable (fsync each, then their folders)."""
        if not self.local:
            return
        dirs = set()
        for key in keys:
            path = self._local(key)
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            dirs.add(path.parent)
        for d in dirs:
            fsync_dir(d)

    def remove_orphans(self) -> int:
        """Delete ``*.partial`` / ``*.tmp`` files a killed writer left; returns how many."""
        if not self.local or not self.root.is_dir():
            return 0
        n = 0
        for dirpath, _, files in os.walk(self.root):
            for name in files:
                if name.endswith(".partial") or (name.startswith(".") and name.endswith(".tmp")):
                    os.unlink(os.path.join(dirpath, name))
                    n += 1
        return n

    def local_path(self, key: str) -> Path | None:
        """Filesystem path of ``key`` for local stores, else None."""
        return self._local(key) if self.local else None


def fsync_dir(path: Path) -> None:
    """fsync a folder so a rename or a new file in it survives a crash."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems refuse fsync on folders
        pass
    finally:
        os.close(fd)


def check_not_file(backend: Backend) -> None:
    """Raise InputError when a local store path is an existing plain file."""
    if backend.local and backend.root.is_file():
        raise InputError(f"{backend.url}: is a file, expected a store folder (.zarr)")
