"""Supervised whitening ("Lw") learned from matching pairs (Radenovic et al., "CNN image
retrieval learns from BoW", 2016; cnnimageretrieval-pytorch ``whitenlearn``). NumPy only.

Given descriptors X and matching pairs (i, j):

1. ``S = mean over pairs of (x_i - x_j)(x_i - x_j)^T``, the covariance of what should not
   matter (the differences between views of one thing); ``P1 = S^(-1/2)`` whitens it, so those
   differences shrink relative to everything else.
2. A PCA of all training descriptors mapped by ``P1`` rotates onto the directions in which
   different things differ most; keeping the first ``dim`` reduces.

With fewer pairs than dimensions, S is singular; ``shrinkage`` adds that multiple of S's mean
eigenvalue to every direction (as lookalike.whitening does for PCA-whitening), which bounds how
much a direction the pairs never varied in is amplified. The result is a
:class:`lookalike.whitening.Whitening` of kind "lw", applied as ``l2n((x - mean) @ projection)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lookalike.errors import ConfigError
from lookalike.whitening import Whitening

__all__ = ["fit_lw", "group_pairs"]


def group_pairs(labels: Sequence[int]) -> np.ndarray:
    """All (i, j), i < j, of rows sharing a label: (n_pairs, 2) int array."""
    labels = np.asarray(labels)
    pairs = []
    for value in np.unique(labels):
        rows = np.flatnonzero(labels == value)
        for a in range(len(rows)):
            for b in range(a + 1, len(rows)):
                pairs.append((rows[a], rows[b]))
    return np.asarray(pairs, dtype=np.int64).reshape(-1, 2)


def fit_lw(
    x: np.ndarray,
    pairs: np.ndarray,
    dim: int | None = None,
    *,
    shrinkage: float = 1.0,
) -> Whitening:
    """Learn Lw from L2-normalized descriptors ``x`` (n, D) and matching ``pairs`` (m, 2)."""
    x = np.asarray(x, dtype=np.float64)
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    if x.ndim != 2 or len(x) < 3:
        raise ConfigError(f"supervised whitening needs at least 3 descriptors, got {x.shape}")
    if len(pairs) == 0:
        raise ConfigError("supervised whitening needs at least one matching pair")
    if pairs.min() < 0 or pairs.max() >= len(x):
        raise ConfigError("pair indices out of range")
    if not np.isfinite(x).all():
        raise ConfigError("descriptors contain NaN or infinite values")
    if not (np.isfinite(shrinkage) and shrinkage >= 0):
        raise ConfigError(f"shrinkage must be >= 0, got {shrinkage}")
    n, d_in = x.shape
    dim = d_in if dim is None else int(dim)
    if not 1 <= dim <= d_in:
        raise ConfigError(f"supervised whitening dim must be 1..{d_in}, got {dim}")

    diff = x[pairs[:, 0]] - x[pairs[:, 1]]
    s = diff.T @ diff / len(diff)
    eigval, eigvec = np.linalg.eigh(s)
    eigval = np.clip(eigval, 0.0, None)
    reg = eigval + shrinkage * float(eigval.mean())
    if not (reg > 0).all():
        raise ConfigError("matching pairs are identical: nothing to learn a whitening from")
    p1 = eigvec * reg**-0.5  # (D, D): x @ p1 whitens the pair differences

    mean = x.mean(axis=0)
    y = (x - mean) @ p1
    cov = y.T @ y / max(n - 1, 1)
    val2, vec2 = np.linalg.eigh(cov)
    order = np.argsort(val2)[::-1][:dim]
    vec2 = vec2[:, order]
    signs = np.sign(vec2[np.abs(vec2).argmax(axis=0), np.arange(dim)])
    vec2 = vec2 * np.where(signs == 0, 1.0, signs)
    projection = p1 @ vec2
    return Whitening(
        mean=mean.astype(np.float32),
        projection=projection.astype(np.float32),
        kind="lw",
        shrinkage=float(shrinkage),
        power=0.5,
        trained_on=int(n),
        eigenvalues=np.clip(val2[order], 0.0, None),
    )
