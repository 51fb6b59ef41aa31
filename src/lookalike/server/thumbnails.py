"""JPEG thumbnails of indexed images, cached on disk under a name that changes with the file's
content hash (a changed file gets a new thumbnail)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from lookalike.images import load_image

SIZES = (128, 256, 512)
DEFAULT_SIZE = 256


def default_cache_dir(index_path: Path) -> Path:
    """`<index>/thumbnails` when the index folder is writable, else the user cache dir."""
    if os.access(index_path, os.W_OK):
        return index_path / "thumbnails"
    import hashlib

    from platformdirs import user_cache_dir

    tag = hashlib.sha256(str(index_path).encode()).hexdigest()[:16]
    return Path(user_cache_dir("lookalike")) / "thumbnails" / tag


class ThumbnailCache:
    def __init__(self, folder: Path, max_pixels: int) -> None:
        self.folder = folder
        self.max_pixels = max_pixels

    def _name(self, image_id: int, content_hash: str, size: int) -> Path:
        return self.folder / f"{image_id}-{(content_hash or 'nohash')[:16]}-{size}.jpg"

    def get(self, image_id: int, path: str, content_hash: str, size: int) -> Path:
        """The cached thumbnail's path, made now if missing (raises ImageError)."""
        target = self._name(image_id, content_hash, size)
        if target.exists():
            return target
        image = load_image(path, size, max_pixels=self.max_pixels)
        self.folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.folder, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as out:
                image.save(out, "JPEG", quality=82, optimize=True)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return target

    def drop(self, image_id: int) -> None:
        if self.folder.is_dir():
            for f in self.folder.glob(f"{image_id}-*.jpg"):
                f.unlink(missing_ok=True)
