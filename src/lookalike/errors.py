"""Typed exceptions. Library code raises these; only the CLI and the server turn them into
messages and exit codes."""

from __future__ import annotations

from pathlib import Path


class LookalikeError(Exception):
    """Base class of every error lookalike raises on purpose."""


class ImageError(LookalikeError):
    """An image file could not be read or decoded. `reason` is a short human-readable cause."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class IndexNotFoundError(LookalikeError):
    """The index directory does not exist or holds no lookalike index."""


class IndexMismatchError(LookalikeError):
    """An index is used with settings other than the ones it was built with."""


class IndexCorruptError(LookalikeError):
    """The index directory exists but its files cannot be read."""


class IndexLockedError(LookalikeError):
    """Another process is writing to the index."""


class ConfigError(LookalikeError):
    """A setting has an invalid value (bad descriptor spec, unknown model, ...)."""


class ExecutorError(LookalikeError):
    """A distributed executor (Ray) could not start or its workers failed."""


class DiskFullError(LookalikeError):
    """A write failed because the disk (or the user's quota) is full. Nothing half-written is
    kept; free some space and run the command again."""

    def __init__(self, path: str | Path, what: str = "write") -> None:
        self.path = str(path)
        super().__init__(
            f"{self.path}: disk full while trying to {what}; nothing half-written was kept "
            "(free some space and run the command again)"
        )


def is_disk_full(exc: BaseException) -> bool:
    """Whether an OSError, a FAISS RuntimeError or an SQLite error says the disk is full."""
    import errno
    import os

    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(exc)
    return (
        os.strerror(errno.ENOSPC) in text
        or os.strerror(errno.EDQUOT) in text
        or "database or disk is full" in text
    )
