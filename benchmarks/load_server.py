"""Load benchmark of `lookalike serve`: latency and errors under 1, 8 and 32 concurrent clients.

Starts its own server on 127.0.0.1 (a free port) over a small index of scikit-image photos and
edited copies, then for each of search-by-id (JSON) and search-by-upload (multipart JPEG)
and each concurrency runs a bounded number of requests within a time limit. 503 (busy, with
Retry-After) is the server's documented answer when its CNN queue is full: counted apart,
never retried. Any other 5xx fails the run (exit status 1).

    .venv/bin/python benchmarks/load_server.py [--requests 200] [--seconds 20]

Prints a table; writes benchmarks/results/load_server.json. Client and server share the
machine, so on a 2-core box the client's own CPU use is part of what is measured.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

RESULTS = Path(__file__).parent / "results" / "load_server.json"
NAMES = ("chelsea", "coffee", "astronaut", "rocket", "camera", "clock", "brick", "moon")


def build_index(root: Path) -> tuple[Path, list[bytes]]:
    from lookalike.edits import apply_edit
    from lookalike.engine import Index
    from lookalike.samples import sample_photos

    photos_dir = root / "photos"
    photos_dir.mkdir()
    uploads = []
    for n, (name, image) in enumerate(sample_photos(NAMES).items()):
        for e, edit in enumerate(("crop", "flip", "rotate")):
            apply_edit(edit, image, seed=10 * n + e).save(photos_dir / f"{name}-{edit}.jpg")
        buf = io.BytesIO()
        apply_edit("jpeg", image, seed=n).save(buf, "JPEG", quality=85)
        uploads.append(buf.getvalue())
    with Index.create(root / "index") as idx:
        idx.sync([photos_dir])
    return root / "index", uploads


def start_server(index: Path, cnn_workers: int, cnn_queue: int) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [
        str(Path(sys.executable).with_name("lookalike")),
        "serve",
        "--index", str(index),
        "--host", "127.0.0.1",
        "--port", str(port),
        "--cnn-workers", str(cnn_workers),
        "--cnn-queue", str(cnn_queue),
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/api/health", timeout=2).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("the server did not start")


async def run_cell(
    base: str, mode: str, clients: int, n_requests: int, seconds: float, ids: list[int],
    uploads: list[bytes],
) -> dict:  # fmt: skip
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    issued = 0
    deadline = time.perf_counter() + seconds

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal issued
        while issued < n_requests and time.perf_counter() < deadline:
            i = issued
            issued += 1
            t0 = time.perf_counter()
            try:
                if mode == "id":
                    r = await client.post("/api/search", json={"id": ids[i % len(ids)], "k": 10})
                else:
                    data = uploads[i % len(uploads)]
                    r = await client.post(
                        "/api/search",
                        files={"image": ("q.jpg", data, "image/jpeg")},
                        data={"k": "10"},
                    )
                status = r.status_code
            except httpx.HTTPError:
                status = 0  # connection-level failure
            dt = time.perf_counter() - t0
            statuses[status] = statuses.get(status, 0) + 1
            if status == 200:
                latencies.append(dt)

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    start = time.perf_counter()
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as client:
        await asyncio.gather(*(worker(client) for _ in range(clients)))
    wall = time.perf_counter() - start
    total = sum(statuses.values())
    ok = statuses.get(200, 0)
    lat = np.array(latencies) * 1000 if latencies else np.array([np.nan])
    return {
        "mode": mode,
        "clients": clients,
        "requests": total,
        "ok": ok,
        "busy_503": statuses.get(503, 0),
        "other_errors": total - ok - statuses.get(503, 0),
        "other_5xx": sum(v for k, v in statuses.items() if k >= 500 and k != 503),
        "error_rate": round((total - ok) / total, 4) if total else None,
        "p50_ms": round(float(np.percentile(lat, 50)), 1),
        "p99_ms": round(float(np.percentile(lat, 99)), 1),
        "throughput_rps": round(ok / wall, 1),
        "wall_s": round(wall, 2),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=200, help="requests per cell (upper bound)")
    ap.add_argument("--seconds", type=float, default=20.0, help="time limit per cell")
    ap.add_argument("--clients", default="1,8,32")
    ap.add_argument("--cnn-workers", type=int, default=2)
    ap.add_argument("--cnn-queue", type=int, default=8)
    args = ap.parse_args()
    os.environ.setdefault("LOOKALIKE_CACHE_DIR", str(Path(tempfile.gettempdir()) / "lk-cache"))
    clients = [int(c) for c in args.clients.split(",")]
    with tempfile.TemporaryDirectory(prefix="lk-load-") as tmp:
        index, uploads = build_index(Path(tmp))
        proc, base = start_server(index, args.cnn_workers, args.cnn_queue)
        try:
            ids = [h["id"] for h in httpx.post(
                f"{base}/api/search", json={"id": 1, "k": 50}).json()["hits"]] + [1]  # fmt: skip
            rows = []
            for mode in ("id", "upload"):
                for c in clients:
                    row = asyncio.run(
                        run_cell(base, mode, c, args.requests, args.seconds, ids, uploads)
                    )
                    rows.append(row)
                    print(
                        f"{mode:7s} {c:3d} clients: {row['requests']:4d} req, "
                        f"p50 {row['p50_ms']:7.1f} ms, p99 {row['p99_ms']:7.1f} ms, "
                        f"{row['throughput_rps']:6.1f} req/s, errors {row['error_rate']:.1%} "
                        f"(503: {row['busy_503']}, other: {row['other_errors']})",
                        flush=True,
                    )
            cnn = httpx.get(f"{base}/api/stats").json()["server"]["cnn"]
        finally:
            proc.terminate()
            proc.wait(20)
    print()
    print("| search | clients | requests | p50 ms | p99 ms | req/s | error rate | 503 | other |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| by {r['mode']} | {r['clients']} | {r['requests']} | {r['p50_ms']} | "
            f"{r['p99_ms']} | {r['throughput_rps']} | {r['error_rate']:.1%} | {r['busy_503']} | "
            f"{r['other_errors']} |"
        )
    result = {
        "benchmark": "load_server",
        "command": "python benchmarks/load_server.py " + " ".join(sys.argv[1:]),
        "settings": vars(args),
        "index_images": 3 * len(NAMES),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "note": "client and server on the same machine; shared with other work, noisy",
        "server_cnn_stats": cnn,
        "rows": rows,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {RESULTS}")
    bad = [r for r in rows if r["other_5xx"] or r["other_errors"]]
    if bad:
        print("FAIL: errors other than the documented 503:", bad, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
