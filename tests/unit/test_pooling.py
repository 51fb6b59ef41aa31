"""Pooling functions on small hand-checked arrays, R-MAC regions, and the descriptor registry."""

from __future__ import annotations

import numpy as np
import pytest

from lookalike.errors import ConfigError
from lookalike.pooling import (
    DESCRIPTORS,
    DescriptorSpec,
    center_prior,
    gem,
    l2n,
    mac,
    parse_descriptor,
    pool,
    rmac,
    rmac_regions,
    spoc,
)

# C=2 channels, H=2, W=3.
X = np.array(
    [
        [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]],
        [[0.0, 0.0, 8.0], [0.0, 0.0, 0.0]],
    ],
    dtype=np.float32,
)


def test_mac_by_hand():
    np.testing.assert_allclose(mac(X), [6.0, 8.0])


def test_spoc_by_hand():
    np.testing.assert_allclose(spoc(X), [21.0 / 6, 8.0 / 6], rtol=1e-6)


def test_gem_by_hand():
    # channel 0: (1+8+27+64+125+216)/6 = 441/6 -> cube root
    expected0 = (441.0 / 6) ** (1 / 3)
    # channel 1: zeros are clamped to eps=1e-6 (negligible): (512/6)^(1/3)
    expected1 = (512.0 / 6) ** (1 / 3)
    np.testing.assert_allclose(gem(X, p=3), [expected0, expected1], rtol=1e-5)


def test_gem_p1_is_mean_and_large_p_tends_to_mac():
    rng = np.random.default_rng(0)
    x = rng.uniform(0.0, 6.0, size=(8, 5, 7))
    np.testing.assert_allclose(gem(x, p=1.0, eps=1e-12), spoc(x), rtol=1e-9)
    np.testing.assert_allclose(gem(x, p=500.0), mac(x), rtol=0.01)
    # No overflow even with huge p on large values.
    assert np.all(np.isfinite(gem(x * 1e3, p=1000.0)))


def test_gem_is_between_mean_and_max():
    rng = np.random.default_rng(1)
    x = rng.uniform(0.0, 6.0, size=(4, 3, 3))
    g = gem(x, p=3.0)
    assert np.all(g >= spoc(x) - 1e-9) and np.all(g <= mac(x) + 1e-9)


def test_batched_equals_single():
    rng = np.random.default_rng(2)
    xb = rng.uniform(0.0, 6.0, size=(3, 4, 5, 6)).astype(np.float32)
    for fn in (mac, spoc, gem, rmac, lambda a: spoc(a, center_prior=True)):
        batched = fn(xb)
        assert batched.shape == (3, 4)
        for i in range(3):
            np.testing.assert_allclose(batched[i], fn(xb[i]), rtol=1e-5)


def test_center_prior_symmetric_peaked_and_sigma():
    w = center_prior(5, 7)
    assert w.shape == (5, 7)
    np.testing.assert_allclose(w, w[::-1, :])
    np.testing.assert_allclose(w, w[:, ::-1])
    assert w.argmax() == np.ravel_multi_index((2, 3), w.shape)
    assert w[2, 3] == pytest.approx(1.0)
    # sigma = min(H, W) / 6 = 5/6; one cell away from the centre horizontally:
    assert w[2, 4] == pytest.approx(np.exp(-1.0 / (2 * (5 / 6) ** 2)))
    # even sizes: centre between cells, the four middle cells are equal maxima
    w4 = center_prior(4, 4)
    assert np.allclose(w4[1:3, 1:3], w4.max())


def test_spoc_center_prior_weights_the_centre():
    x = np.zeros((2, 5, 5))
    x[0, 2, 2] = 1.0  # channel 0 active in the centre
    x[1, 0, 0] = 1.0  # channel 1 active in a corner
    plain = spoc(x)
    centred = spoc(x, center_prior=True)
    assert plain[0] == pytest.approx(plain[1])
    assert centred[0] > 10 * centred[1]


def test_rmac_regions_3x4_hand_derived():
    # min=3, long=4: b=(4-3)/(steps-1); overlap 1-b/3 closest to 0.4 at steps=2 -> 1 extra in W.
    regions = rmac_regions(3, 4, levels=3)
    level1 = [(0, 0, 3), (0, 1, 3)]
    level2 = [(t, left, 2) for t in (0, 1) for left in (0, 1, 2)]
    level3 = [(t, left, 1) for t in (0, 1, 2) for left in (0, 1, 2, 3)]
    assert regions == level1 + level2 + level3
    assert len(regions) == 20


def test_rmac_regions_15x20_hand_derived():
    regions = rmac_regions(15, 20, levels=3)
    level1 = [(0, 0, 15), (0, 5, 15)]
    level2 = [(t, left, 10) for t in (0, 5) for left in (0, 5, 10)]
    # side floor(30/4)=7; W starts floor(i*13/3) = 0,4,8,13; H starts i*8/2 = 0,4,8
    level3 = [(t, left, 7) for t in (0, 4, 8) for left in (0, 4, 8, 13)]
    assert regions == level1 + level2 + level3


