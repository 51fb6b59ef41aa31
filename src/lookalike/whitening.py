"""PCA and regularized PCA-whitening of L2-normalized descriptors.

``fit_whitening`` learns a :class:`Whitening` from raw descriptors; ``Whitening.apply`` maps
descriptors to the reduced, whitened, L2-normalized space; ``save``/``load`` store it as .npz.

Regularization. Plain PCA-whitening divides each principal direction by ``sqrt(eigval)``. The
smallest eigenvalues of a covariance estimated from few vectors are mostly noise, and dividing
by them blows that noise up until it dominates the distances (seen here: mAP 0.90 -> 0.30 with
whitening learned on 1,000 images). We therefore scale direction ``i`` by

    (eigval_i + shrinkage * mean(eigval)) ** -power

``shrinkage`` adds that multiple of the average variance to every direction, which caps how much
a near-zero-variance direction can be amplified; ``power`` 0.5 is full whitening, smaller values
whiten partially (0 is plain PCA). ``shrinkage=0, power=0.5`` is textbook whitening (training
data gets identity covariance).

Defaults and the rule, set by measurement (benchmarks/whitening_rule.py, BENCHMARKS.md): on
collections of 64-304 images (instance- and category-level), whitening learned on the collection
itself never helped; textbook whitening lost up to 0.85 mAP, ``shrinkage=0.1, power=0.5`` up to
0.52, and ``shrinkage=1, power=0.25`` at most 0.02 -- the most robust setting, hence the
defaults. The rule therefore refuses whitening for small collections: at least 2,000 training
vectors and 8 per output dimension (256 -> 2,048). Above that size the benefit is taken from
the literature (whitening learned on tens of thousands of images helps instance retrieval), not
measured here: the shipped photos cannot make a collection that large with distinct content.

An index no longer uses that rule when it has image files: lookalike.whitening_check decides
per collection by a label-free self-check; the rule remains for indexes of precomputed
vectors, which have no images to check on.
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from lookalike.errors import ConfigError, IndexCorruptError

__all__ = [
    "DEFAULT_POWER",
    "DEFAULT_SHRINKAGE",
    "MIN_IMAGES",
    "MIN_IMAGES_PER_DIM",
    "Whitening",
    "fit_whitening",
    "whitening_allowed",
]

WhiteningKind = Literal["pca", "pcaw"]
# "lw": supervised whitening learned from matching pairs (lookalike.training.lw); applied the
# same way, fitted elsewhere.
KINDS: tuple[str, ...] = ("pca", "pcaw", "lw")

DEFAULT_SHRINKAGE = 1.0
DEFAULT_POWER = 0.25

# When a learned whitening is trustworthy (see the module docstring for the measurement).
MIN_IMAGES_PER_DIM = 8
MIN_IMAGES = 2000

_FORMAT_VERSION = 1
_EPS = 1e-6


def whitening_allowed(n: int, dim: int) -> bool:
    """Whether ``n`` training vectors are enough to learn a ``dim``-dimensional whitening."""
    return dim >= 1 and n >= MIN_IMAGES_PER_DIM * dim and n >= MIN_IMAGES


def _l2n(x: np.ndarray) -> np.ndarray:
    return x / (np.linalg.norm(x, axis=-1, keepdims=True) + _EPS)


@dataclass(frozen=True, eq=False)
class Whitening:
    """A learned linear map ``x -> l2n((x - mean) @ projection)``.

    ``mean`` (D,), ``projection`` (D, d), ``kind`` "pca" (rotation + reduction) or "pcaw"
    (rotation + reduction + regularized whitening), ``shrinkage`` and ``power`` as in the module
    docstring (both 0 for "pca"), ``trained_on`` the number of training vectors, and
    ``eigenvalues`` (d,) of the kept directions, for diagnostics.
    """

    mean: np.ndarray
    projection: np.ndarray
    kind: str
    shrinkage: float
    power: float
    trained_on: int
    eigenvalues: np.ndarray | None = None

    @property
    def input_dim(self) -> int:
        return int(self.projection.shape[0])

    @property
    def dim(self) -> int:
        return int(self.projection.shape[1])

    def apply(self, x: np.ndarray) -> np.ndarray:
        """Project (n, D) or (D,) descriptors to (n, d) or (d,), L2-normalized, float32."""
        x = np.asarray(x, dtype=np.float32)
        if x.shape[-1] != self.input_dim:
            raise ValueError(
                f"descriptors have dimension {x.shape[-1]}, whitening expects {self.input_dim}"
            )
        y = (x - self.mean) @ self.projection
        return _l2n(y).astype(np.float32, copy=False)

    def save(self, path: str | os.PathLike[str], *, stamp: str | None = None) -> None:
        """Write to ``path`` (.npz) atomically: a temp file in the same folder, then os.replace.
        ``stamp`` (the owning index's identity) is stored with it (see index/derived.py)."""
        path = Path(path)
        arrays = {
            "format_version": np.array(_FORMAT_VERSION),
            "mean": np.asarray(self.mean, dtype=np.float32),
            "projection": np.asarray(self.projection, dtype=np.float32),
            "kind": np.array(self.kind),
            "shrinkage": np.array(float(self.shrinkage)),
            "power": np.array(float(self.power)),
            "trained_on": np.array(int(self.trained_on)),
        }
        if self.eigenvalues is not None:
            arrays["eigenvalues"] = np.asarray(self.eigenvalues, dtype=np.float64)
        if stamp is not None:
            arrays["stamp"] = np.array(stamp)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, **arrays)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Whitening:
        """Read a file written by :meth:`save`. FileNotFoundError if missing; IndexCorruptError
        if it cannot be parsed."""
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as data:
                version = int(data["format_version"])
                if version != _FORMAT_VERSION:
                    raise IndexCorruptError(
                        f"{path}: whitening format version {version}, expected {_FORMAT_VERSION}"
                    )
                result = cls(
                    mean=data["mean"].astype(np.float32),
                    projection=data["projection"].astype(np.float32),
                    kind=str(data["kind"]),
                    shrinkage=float(data["shrinkage"]),
                    power=float(data["power"]),
                    trained_on=int(data["trained_on"]),
                    eigenvalues=data["eigenvalues"] if "eigenvalues" in data.files else None,
                )
        except (FileNotFoundError, IndexCorruptError):
            raise
        except Exception as exc:  # zip, key and shape errors all mean "cannot be read"
            raise IndexCorruptError(f"{path}: cannot read whitening ({exc})") from exc
        if (
            result.mean.ndim != 1
            or result.projection.ndim != 2
            or result.projection.shape[0] != result.mean.shape[0]
            or result.kind not in KINDS
        ):
            raise IndexCorruptError(f"{path}: inconsistent whitening arrays")
        return result


