"""PCA / PCA-whitening: fit, apply, save/load, and the rules on dimensions."""

from __future__ import annotations

import numpy as np
import pytest

from lookalike.errors import ConfigError, IndexCorruptError
from lookalike.whitening import (
    MIN_IMAGES,
    MIN_IMAGES_PER_DIM,
    Whitening,
    fit_whitening,
    whitening_allowed,
)


def _l2n(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _anisotropic(n: int, d: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    scales = np.geomspace(5.0, 0.05, d)
    rotation, _ = np.linalg.qr(rng.normal(size=(d, d)))
    x = (rng.normal(size=(n, d)) * scales) @ rotation.T + rng.normal(size=d)
    return _l2n(x).astype(np.float32)


def _clustered(n_clusters: int, per_cluster: int, d: int, seed: int = 0):
    """Clusters living in a 10-dimensional subspace of R^d plus small isotropic noise."""
    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(rng.normal(size=(d, 10)))
    centres = rng.normal(size=(n_clusters, 10)) * 3.0
    labels = np.repeat(np.arange(n_clusters), per_cluster)
    x = (centres[labels] + rng.normal(size=(len(labels), 10)) * 0.5) @ basis.T
    x = x + rng.normal(size=x.shape) * 0.05
    return _l2n(x + basis[:, 0] * 8.0).astype(np.float32), labels


def test_pcaw_without_shrinkage_whitens_training_data():
    x = _anisotropic(2000, 32)
    w = fit_whitening(x, 16, kind="pcaw", shrinkage=0.0, power=0.5)
    y = (x - w.mean) @ w.projection  # before the final L2-normalization
    np.testing.assert_allclose(np.cov(y, rowvar=False), np.eye(16), atol=1e-3)
    assert w.kind == "pcaw" and w.trained_on == 2000 and w.dim == 16 and w.input_dim == 32


def test_pca_rotation_keeps_variances_and_orthonormal_projection():
    x = _anisotropic(1500, 24, seed=1)
    w = fit_whitening(x, 8, kind="pca")
    np.testing.assert_allclose(w.projection.T @ w.projection, np.eye(8), atol=1e-5)
    y = (x - w.mean) @ w.projection
    var = y.var(axis=0, ddof=1)
    np.testing.assert_allclose(var, w.eigenvalues, rtol=1e-3)
    assert np.all(np.diff(var) <= 1e-9)  # strongest direction first
    assert w.shrinkage == 0.0 and w.power == 0.0


def test_shrinkage_limits_amplification_of_weak_directions():
    x = _anisotropic(2000, 32, seed=2)
    plain = fit_whitening(x, 31, shrinkage=0.0, power=0.5)
    shrunk = fit_whitening(x, 31, shrinkage=0.1, power=0.5)
    gain_plain = np.linalg.norm(plain.projection, axis=0)
    gain_shrunk = np.linalg.norm(shrunk.projection, axis=0)
    ratio_plain = gain_plain[-1] / gain_plain[0]
    ratio_shrunk = gain_shrunk[-1] / gain_shrunk[0]
    assert ratio_plain > 5 * ratio_shrunk
    # bound from the formula: sqrt((l_1 + 0.1 m) / (l_d + 0.1 m)) <= sqrt((l_1 + 0.1 m) / 0.1 m)
    eig = np.linalg.eigvalsh(np.cov(x.astype(np.float64), rowvar=False))
    m = eig.mean()
    assert ratio_shrunk <= np.sqrt((eig.max() + 0.1 * m) / (0.1 * m)) * 1.001


def test_apply_output_shape_and_norm():
    x = _anisotropic(600, 20, seed=3)
    w = fit_whitening(x, 10)
    out = w.apply(x[:7])
    assert out.shape == (7, 10) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    single = w.apply(x[0])
    assert single.shape == (10,)
    np.testing.assert_allclose(single, out[0], atol=1e-6)
    with pytest.raises(ValueError, match="dimension"):
        w.apply(np.zeros((2, 19), dtype=np.float32))


@pytest.mark.parametrize("kind", ["pca", "pcaw"])
def test_reduction_preserves_nearest_neighbours_on_clustered_data(kind):
    x, labels = _clustered(n_clusters=20, per_cluster=30, d=64)
    w = fit_whitening(x, 16, kind=kind)
    y = w.apply(x)

    def nn_same_cluster(v: np.ndarray) -> float:
        sims = v @ v.T
        np.fill_diagonal(sims, -np.inf)
        return float(np.mean(labels[sims.argmax(axis=1)] == labels))

    raw_acc = nn_same_cluster(x)
    reduced_acc = nn_same_cluster(y)
    assert raw_acc > 0.9
    assert reduced_acc >= raw_acc - 0.02
    if kind == "pca":
        # the neighbour ranking itself is kept: top-5 lists mostly agree
        sims_raw, sims_red = x @ x.T, y @ y.T
        np.fill_diagonal(sims_raw, -np.inf)
        np.fill_diagonal(sims_red, -np.inf)
        top_raw = np.argsort(-sims_raw, axis=1)[:, :5]
        top_red = np.argsort(-sims_red, axis=1)[:, :5]
        overlap = np.mean([len(set(a) & set(b)) / 5 for a, b in zip(top_raw, top_red, strict=True)])
        assert overlap > 0.8


def test_fit_is_deterministic_with_sign_convention():
    x = _anisotropic(800, 16, seed=4)
    a, b = fit_whitening(x, 8), fit_whitening(x[::-1].copy(), 8)
    np.testing.assert_allclose(a.projection, b.projection, rtol=1e-4, atol=1e-5)


def test_small_n_uses_svd_path():
    x = _anisotropic(20, 64, seed=5)  # n < D
    w = fit_whitening(x, 19, shrinkage=0.0, power=0.5)
    y = (x - w.mean) @ w.projection
    np.testing.assert_allclose(np.cov(y, rowvar=False), np.eye(19), atol=1e-3)


def test_save_load_round_trip(tmp_path):
    x = _anisotropic(700, 24, seed=6)
    w = fit_whitening(x, 12, kind="pcaw", shrinkage=0.2, power=0.4)
    path = tmp_path / "whitening.npz"
    w.save(path)
    assert [p.name for p in tmp_path.iterdir()] == ["whitening.npz"]  # no temp file left
    back = Whitening.load(path)
    np.testing.assert_array_equal(back.mean, w.mean)
    np.testing.assert_array_equal(back.projection, w.projection)
    np.testing.assert_array_equal(back.eigenvalues, w.eigenvalues)
    assert (back.kind, back.shrinkage, back.power, back.trained_on) == ("pcaw", 0.2, 0.4, 700)
    np.testing.assert_array_equal(back.apply(x[:3]), w.apply(x[:3]))
    # overwrite in place
    fit_whitening(x, 4, kind="pca").save(path)
    assert Whitening.load(path).dim == 4


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        Whitening.load(tmp_path / "missing.npz")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(IndexCorruptError):
        Whitening.load(bad)
    partial = tmp_path / "partial.npz"
    np.savez(partial, mean=np.zeros(3))
    with pytest.raises(IndexCorruptError):
        Whitening.load(partial)


@pytest.mark.parametrize("dim", [0, -1, 33, 100])
def test_bad_dim_raises(dim):
    x = _anisotropic(200, 32, seed=7)
    with pytest.raises(ConfigError, match="out of range"):
        fit_whitening(x, dim)


def test_dim_limited_by_n_minus_one():
    x = _anisotropic(10, 32, seed=8)
    fit_whitening(x, 9)
    with pytest.raises(ConfigError, match=r"1\.\.9"):
        fit_whitening(x, 10)


def test_bad_arguments():
    x = _anisotropic(100, 8, seed=9)
    with pytest.raises(ConfigError, match="kind"):
        fit_whitening(x, 4, kind="zca")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        fit_whitening(x, 4, shrinkage=-1.0)
    with pytest.raises(ConfigError):
        fit_whitening(x, 4.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        fit_whitening(x[0], 4)
    x_nan = x.copy()
    x_nan[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        fit_whitening(x_nan, 4)


def test_whitening_allowed_rule():
    assert MIN_IMAGES_PER_DIM == 8 and MIN_IMAGES == 2000
    assert not whitening_allowed(1999, 64)
    assert whitening_allowed(2000, 64)
    assert not whitening_allowed(2047, 256)
    assert whitening_allowed(2048, 256)
    assert not whitening_allowed(304, 32)  # measured: never helped at a few hundred images
    assert not whitening_allowed(10_000, 0)
