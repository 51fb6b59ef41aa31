"""Image loading: any Pillow format and mode -> oriented RGB image, resized to a maximum side.

Everything that can go wrong with a file (missing, empty, unreadable, not an image, truncated,
too large) is raised as :class:`~lookalike.errors.ImageError` with a short reason. Nothing here
changes Pillow's global settings: truncated images are detected (``LOAD_TRUNCATED_IMAGES`` is
left alone) and the decompression-bomb limit is enforced per call through ``max_pixels``.
"""

from __future__ import annotations

import logging
import math
import os
import re
import stat
import struct
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from lookalike.errors import ConfigError, ImageError

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_MAX_SIDE",
    "IMAGE_EXTENSIONS",
    "decode_image",
    "image_size",
    "iter_image_files",
    "load_image",
    "to_array",
]

logger = logging.getLogger(__name__)

DEFAULT_MAX_SIDE = 480
# Twice Pillow's default MAX_IMAGE_PIXELS: the size at which Pillow itself refuses to open.
DEFAULT_MAX_PIXELS = 178_956_970

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {
        ".jpg",
        ".jpeg",
        ".jfif",
        ".png",
        ".webp",
        ".gif",
        ".bmp",
        ".tif",
        ".tiff",
        ".pgm",
        ".ppm",
        ".pbm",
    }
)

# EXIF orientations that swap width and height (transpose, rotate 90/270, transverse).
_SWAPPING_ORIENTATIONS = frozenset({5, 6, 7, 8})
_EXIF_ORIENTATION_TAG = 0x0112

# What a corrupt file can raise from inside a Pillow decoder.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error)

_CORRUPT = "truncated or corrupt image data"


def _too_large(width: int, height: int, limit: int) -> str:
    return f"image too large: {width}x{height} pixels exceeds limit of {limit:,} pixels"


def _bomb_reason(exc: Exception, max_pixels: int | None) -> str:
    """Reason for Pillow's DecompressionBombError (raised before we see the size)."""
    limits = [n for n in (max_pixels, Image.MAX_IMAGE_PIXELS and 2 * Image.MAX_IMAGE_PIXELS) if n]
    match = re.search(r"\((\d+) pixels\)", str(exc))
    if match is None or not limits:
        return f"image too large ({exc})"
    pixels = int(match.group(1))
    return f"image too large: {pixels:,} pixels exceeds limit of {min(limits):,} pixels"


class _OpenImage:
    """Context manager: open a file and identify it, mapping every failure to ImageError.

    Pillow's DecompressionBombWarning is silenced for the duration (the caller applies its own
    ``max_pixels`` limit) and its DecompressionBombError is turned into an ImageError.
    """

    def __init__(self, path: str | os.PathLike[str], max_pixels: int | None = None) -> None:
        self.path = Path(path)
        self.max_pixels = max_pixels
        self._fp = None
        self._im: Image.Image | None = None
        self._warnings = warnings.catch_warnings()

    def __enter__(self) -> Image.Image:
        path = self.path
        try:
            st = path.stat()
        except FileNotFoundError:
            raise ImageError(path, "file not found") from None
        except PermissionError:
            raise ImageError(path, "permission denied") from None
        except OSError as exc:
            raise ImageError(path, f"cannot access file ({exc.strerror or exc})") from None
        if stat.S_ISDIR(st.st_mode):
            raise ImageError(path, "not a file (is a directory)")
        if st.st_size == 0:
            raise ImageError(path, "empty file")
        try:
            self._fp = open(path, "rb")  # closed in __exit__
        except PermissionError:
            raise ImageError(path, "permission denied") from None
        except OSError as exc:
            raise ImageError(path, f"cannot open file ({exc.strerror or exc})") from None
        self._warnings.__enter__()
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            self._im = Image.open(self._fp)
        except BaseException as exc:
            self.__exit__(None, None, None)
            if isinstance(exc, Image.DecompressionBombError):
                raise ImageError(path, _bomb_reason(exc, self.max_pixels)) from None
            if isinstance(exc, UnidentifiedImageError):
                raise ImageError(path, "not an image (cannot identify format)") from None
            if isinstance(exc, _DECODE_ERRORS):
                raise ImageError(path, _CORRUPT) from exc
            raise
        return self._im

    def __exit__(self, *exc_info: object) -> None:
        if self._im is not None:
            self._im.close()
            self._im = None
        if self._fp is not None:
            self._fp.close()
            self._fp = None
            self._warnings.__exit__(None, None, None)


def _orientation(im: Image.Image) -> int:
    try:
        return int(im.getexif().get(_EXIF_ORIENTATION_TAG, 1))
    except Exception:  # a broken EXIF block must not make the image unreadable
        return 1


def image_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    """Return ``(width, height)`` of the image as displayed (EXIF orientation applied).

    Reads the header only; nothing is decoded. Raises ImageError like :func:`load_image`.
    """
    with _OpenImage(path) as im:
        width, height = im.size
        if _orientation(im) in _SWAPPING_ORIENTATIONS:
            return height, width
        return width, height


