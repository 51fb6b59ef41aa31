"""Peak memory of `Index.sync` as the collection grows (10k and 50k images by default).

    .venv/bin/python benchmarks/sync_memory.py [--sizes 10000,50000] [--side 64]

Each size is indexed from scratch in a fresh Python process (so peaks do not mix), with the
whole path `lookalike index` runs: listing, stat, hashing and decoding in the worker processes,
batched ONNX Runtime, SQLite commits, whitening, the FAISS index and its save. To make 50k
images affordable on two cores the photos are small generated JPEGs (`--side` px on the long
side, a quarter portrait, crops of the shipped photos) and the index uses `max_side` = `--side`,
so the CNN is cheap while every other stage does its normal per-image work.

Peak resident memory is `getrusage(RUSAGE_SELF).ru_maxrss` of the indexing process, read with
the model loaded, at the half-way and the last image of the sync loop (progress callback, before
the final `refresh`, which trains whitening and builds the FAISS index) and at the end; and, for
its helper processes (decoding workers, forkserver, resource tracker: children of the
forkserver, so RUSAGE_CHILDREN does not see them), the largest `VmHWM` from /proc, sampled
every 0.2 s by a thread that finds them by an environment marker. Reported with the size of
what grows by design (the FAISS index file and the SQLite catalog). Prints a table and writes
benchmarks/results/sync_memory.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

RESULTS = Path(__file__).parent / "results"

CHILD = r"""
import json, os, resource, sys, threading, time
from lookalike.engine import Index
from lookalike.index.manifest import IndexSettings
folder, index, side = sys.argv[1], sys.argv[2], int(sys.argv[3])
def peak(who):
    return resource.getrusage(who).ru_maxrss / 1024
helpers = {}  # pid -> peak RSS (VmHWM) MB of the helper processes this run started
def watch():
    mark = ("LOOKALIKE_MEM_RUN=" + os.environ["LOOKALIKE_MEM_RUN"]).encode()
    while True:
        for pid in os.listdir("/proc"):
            if not pid.isdigit() or int(pid) == os.getpid():
                continue
            try:
                with open(f"/proc/{pid}/environ", "rb") as fh:
                    if mark not in fh.read().split(b"\0"):
                        continue
                with open(f"/proc/{pid}/status") as fh:
                    for line in fh:
                        if line.startswith("VmHWM:"):
                            mb = int(line.split()[1]) / 1024
                            helpers[pid] = max(helpers.get(pid, 0), mb)
            except OSError:
                pass
        time.sleep(0.2)
threading.Thread(target=watch, daemon=True).start()
t = time.perf_counter()
with Index.create(index, IndexSettings(max_side=side)) as idx:
    idx.extractor.backbone  # model loaded before the baseline reading
    loaded_mb = peak(resource.RUSAGE_SELF)
    loop = {}
    def progress(p):
        if p.done in (p.total // 2, p.total):  # the streaming loop, before the final refresh
            loop[p.done] = peak(resource.RUSAGE_SELF)
    report = idx.sync([folder], progress=progress)
    info = {"count": report.count, "skipped": len(report.skipped)}
    key = idx.manifest.index_key
seconds = time.perf_counter() - t
print(json.dumps({**info, "seconds": seconds, "index_key": key, "model_loaded_mb": loaded_mb,
                  "peak_self_mb": peak(resource.RUSAGE_SELF),
                  "peak_half_loop_mb": min(loop.values()), "peak_loop_mb": max(loop.values()),
                  "peak_helper_mb": max(helpers.values(), default=0.0),
                  "helpers_seen": len(helpers)}))
"""


def make_small_photos(folder: Path, n: int, side: int) -> None:
    from lookalike.samples import sample_photos

    folder.mkdir(parents=True, exist_ok=True)
    if len(list(folder.glob("*/*.jpg"))) == n:
        return
    rng = np.random.default_rng(0)
    sources = [im.convert("RGB").resize((side * 4, side * 3)) for im in sample_photos().values()]
    for i in range(n):
        src = sources[i % len(sources)]
        x0, y0 = int(rng.integers(0, side)), int(rng.integers(0, side))
        im = src.crop((x0, y0, x0 + side * 3, y0 + side * 2))
        out = (side, side * 3 // 4) if i % 4 else (side * 3 // 4, side)
        arr = np.asarray(im.resize(out)).astype(np.int16) + rng.integers(-30, 31, size=3)
        sub = folder / f"d{i // 1000:03d}"
        sub.mkdir(exist_ok=True)
        Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(sub / f"{i:06d}.jpg")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,50000")
    parser.add_argument("--side", type=int, default=64)
    parser.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "lk-mem")
    args = parser.parse_args()
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        folder = args.data / f"photos-{n}-{args.side}"
        t = time.perf_counter()
        make_small_photos(folder, n, args.side)
        print(f"{n} photos ready in {time.perf_counter() - t:.0f} s", file=sys.stderr)
        index = args.data / f"index-{n}"
        shutil.rmtree(index, ignore_errors=True)
        out = subprocess.run(
            [sys.executable, "-c", CHILD, str(folder), str(index), str(args.side)],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "LOOKALIKE_MEM_RUN": f"{os.getpid()}-{n}"},
        )
        row = {"images": n, **json.loads(out.stdout.strip().splitlines()[-1])}
        row["faiss_file_mb"] = (index / "vectors.faiss").stat().st_size / 2**20
        row["catalog_mb"] = (index / "catalog.sqlite").stat().st_size / 2**20
        row["growth_mb"] = row["peak_self_mb"] - row["model_loaded_mb"]
        row["growth_minus_index_mb"] = row["growth_mb"] - row["faiss_file_mb"]
        row["loop_growth_mb"] = row["peak_loop_mb"] - row["model_loaded_mb"]
        rows.append(row)
        print(row, file=sys.stderr)
        shutil.rmtree(index, ignore_errors=True)
    print(
        "| images | index | seconds | img/s | RSS with model loaded MB | peak RSS, half-way MB "
        "| peak RSS, last image MB | peak RSS, end (after refresh) MB | FAISS file MB "
        "| peak of a helper process MB | catalog MB |"
    )
    print("|" + "---|" * 11)
    for r in rows:
        print(
            f"| {r['images']:,} | `{r['index_key']}` | {r['seconds']:.0f} | "
            f"{r['images'] / r['seconds']:.0f} | {r['model_loaded_mb']:.0f} | "
            f"{r['peak_half_loop_mb']:.0f} | {r['peak_loop_mb']:.0f} | "
            f"{r['peak_self_mb']:.0f} | {r['faiss_file_mb']:.0f} | {r['peak_helper_mb']:.0f} | "
            f"{r['catalog_mb']:.0f} |"
        )
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = {
        "benchmark": "sync_memory",
        "command": " ".join(["python", *sys.argv]),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "load_average_at_start": os.getloadavg(),
        "side": args.side,
        "rows": rows,
    }
    (RESULTS / "sync_memory.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
