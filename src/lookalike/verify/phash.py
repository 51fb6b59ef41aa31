"""A 64-bit DCT perceptual hash (pHash) written with NumPy, plus the hash of the mirrored image.

The usual recipe (as in imagehash.phash): grey levels, resized to 32 x 32, 2-D DCT-II, the 8 x 8
lowest frequencies, one bit per coefficient: above the median of the 64. Mirroring an image
left-right multiplies DCT coefficient (v, u) by (-1)^u, so the mirrored image's hash comes from
the same transform at no extra cost.

Hashes are Python ints in [0, 2^64); the catalog stores them as signed 64-bit integers
(`to_signed` / `to_unsigned`).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image

HASH_SIZE = 8  # 8 x 8 coefficients: 64 bits
IMAGE_SIZE = 32  # the DCT runs on a 32 x 32 grey image
BITS = HASH_SIZE * HASH_SIZE


@lru_cache(maxsize=1)
def _dct_matrix(n: int = IMAGE_SIZE) -> np.ndarray:
    """The orthonormal DCT-II matrix C (n x n): C @ x is the DCT of the column vector x."""
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    c = np.cos(np.pi * (2 * i + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    c[0] /= np.sqrt(2.0)
    return c


def grey_32(pixels: np.ndarray | Image.Image) -> np.ndarray:
    """An RGB uint8 array (H, W, 3) or a PIL image -> 32 x 32 float grey levels, resized with
    Lanczos on the 8-bit grey image (as imagehash does)."""
    image = pixels if isinstance(pixels, Image.Image) else Image.fromarray(np.asarray(pixels))
    grey = image.convert("L").resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.LANCZOS)
    return np.asarray(grey, dtype=np.float64)


def _bits_to_int(bits: np.ndarray) -> int:
    out = 0
    for b in bits.reshape(-1):
        out = (out << 1) | int(b)
    return out


def low_frequencies(grey: np.ndarray) -> np.ndarray:
    """The 8 x 8 lowest DCT-II coefficients of a 32 x 32 grey image (rows: vertical frequency)."""
    c = _dct_matrix(grey.shape[0])
    return (c @ grey @ c.T)[:HASH_SIZE, :HASH_SIZE]


def hash_pair(pixels: np.ndarray | Image.Image) -> tuple[int, int]:
    """(pHash of the image, pHash of its left-right mirror), each a 64-bit unsigned int."""
    d = low_frequencies(grey_32(pixels))
    sign = np.where(np.arange(HASH_SIZE) % 2 == 1, -1.0, 1.0)[None, :]
    mirrored = d * sign
    return (
        _bits_to_int(d > np.median(d)),
        _bits_to_int(mirrored > np.median(mirrored)),
    )


def phash(pixels: np.ndarray | Image.Image) -> int:
    """The 64-bit perceptual hash of an image."""
    return hash_pair(pixels)[0]


def distance(a: int, b: int) -> int:
    """Hamming distance between two 64-bit hashes."""
    return int((a ^ b).bit_count())


def to_signed(h: int) -> int:
    """A 64-bit unsigned hash as SQLite's signed INTEGER."""
    return h - (1 << 64) if h >= 1 << 63 else h


def to_unsigned(h: int) -> int:
    return h + (1 << 64) if h < 0 else h


def distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Element-wise Hamming distances between two arrays of 64-bit hashes (int64 or uint64)."""
    x = np.bitwise_xor(a.astype(np.uint64), b.astype(np.uint64))
    as_bytes = x.view(np.uint8).reshape(*x.shape, 8)
    return np.unpackbits(as_bytes, axis=-1).sum(axis=-1).astype(np.int64)
