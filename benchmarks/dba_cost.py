"""What database-side augmentation stored in the index costs: the time to (re)build the
vectors of an index with `IndexSettings(dba=...)` against the same rebuild without it.

Clustered synthetic 256-d vectors (random uniform ones have no neighbours to average) are
added with `Index.add_vectors`; then `refresh()` rebuilds the FAISS vectors from the catalog
(what happens at the end of every sync that changed anything when DBA is on). The quality
effect of DBA is measured separately (BENCHMARKS.md, retrieval components).

    .venv/bin/python benchmarks/dba_cost.py [--sizes 10000,30000] [--out dba_cost.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from lookalike.engine import Index
from lookalike.index.manifest import IndexSettings

RESULTS = Path(__file__).parent / "results"
DIM = 256
SPEC = "alpha-qe:n=3,alpha=3"


def clustered_vectors(n: int, dim: int, clusters: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    x = centres[rng.integers(0, clusters, size=n)]
    x += 0.25 * rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def rebuild_seconds(n: int, dba: str | None, x: np.ndarray) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        settings = IndexSettings(whiten_dim=0, index_key="Flat", dba=dba)
        with Index.create(Path(tmp) / "idx", settings) as idx:
            paths = [f"/synthetic/{i}.jpg" for i in range(n)]
            idx.add_vectors(paths, x, refresh=False)
            idx.derived.drop()  # force the rebuild refresh() does after a change
            start = time.perf_counter()
            idx.refresh()
            return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10000,30000")
    ap.add_argument("--out", default="dba_cost.json", help="file name under results/")
    args = ap.parse_args()
    rows = []
    print(f"{'N':>8} {'plain s':>9} {'DBA s':>9} {'ratio':>7}")
    for n in (int(s) for s in args.sizes.split(",")):
        x = clustered_vectors(n, DIM, max(2, n // 20), seed=0)
        plain = rebuild_seconds(n, None, x)
        dba = rebuild_seconds(n, SPEC, x)
        rows.append(
            {"n": n, "dim": DIM, "dba": SPEC, "plain_s": round(plain, 3), "dba_s": round(dba, 3)}
        )
        print(f"{n:>8} {plain:>9.2f} {dba:>9.2f} {dba / plain:>7.1f}", flush=True)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / args.out
    out.write_text(json.dumps({"rows": rows, "note": "Flat index, 2 shared cores"}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
