"""Bulk extraction: files in, descriptors out, in the order given.

`extract_files` is the one place that decides how decoding and CNN work are overlapped; the
index's sync consumes it. Each result is either an `Extracted` (file facts + features) or the
`ImageError` explaining why the file was skipped.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from lookalike.errors import ImageError
from lookalike.extract import Extractor, Features
from lookalike.images import image_size


@dataclass(frozen=True, slots=True)
class Loaded:
    """A decoded image with the facts the catalog records about its file."""

    path: str
    size: int
    mtime_ns: int
    hash: str
    width: int
    height: int
    image: Image.Image


@dataclass(frozen=True, slots=True)
class Extracted:
    path: str
    size: int
    mtime_ns: int
    hash: str
    width: int
    height: int
    features: Features


def file_hash(path: str | Path) -> str:
    """Content hash of a file (BLAKE2b, 128 bits, hex)."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def os_reason(exc: OSError) -> str:
    if isinstance(exc, FileNotFoundError):
        return "file not found (removed during indexing?)"
    if isinstance(exc, PermissionError):
        return "permission denied"
    return exc.strerror or str(exc)


def load_file(path: str, extractor: Extractor) -> Loaded:
    """Stat, hash and decode one file (raises ImageError)."""
    try:
        st = os.stat(path)
        content_hash = file_hash(path)
    except OSError as exc:
        raise ImageError(path, os_reason(exc)) from exc
    width, height = image_size(path)
    image = extractor.load(path)
    return Loaded(path, st.st_size, st.st_mtime_ns, content_hash, width, height, image)


def _load_or_error(path: str, extractor: Extractor) -> Loaded | ImageError:
    try:
        return load_file(path, extractor)
    except ImageError as exc:
        return exc
    except Exception as exc:  # never let one odd file stop a sync
        return ImageError(path, f"cannot read image: {type(exc).__name__}: {exc}")


def extract_one(path: str, extractor: Extractor) -> Extracted:
    loaded = load_file(path, extractor)
    return _describe(loaded, extractor)


def _describe(loaded: Loaded, extractor: Extractor) -> Extracted:
    features = extractor.describe_image(loaded.image)
    return Extracted(
        loaded.path,
        loaded.size,
        loaded.mtime_ns,
        loaded.hash,
        loaded.width,
        loaded.height,
        features,
    )


def extract_files(
    paths: Sequence[str],
    extractor: Extractor,
    *,
    workers: int = 2,
    window: int = 8,
) -> Iterator[Extracted | ImageError]:
    """Yield one result per path, in order. Decoding runs `window` files ahead in `workers`
    threads while the CNN works on the current one, so memory stays bounded."""
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="lookalike-load") as pool:
        pending = []
        for path in paths:
            pending.append(pool.submit(_load_or_error, path, extractor))
            if len(pending) > window:
                yield _finish(pending.pop(0).result(), extractor)
        for fut in pending:
            yield _finish(fut.result(), extractor)


def _finish(item: Loaded | ImageError, extractor: Extractor) -> Extracted | ImageError:
    if isinstance(item, ImageError):
        return item
    try:
        return _describe(item, extractor)
    except (RuntimeError, ValueError, MemoryError) as exc:  # an image the CNN cannot take
        return ImageError(item.path, f"cannot compute descriptor: {type(exc).__name__}: {exc}")
