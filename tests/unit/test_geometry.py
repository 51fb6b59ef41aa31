"""Geometric verification on hand-made transforms and on edits of a shipped photo."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageOps

from lookalike.edits import apply_edit
from lookalike.verify.geometry import compare, content_box, content_mask, verify_images


@pytest.fixture(scope="module")
def chelsea() -> Image.Image:
    from lookalike.samples import sample_photos

    return sample_photos(("chelsea",))["chelsea"]


def _texture(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(h // 8, w // 8)).astype(np.uint8)
    return np.asarray(Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC))


def test_uniform_margins_are_not_content():
    inner = _texture(80, 120)
    framed = np.pad(inner, 10, constant_values=255)
    assert content_box(framed) == (10, 10, 130, 90)
    mask = content_mask(framed)
    assert not mask[:10].any() and not mask[:, :10].any()
    assert mask[10:90, 10:130].mean() > 0.99
    # a photo's own large flat background (over a third of it) stays content
    sky = np.vstack([np.full((100, 120), 30, np.uint8), _texture(40, 120)])
    assert content_mask(sky).all()


def test_compare_identity_shift_and_crop():
    a = _texture(120, 160)
    identity = np.array([[1.0, 0, 0], [0, 1.0, 0]])
    contained, agreeing, cells = compare(a, a, identity)
    assert contained == pytest.approx(1.0, abs=0.02) and agreeing == 1.0 and cells > 20
    # b = the right half of a, placed where it belongs: inside a
    b = np.ascontiguousarray(a[:, 80:])
    contained, agreeing, _ = compare(a, b, np.array([[1.0, 0, 80], [0, 1.0, 0]]))
    assert contained == pytest.approx(1.0, abs=0.03) and agreeing > 0.9
    # the same half placed half outside: only half of it lies on a
    contained, _, _ = compare(a, b, np.array([[1.0, 0, 120], [0, 1.0, 0]]))
    assert contained == pytest.approx(0.5, abs=0.05)
    # another picture at the right place does not agree
    _, agreeing, _ = compare(a, _texture(120, 160, seed=1), identity)
    assert agreeing < 0.3


@pytest.mark.parametrize("edit", ["rescale", "border", "flip", "crop", "caption", "rotate"])
def test_edited_copies_are_the_same_photo(chelsea, edit):
    g = verify_images(chelsea, apply_edit(edit, chelsea, seed=3))
    assert g.same_photo, g.evidence()
    assert g.mirrored == (edit == "flip")


def test_overlapping_framings_are_not(chelsea):
    w, h = chelsea.size
    left = chelsea.crop((0, 0, int(0.6 * w), h))
    right = chelsea.crop((int(0.4 * w), 0, w, h))
    g = verify_images(left, right)
    assert g.inliers > 30  # the overlap matches well...
    assert not g.same_photo and g.contained < 0.5, g.evidence()  # ...but neither contains the other


def test_stereo_views_are_not():
    from skimage import data

    from lookalike.samples import _to_rgb

    left, right, _ = data.stereo_motorcycle()
    g = verify_images(_to_rgb(left), _to_rgb(right))
    assert not g.same_photo, g.evidence()
    mirrored = verify_images(_to_rgb(left), ImageOps.mirror(_to_rgb(left)))
    assert mirrored.same_photo and mirrored.mirrored
