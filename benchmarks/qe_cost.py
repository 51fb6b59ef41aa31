"""What query expansion costs at search time: `Index.search_vector` with and without
`expand` on an index of clustered synthetic vectors (the automatic FAISS index for the size),
median over queries, measured in the same run.

QE is a second search plus reading the top-n neighbours' descriptors from the catalog.

    .venv/bin/python benchmarks/qe_cost.py [--sizes 100000]

Writes benchmarks/results/qe_cost.json.
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
QUERIES = 200
SPECS = (None, "aqe:n=2", "alpha-qe:n=2,alpha=3")


def clustered_vectors(n: int, dim: int, clusters: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    x = centres[rng.integers(0, clusters, size=n)]
    x += 0.25 * rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="100000")
    args = ap.parse_args()
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        x = clustered_vectors(n, DIM, max(2, n // 20))
        with tempfile.TemporaryDirectory() as tmp:
            with Index.create(Path(tmp) / "idx", IndexSettings(whiten_dim=0)) as idx:
                for start in range(0, n, 100_000):
                    chunk = x[start : start + 100_000]
                    idx.add_vectors(
                        [f"/s/{i}.jpg" for i in range(start, start + len(chunk))],
                        chunk,
                        refresh=False,
                    )
                idx.refresh()
                key = idx.info()["index_key"]
                queries = x[:: max(1, n // QUERIES)][:QUERIES]
                times = {}
                for _ in range(2):  # interleaved rounds: the machine is shared
                    for spec in SPECS:
                        for q in queries:
                            start = time.perf_counter()
                            idx.search_vector(q, k=10, expand=spec)
                            times.setdefault(str(spec), []).append(time.perf_counter() - start)
        row = {"n": n, "key": key}
        for spec, values in times.items():
            row[spec] = round(1000 * float(np.median(values)), 3)
        rows.append(row)
        print(json.dumps(row), flush=True)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "qe_cost.json"
    out.write_text(json.dumps({"dim": DIM, "ms_median": rows}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