def _draft_size(size: tuple[int, int], max_side: int) -> tuple[int, int]:
    """Smallest size to ask ``Image.draft`` for so the long side stays >= ``max_side``."""
    width, height = size
    scale = max_side / max(width, height)
    return max(1, math.ceil(width * scale)), max(1, math.ceil(height * scale))


def _to_8bit_gray(im: Image.Image) -> Image.Image:
    """Scale a 16/32-bit integer or float single-channel image to 8-bit L.

    - ``I;16*``: full 16-bit range, 0..65535 -> 0..255 (divide by 257, so 65535 -> 255).
    - ``I``: treated as 16-bit data (what Pillow gives for 16-bit PNG/TIFF), clipped to 0..65535.
    - ``F``: values in [0, 1] are scaled by 255; values already in [0, 255] are kept; anything
      else is stretched linearly from [min, max] to [0, 255]. NaN becomes 0.
    """
    arr = np.asarray(im)
    if im.mode == "F":
        data = np.nan_to_num(arr.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        lo, hi = (float(data.min()), float(data.max())) if data.size else (0.0, 0.0)
        if lo >= 0.0 and hi <= 1.0:
            data = data * 255.0
        elif not (lo >= 0.0 and hi <= 255.0):
            data = (data - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(data)
    else:
        data = np.clip(arr.astype(np.float64), 0, 65535) / 257.0
    out = np.clip(np.rint(data), 0, 255).astype(np.uint8)
    return Image.fromarray(out, mode="L")


def _composite_on_white(im: Image.Image) -> Image.Image:
    rgba = im.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _to_rgb(im: Image.Image) -> Image.Image:
    mode = im.mode
    if mode == "RGB":
        return im
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        mode in ("P", "L", "RGB") and "transparency" in im.info
    ):
        return _composite_on_white(im)
    if mode == "F" or mode == "I" or mode.startswith("I;16"):
        return _to_8bit_gray(im).convert("RGB")
    return im.convert("RGB")


def decode_image(
    path: str | os.PathLike[str],
    max_side: int | None = DEFAULT_MAX_SIDE,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Image.Image:
    """Decode an image to oriented RGB *without* the final resize.

    JPEGs larger than needed are decoded at a reduced DCT scale (``Image.draft``, 1/2, 1/4 or
    1/8) chosen so that the longer side stays at least ``max_side``; other formats decode at
    full size. :func:`load_image` is this followed by the resize; it is public so tests and
    benchmarks can see what the decoder produced.
    """
    path = Path(path)
    if max_side is not None and max_side < 1:
        raise ConfigError(f"max_side must be a positive integer or None, got {max_side!r}")
    with _OpenImage(path, max_pixels) as im:
        width, height = im.size
        if width * height > max_pixels:
            raise ImageError(path, _too_large(width, height, max_pixels))
        try:
            if im.format == "JPEG" and max_side is not None and max(width, height) > max_side:
                im.draft("RGB", _draft_size((width, height), max_side))
            im.load()
            oriented = ImageOps.exif_transpose(im)
            return _to_rgb(oriented)
        except ImageError:
            raise
        except Image.DecompressionBombError as exc:
            raise ImageError(path, _bomb_reason(exc, max_pixels)) from None
        except MemoryError:
            raise ImageError(path, "out of memory while decoding") from None
        except _DECODE_ERRORS as exc:
            logger.debug("decoding %s failed: %s", path, exc)
            raise ImageError(path, _CORRUPT) from exc


def load_image(
    path: str | os.PathLike[str],
    max_side: int | None = DEFAULT_MAX_SIDE,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Image.Image:
    """Load an image file as an RGB ``PIL.Image`` whose longer side is at most ``max_side``.

    - Any format Pillow reads (first frame of animations); any mode: alpha is composited on
      white, palette transparency honoured, CMYK converted, 16-bit and float scaled to 8 bits.
    - EXIF orientation applied, so the result looks as a photo viewer shows it.
    - Big JPEGs are decoded at reduced scale with ``Image.draft`` before the resize.
    - Never upscales; ``max_side=None`` keeps the decoded size. Resizing uses bicubic
      filtering with ``reducing_gap=3.0`` (box-reduce first, then bicubic: fast and sharp).
    - ``max_pixels``: images whose header announces more pixels raise ImageError before any
      decoding. Pillow's own hard limit (2 x ``Image.MAX_IMAGE_PIXELS``) still applies on top.

    Raises ImageError(path, reason) for missing, empty, unreadable, non-image, truncated or
    corrupt files and for images over the pixel limit.

    Pillow's DecompressionBombWarning is silenced with ``warnings.catch_warnings`` while the
    file is open; like any use of that context manager, it is not thread-safe on Python < 3.14
    (concurrent threads may see their warning filters briefly swapped). Use processes, or
    accept that, when decoding in threads.
    """
    im = decode_image(path, max_side, max_pixels=max_pixels)
    if max_side is not None:
        width, height = im.size
        longest = max(width, height)
        if longest > max_side:
            scale = max_side / longest
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            im = im.resize(size, Image.Resampling.BICUBIC, reducing_gap=3.0)
    return im


def to_array(img: Image.Image) -> np.ndarray:
    """Return the image as a C-contiguous ``uint8`` array of shape (H, W, 3)."""
    if img.mode != "RGB":
        img = _to_rgb(img)
    return np.ascontiguousarray(np.asarray(img, dtype=np.uint8))


def iter_image_files(
    dirs: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    *,
    on_skip: Callable[[Path, str], None] | None = None,
) -> Iterator[Path]:
    """Yield image files under ``dirs`` (one folder or several), recursively, in sorted order.

    - Entries of each folder are visited sorted by name, depth first.
    - Hidden entries (name starting with ".") are skipped, folders and files alike (this also
      skips macOS "._x.jpg" resource forks, which are not images).
    - Symbolic links are followed, but each real folder is walked once and each real file
      yielded once (the first path reaching it wins), so link loops end and overlapping roots
      or linked files yield no duplicates.
    - A file given directly is yielded if its suffix is in :data:`IMAGE_EXTENSIONS`.
    - Folders that cannot be read are logged and skipped; a root that does not exist raises
      ConfigError.
    """
    if isinstance(dirs, str | os.PathLike):
        dirs = [dirs]
    roots = [Path(d) for d in dirs]
    for root in roots:
        if not root.exists():
            raise ConfigError(f"folder not found: {root}")
    seen_dirs: set[tuple[int, int]] = set()
    seen_files: set[tuple[int, int]] = set()
    for root in roots:
        if root.is_dir():
            yield from _walk(root, seen_dirs, seen_files, on_skip)
        elif root.suffix.lower() in IMAGE_EXTENSIONS:
            yield root


def _walk(
    folder: Path,
    seen_dirs: set[tuple[int, int]],
    seen_files: set[tuple[int, int]],
    on_skip: Callable[[Path, str], None] | None = None,
) -> Iterator[Path]:
    try:
        st = folder.stat()
    except OSError as exc:
        logger.warning("skipping folder %s: %s", folder, exc)
        return
    key = (st.st_dev, st.st_ino)
    if key in seen_dirs:
        return
    seen_dirs.add(key)
    try:
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError as exc:
        logger.warning("skipping folder %s: %s", folder, exc)
        return
    for entry in entries:
        if entry.name.startswith("."):
            continue
        path = folder / entry.name
        try:
            is_dir = entry.is_dir(follow_symlinks=True)
            is_file = not is_dir and entry.is_file(follow_symlinks=True)
        except OSError:
            continue
        if is_dir:
            yield from _walk(path, seen_dirs, seen_files, on_skip)
        elif not is_file and on_skip is not None and _is_image_name(entry.name):
            on_skip(path, _not_regular_reason(path))
        elif is_file and Path(entry.name).suffix.lower() in IMAGE_EXTENSIONS:
            try:
                fst = entry.stat(follow_symlinks=True)
            except OSError:
                continue
            fkey = (fst.st_dev, fst.st_ino)
            if fkey in seen_files:
                continue
            seen_files.add(fkey)
            yield path


def _is_image_name(name: str) -> bool:
    return Path(name).suffix.lower() in IMAGE_EXTENSIONS


def _not_regular_reason(path: Path) -> str:
    """Why an entry with an image name is not read (it is not a regular file)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return (
            "broken symbolic link (its target does not exist)"
            if path.is_symlink()
            else ("file not found")
        )
    except OSError as exc:
        return f"cannot access file ({exc.strerror or exc})"
    if stat.S_ISFIFO(st.st_mode):
        return "not a regular file (a FIFO / named pipe)"
    if stat.S_ISSOCK(st.st_mode):
        return "not a regular file (a socket)"
    if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        return "not a regular file (a device)"
    return "not a regular file"


def crop_box(image: Image.Image, box: tuple[float, float, float, float]) -> Image.Image:
    """The region (x0, y0, x1, y1) of `image`, in its pixel coordinates, clipped to the image.
    Raises ConfigError for an empty or inverted box."""
    from lookalike.errors import ConfigError

    x0, y0, x1, y1 = (float(v) for v in box)
    if not all(math.isfinite(v) for v in (x0, y0, x1, y1)):
        raise ConfigError(f"box {tuple(box)}: coordinates must be finite numbers")
    w, h = image.size
    x0, x1 = max(0.0, min(x0, w)), max(0.0, min(x1, w))
    y0, y1 = max(0.0, min(y0, h)), max(0.0, min(y1, h))
    if x1 - x0 < 8 or y1 - y0 < 8:
        raise ConfigError(
            f"box {tuple(box)} is empty or smaller than 8x8 pixels inside the {w}x{h} image"
        )
    return image.crop((round(x0), round(y0), round(x1), round(y1)))
