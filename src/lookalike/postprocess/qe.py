"""Query expansion and database-side augmentation on L2-normalized vectors (pure NumPy).

- Average query expansion (AQE; Chum et al. 2007): the new query is the mean of the query and
  its top ``n`` results.
- alpha-QE (Radenovic et al. 2018): the top ``n`` results are weighted by ``sim ** alpha``
  (negative similarities count 0); the query itself has weight 1. ``alpha=0`` is AQE.
- Database-side augmentation (DBA; Arandjelovic & Zisserman 2012, Gordo et al. 2017): every
  database vector is replaced by the same weighted mean of itself and its own top ``n``
  neighbours, once, before searching.

Specs are strings like the descriptor's: ``"aqe:n=3"``, ``"alpha-qe:n=3,alpha=3"``,
``"none"``; :func:`parse_expansion` gives a canonical :class:`Expansion`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from lookalike.errors import ConfigError

__all__ = [
    "Expansion",
    "dba",
    "dba_batches",
    "expand",
    "expand_batch",
    "parse_expansion",
    "weights",
]

DBA_BATCH = 4096  # database rows whose neighbours are searched at once

_NAMES = {"aqe": 0.0, "alpha-qe": 3.0, "alpha": 3.0, "aqe-alpha": 3.0, "alphaqe": 3.0}


@dataclass(frozen=True, slots=True)
class Expansion:
    """``n`` neighbours weighted by ``sim ** alpha`` (alpha 0: plain averaging)."""

    n: int
    alpha: float = 0.0

    def __str__(self) -> str:
        if self.alpha == 0:
            return f"aqe:n={self.n}"
        return f"alpha-qe:alpha={self.alpha:g},n={self.n}"


def parse_expansion(spec: str | Expansion | None) -> Expansion | None:
    """Parse ``"aqe[:n=N]"`` or ``"alpha-qe[:n=N,alpha=A]"``; ``None``/``"none"`` -> None."""
    if spec is None or isinstance(spec, Expansion):
        return spec
    text = spec.strip().lower()
    if text in ("", "none", "off", "0"):
        return None
    name, _, rest = text.partition(":")
    name = name.strip()
    if name not in _NAMES:
        raise ConfigError(f"query expansion {spec!r}: unknown kind {name!r}; use aqe or alpha-qe")
    values: dict[str, float] = {"n": 3, "alpha": _NAMES[name]}
    for item in filter(None, (s.strip() for s in rest.split(","))):
        key, eq, raw = item.partition("=")
        key = key.strip()
        if not eq or key not in ("n", "alpha") or (name == "aqe" and key == "alpha"):
            allowed = "n" if name == "aqe" else "n, alpha"
            raise ConfigError(
                f"query expansion {spec!r}: bad parameter {item!r} (allowed: {allowed})"
            )
        try:
            values[key] = float(raw)
        except ValueError:
            raise ConfigError(f"query expansion {spec!r}: {key} must be a number") from None
    n = values["n"]
    if n < 1 or n != int(n):
        raise ConfigError(f"query expansion {spec!r}: n must be a positive integer")
    if values["alpha"] < 0:
        raise ConfigError(f"query expansion {spec!r}: alpha must be >= 0")
    return Expansion(int(n), float(values["alpha"]))


def weights(sims: np.ndarray, alpha: float) -> np.ndarray:
    """Neighbour weights ``max(sim, 0) ** alpha`` (all ones when alpha is 0)."""
    sims = np.asarray(sims, dtype=np.float64)
    if alpha == 0:
        return np.ones_like(sims)
    return np.power(np.clip(sims, 0.0, None), alpha)


def _l2n(x: np.ndarray) -> np.ndarray:
    return x / (np.linalg.norm(x, axis=-1, keepdims=True) + 1e-12)


def expand(query: np.ndarray, neighbours: np.ndarray, sims: np.ndarray, alpha: float = 0.0):
    """One expanded query from ``query`` (d,), its top neighbours (n, d) and their similarities
    (n,); returns an L2-normalized (d,) float32 vector."""
    w = weights(sims, alpha)
    out = np.asarray(query, dtype=np.float64) + (w[:, None] * np.asarray(neighbours)).sum(axis=0)
    return _l2n(out).astype(np.float32)


def expand_batch(
    queries: np.ndarray, database: np.ndarray, spec: Expansion, scores: np.ndarray | None = None
) -> np.ndarray:
    """Expanded queries (q, d) against a database (N, d) of normalized vectors. ``scores``
    (q, N) may be given when already computed."""
    if scores is None:
        scores = queries @ database.T
    n = min(spec.n, database.shape[0])
    top = np.argsort(-scores, axis=1, kind="stable")[:, :n]
    sims = np.take_along_axis(scores, top, axis=1)
    w = weights(sims, spec.alpha)
    out = queries.astype(np.float64) + np.einsum("qn,qnd->qd", w, database[top])
    return _l2n(out).astype(np.float32)


def dba(database: np.ndarray, spec: Expansion) -> np.ndarray:
    """Database-side augmentation: each vector becomes the weighted mean of itself and its
    top ``n`` other neighbours."""
    x = np.asarray(database, dtype=np.float32)
    if x.shape[0] < 2:
        return x.copy()
    scores = x @ x.T
    np.fill_diagonal(scores, -np.inf)
    n = min(spec.n, x.shape[0] - 1)
    top = np.argsort(-scores, axis=1, kind="stable")[:, :n]
    sims = np.take_along_axis(scores, top, axis=1)
    w = weights(sims, spec.alpha)
    out = x.astype(np.float64) + np.einsum("qn,qnd->qd", w, x[top])
    return _l2n(out).astype(np.float32)


Neighbours = Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]


def dba_batches(
    database: np.ndarray,
    spec: Expansion,
    *,
    neighbours: Neighbours | None = None,
    batch: int = DBA_BATCH,
) -> Iterator[tuple[int, np.ndarray]]:
    """Database-side augmentation computed ``batch`` rows at a time, yielding
    ``(first_row, augmented rows)``: the same result as :func:`dba` (up to ties), without the
    N x N score matrix. ``neighbours(queries, k)`` returns ``(scores, rows)`` of each query's
    ``k`` best database rows (row -1: none); by default an exact FAISS inner-product search.
    Extra memory: one batch of scores and results besides ``database`` itself."""
    x = np.ascontiguousarray(database, dtype=np.float32)
    total = x.shape[0]
    if total < 2:
        if total:
            yield 0, x.copy()
        return
    if neighbours is None:
        import faiss

        flat = faiss.IndexFlatIP(x.shape[1])
        flat.add(x)
        neighbours = flat.search
    n = min(spec.n, total - 1)
    for start in range(0, total, batch):
        rows = x[start : start + batch]
        scores, found = neighbours(rows, n + 1)
        out = rows.astype(np.float64)
        for i in range(len(rows)):
            own = start + i
            pairs = zip(found[i], scores[i], strict=True)
            picked = [(int(r), float(s)) for r, s in pairs if r >= 0 and r != own][:n]
            if not picked:
                continue
            w = weights(np.array([s for _, s in picked]), spec.alpha)
            out[i] += w @ x[[r for r, _ in picked]].astype(np.float64)
        yield start, _l2n(out).astype(np.float32)
