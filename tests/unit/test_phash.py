"""The NumPy DCT perceptual hash against imagehash's (the reference implementation), its mirror
hash, and how the catalog stores it."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageOps

from lookalike.index.catalog import Catalog, NewImage
from lookalike.verify import phash


def _photo(name: str) -> Image.Image:
    from lookalike.samples import sample_photos

    return sample_photos((name,))[name]


def test_dct_matrix_is_orthonormal():
    c = phash._dct_matrix(32)
    np.testing.assert_allclose(c @ c.T, np.eye(32), atol=1e-12)
    # the DCT of a constant signal has only a DC term
    d = c @ np.full(32, 3.0)
    assert d[0] == pytest.approx(3.0 * np.sqrt(32)) and np.abs(d[1:]).max() < 1e-9


@pytest.mark.parametrize("name", ["chelsea", "coffee", "astronaut", "rocket"])
def test_matches_imagehash(name):
    imagehash = pytest.importorskip("imagehash")
    image = _photo(name)
    ours, ours_mirror = phash.hash_pair(image)
    theirs = int(str(imagehash.phash(image)), 16)
    theirs_mirror = int(str(imagehash.phash(ImageOps.mirror(image))), 16)
    # same recipe; a coefficient right at the median may round either way
    assert phash.distance(ours, theirs) <= 1
    assert phash.distance(ours_mirror, theirs_mirror) <= 2


def test_mirror_hash_is_the_hash_of_the_mirrored_image():
    image = _photo("chelsea")
    plain, mirror = phash.hash_pair(image)
    flipped, flipped_mirror = phash.hash_pair(ImageOps.mirror(image))
    assert phash.distance(mirror, flipped) <= 2
    assert phash.distance(plain, flipped_mirror) <= 2
    assert phash.distance(plain, flipped) > 16  # an asymmetric photo: the plain hash breaks


def test_array_and_pil_input_agree_and_hamming_helpers():
    image = _photo("coffee")
    assert phash.hash_pair(np.asarray(image)) == phash.hash_pair(image)
    assert phash.distance(0, (1 << 64) - 1) == 64
    a = np.array([0, 5, (1 << 63) + 1], dtype=np.uint64)
    b = np.array([1, 5, 1], dtype=np.uint64)
    assert phash.distances(a, b).tolist() == [1, 0, 1]
    for h in (0, 1, (1 << 63) - 1, 1 << 63, (1 << 64) - 1):
        assert phash.to_unsigned(phash.to_signed(h)) == h


def test_catalog_stores_hashes_with_the_top_bit(tmp_path):
    with Catalog(tmp_path / "c.sqlite") as catalog:
        vec = np.ones(4, dtype=np.float32)
        high = ((1 << 64) - 2, 1 << 63)
        ids = catalog.write_batch(
            add=[
                NewImage("/a.jpg", 1, 1, "h1", 4, 3, vec, phash=high),
                NewImage("/b.jpg", 1, 1, "h2", 4, 3, vec, phash=(7, 9)),
                NewImage("/c.jpg", 1, 1, "h3", 4, 3, vec),  # bare vector: no hash
            ]
        )
        assert catalog.phashes(ids) == {ids[0]: high, ids[1]: (7, 9)}
