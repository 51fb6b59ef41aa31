"""Query expansion, DBA and localization on hand-made vectors and feature maps."""

from __future__ import annotations

import numpy as np
import pytest

from lookalike.errors import ConfigError
from lookalike.pooling import gem
from lookalike.postprocess.localize import (
    Localization,
    cells_to_pixels,
    integral_power,
    localize,
    pooling_power,
    region_power_mean,
)
from lookalike.postprocess.qe import Expansion, dba, expand, expand_batch, parse_expansion


def test_parse_expansion():
    assert parse_expansion("aqe") == Expansion(3, 0.0)
    assert parse_expansion("alpha-qe:n=2,alpha=3") == Expansion(2, 3.0)
    assert parse_expansion("none") is None and parse_expansion(None) is None
    assert str(parse_expansion("alpha-qe:alpha=2,n=5")) == "alpha-qe:alpha=2,n=5"
    for bad in ("qe", "aqe:n=0", "aqe:alpha=2", "alpha-qe:n=x", "aqe:m=2", "alpha-qe:alpha=-1"):
        with pytest.raises(ConfigError):
            parse_expansion(bad)


def test_average_and_alpha_expansion_by_hand():
    q, nb = np.array([1.0, 0.0]), np.array([[0.0, 1.0]])
    assert expand(q, nb, np.array([0.5])) == pytest.approx(np.array([1, 1]) / np.sqrt(2))
    # alpha=1: neighbour weight 0.5 -> (1, 0.5) normalized
    assert expand(q, nb, np.array([0.5]), alpha=1) == pytest.approx(
        np.array([1, 0.5]) / np.sqrt(1.25)
    )
    # a negative similarity gives no weight under alpha-QE
    assert expand(q, nb, np.array([-0.5]), alpha=3) == pytest.approx([1, 0])


def test_expand_batch_uses_top_n():
    db = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]], dtype=np.float32)
    q = np.array([[1.0, 0.0]], dtype=np.float32)
    out = expand_batch(q, db, Expansion(2, 0.0))
    # top 2 of q are db[0] and db[1]: (1 + 1 + 0.8, 0.6)
    assert out[0] == pytest.approx(np.array([2.8, 0.6]) / np.hypot(2.8, 0.6), abs=1e-6)


def test_dba_by_hand():
    db = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]], dtype=np.float32)
    out = dba(db, Expansion(1, 0.0))
    assert out[0] == pytest.approx(np.array([1.8, 0.6]) / np.hypot(1.8, 0.6), abs=1e-6)
    assert out[2] == pytest.approx(np.array([0.8, 1.6]) / np.hypot(0.8, 1.6), abs=1e-6)


def test_integral_power_mean_equals_gem_of_the_region():
    rng = np.random.default_rng(0)
    fmap = rng.uniform(0, 6, size=(5, 7, 9))
    ii = integral_power(fmap, 3.0)
    r = region_power_mean(ii, np.array([[2, 1, 6, 5]]), 3.0)[0]
    assert r == pytest.approx(gem(fmap[:, 1:5, 2:6], p=3.0), rel=1e-6)


def test_localize_finds_the_object_region():
    # 9 object channels, one per cell of a 3x3 object at x 2..4, y 1..3; background channel 0.
    fmap = np.zeros((10, 8, 8))
    fmap[0] = 1.0
    for k, (y, x) in enumerate((y, x) for y in range(1, 4) for x in range(2, 5)):
        fmap[0, y, x] = 0.0
        fmap[1 + k, y, x] = 2.0
    q = np.r_[0.0, np.ones(9)]
    loc = localize(fmap, q, p=3.0)
    assert loc.cells == (2, 1, 5, 4)
    assert loc.score == pytest.approx(1.0, abs=1e-6)
    assert cells_to_pixels(loc, (80, 160)) == (20, 20, 50, 80)


def test_localize_refinement_reaches_the_object_on_a_large_map():
    fmap = np.zeros((10, 30, 30))
    fmap[0] = 1.0
    for k, (y, x) in enumerate((y, x) for y in range(11, 14) for x in range(5, 8)):
        fmap[0, y, x] = 0.0
        fmap[1 + k, y, x] = 2.0
    loc = localize(fmap, np.r_[0.0, np.ones(9)], p=3.0)
    assert loc.cells == (5, 11, 8, 14)


def test_localize_checks_dimension():
    with pytest.raises(ValueError, match="dimension"):
        localize(np.ones((4, 3, 3)), np.ones(5))


def test_pooling_power():
    assert pooling_power("gem:p=4") == 4.0
    assert pooling_power("spoc") == 1.0
    assert pooling_power("mac") == 10.0
    assert isinstance(Localization(1.0, (0, 0, 1, 1), (1, 1)).score, float)


def test_dba_in_batches_equals_dba():
    from lookalike.postprocess.qe import dba_batches

    rng = np.random.default_rng(3)
    x = np.repeat(rng.normal(size=(8, 12)), 5, axis=0) + 0.3 * rng.normal(size=(40, 12))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    for spec in (Expansion(1, 0.0), Expansion(3, 3.0), Expansion(100, 0.0)):
        parts = list(dba_batches(x, spec, batch=7))
        assert [start for start, _ in parts] == list(range(0, 40, 7))
        got = np.concatenate([rows for _, rows in parts])
        np.testing.assert_allclose(got, dba(x, spec), atol=1e-6)

    # a caller-given neighbour search (here exact NumPy) is used as given
    def numpy_search(q, k):
        s = q @ x.T
        top = np.argsort(-s, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(s, top, axis=1), top

    got = np.concatenate([r for _, r in dba_batches(x, Expansion(2, 3.0), neighbours=numpy_search)])
    np.testing.assert_allclose(got, dba(x, Expansion(2, 3.0)), atol=1e-6)
    one = list(dba_batches(x[:1], Expansion(2)))
    assert len(one) == 1 and np.array_equal(one[0][1], x[:1])
    assert list(dba_batches(x[:0], Expansion(2))) == []
