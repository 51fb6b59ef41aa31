"""Index a benchmark's database with given settings and score its queries.

    bench = load_benchmark("holidays", "~/data/holidays")
    result = evaluate(bench, IndexSettings(max_side=480), expand="alpha-qe:n=3,alpha=3")
    result.summary()   # {"map": ..., "queries": ..., "database": ..., "seconds": ...}

The database goes into a real lookalike index (so whitening follows the engine's own rule);
rankings are then computed exactly over the whole database in NumPy from the index's search
vectors, which is what the metrics need. Post-processing options:

- ``expand``: query expansion spec (``"aqe:n=3"``, ``"alpha-qe:n=3,alpha=3"``);
- ``dba``: database-side augmentation with the same spec syntax, applied to the database
  vectors here (exactly what an index built with ``IndexSettings(dba=...)`` stores; such an
  index's own setting is used when ``dba`` is not given);
- ``rerank``: re-order each query's top ``rerank`` results by the score of their best region
  (approximate max-pooling localization; re-runs the CNN on those results).
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lookalike.engine import Index, is_index
from lookalike.errors import ConfigError, ImageError
from lookalike.evaluation.datasets import DEFAULT_PROTOCOL, Benchmark
from lookalike.evaluation.metrics import (
    average_precision,
    first_correct_rank,
    mean_ignoring_nan,
    ns_score,
    precision_at_k,
    precision_recall,
    rank_by_scores,
)
from lookalike.index.manifest import IndexSettings
from lookalike.postprocess.qe import dba as dba_vectors
from lookalike.postprocess.qe import expand_batch, parse_expansion

log = logging.getLogger(__name__)

KEEP_TOP = 20  # per-query results kept for the report
PR_POINTS = 101


@dataclass
class QueryResult:
    query: str
    box: tuple[float, float, float, float] | None
    top: list[int]  # database indices, best first (up to KEEP_TOP, excluded ones left out)
    ap: dict[str, float]
    first_correct: int | None
    positives: set[int]


@dataclass
class EvalResult:
    kind: str
    database: list[str]
    queries: list[QueryResult]
    maps: dict[str, float]
    mp: dict[str, dict[int, float]]
    ns: float | None
    top1: float
    seconds: float
    settings: dict
    expand: str | None
    dba: str | None
    rerank: int
    distractors: int
    whitening: dict | None
    failed: list[str] = field(default_factory=list)
    pr_curve: tuple[list[float], list[float]] = ((), ())  # type: ignore[assignment]

    @property
    def map(self) -> float:
        if DEFAULT_PROTOCOL in self.maps:
            return self.maps[DEFAULT_PROTOCOL]
        return self.maps.get("medium", math.nan)

    def summary(self) -> dict:
        out: dict = {"kind": self.kind}
        if self.ns is not None:
            out["ns_score"] = _r(self.ns)
        out["map"] = _r(self.map)
        if DEFAULT_PROTOCOL not in self.maps:
            for proto, value in self.maps.items():
                out[f"map_{proto}"] = _r(value)
            for proto, ks in self.mp.items():
                for k, value in ks.items():
                    out[f"mp@{k}_{proto}"] = _r(value)
        out["top1"] = _r(self.top1)
        out["queries"] = len(self.queries)
        out["database"] = len(self.database)
        out["distractors"] = self.distractors
        out["seconds"] = round(self.seconds, 2)
        out["settings"] = self.settings
        out["whitening"] = self.whitening
        out["expand"] = self.expand
        out["dba"] = self.dba
        out["rerank"] = self.rerank
        if self.failed:
            out["unreadable"] = self.failed
        return out


def _r(x: float) -> float | None:
    return None if math.isnan(x) else round(float(x), 4)


def build_index(
    bench: Benchmark,
    path: str | Path,
    settings: IndexSettings | None = None,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[Index, list[str]]:
    """Open (or create) the index at ``path`` and add the benchmark's database images it lacks.
    Returns the writable index and the database files that could not be read."""
    from lookalike.pipeline import extract_files

    idx = Index.open(path, writable=True, settings=settings) if is_index(path) else None
    if idx is None:
        idx = Index.create(path, settings or IndexSettings())
    known = {r.path for r in idx.catalog.records()}
    todo = [str(p) for p in bench.database if str(p) not in known]
    failed: list[str] = []
    paths: list[str] = []
    vecs: list[np.ndarray] = []
    for done, item in enumerate(extract_files(todo, idx.extractor), 1):
        if isinstance(item, ImageError):
            failed.append(f"{item.path}: {item.reason}")
        else:
            paths.append(item.path)
            vecs.append(item.features.descriptor)
        if len(paths) >= 256:
            idx.add_vectors(paths, np.stack(vecs), refresh=False)
            paths, vecs = [], []
        if progress is not None:
            progress(done, len(todo))
    if paths:
        idx.add_vectors(paths, np.stack(vecs), refresh=False)
    idx.refresh()
    return idx, failed


def database_vectors(idx: Index, bench: Benchmark) -> tuple[np.ndarray, np.ndarray]:
    """(raw (N, D), search vectors (N, d)) in database order; rows of unreadable images are 0."""
    by_path = {r.path: r.id for r in idx.catalog.records()}
    dim = idx.manifest.dim or 1
    raw = np.zeros((len(bench.database), dim), dtype=np.float32)
    present = np.zeros(len(bench.database), dtype=bool)
    for i, p in enumerate(bench.database):
        image_id = by_path.get(str(p))
        if image_id is not None:
            vec = idx.catalog.descriptor(image_id)
            if vec is not None:
                raw[i] = vec
                present[i] = True
    search = np.zeros((len(bench.database), idx.search_dim or dim), dtype=np.float32)
    if present.any():
        search[present] = idx.transform(raw[present])
    return raw, search


def score(
    bench: Benchmark,
    idx: Index,
    *,
    expand: str | None = None,
    dba: str | None = None,
    rerank: int = 0,
    failed: list[str] | None = None,
    seconds_so_far: float = 0.0,
) -> EvalResult:
    """Score every query of ``bench`` against the index built by :func:`build_index`."""
    start = time.perf_counter()
    exp_spec, dba_spec = parse_expansion(expand), parse_expansion(dba)
    built = parse_expansion(idx.settings.dba)
    if built is not None and dba_spec not in (None, built):
        raise ConfigError(f"the index stores DBA {built}; cannot score it with DBA {dba_spec}")
    dba_spec = dba_spec or built
    raw_db, x = database_vectors(idx, bench)
    if dba_spec is not None:
        x = dba_vectors(x, dba_spec)
    queries = bench.get_queries()
    raw_q = np.stack(
        [
            raw_db[q.db_index]
            if q.db_index is not None and q.box is None
            else idx.describe(q.path, box=q.box)
            for q in queries
        ]
    )
    q = idx.transform(raw_q)
    scores = q @ x.T
    own = np.full(len(queries), -1)
    if not bench.query_in_ranking:
        for i, query in enumerate(queries):
            if query.db_index is not None:
                own[i] = query.db_index
                scores[i, query.db_index] = -np.inf
    if exp_spec is not None:
        q = expand_batch(q, x, exp_spec, scores)
        scores = q @ x.T
        for i in np.flatnonzero(own >= 0):
            scores[i, own[i]] = -np.inf
    rankings = rank_by_scores(scores)
    if rerank > 0:
        rankings = _rerank(idx, bench, raw_q, rankings, rerank, own)

    protocols = bench.protocols
    maps: dict[str, float] = {}
    mp: dict[str, dict[int, float]] = {}
    per_query_ap: dict[str, list[float]] = {}
    for proto in protocols:
        gts = bench.get_groundtruth(proto)
        aps, prec = [], []
        for ranking, gt in zip(rankings, gts, strict=True):
            aps.append(average_precision(ranking, gt.positives, gt.junk, bench.ap_style))
            prec.append(precision_at_k(ranking, gt.positives, gt.junk))
        per_query_ap[proto] = aps
        maps[proto] = mean_ignoring_nan(aps)
        if DEFAULT_PROTOCOL not in protocols:
            mp[proto] = {k: mean_ignoring_nan(p[k] for p in prec) for k in (1, 5, 10)}
    main = DEFAULT_PROTOCOL if DEFAULT_PROTOCOL in protocols else "medium"
    gts = bench.get_groundtruth(main)
    results = []
    firsts = []
    recall_grid = np.linspace(0, 1, PR_POINTS)
    precision_sum = np.zeros(PR_POINTS)
    n_curves = 0
    for i, (query, ranking, gt) in enumerate(zip(queries, rankings, gts, strict=True)):
        first = first_correct_rank(ranking, gt.positives, gt.junk)
        firsts.append(first)
        kept = [int(j) for j in ranking if int(j) != own[i]][:KEEP_TOP]
        results.append(
            QueryResult(
                str(query.path),
                query.box,
                kept,
                {p: per_query_ap[p][i] for p in protocols},
                first,
                set(gt.positives),
            )
        )
        precision, recall = precision_recall(ranking, gt.positives, gt.junk)
        if precision.size:
            # interpolated precision: the best precision at any recall >= r
            interp = np.maximum.accumulate(precision[::-1])[::-1]
            idxs = np.searchsorted(recall, recall_grid, side="left")
            precision_sum += np.where(
                idxs < len(interp), interp[np.minimum(idxs, len(interp) - 1)], 0
            )
            n_curves += 1
    ns = None
    if bench.kind == "ukbench":
        ns = float(np.mean([ns_score(r, g.positives) for r, g in zip(rankings, gts, strict=True)]))
    scored = [f for f, g in zip(firsts, gts, strict=True) if g.positives]
    top1 = float(np.mean([f == 1 for f in scored])) if scored else math.nan
    w = idx.manifest.whitening
    return EvalResult(
        kind=bench.kind,
        database=[str(p) for p in bench.database],
        queries=results,
        maps=maps,
        mp=mp,
        ns=ns,
        top1=top1,
        seconds=seconds_so_far + time.perf_counter() - start,
        settings=idx.settings.model_dump(mode="json"),
        expand=str(exp_spec) if exp_spec else None,
        dba=str(dba_spec) if dba_spec else None,
        rerank=rerank,
        distractors=bench.distractors,
        whitening=w.model_dump() if w else None,
        failed=list(failed or []),
        pr_curve=(
            recall_grid.tolist(),
            (precision_sum / max(n_curves, 1)).tolist(),
        ),
    )


def _rerank(
    idx: Index,
    bench: Benchmark,
    raw_q: np.ndarray,
    rankings: np.ndarray,
    depth: int,
    own: np.ndarray,
) -> np.ndarray:
    from lookalike.postprocess.localize import localize_file

    out = rankings.copy()
    for i in range(len(rankings)):
        top = [int(j) for j in rankings[i] if int(j) != own[i]][:depth]
        region = []
        for j in top:
            try:
                s, _ = localize_file(idx.extractor, raw_q[i], str(bench.database[j]))
            except ImageError:
                s = -1.0
            region.append(s)
        order = [top[t] for t in np.argsort(-np.asarray(region), kind="stable")]
        chosen = set(top)
        rest = [int(j) for j in rankings[i] if int(j) not in chosen]
        out[i] = np.asarray(order + rest)
    return out


def evaluate(
    bench: Benchmark,
    settings: IndexSettings | None = None,
    *,
    expand: str | None = None,
    dba: str | None = None,
    rerank: int = 0,
    index_path: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> EvalResult:
    """Index the benchmark's database (in ``index_path``, reused if it exists, or a temporary
    folder) and score it."""
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="lookalike-eval-") as tmp:
        path = Path(index_path) if index_path is not None else Path(tmp) / "index"
        idx, failed = build_index(bench, path, settings, progress=progress)
        with idx:
            return score(
                bench,
                idx,
                expand=expand,
                dba=dba,
                rerank=rerank,
                failed=failed,
                seconds_so_far=time.perf_counter() - start,
            )
