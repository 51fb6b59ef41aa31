"""The SQLite catalog at scale: insert rate, lookups, full-state reads and file size, up to 10M.

    .venv/bin/python benchmarks/catalog_scale.py [--rows 10000000] [--dir /big/disk]

Rows are written through `Catalog.write_batch` exactly as a sync writes them (batches of
--batch images, one transaction each): a realistic path (~70 bytes), file facts, a 1280-d
float16 raw descriptor (lite0) and 5 top classes. At each checkpoint the benchmark measures:
the insert rate of the last stretch, `find_path` (sync's and search's lookup by path) and `get`
(by id) latency on random existing rows, `paths_and_labels` for 10 ids (what a search result
page reads), and the time and memory of `file_states()` (the whole path -> state map a sync
loads to plan). The catalog file is deleted at the end (it is ~27 GB at 10M rows).

Prints a table and writes benchmarks/results/catalog_scale.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

from lookalike.index.catalog import Catalog, NewImage

RESULTS = Path(__file__).parent / "results"
DIM = 1280


def _path(i: int) -> str:
    return f"/mnt/photos/{2010 + i % 15}/{(i // 1000) % 12 + 1:02d}/IMG_{i:08d}.jpg"


_POOL: list[np.ndarray] = []


def _rows(start: int, n: int, rng: np.random.Generator) -> list[NewImage]:
    # descriptor bytes do not matter to SQLite: a pool of random ones, reused cyclically
    if not _POOL:
        _POOL.extend(rng.standard_normal((4096, DIM)).astype(np.float32))
    desc = [_POOL[(start + j) % len(_POOL)] for j in range(n)]
    return [
        NewImage(
            _path(start + j),
            2_000_000 + j,
            1_700_000_000_000_000_000 + start + j,
            f"{start + j:032x}",
            4000,
            3000,
            desc[j],
            [(int(c), 0.2) for c in rng.integers(0, 1000, 5)],
        )
        for j in range(n)
    ]


def _latency(fn, args, repeat: int) -> dict:
    times = []
    for a in args[:repeat]:
        t = time.perf_counter()
        fn(a)
        times.append(time.perf_counter() - t)
    t = np.array(times) * 1000
    return {"p50_ms": round(float(np.median(t)), 3), "p90_ms": round(float(np.quantile(t, 0.9)), 3)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--checkpoints", default="100000,1000000,3000000,10000000")
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--dir", default=None)
    ap.add_argument("--states-up-to", type=int, default=10_000_000)
    args = ap.parse_args()
    checkpoints = sorted({int(c) for c in args.checkpoints.split(",") if int(c) <= args.rows})
    work = Path(tempfile.mkdtemp(prefix="catalog-scale-", dir=args.dir))
    rng = np.random.default_rng(0)
    rows_out = []
    try:
        cat = Catalog(work / "catalog.sqlite")
        done = 0
        for cp in checkpoints:
            t0 = time.perf_counter()
            while done < cp:
                n = min(args.batch, cp - done)
                cat.write_batch(add=_rows(done, n, rng))
                done += n
            insert_s = time.perf_counter() - t0
            stretch = cp - (rows_out[-1]["rows"] if rows_out else 0)
            ids = rng.integers(1, done + 1, 300)
            paths = [_path(int(i) - 1) for i in ids]
            row = {
                "rows": cp,
                "insert_rows_per_s": round(stretch / insert_s),
                "find_path": _latency(cat.find_path, paths, 300),
                "get": _latency(cat.get, [int(i) for i in ids], 300),
                "paths_and_labels_10": _latency(
                    cat.paths_and_labels,
                    [list(map(int, ids[i : i + 10])) for i in range(0, 300, 10)],
                    30,
                ),
                "file_bytes": sum(f.stat().st_size for f in work.iterdir()),
            }
            row["bytes_per_image"] = round(row["file_bytes"] / cp)
            if cp <= args.states_up_to:
                tracemalloc.start()
                t = time.perf_counter()
                states = cat.file_states()
                row["file_states_s"] = round(time.perf_counter() - t, 2)
                row["file_states_peak_mb"] = round(tracemalloc.get_traced_memory()[1] / 2**20)
                tracemalloc.stop()
                assert len(states) == cp
                del states
            rows_out.append(row)
            print(json.dumps(row), flush=True)
            _save(args, rows_out)
        cat.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print()
    print(
        "| rows | insert rows/s | find_path p50/p90 ms | get p50 ms | paths+labels (10) p50 ms "
        "| file_states() s / peak MB | bytes/image | file GB |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows_out:
        fs = f"{r.get('file_states_s', '-')} / {r.get('file_states_peak_mb', '-')}"
        print(
            f"| {r['rows']:,} | {r['insert_rows_per_s']:,} | {r['find_path']['p50_ms']} / "
            f"{r['find_path']['p90_ms']} | {r['get']['p50_ms']} | "
            f"{r['paths_and_labels_10']['p50_ms']} | {fs} | {r['bytes_per_image']:,} | "
            f"{r['file_bytes'] / 1e9:.1f} |"
        )


def _save(args, rows_out: list[dict]) -> None:
    RESULTS.mkdir(exist_ok=True)
    out = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "command": f"benchmarks/catalog_scale.py --rows {args.rows} --batch {args.batch}",
        "batch": args.batch,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "rows": rows_out,
    }
    (RESULTS / "catalog_scale.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
