"""The files of an index directory: the writer's lock, the catalog and the manifest.

A `Store` opens or creates the directory, checks settings, holds the lock file of the one
process that writes, and owns the thread lock (`Store.lock`) under which every catalog access
and every change of derived state happens. It knows nothing about images, FAISS or search.

Layout of an index directory:
    manifest.json    settings and derived-state bookkeeping (see index/manifest.py)
    catalog.sqlite   images, raw descriptors, skipped files (the source of truth)
    vectors.faiss    FAISS index of the search vectors (derived, rebuilt when stale)
    whitening.npz    learned PCA-whitening (derived)
    lock             held by the one process that writes
"""

from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path

from lookalike import __version__
from lookalike.errors import (
    ConfigError,
    DiskFullError,
    IndexCorruptError,
    IndexLockedError,
    IndexMismatchError,
    IndexNotFoundError,
    is_disk_full,
)
from lookalike.index.catalog import Catalog
from lookalike.index.manifest import (
    MANIFEST_NAME,
    IndexSettings,
    Manifest,
    read_manifest,
    validate_settings,
    write_manifest,
)

CATALOG_NAME = "catalog.sqlite"
VECTORS_NAME = "vectors.faiss"
LOCK_NAME = "lock"


def is_index(path: str | Path) -> bool:
    """Whether `path` holds a lookalike index (its manifest exists)."""
    return (Path(path) / MANIFEST_NAME).is_file()


class Store:
    """An open index directory: path, manifest, catalog, writer's lock, thread lock."""

    def __init__(self, path: Path, manifest: Manifest, *, writable: bool, lock_fd: int | None):
        self.path = path
        self.manifest = manifest
        self.writable = writable
        self._lock_fd = lock_fd
        # Every catalog access and every change of derived state happens under this lock
        # (the server calls the index from a thread pool).
        self.lock = threading.RLock()
        self.catalog = Catalog(path / CATALOG_NAME, readonly=not writable)

    @classmethod
    def create(cls, path: str | Path, settings: IndexSettings | None = None) -> Store:
        """Create a new, empty index directory (it may exist but must be empty)."""
        path = Path(path).expanduser().absolute()
        settings = settings or IndexSettings()
        check_settings_valid(settings)
        if is_index(path):
            raise ConfigError(f"{path}: an index already exists here")
        if path.exists() and (
            not path.is_dir() or any(not _is_create_leftover(p.name) for p in path.iterdir())
        ):
            raise ConfigError(f"{path}: exists and is not an empty directory")
        path.mkdir(parents=True, exist_ok=True)
        lock_fd = _acquire_lock(path)
        try:
            manifest = Manifest(
                lookalike_version=__version__, settings=settings, index_id=new_index_id()
            )
            Catalog(path / CATALOG_NAME).close()
            write_manifest(path, manifest)  # last: its presence marks a complete index
            return cls(path, manifest, writable=True, lock_fd=lock_fd)
        except BaseException:
            _release_lock(lock_fd)
            raise

    @classmethod
    def open(
        cls, path: str | Path, *, writable: bool = False, settings: IndexSettings | None = None
    ) -> Store:
        """Open an existing index; with `settings`, refuse when it was built otherwise."""
        path = Path(path).expanduser().absolute()
        if not is_index(path):
            raise IndexNotFoundError(f"{path}: no lookalike index here (create one with 'index')")
        lock_fd = _acquire_lock(path) if writable else None
        try:
            manifest = read_manifest(path)
            if settings is not None:
                check_same_settings(manifest.settings, settings, path)
            if writable and manifest.index_id is None:  # made before identity stamps
                manifest.index_id = new_index_id()
                write_manifest(path, manifest)
            return cls(path, manifest, writable=writable, lock_fd=lock_fd)
        except BaseException:
            _release_lock(lock_fd)
            raise

    def close(self) -> None:
        with self.lock:
            self.catalog.close()
            _release_lock(self._lock_fd)
            self._lock_fd = None

    @property
    def settings(self) -> IndexSettings:
        return self.manifest.settings

    def save_manifest(self) -> None:
        write_manifest(self.path, self.manifest)

    def require_writable(self) -> None:
        if not self.writable:
            raise ConfigError(f"{self.path}: index is open read-only")

    def check_settings(self, **given: object) -> None:
        """Raise IndexMismatchError when any given (non-None) setting differs from the index's."""
        given = {k: v for k, v in given.items() if v is not None}
        if not given:
            return
        wanted = self.settings.model_copy(
            update=validate_settings(**given).model_dump(include=set(given))
        )
        check_same_settings(self.settings, wanted, self.path)

    def size_bytes(self) -> int:
        return sum(f.stat().st_size for f in self.path.iterdir() if f.is_file())


def check_settings_valid(settings: IndexSettings) -> None:
    """Refuse settings naming an unknown model, descriptor or FAISS key (ConfigError)."""
    from lookalike.backbone import MODELS
    from lookalike.index.vectors import VectorIndex
    from lookalike.pooling import parse_descriptor

    if settings.model not in MODELS:
        raise ConfigError(f"unknown model {settings.model!r}; choose one of {', '.join(MODELS)}")
    parse_descriptor(settings.descriptor)
    if settings.index_key and settings.store != "faiss":
        from lookalike.index.milvus import parse_milvus_key, parse_params

        parse_milvus_key(settings.index_key)
        parse_params(settings.index_params)
    elif settings.index_key:
        VectorIndex(settings.index_key, 8 if "PQ" not in settings.index_key else 64)


def check_same_settings(built: IndexSettings, wanted: IndexSettings, path: Path) -> None:
    """Raise IndexMismatchError naming every setting where `wanted` differs from `built`."""
    diffs = [
        f"{name}={getattr(wanted, name)!r} (index has {getattr(built, name)!r})"
        for name in IndexSettings.model_fields
        if getattr(built, name) != getattr(wanted, name)
    ]
    if diffs:
        raise IndexMismatchError(f"{path}: index was built with other settings: {'; '.join(diffs)}")


def _is_create_leftover(name: str) -> bool:
    """A file an interrupted `create` can leave before the manifest (written last) exists."""
    if name in (LOCK_NAME, CATALOG_NAME) or name.startswith(CATALOG_NAME + "-"):
        return True
    return name.startswith(MANIFEST_NAME + ".") and name.endswith(".tmp")


def new_index_id() -> str:
    """A new index's identity (random, 128 bits, hex)."""
    import uuid

    return uuid.uuid4().hex


def _acquire_lock(path: Path) -> int:
    lock = path / LOCK_NAME
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
    except IsADirectoryError:
        raise IndexCorruptError(
            f"{lock}: the index's lock file is a directory; remove it (rmdir) when no "
            "lookalike process is using this index, then run the command again"
        ) from None
    except OSError as exc:
        if is_disk_full(exc):
            raise DiskFullError(lock, "create the index's lock file") from exc
        raise IndexCorruptError(
            f"{lock}: cannot open the index's lock file ({exc.strerror or exc}); it must be a "
            "regular file this user can write"
        ) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise IndexLockedError(f"{path}: another process is writing to this index") from None
    return fd


def _release_lock(fd: int | None) -> None:
    if fd is not None:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
