"""Milvus Lite vs FAISS on the same vectors: build time, latency and recall@10, at 100k and 1M.

    .venv/bin/python benchmarks/milvus_vs_faiss.py [--sizes 100000,1000000] [--dim 256]

Data: the clustered synthetic descriptors of benchmarks/search_scale.py (points around N/100
random centres; random uniform vectors have no neighbours and every approximate index fails on
them). Ground truth: FAISS exact search (`Flat`). For each size, both engines run through
lookalike's own wrappers (`VectorIndex`, `MilvusIndex`): FAISS with the index type lookalike
chooses for that size, Milvus Lite with `choose_milvus_key` and a sweep of nprobe. Reported:
build time (insert + flush + index build for Milvus; add (+ train) for FAISS), single-query
latency p50/p90 over --queries queries, and recall@10 against exact search (for an exact index
this is the top-10 overlap with FAISS Flat). Both engines run in this process on the same
vectors, in the same run, so the ratios hold even on a busy machine.

Prints a table and writes benchmarks/results/milvus_vs_faiss.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from lookalike.index.milvus import MilvusIndex, choose_milvus_key, connect, disconnect  # noqa: E402
from lookalike.index.vectors import VectorIndex, choose_index_key  # noqa: E402
from search_scale import make_data, recall_at  # noqa: E402

RESULTS = Path(__file__).parent / "results"


def latency(index, queries: np.ndarray, k: int = 10) -> tuple[dict, np.ndarray]:
    times, found = [], []
    for q in queries:
        t = time.perf_counter()
        _, ids = index.search(q[None], k)
        times.append(time.perf_counter() - t)
        found.append(ids[0])
    ms = np.array(times) * 1000
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p90_ms": round(float(np.percentile(ms, 90)), 2),
    }, np.array(found)


def wait_indexed(client, name: str, timeout: float = 1800) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = client.describe_index(name, "vector")
        if info.get("pending_index_rows", 0) == 0 and info.get("state") == "Finished":
            return
        time.sleep(0.5)
    raise TimeoutError(f"{name}: index not built after {timeout} s")


def bench(n: int, dim: int, nq: int, tmp: Path, nprobes: list[int]) -> list[dict]:
    base, queries = make_data(n, dim, nq)
    ids = np.arange(1, n + 1, dtype=np.int64)
    rows = []

    t = time.perf_counter()
    exact = VectorIndex("Flat", dim)
    exact.add(ids, base)
    build = time.perf_counter() - t
    lat, truth = latency(exact, queries)
    rows.append(
        {
            "n": n,
            "engine": "faiss",
            "key": "Flat",
            "params": "",
            "build_s": round(build, 1),
            **lat,
            "recall@10": 1.0,
        }
    )
    key, params = choose_index_key(n, dim)
    if key != "Flat":
        t = time.perf_counter()
        auto = VectorIndex(key, dim, params)
        auto.train(base[np.random.default_rng(0).choice(n, min(n, 100_000), replace=False)])
        auto.add(ids, base)
        build = time.perf_counter() - t
        lat, found = latency(auto, queries)
        rows.append(
            {
                "n": n,
                "engine": "faiss",
                "key": key,
                "params": params,
                "build_s": round(build, 1),
                **lat,
                "recall@10": recall_at(found, truth),
            }
        )
        del auto
    print(json.dumps(rows[-1]), flush=True)

    uri = str(tmp / f"bench-{n}.db")
    client = connect(uri)
    try:
        key, params = choose_milvus_key(n, dim)
        name = f"bench_{n}"
        t = time.perf_counter()
        index = MilvusIndex.create(client, name, key, dim, params)
        index.add(ids, base)
        insert_s = time.perf_counter() - t
        index.flush()
        wait_indexed(client, name)
        client.load_collection(name)
        build = time.perf_counter() - t
        sweep = [params] if not params else [f"nprobe={p}" for p in nprobes]
        for p in sweep:
            index.set_params(p)
            latency(index, queries[:5])  # warm-up
            lat, found = latency(index, queries)
            rows.append(
                {
                    "n": n,
                    "engine": "milvus-lite",
                    "key": key,
                    "params": p,
                    "build_s": round(build, 1),
                    "insert_s": round(insert_s, 1),
                    **lat,
                    "recall@10": recall_at(found, truth),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
        index.drop()
    finally:
        disconnect(client, uri)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--nprobe", default="16,32,64,128")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="milvus-bench-") as tmp:
        for n in (int(s) for s in args.sizes.split(",")):
            rows += bench(
                n, args.dim, args.queries, Path(tmp), [int(p) for p in args.nprobe.split(",")]
            )
            save(args, rows)  # after each size: a long run keeps what it measured
    print()
    print("| n | engine | index | search params | build s | p50 ms | p90 ms | recall@10 |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['n']:,} | {r['engine']} | {r['key']} | {r['params'] or '-'} | "
            f"{r['build_s']} | {r['p50_ms']} | {r['p90_ms']} | {r['recall@10']:.3f} |"
        )


def save(args, rows: list[dict]) -> None:
    RESULTS.mkdir(exist_ok=True)
    out = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "command": f"benchmarks/milvus_vs_faiss.py --sizes {args.sizes} --dim {args.dim} "
        f"--queries {args.queries} --nprobe {args.nprobe}",
        "rows": rows,
    }
    (RESULTS / "milvus_vs_faiss.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
