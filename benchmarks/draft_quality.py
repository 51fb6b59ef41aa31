"""JPEG draft scale: decode time against descriptor fidelity for big phone photos.

    .venv/bin/python benchmarks/draft_quality.py [--n 24]

`Image.draft` lets libjpeg decode at 1/2, 1/4 or 1/8 scale (DCT-domain downscaling), which is
what makes 4032x3024 photos cheap. lookalike asks for the smallest scale whose long side is at
least `max_side` (factor 1 below); asking for at least 2 x `max_side` (factor 2) decodes more
pixels and leaves more of the reduction to the bicubic resize. For each factor: decode + resize
time per photo and the cosine of the resulting descriptor against decoding at full size (no
draft, the baseline of benchmarks/indexing_throughput.py). Same photos as that benchmark.

Prints a table and writes benchmarks/results/draft_quality.json.
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
from PIL import Image, ImageOps

sys.path.insert(0, str(Path(__file__).parent))
from indexing_throughput import make_photos  # noqa: E402

RESULTS = Path(__file__).parent / "results"


def decode(path: str, max_side: int, factor: int | None) -> np.ndarray:
    """What lookalike.images.load_image does, with the draft target scaled by `factor`
    (None: no draft)."""
    with Image.open(path) as im:
        if factor is not None:
            w, h = im.size
            s = factor * max_side / max(w, h)
            im.draft("RGB", (int(np.ceil(w * s)), int(np.ceil(h * s))))
        im.load()
        im = ImageOps.exif_transpose(im).convert("RGB")
        w, h = im.size
        s = max_side / max(w, h)
        size = (max(1, round(w * s)), max(1, round(h * s)))
        im = im.resize(size, Image.Resampling.BICUBIC, reducing_gap=3.0)
        return np.asarray(im)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=24)
    parser.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "lk-bench")
    args = parser.parse_args()
    from lookalike.extract import Extractor
    from lookalike.images import load_image, to_array

    extractor = Extractor()
    max_side = extractor.max_side
    paths = make_photos(args.data / f"4032x3024-{args.n}", args.n, (4032, 3024))
    variants: dict[str, int | None] = {"none": None, "1x": 1, "2x": 2}
    times: dict[str, list[float]] = {k: [] for k in variants}
    descs: dict[str, list[np.ndarray]] = {k: [] for k in variants}
    for p in paths:
        for name, factor in variants.items():  # interleaved: load swings hit all alike
            t = time.perf_counter()
            arr = decode(p, max_side, factor)
            times[name].append(time.perf_counter() - t)
            descs[name].append(extractor.describe_batch([arr])[0].descriptor)
    # the factor-1 variant must be exactly what lookalike's loader gives
    assert np.array_equal(decode(paths[0], max_side, 1), to_array(load_image(paths[0], max_side)))
    base = np.stack(descs["none"])
    rows = []
    for name in variants:
        cos = np.sum(np.stack(descs[name]) * base, axis=1)
        rows.append(
            {
                "draft": name,
                "decode_ms_median": float(np.median(times[name]) * 1000),
                "cosine_min": float(cos.min()),
                "cosine_mean": float(cos.mean()),
                "share_ge_0999": float(np.mean(cos >= 0.999)),
            }
        )
    print("| draft target | decode+resize ms (median) | cosine min / mean | share >= 0.999 |")
    print("|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['draft']} | {r['decode_ms_median']:.0f} | {r['cosine_min']:.4f} / "
            f"{r['cosine_mean']:.4f} | {100 * r['share_ge_0999']:.0f} % |"
        )
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = {
        "benchmark": "draft_quality",
        "command": " ".join(["python", *sys.argv]),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "load_average_at_start": os.getloadavg(),
        "max_side": max_side,
        "photos": len(paths),
        "rows": rows,
    }
    (RESULTS / "draft_quality.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