def test_rmac_regions_tie_follows_reference():
    # 5x9: 2 and 3 level-1 regions both give exactly 40 % overlap error 0.2; the reference
    # code (float32) picks 2, and so must we for identical descriptors.
    assert rmac_regions(5, 9, levels=1) == [(0, 0, 5), (0, 4, 5)]


def test_rmac_regions_portrait_and_square_and_inside():
    transposed = {(left, top, side) for (top, left, side) in rmac_regions(15, 20)}
    assert set(rmac_regions(20, 15)) == transposed
    square = rmac_regions(10, 10, levels=3)
    assert len(square) == 1 + 4 + 9
    assert square[0] == (0, 0, 10)
    for h, w in [(7, 30), (1, 1), (2, 9), (24, 32), (13, 17)]:
        for top, left, side in rmac_regions(h, w, levels=4):
            assert side >= 1 and top + side <= h and left + side <= w and top >= 0 and left >= 0
    # Each level's grid reaches the far borders (2x32 is where float32 rounding would miss).
    for h, w in [(2, 32), (15, 20), (9, 5), (31, 17)]:
        regions = rmac_regions(h, w, levels=3)
        for side in {s for _, _, s in regions}:
            level = [r for r in regions if r[2] == side]
            assert max(t for t, _, _ in level) + side == h
            assert max(le for _, le, _ in level) + side == w


def test_rmac_matches_direct_sum():
    rng = np.random.default_rng(3)
    x = rng.uniform(0.0, 6.0, size=(6, 3, 4))
    expected = l2n(x.max(axis=(1, 2)))
    for top, left, side in rmac_regions(3, 4, 3):
        expected = expected + l2n(x[:, top : top + side, left : left + side].max(axis=(1, 2)))
    np.testing.assert_allclose(rmac(x), expected, rtol=1e-9)


def test_l2n():
    v = l2n(np.array([[3.0, 4.0], [0.0, 0.0]]))
    np.testing.assert_allclose(v[0], [0.6, 0.8], rtol=1e-5)
    assert np.all(np.isfinite(v[1]))


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("mac", "mac"),
        ("gem", "gem:p=3"),
        ("GeM:p=3.0", "gem:p=3"),
        ("gem:p=2.5", "gem:p=2.5"),
        ("spoc", "spoc:center=0"),
        ("spoc:center=1", "spoc:center=1"),
        ("spoc: center = true", "spoc:center=1"),
        ("rmac", "rmac:levels=3"),
        ("rmac:levels=2", "rmac:levels=2"),
        ("neural", "neural"),
    ],
)
def test_parse_descriptor_canonical(text, canonical):
    spec = parse_descriptor(text)
    assert str(spec) == canonical
    assert parse_descriptor(str(spec)) == spec


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("vlad", "unknown descriptor 'vlad'"),
        ("gem:q=3", "unknown parameter 'q'"),
        ("gem:p=abc", "bad value 'abc'"),
        ("gem:p=0", "minimum"),
        ("rmac:levels=1.5", "bad value"),
        ("spoc:center=maybe", "bad value"),
        ("mac:p=3", "parameters of mac: none"),
        ("gem:p=3,p=4", "given twice"),
        ("gem:", "no parameters"),
        ("gem:p", "expected key=value"),
    ],
)
def test_parse_descriptor_errors(text, fragment):
    with pytest.raises(ConfigError, match=fragment):
        parse_descriptor(text)


def test_parse_error_lists_allowed():
    with pytest.raises(ConfigError) as info:
        parse_descriptor("foo")
    for name in DESCRIPTORS:
        assert name in str(info.value)
    with pytest.raises(ConfigError, match="parameters of gem: p"):
        parse_descriptor("gem:x=1")


def test_pool_output_and_specs():
    rng = np.random.default_rng(4)
    x = rng.uniform(0.0, 6.0, size=(16, 5, 6)).astype(np.float32)
    for name in DESCRIPTORS:
        v = pool(name, x)
        assert v.shape == (16,) and v.dtype == np.float32
        assert np.linalg.norm(v) == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(pool("gem:p=1", x), pool("neural", x), rtol=1e-4)
    np.testing.assert_allclose(pool("mac", x), l2n(mac(x)), rtol=1e-5)
    np.testing.assert_allclose(pool(DescriptorSpec("gem", (("p", 3.0),)), x), pool("gem", x))
    assert not np.allclose(pool("gem:p=3", x), pool("neural", x))
    batch = pool("rmac", np.stack([x, 2 * x]))
    assert batch.shape == (2, 16)
    np.testing.assert_allclose(batch[0], batch[1], rtol=1e-5)  # scale invariant


def test_pool_rejects_bad_shapes():
    with pytest.raises(ValueError):
        pool("mac", np.zeros((3, 4)))