_CHUNK = 1024  # rows converted to float64 at a time (1280-d: 10 MB a copy)


def fit_whitening(
    x: np.ndarray,
    dim: int,
    kind: WhiteningKind = "pcaw",
    *,
    shrinkage: float = DEFAULT_SHRINKAGE,
    power: float = DEFAULT_POWER,
) -> Whitening:
    """Learn PCA ("pca") or regularized PCA-whitening ("pcaw") from ``x`` (n, D).

    ``x`` are raw L2-normalized descriptors. The covariance (normalized by n - 1) is
    eigendecomposed in float64 (``eigh`` of the D x D covariance when n > D, otherwise an SVD of
    the centred data); the ``dim`` strongest directions are kept, each with a deterministic
    sign (largest component positive). ``dim`` must be between 1 and ``min(n - 1, D)``: centred
    data has at most n - 1 non-zero variance directions. This does not check
    :func:`whitening_allowed`; the caller decides whether to fit at all.
    """
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"training descriptors must be (n, D), got shape {x.shape}")
    n, d_in = x.shape
    if kind not in ("pca", "pcaw"):
        raise ConfigError(f"unknown whitening kind {kind!r}; allowed: pca, pcaw")
    if not isinstance(dim, int | np.integer) or isinstance(dim, bool):
        raise ConfigError(f"whitening dim must be an integer, got {dim!r}")
    max_dim = min(n - 1, d_in)
    if dim < 1 or dim > max_dim:
        raise ConfigError(
            f"whitening dim {dim} is out of range: must be 1..{max(max_dim, 0)} "
            f"for {n} vectors of dimension {d_in} (at most min(n - 1, D))"
        )
    if not (math.isfinite(shrinkage) and shrinkage >= 0):
        raise ConfigError(f"whitening shrinkage must be >= 0, got {shrinkage}")
    if not (math.isfinite(power) and power >= 0):
        raise ConfigError(f"whitening power must be >= 0, got {power}")
    if n > d_in:
        # Mean and covariance in float64, accumulated over row chunks: a float64 copy of a
        # 100k x 1280 sample would be 1 GB (2 GB with its centred copy); this needs one chunk.
        mean = np.zeros(d_in)
        for start in range(0, n, _CHUNK):
            chunk = x[start : start + _CHUNK].astype(np.float64)
            if not np.isfinite(chunk).all():
                raise ValueError("training descriptors contain NaN or infinite values")
            mean += chunk.sum(axis=0)
        mean /= n
        cov = np.zeros((d_in, d_in))
        for start in range(0, n, _CHUNK):
            centred = x[start : start + _CHUNK].astype(np.float64) - mean
            cov += centred.T @ centred
        cov /= n - 1
        eigval, eigvec = np.linalg.eigh(cov)
        order = np.argsort(eigval)[::-1]
        eigval, eigvec = eigval[order], eigvec[:, order]
    else:
        data = x.astype(np.float64)
        if not np.isfinite(data).all():
            raise ValueError("training descriptors contain NaN or infinite values")
        mean = data.mean(axis=0)
        _, s, vt = np.linalg.svd(data - mean, full_matrices=False)
        eigval, eigvec = s**2 / (n - 1), vt.T
    eigval = np.clip(eigval, 0.0, None)
    mean_eigval = float(eigval.mean()) if eigval.size else 0.0

    vecs = eigvec[:, :dim]
    signs = np.sign(vecs[np.abs(vecs).argmax(axis=0), np.arange(dim)])
    vecs = vecs * np.where(signs == 0, 1.0, signs)
    kept = eigval[:dim]

    if kind == "pcaw":
        denom = kept + shrinkage * mean_eigval
        scale = np.where(denom > 0, np.power(np.maximum(denom, 1e-300), -power), 0.0)
        projection = vecs * scale
    else:
        projection = vecs
        shrinkage, power = 0.0, 0.0
    return Whitening(
        mean=mean.astype(np.float32),
        projection=projection.astype(np.float32),
        kind=kind,
        shrinkage=float(shrinkage),
        power=float(power),
        trained_on=int(n),
        eigenvalues=kept.copy(),
    )
