"""Shared session fixtures: a private model cache, a folder of real photos in many formats and
modes, and helpers for building small indexes quickly.

The photos are the real ones scikit-image ships (lookalike.samples), shrunk to at most
`PHOTO_SIDE` pixels so the whole suite stays fast; indexes built here use `MAX_SIDE`.
"""

from __future__ import annotations

import io
import os
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

PHOTO_SIDE = 256
MAX_SIDE = 224

# Where each shipped photo goes in the test folder, and how it is stored.
# (relative path, photo name, how) - "how" is a key of _SAVERS below.
LAYOUT: tuple[tuple[str, str, str], ...] = (
    ("chelsea.jpg", "chelsea", "jpeg"),
    ("coffee.png", "coffee", "png_alpha"),
    ("astronaut.gif", "astronaut", "gif_palette"),
    ("retina.webp", "retina", "webp"),
    ("camera.bmp", "camera", "bmp"),
    ("coins.tiff", "coins", "tiff"),
    ("moon-16bit.png", "moon", "png16"),
    ("clock-gray.jpg", "clock", "jpeg_gray"),
    ("motorcycle-cmyk.jpg", "motorcycle_left", "jpeg_cmyk"),
    ("rocket-exif-rotated.jpg", "rocket", "jpeg_exif6"),
    ("nested/deeper/brick.png", "brick", "png"),
    ("nested/gravel.jpg", "gravel", "jpeg"),
    ("café/東京.jpg", "hubble_deep_field", "jpeg"),
    ("immunohistochemistry.jpg", "immunohistochemistry", "jpeg"),
    ("grass.jpg", "grass", "jpeg"),
    ("page.png", "page", "png"),
)


def _shrink(image: Image.Image, side: int = PHOTO_SIDE) -> Image.Image:
    image = image.copy()
    image.thumbnail((side, side), Image.Resampling.BICUBIC)
    return image


def _save_png_alpha(image: Image.Image, path: Path) -> None:
    rgba = image.convert("RGBA")
    alpha = np.full((rgba.height, rgba.width), 255, dtype=np.uint8)
    alpha[:8, :8] = 0  # a transparent corner: alpha is really used
    rgba.putalpha(Image.fromarray(alpha))
    rgba.save(path)


def _save_png16(image: Image.Image, path: Path) -> None:
    gray = np.asarray(image.convert("L"), dtype=np.uint16) * 257
    Image.fromarray(gray).save(path)  # mode I;16


def _save_exif6(image: Image.Image, path: Path) -> None:
    # Stored rotated; EXIF orientation 6 says "rotate 90 CW to display", which undoes it.
    stored = image.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(path, quality=92, exif=exif.tobytes())


_SAVERS = {
    "jpeg": lambda im, p: im.save(p, quality=92),
    "png": lambda im, p: im.save(p),
    "png_alpha": _save_png_alpha,
    "gif_palette": lambda im, p: im.convert("P", palette=Image.Palette.ADAPTIVE).save(p),
    "webp": lambda im, p: im.save(p, quality=90),
    "bmp": lambda im, p: im.convert("L").save(p),
    "tiff": lambda im, p: im.save(p, compression="tiff_deflate"),
    "png16": _save_png16,
    "jpeg_gray": lambda im, p: im.convert("L").save(p, quality=92),
    "jpeg_cmyk": lambda im, p: im.convert("CMYK").save(p, quality=92),
    "jpeg_exif6": _save_exif6,
}


def write_photo_folder(root: Path, photos: dict[str, Image.Image]) -> dict[str, Path]:
    """Write LAYOUT under `root`; returns photo name -> file path."""
    out = {}
    for rel, name, how in LAYOUT:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        _SAVERS[how](photos[name], path)
        out[name] = path
    return out


def bomb_png(width: int = 40_000, height: int = 40_000) -> bytes:
    """A few hundred bytes of PNG whose header claims width x height pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale
    idat = zlib.compress(b"\x00" * 1024)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def truncated_jpeg(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.convert("RGB").save(buf, "JPEG", quality=92)
    data = buf.getvalue()
    return data[: len(data) // 2]


@pytest.fixture(scope="session", autouse=True)
def lookalike_cache(tmp_path_factory) -> Path:
    """One private LOOKALIKE_CACHE_DIR for the session (read by backbone/runtime.cache_dir), so
    the ONNX export happens once and subprocesses (they inherit os.environ) reuse it."""
    path = tmp_path_factory.mktemp("lookalike-cache")
    old = os.environ.get("LOOKALIKE_CACHE_DIR")
    os.environ["LOOKALIKE_CACHE_DIR"] = str(path)
    yield path
    if old is None:
        os.environ.pop("LOOKALIKE_CACHE_DIR", None)
    else:
        os.environ["LOOKALIKE_CACHE_DIR"] = old


@pytest.fixture(scope="session")
def photos() -> dict[str, Image.Image]:
    """The shipped photos (lookalike.samples), shrunk to PHOTO_SIDE."""
    from lookalike.samples import sample_photos

    return {name: _shrink(im) for name, im in sample_photos().items()}


@pytest.fixture(scope="session")
def photo_folder_master(tmp_path_factory, photos) -> Path:
    root = tmp_path_factory.mktemp("photos-master")
    write_photo_folder(root, photos)
    return root


@pytest.fixture
def photo_folder(tmp_path, photo_folder_master) -> Path:
    """A fresh copy of the photo folder that a test may change."""
    dest = tmp_path / "photos"
    shutil.copytree(photo_folder_master, dest)
    return dest


@pytest.fixture(scope="session")
def photo_index(tmp_path_factory, photo_folder_master):
    """An index of the (unchanged) photo folder, built once through the Python API. Tests must
    not write to it; they open it read-only."""
    from lookalike.engine import Index
    from lookalike.index.manifest import IndexSettings

    path = tmp_path_factory.mktemp("photo-index") / "idx"
    with Index.create(path, IndexSettings(max_side=MAX_SIDE)) as idx:
        report = idx.sync([photo_folder_master])
    assert report.added == len(LAYOUT) and not report.skipped, report.to_dict()
    return path


@pytest.fixture(scope="session")
def extractor():
    """The Extractor the test indexes use (shares the session's cached ONNX model)."""
    from lookalike.extract import Extractor

    return Extractor(max_side=MAX_SIDE)


def clustered_vectors(
    n: int, dim: int, clusters: int, *, seed: int = 0, spread: float = 0.25
) -> np.ndarray:
    """L2-normalized vectors around `clusters` random centres: data with neighbour structure
    (random uniform vectors have none, and every approximate index fails on them)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    labels = rng.integers(0, clusters, size=n)
    x = centres[labels] + spread * rng.standard_normal((n, dim)).astype(np.float32)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="session")
def ray_cluster(lookalike_cache):
    """A real local Ray instance with 2 CPUs, started once per session (scale-out tests).
    Its workers inherit LOOKALIKE_CACHE_DIR, so they reuse the session's ONNX export."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=128 * 1024 * 1024)
    yield ray
    ray.shutdown()
