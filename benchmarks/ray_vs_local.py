"""`--executor ray` on one machine vs the local pipeline: throughput ratio and equal results.

    .venv/bin/python benchmarks/ray_vs_local.py [--files 240] [--rounds 2] [--side 640]

Files: the real photos scikit-image ships, cropped and resized to --side x 3/4 --side JPEGs
(each file distinct). Both paths run in this process, interleaved for --rounds rounds, with the
index's default settings (lite0, GeM, max side 480): the local pipeline
(`lookalike.pipeline.extract_files`: decoding processes + ONNX Runtime in this process) and a
`RayExecutor` on a local Ray instance with all CPUs (one actor a CPU, one ONNX Runtime thread
each). Ray's start (instance + actors loading the model) is timed separately from the
steady-state run. Every Ray descriptor is compared with the local one (cosine).

Prints a table and writes benchmarks/results/ray_vs_local.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from lookalike.executors.ray import RayExecutor
from lookalike.extract import Extractor
from lookalike.pipeline import extract_files
from lookalike.samples import sample_photos

RESULTS = Path(__file__).parent / "results"


def make_files(folder: Path, n: int, side: int) -> list[str]:
    photos = [im.convert("RGB") for im in sample_photos().values()]
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        im = photos[i % len(photos)]
        w, h = im.size
        x0, y0 = int(rng.integers(0, w // 8)), int(rng.integers(0, h // 8))
        crop = im.crop((x0, y0, w - int(rng.integers(0, w // 8)), h - int(rng.integers(0, h // 8))))
        path = folder / f"img{i:05d}.jpg"
        crop.resize((side, side * 3 // 4), Image.Resampling.BICUBIC).save(path, quality=90)
        paths.append(str(path))
    return paths


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=240)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--side", type=int, default=640)
    args = ap.parse_args()
    extractor = Extractor()
    with tempfile.TemporaryDirectory(prefix="ray-bench-") as tmp:
        paths = make_files(Path(tmp), args.files, args.side)
        list(extract_files(paths[:8], extractor))  # load the model before timing
        t = time.perf_counter()
        ray_ex = RayExecutor()
        ray_ex.prepare(extractor)
        start_s = time.perf_counter() - t
        local_s, ray_s, cosines = [], [], []
        try:
            for _ in range(args.rounds):
                t = time.perf_counter()
                local = list(extract_files(paths, extractor))
                local_s.append(time.perf_counter() - t)
                t = time.perf_counter()
                remote = list(ray_ex.extract(paths, extractor))
                ray_s.append(time.perf_counter() - t)
                for a, b in zip(local, remote, strict=True):
                    cosines.append(float(a.features.descriptor @ b.features.descriptor))
            workers = len(ray_ex.worker_hosts)
        finally:
            ray_ex.close()
    best_local, best_ray = min(local_s), min(ray_s)
    out = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "command": f"benchmarks/ray_vs_local.py --files {args.files} --rounds {args.rounds} "
        f"--side {args.side}",
        "files": args.files,
        "ray_workers": workers,
        "ray_start_s": round(start_s, 1),
        "local_s": [round(s, 2) for s in local_s],
        "ray_s": [round(s, 2) for s in ray_s],
        "local_images_per_s": round(args.files / best_local, 1),
        "ray_images_per_s": round(args.files / best_ray, 1),
        "ray_over_local": round(best_local / best_ray, 3),
        "cosine_min": round(min(cosines), 6),
        "cosine_mean": round(float(np.mean(cosines)), 6),
    }
    print("| path | images/s (best of rounds) | rounds (s) |")
    print("|---|---|---|")
    print(f"| local pipeline | {out['local_images_per_s']} | {out['local_s']} |")
    print(f"| ray, {workers} workers | {out['ray_images_per_s']} | {out['ray_s']} |")
    print(
        f"\nray / local throughput: {out['ray_over_local']}; Ray start (instance + workers "
        f"loading the model): {out['ray_start_s']} s; descriptor cosine min {out['cosine_min']}"
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "ray_vs_local.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
