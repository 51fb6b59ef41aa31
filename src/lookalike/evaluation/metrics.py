"""Retrieval metrics as pure functions of a ranking.

A *ranking* is a sequence of database indices, best first (usually the whole database).
*positives* are the indices that count as correct, *junk* those that are ignored: they are
removed from the ranking before scoring, as in the Oxford/Paris protocols.

Average precision comes in two styles:
- ``"step"``: the mean of precision at the rank of each positive (non-interpolated AP, as
  TREC and most papers compute it);
- ``"trapezoid"``: the area under the precision-recall curve by the trapezoid rule, as the
  official Oxford/Paris ``compute_ap`` and the INRIA Holidays script compute it.

Queries with no positives have no defined AP: functions return ``nan`` and the means skip them.
Ties in scores are broken by database index (lower first) in :func:`rank_by_scores`, so
results are deterministic.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Sequence
from typing import Literal

import numpy as np

APStyle = Literal["step", "trapezoid"]

__all__ = [
    "average_precision",
    "first_correct_rank",
    "mean_ignoring_nan",
    "ns_score",
    "positive_ranks",
    "precision_at_k",
    "precision_recall",
    "rank_by_scores",
]


def rank_by_scores(scores: np.ndarray) -> np.ndarray:
    """Database indices sorted by descending score; ties keep index order. (n,) or (q, n)."""
    scores = np.asarray(scores)
    return np.argsort(-scores, axis=-1, kind="stable")


def positive_ranks(
    ranking: Sequence[int] | np.ndarray,
    positives: Collection[int],
    junk: Collection[int] = (),
) -> np.ndarray:
    """0-based ranks of the positives in ``ranking`` once junk is removed, ascending."""
    pos, bad = set(int(p) for p in positives), set(int(j) for j in junk)
    ranks = []
    r = 0
    for idx in np.asarray(ranking).ravel():
        i = int(idx)
        if i in bad and i not in pos:
            continue
        if i in pos:
            ranks.append(r)
        r += 1
    return np.asarray(ranks, dtype=np.int64)


def average_precision(
    ranking: Sequence[int] | np.ndarray,
    positives: Collection[int],
    junk: Collection[int] = (),
    style: APStyle = "step",
) -> float:
    """AP of one query; ``nan`` when there are no positives. Positives missing from the
    ranking (a truncated ranking) count as never retrieved."""
    n_pos = len(set(int(p) for p in positives))
    if n_pos == 0:
        return math.nan
    ranks = positive_ranks(ranking, positives, junk)
    if style == "step":
        return float(sum((j + 1) / (r + 1) for j, r in enumerate(ranks)) / n_pos)
    if style == "trapezoid":
        ap = 0.0
        step = 1.0 / n_pos
        for j, r in enumerate(ranks):
            p0 = 1.0 if r == 0 else j / r
            p1 = (j + 1) / (r + 1)
            ap += (p0 + p1) * step / 2.0
        return float(ap)
    raise ValueError(f"unknown AP style {style!r}")


def ns_score(ranking: Sequence[int] | np.ndarray, positives: Collection[int], k: int = 4) -> int:
    """UKBench N-S score of one query: how many of the top ``k`` are positives (the query
    itself included, as the protocol counts it); 0..4 for UKBench."""
    pos = set(int(p) for p in positives)
    return sum(1 for i in np.asarray(ranking).ravel()[:k] if int(i) in pos)


def precision_at_k(
    ranking: Sequence[int] | np.ndarray,
    positives: Collection[int],
    junk: Collection[int] = (),
    ks: Iterable[int] = (1, 5, 10),
) -> dict[int, float]:
    """Precision at each k after junk removal, as the revisited Oxford/Paris code computes
    mP@k: the denominator is ``min(k, rank of the last positive)``, so a query with fewer
    than k positives can still reach 1. ``nan`` for every k when there are no positives."""
    ks = list(ks)
    if not positives:
        return {k: math.nan for k in ks}
    ranks = positive_ranks(ranking, positives, junk) + 1  # 1-based
    if ranks.size == 0:
        return {k: 0.0 for k in ks}
    out = {}
    for k in ks:
        kq = min(int(ranks.max()), k)
        out[k] = float((ranks <= kq).sum() / kq)
    return out


def first_correct_rank(
    ranking: Sequence[int] | np.ndarray,
    positives: Collection[int],
    junk: Collection[int] = (),
) -> int | None:
    """1-based rank of the first positive after junk removal, or None if none is ranked."""
    ranks = positive_ranks(ranking, positives, junk)
    return int(ranks[0]) + 1 if ranks.size else None


def precision_recall(
    ranking: Sequence[int] | np.ndarray,
    positives: Collection[int],
    junk: Collection[int] = (),
) -> tuple[np.ndarray, np.ndarray]:
    """(precision, recall) after each ranked item (junk removed); empty arrays when there
    are no positives."""
    pos = set(int(p) for p in positives)
    if not pos:
        return np.zeros(0), np.zeros(0)
    bad = set(int(j) for j in junk) - pos
    hits = np.array([int(i) in pos for i in np.asarray(ranking).ravel() if int(i) not in bad])
    if hits.size == 0:
        return np.zeros(0), np.zeros(0)
    tp = np.cumsum(hits)
    return tp / np.arange(1, hits.size + 1), tp / len(pos)


def mean_ignoring_nan(values: Iterable[float]) -> float:
    """Mean of the non-nan values; nan if there are none."""
    vals = [v for v in values if not math.isnan(v)]
    return float(sum(vals) / len(vals)) if vals else math.nan
