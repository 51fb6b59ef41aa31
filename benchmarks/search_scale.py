"""Search at scale: build time, bytes per image, latency, batch QPS and recall@10 by index type.

    .venv/bin/python benchmarks/search_scale.py [--sizes 100000,1000000] [--dim 256]
    .venv/bin/python benchmarks/search_scale.py --hnsw 'HNSW32,Flat;HNSW32,SQ8' --hnsw-only
    .venv/bin/python benchmarks/search_scale.py --sizes 10000000 --queries 200 --mmap

Data: clustered synthetic descriptors (L2-normalized points around N/100 random centres, with a
spread per cluster, so every vector has true neighbours; random uniform vectors have none, see
FACTS.md). Queries are 500 further points drawn the same way. Ground truth: exact search.

For each size: exact `Flat`, the index `choose_index_key` picks (with its search parameters and
a couple of nprobe values around them), and, with `--hnsw`, `HNSW32,Flat` (or the given
';'-separated HNSW factory strings) at efSearch 32/64/128 (`--hnsw-only`: just those and exact
search, merged into the existing JSON). With `--mmap` (meant for 10M), the data is generated
chunk by chunk straight into the automatic index, the exact top-10 kept as it goes, the index
written to disk and searched memory-mapped (resident memory reported). The chosen index is
also saved and re-opened memory-mapped (`--mmap` of `lookalike search`) to show its resident
memory and latency. Finally lookalike's own search call (`Index.search_vector`, which adds the
whitening transform, result filtering and the catalog lookup of paths) is timed against the raw
FAISS call it wraps, on a real index directory of --wrapper-n vectors.

Prints tables and writes benchmarks/results/search_scale.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"


def clustered(n: int, dim: int, seed: int, centres: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(centres), size=n)
    spread = rng.uniform(0.04, 0.09, size=(n, 1)).astype(np.float32)  # cluster cosine ~0.7-0.9
    x = centres[labels] + spread * rng.standard_normal((n, dim), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def make_data(n: int, dim: int, nq: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(12345)
    centres = rng.standard_normal((max(10, n // 100), dim), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    base = np.empty((n, dim), np.float32)
    step = 200_000
    for i in range(0, n, step):
        base[i : i + step] = clustered(min(step, n - i), dim, i + 1, centres)
    return base, clustered(nq, dim, 999_999, centres)


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def recall_at(found: np.ndarray, truth: np.ndarray, k: int = 10) -> float:
    return float(
        np.mean([len(set(f[:k]) & set(t[:k])) / k for f, t in zip(found, truth, strict=True)])
    )


def time_queries(index, queries: np.ndarray, k: int, max_single: int) -> dict:
    single = []
    for q in queries[:max_single]:
        t = time.perf_counter()
        index.search(q[None], k)
        single.append(time.perf_counter() - t)
    t = time.perf_counter()
    _, ids = index.search(queries, k)
    batch_s = time.perf_counter() - t
    single_ms = np.array(single) * 1000
    return {
        "p50_ms": float(np.percentile(single_ms, 50)),
        "p99_ms": float(np.percentile(single_ms, 99)),
        "batch_qps": len(queries) / batch_s,
        "ids": ids,
    }


SWEEP_NPROBE = (64, 128, 192, 256, 384)
HNSW_EF = (32, 64, 128)
ONDISK_PARAMS = (
    "nprobe=384,k_factor_rf=8",
    "nprobe=384,k_factor_rf=32",
    "nprobe=768,k_factor_rf=16",
    "nprobe=768,k_factor_rf=64",
)


def bench_size(
    n: int, dim: int, nq: int, hnsw: list[str], sweep: bool, tmp: Path, hnsw_only: bool = False
) -> list[dict]:

    from lookalike.index.vectors import VectorIndex, choose_index_key

    t = time.perf_counter()
    base, queries = make_data(n, dim, nq)
    ids = np.arange(n, dtype=np.int64)
    print(f"n={n}: data in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    rows = []

    def run(key: str, params_list: list[str], chosen: bool = False) -> VectorIndex:
        t0 = time.perf_counter()
        vi = VectorIndex(key, dim)
        if not vi.is_trained:
            sample = base[np.random.default_rng(0).permutation(n)[: min(n, 100_000)]]
            vi.train(sample)
        for i in range(0, n, 100_000):
            vi.add(ids[i : i + 100_000], base[i : i + 100_000])
        build_s = time.perf_counter() - t0
        path = tmp / f"{key.replace(',', '_')}-{n}.faiss"
        vi.save(path)
        size = path.stat().st_size
        for params in params_list:
            vi.params = params
            vi._apply_params()
            r = time_queries(vi, queries, 10, 100 if key == "Flat" and n > 200_000 else 300)
            rows.append(
                {
                    "n": n,
                    "key": key,
                    "params": params,
                    "chosen": chosen and params == params_list[0],
                    "build_s": build_s,
                    "bytes_per_vector": size / n,
                    "p50_ms": r["p50_ms"],
                    "p99_ms": r["p99_ms"],
                    "batch_qps": r["batch_qps"],
                    "recall10": recall_at(r["ids"], truth) if truth is not None else 1.0,
                }
            )
            print(rows[-1], file=sys.stderr)
        return vi

    truth = None
    flat = run("Flat", [""])
    _, truth = flat.search(queries, 10)
    rows[-1]["recall10"] = 1.0
    del flat
    key, params = choose_index_key(n, dim)
    chosen = None
    if hnsw_only:
        pass
    elif key != "Flat":
        nprobe = int(params.split("nprobe=")[1].split(",")[0])
        rest = params.split(",", 1)[1]
        probes = SWEEP_NPROBE if sweep else (nprobe // 2, nprobe * 2)
        variants = [params] + [f"nprobe={p},{rest}" for p in probes if p != nprobe]
        chosen = run(key, variants, chosen=True)
        if sweep:
            # the other inverted-list counts the engine's 100k training sample allows
            nlist = int(key.split(",")[0][3:])
            for other in (1024, 2048):
                if other != nlist and other * 39 <= min(n, 100_000):
                    alt = key.replace(f"IVF{nlist},", f"IVF{other},")
                    run(alt, [f"nprobe={p},{rest}" for p in SWEEP_NPROBE])
    else:
        rows[0]["chosen"] = True
    for hkey in hnsw:
        run(hkey, [f"efSearch={ef}" for ef in HNSW_EF])
    if chosen is not None:
        rows.append(mmap_row(chosen, tmp / f"chosen-{n}.faiss", queries, truth, key, params, n))
        del chosen
    return rows


def mmap_row(vi, path: Path, queries, truth, key: str, params: str, n: int) -> dict:
    """Save, then open memory-mapped (what `Index.open(..., mmap=True)` does) in a fresh
    process would be cleanest; here: resident memory growth of this process on loading."""
    from lookalike.index.vectors import VectorIndex

    vi.save(path)
    results = {}
    for mmap in (False, True):
        before = rss_mb()
        loaded = VectorIndex.load(path, key, vi.dim, params, mmap=mmap)
        loaded.search(queries[:1], 10)
        results[mmap] = (rss_mb() - before, loaded)
    loaded = results[True][1]
    r = time_queries(loaded, queries, 10, 300)
    return {
        "n": n,
        "key": key + " (mmap)",
        "params": params,
        "chosen": False,
        "build_s": 0.0,
        "bytes_per_vector": path.stat().st_size / n,
        "p50_ms": r["p50_ms"],
        "p99_ms": r["p99_ms"],
        "batch_qps": r["batch_qps"],
        "recall10": recall_at(r["ids"], truth),
        "rss_on_load_mb": results[False][0],
        "rss_on_load_mmap_mb": results[True][0],
    }


def rss_breakdown_mb() -> dict:
    """Resident memory of this process: total, anonymous (heap) and file-backed (mmapped)."""
    out = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            for field, name in (("VmRSS:", "rss"), ("RssAnon:", "anon"), ("RssFile:", "file")):
                if line.startswith(field):
                    out[name] = int(line.split()[1]) / 1024
    return out


def bench_on_disk(n: int, dim: int, nq: int, tmp: Path, step: int = 200_000) -> list[dict]:
    """`--mmap`: an index too large to build comfortably from one array in memory. The same
    clustered data as `make_data`, generated chunk by chunk straight into the automatic index
    (trained on the first 100k vectors), exact top-10 of the queries kept chunk by chunk as it
    goes (the ground truth, no second pass), written to disk, then opened memory-mapped (what
    `Index.open(path, mmap=True)` does) and searched."""
    import gc

    import faiss

    from lookalike.index.vectors import VectorIndex, choose_index_key

    rng = np.random.default_rng(12345)
    centres = rng.standard_normal((max(10, n // 100), dim), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    queries = clustered(nq, dim, 999_999, centres)
    key, params = choose_index_key(n, dim)
    vi = VectorIndex(key, dim, params)
    best_s = np.full((nq, 10), -np.inf, np.float32)
    best_i = np.full((nq, 10), -1, np.int64)
    index_s = gen_s = exact_s = 0.0
    peak_rss = 0.0
    for i in range(0, n, step):
        t = time.perf_counter()
        chunk = clustered(min(step, n - i), dim, i + 1, centres)
        gen_s += time.perf_counter() - t
        t = time.perf_counter()
        if i == 0:
            vi.train(chunk[:100_000])
        vi.add(np.arange(i, i + len(chunk), dtype=np.int64), chunk)
        index_s += time.perf_counter() - t
        t = time.perf_counter()
        s, j = faiss.knn(queries, chunk, 10, faiss.METRIC_INNER_PRODUCT)
        s = np.concatenate([best_s, s], axis=1)
        j = np.concatenate([best_i, j + i], axis=1)
        top = np.argsort(-s, axis=1)[:, :10]
        best_s, best_i = np.take_along_axis(s, top, 1), np.take_along_axis(j, top, 1)
        exact_s += time.perf_counter() - t
        peak_rss = max(peak_rss, rss_mb())
        if (i // step) % 10 == 9:
            print(
                f"  {i + len(chunk):,} added, index {index_s:.0f} s, rss {rss_mb():.0f} MB",
                file=sys.stderr,
            )
    path = tmp / f"ondisk-{n}.faiss"
    t = time.perf_counter()
    vi.save(path)
    write_s = time.perf_counter() - t
    size = path.stat().st_size
    del vi
    gc.collect()
    print(
        f"n={n}: built in {index_s:.0f} s (+{gen_s:.0f} s data, {exact_s:.0f} s exact), "
        f"written in {write_s:.0f} s, {size / 1e9:.2f} GB",
        file=sys.stderr,
    )
    before = rss_breakdown_mb()
    t = time.perf_counter()
    loaded = VectorIndex.load(path, key, dim, params, mmap=True)
    open_s = time.perf_counter() - t
    after_open = rss_breakdown_mb()
    rows = []
    # the automatic parameters first (their resident memory is the one to read), then larger
    # scans and shortlists: at 10M the lists are ~5x longer than at 1M (nlist stays <= 2048)
    for p in (params, *ONDISK_PARAMS):
        loaded.params = p
        loaded._apply_params()
        r = time_queries(loaded, queries, 10, nq)
        after = rss_breakdown_mb()
        rows.append(
            {
                "n": n,
                "key": key + " (on disk, mmap)",
                "params": p,
                "chosen": p == params,
                "build_s": index_s,
                "data_gen_s": gen_s,
                "exact_gt_s": exact_s,
                "write_s": write_s,
                "open_mmap_s": open_s,
                "file_bytes": size,
                "bytes_per_vector": size / n,
                "build_peak_rss_mb": peak_rss,
                "rss_before_open_mb": before,
                "rss_after_open_mb": after_open,
                "rss_after_search_mb": after,
                "queries": nq,
                "p50_ms": r["p50_ms"],
                "p99_ms": r["p99_ms"],
                "batch_qps": r["batch_qps"],
                "recall10": recall_at(r["ids"], best_i),
            }
        )
        print(rows[-1], file=sys.stderr)
    del loaded
    path.unlink()
    return rows


def wrapper_overhead(n: int, dim: int, tmp: Path) -> dict:
    """lookalike's Index.search_vector against the raw FAISS call it wraps on the same index
    (one query on one OpenMP thread, as VectorIndex.search runs it; FAISS's default thread
    count is timed too, for reference)."""
    import faiss

    from lookalike.engine import Index
    from lookalike.index.manifest import IndexSettings

    base, queries = make_data(n, dim, 300)
    settings = IndexSettings(whiten_dim=0)
    path = tmp / f"wrapper-idx-{n}"
    with Index.create(path, settings) as idx:
        for i in range(0, n, 50_000):
            idx.add_vectors(
                [f"/photos/{j}.jpg" for j in range(i, i + 50_000)],
                base[i : i + 50_000],
                refresh=False,
            )
        idx.refresh()
    with Index.open(path) as idx:
        raw = idx.vector_index().faiss_index
        key, params = idx.manifest.index_key, idx.manifest.index_params  # the automatic choice
        idx.search_vector(queries[0], 10)
        threads = faiss.omp_get_max_threads()
        t_look, t_raw, t_raw_default = [], [], []
        for q in queries:  # interleaved, so load swings hit all three alike
            faiss.omp_set_num_threads(1)  # as VectorIndex.search runs a single query
            t = time.perf_counter()
            raw.search(q[None], 10)
            t_raw.append(time.perf_counter() - t)
            faiss.omp_set_num_threads(threads)
            t = time.perf_counter()
            raw.search(q[None], 10)
            t_raw_default.append(time.perf_counter() - t)
            t = time.perf_counter()
            idx.search_vector(q, 10)
            t_look.append(time.perf_counter() - t)
    look, rawm = np.median(t_look) * 1000, np.median(t_raw) * 1000
    return {
        "n": n,
        "key": key,
        "params": params,
        "lookalike_p50_ms": float(look),
        "raw_faiss_p50_ms": float(rawm),
        "ratio": float(look / rawm),
        "overhead_us": float((look - rawm) * 1000),
        "lookalike_p90_ms": float(np.percentile(t_look, 90) * 1000),
        "raw_faiss_p90_ms": float(np.percentile(t_raw, 90) * 1000),
        f"raw_faiss_{threads}_threads_p50_ms": float(np.median(t_raw_default) * 1000),
        f"raw_faiss_{threads}_threads_p90_ms": float(np.percentile(t_raw_default, 90) * 1000),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument(
        "--hnsw",
        nargs="?",
        const="HNSW32,Flat",
        default="",
        help="also these HNSW factory strings, ';'-separated (default HNSW32,Flat; slow to "
        f"build), each at efSearch {HNSW_EF}",
    )
    parser.add_argument(
        "--hnsw-only",
        action="store_true",
        help="exact search (for the ground truth) and the --hnsw indexes only; their rows "
        "replace the HNSW rows of the existing JSON, the other rows are kept",
    )
    parser.add_argument(
        "--sweep",
        action="store_true",
        help=f"above exact search: nprobe {SWEEP_NPROBE} for the chosen and the other nlist",
    )
    parser.add_argument(
        "--mmap",
        action="store_true",
        help="on-disk mode (e.g. --sizes 10000000 --queries 200): data generated in chunks "
        "straight into the automatic index, written to disk, searched memory-mapped; its rows "
        "are added to the existing JSON (replacing earlier on-disk rows)",
    )
    parser.add_argument(
        "--wrapper-n", default="100000,1000000", help="sizes for the wrapper overhead ('' = none)"
    )
    args = parser.parse_args()
    import faiss

    print(f"faiss {faiss.__version__}, {faiss.omp_get_max_threads()} threads", file=sys.stderr)
    hnsw = [k for k in args.hnsw.split(";") if k]
    if args.hnsw_only and not hnsw:
        parser.error("--hnsw-only needs --hnsw")
    rows = []
    with tempfile.TemporaryDirectory(prefix="lk-search-") as tmp:
        for n in (int(s) for s in args.sizes.split(",") if s):
            if args.mmap:
                rows.extend(bench_on_disk(n, args.dim, args.queries, Path(tmp)))
                continue
            rows.extend(
                bench_size(n, args.dim, args.queries, hnsw, args.sweep, Path(tmp), args.hnsw_only)
            )
        wrapper = [
            wrapper_overhead(int(w), args.dim, Path(tmp)) for w in args.wrapper_n.split(",") if w
        ]
    print(
        "| N | index (factory string) | params | chosen | build s | bytes/image | p50 ms | "
        "p99 ms | batch QPS | recall@10 |"
    )
    print("|" + "---|" * 10)
    for r in rows:
        print(
            f"| {r['n']:,} | `{r['key']}` | {r['params'] or '-'} | "
            f"{'yes' if r['chosen'] else ''} | {r['build_s']:.1f} | "
            f"{r['bytes_per_vector']:.0f} | "
            f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['batch_qps']:.0f} | "
            f"{r['recall10']:.3f} |"
        )
    for r in rows:
        if "rss_on_load_mb" in r:
            print(
                f"N={r['n']:,}: loading the index file grows resident memory by "
                f"{r['rss_on_load_mb']:.0f} MB in RAM, {r['rss_on_load_mmap_mb']:.0f} MB mmap"
            )
    for w in wrapper:
        print(
            f"wrapper at N={w['n']:,} ({w['key']}): lookalike search_vector "
            f"{w['lookalike_p50_ms']:.3f} ms vs raw FAISS {w['raw_faiss_p50_ms']:.3f}"
            f" ms p50 (x{w['ratio']:.2f}, +{w['overhead_us']:.0f} us); p90 "
            f"{w['lookalike_p90_ms']:.3f} vs {w['raw_faiss_p90_ms']:.3f} ms"
        )
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = {
        "benchmark": "search_scale",
        "command": " ".join(["python", *sys.argv]),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "faiss": faiss.__version__,
        },
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rows": rows,
        "wrapper": wrapper,
    }
    path = RESULTS / "search_scale.json"
    if not rows and path.exists():  # `--sizes ''`: wrapper only, the size rows are kept
        kept = json.loads(path.read_text())
        out = {**kept, "wrapper": wrapper, "wrapper_command": out["command"]}
    elif args.mmap and path.exists():  # on-disk rows replace the old on-disk rows only
        kept = json.loads(path.read_text())
        old = [r for r in kept["rows"] if "on disk" not in r["key"]]
        out = {**kept, "rows": old + rows, "ondisk_command": out["command"]}
    elif args.hnsw_only and path.exists():  # HNSW rows replace the old HNSW rows only
        kept = json.loads(path.read_text())
        old = [r for r in kept["rows"] if not r["key"].startswith("HNSW")]
        new = [r for r in rows if r["key"].startswith("HNSW")]
        out = {
            **kept,
            "rows": old + new,
            "hnsw_command": out["command"],
            "hnsw_peak_rss_mb": out["peak_rss_mb"],
        }
        if wrapper:
            out["wrapper"] = wrapper
    path.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
