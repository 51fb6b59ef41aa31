"""Duplicate finder: exact copies (same content hash) and near-duplicates (resized,
recompressed, lightly edited copies) through the index's own nearest-neighbour search.

Never an N x N matrix: the vectors are read from the catalog in batches, each batch asks the
FAISS index for its `k` nearest neighbours, and pairs scoring at least `threshold` are merged
with union-find. Memory is O(N) (the union-find) plus one batch; time is N k-NN queries.

The default threshold was measured (benchmarks/dupes_vs_phash.py, see BENCHMARKS.md) on
edited copies of real photos (positives) against other views of the same scene and
overlapping crops of one photo (hard negatives), on unwhitened lite0 GeM descriptors. The two
do not separate completely (the stereo motorcycle views score 0.94, a strongly rescaled copy
can score 0.56); pairwise F1 peaks around 0.66-0.70 but lets more hard negatives through, so
the default 0.80 trades recall (0.75) for precision (0.85). Pass `threshold` to choose.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from lookalike.errors import ConfigError

if TYPE_CHECKING:
    from lookalike.engine import Index

DEFAULT_THRESHOLD = 0.80  # cosine in the index's search space; see the module docstring
DEFAULT_K = 8
BATCH = 2048


@dataclass(frozen=True, slots=True)
class DuplicateGroup:
    """Images that are copies of each other. `kind` is "exact" (identical files) or "near".
    `scores[i]` is the best similarity of `paths[i]` to another member (1.0 for exact)."""

    kind: str
    ids: tuple[int, ...]
    paths: tuple[str, ...]
    scores: tuple[float, ...]

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "ids": list(self.ids),
            "paths": list(self.paths),
            "scores": [round(s, 4) for s in self.scores],
        }


class UnionFind:
    """Disjoint sets over arbitrary int keys, with path halving and union by size."""

    def __init__(self) -> None:
        self.parent: dict[int, int] = {}
        self.size: dict[int, int] = {}

    def find(self, x: int) -> int:
        parent = self.parent
        if x not in parent:
            parent[x] = x
            self.size[x] = 1
            return x
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return
        if self.size[ra] < self.size[rb]:
            ra, rb = rb, ra
        self.parent[rb] = ra
        self.size[ra] += self.size[rb]

    def groups(self) -> list[list[int]]:
        out: dict[int, list[int]] = {}
        for x in self.parent:
            out.setdefault(self.find(x), []).append(x)
        return [sorted(g) for g in out.values() if len(g) > 1]


def near_pairs(
    ids: np.ndarray,
    scores: np.ndarray,
    neighbours: np.ndarray,
    threshold: float,
) -> list[tuple[int, int, float]]:
    """(a, b, score) with a < b for every k-NN result at or above `threshold`."""
    out = []
    rows, cols = np.nonzero((scores >= threshold) & (neighbours >= 0))
    for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
        a, b = int(ids[r]), int(neighbours[r, c])
        if a != b:
            out.append((min(a, b), max(a, b), float(scores[r, c])))
    return out


def find_duplicates(
    index: Index,
    threshold: float | None = None,
    *,
    k: int = DEFAULT_K,
    exact: bool = True,
    near: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> list[DuplicateGroup]:
    """Exact groups (same content hash), then near-duplicate groups: connected components of
    the k-NN graph restricted to pairs with similarity >= `threshold`. A near group whose
    members are all one exact group is not repeated. Groups are sorted by their first id."""
    threshold = DEFAULT_THRESHOLD if threshold is None else float(threshold)
    if not -1.0 <= threshold <= 1.0:
        raise ConfigError(f"threshold must be a cosine similarity in [-1, 1], got {threshold}")
    if k < 1:
        raise ConfigError(f"k must be at least 1, got {k}")
    catalog = index.catalog
    groups: list[DuplicateGroup] = []
    exact_sets: set[frozenset[int]] = set()
    if exact:
        with index.lock:
            hash_groups = list(catalog.hash_groups())
        for g in hash_groups:
            exact_sets.add(frozenset(r.id for r in g))
            groups.append(
                DuplicateGroup(
                    "exact",
                    tuple(r.id for r in g),
                    tuple(r.path for r in g),
                    tuple(1.0 for _ in g),
                )
            )
    if near:
        groups.extend(_near_groups(index, threshold, k, exact_sets, progress))
    groups.sort(key=lambda g: (g.ids[0], g.kind))
    return groups


def _near_groups(
    index: Index,
    threshold: float,
    k: int,
    exact_sets: set[frozenset[int]],
    progress: Callable[[int, int], None] | None,
) -> list[DuplicateGroup]:
    vectors = index.vector_index()
    if vectors is None:
        return []
    catalog = index.catalog
    total = len(index)
    uf = UnionFind()
    best: dict[int, float] = {}
    done = 0
    for ids, raw in catalog.iter_descriptors(BATCH):
        scores, neighbours = vectors.search(index.transform(raw), k + 1)
        for a, b, s in near_pairs(ids, scores, neighbours, threshold):
            uf.union(a, b)
            best[a] = max(best.get(a, -1.0), s)
            best[b] = max(best.get(b, -1.0), s)
        done += len(ids)
        if progress is not None:
            progress(done, total)
    out = []
    components = [g for g in uf.groups() if frozenset(g) not in exact_sets]
    with index.lock:
        records = catalog.get_many(i for g in components for i in g)
    for g in components:
        g = [i for i in g if i in records]
        if len(g) < 2:
            continue
        out.append(
            DuplicateGroup(
                "near",
                tuple(g),
                tuple(records[i].path for i in g),
                tuple(min(1.0, best.get(i, 0.0)) for i in g),
            )
        )
    return out
