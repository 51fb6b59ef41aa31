"""Uploaded images: read within the size limit, identify by content (never by file name), keep
in a temporary file or in the index's uploads folder under a content-hash name."""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from fastapi import UploadFile
from PIL import Image, UnidentifiedImageError

from lookalike.server.problems import ApiError

CHUNK = 1024 * 1024
EXTENSIONS = {
    "JPEG": ".jpg",
    "PNG": ".png",
    "WEBP": ".webp",
    "GIF": ".gif",
    "BMP": ".bmp",
    "TIFF": ".tif",
    "PPM": ".ppm",
    "MPO": ".jpg",
}


@dataclass(frozen=True, slots=True)
class Upload:
    """An upload saved to `path` (a temporary file until `keep` moves it)."""

    path: Path
    sha256: str
    format: str
    width: int
    height: int
    filename: str

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


async def receive_upload(
    file: UploadFile, *, max_bytes: int, max_pixels: int, tmp_dir: Path | None = None
) -> Upload:
    """Copy `file` to a temporary file (413 past `max_bytes`), then check that it is an image
    of a format Pillow reads (415 otherwise) with at most `max_pixels` pixels (413)."""
    from starlette.concurrency import run_in_threadpool

    fd, name = tempfile.mkstemp(prefix="upload-", suffix=".bin", dir=tmp_dir)
    path = Path(name)
    digest = hashlib.sha256()
    size = 0
    try:
        with os.fdopen(fd, "wb") as out:
            while chunk := await file.read(CHUNK):
                size += len(chunk)
                if size > max_bytes:
                    raise ApiError(413, f"upload too large: over the limit of {max_bytes:,} bytes")
                digest.update(chunk)
                out.write(chunk)
        if size == 0:
            raise ApiError(422, "upload is an empty file")
        fmt, width, height = await run_in_threadpool(probe, path, max_pixels)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return Upload(path, digest.hexdigest(), fmt, width, height, file.filename or "")


def probe(path: Path, max_pixels: int) -> tuple[str, int, int]:
    """Format and size from the file's header; raises ApiError 415 / 413."""
    try:
        with Image.open(path) as im:
            fmt = im.format or ""
            width, height = im.size
    except UnidentifiedImageError:
        raise ApiError(415, "upload is not an image (cannot identify format)") from None
    except Image.DecompressionBombError as exc:
        raise ApiError(413, f"upload image too large ({exc})") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ApiError(422, f"upload: truncated or corrupt image ({exc})") from None
    if width * height > max_pixels:
        raise ApiError(
            413,
            f"upload image too large: {width}x{height} pixels exceeds the limit of "
            f"{max_pixels:,} pixels",
        )
    return fmt, width, height


def keep(upload: Upload, folder: Path) -> Path:
    """Move an upload into `folder` under its content-hash name; an identical file already
    there is reused."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{upload.sha256[:32]}{EXTENSIONS.get(upload.format, '.img')}"
    if target.exists():
        upload.discard()
    else:
        os.replace(upload.path, target)
    return target
