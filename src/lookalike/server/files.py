"""Serving indexed files safely.

The policy (README, "Security"): the server reads an indexed file (to send it, to make its
thumbnail, or to search a region of it) only when
- its real path (every symbolic link resolved) lies inside a folder the index was built from,
  or inside the index's own uploads folder, and
- it is still the file that was indexed: a regular file with the size and modification time
  the catalog recorded.
Otherwise the answer is 403 (outside the indexed folders: a file reached through a symlink
that leads elsewhere is indexed and searchable, but its bytes are never served), 404 (gone, or
not a regular file) or 409 (changed since indexing: run `lookalike index` again).

The file is opened once, by its resolved path and without following a last symlink, and the
checks run on that open descriptor, so swapping the file for a link between the check and the
read serves nothing it should not.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from lookalike.index.catalog import ImageRecord
from lookalike.server.problems import ApiError

CHUNK = 256 * 1024


def _inside(path: str, folder: str) -> bool:
    folder = folder.rstrip(os.sep) or os.sep
    return path == folder or path.startswith(folder if folder == os.sep else folder + os.sep)


def allowed_folders(roots: Iterable[str], uploads_dir: Path, record_path: str) -> list[str]:
    """The real paths of the folders a record's file may live in. Indexes made before roots
    were recorded fall back to the folder holding the record's path."""
    folders = [os.path.realpath(r) for r in roots]
    folders.append(os.path.realpath(uploads_dir))
    if len(folders) == 1:
        folders.append(os.path.realpath(os.path.dirname(record_path)))
    return folders


def open_indexed(record: ImageRecord, folders: list[str]) -> tuple[int, os.stat_result]:
    """Open the record's file for reading after the policy's checks: returns (fd, its stat);
    the caller closes the fd. Raises ApiError 403/404/409."""
    what = f"image {record.id}"
    try:
        real = os.path.realpath(record.path, strict=True)
    except (OSError, ValueError):
        raise ApiError(404, f"{what}: file not found on disk ({_show(record.path)})") from None
    if not any(_inside(real, f) for f in folders):
        raise ApiError(
            403,
            f"{what}: not served: its real path is outside the indexed folders "
            "(a symbolic link leading elsewhere)",
        )
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(real, flags)
    except OSError:
        raise ApiError(404, f"{what}: file not found on disk ({_show(record.path)})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ApiError(404, f"{what}: not a regular file ({_show(record.path)})")
        opened = _fd_path(fd)
        if opened is not None and not any(_inside(opened, f) for f in folders):
            raise ApiError(403, f"{what}: not served: its real path is outside the indexed folders")
        if st.st_size != record.size or st.st_mtime_ns != record.mtime_ns:
            raise ApiError(
                409,
                f"{what}: the file changed since it was indexed ({_show(record.path)}); "
                "run 'lookalike index' again",
            )
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd, st


@contextmanager
def checked_path(record: ImageRecord, folders: list[str]) -> Iterator[str]:
    """A path that reads the file `open_indexed` checked (for thumbnails and region
    searches): on Linux the open descriptor itself (/proc/self/fd/N), so the checked file is
    the one decoded; elsewhere its resolved path."""
    fd, _ = open_indexed(record, folders)
    try:
        proc = f"/proc/self/fd/{fd}"
        yield proc if os.path.exists(proc) else os.path.realpath(record.path)
    finally:
        os.close(fd)


def iter_fd(fd: int) -> Iterator[bytes]:
    """Stream an open file and close it at the end (or when the client goes away)."""
    with os.fdopen(fd, "rb") as fh:
        while chunk := fh.read(CHUNK):
            yield chunk


def _fd_path(fd: int) -> str | None:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return None


def display_path(path: str) -> str:
    """A path fit for JSON: the bytes of a file name that are not UTF-8 (kept by the catalog as
    they are) shown as U+FFFD."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


_show = display_path
