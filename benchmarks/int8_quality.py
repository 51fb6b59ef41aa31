"""int8 vs fp32: retrieval quality and CNN speed, on the retrieval benchmarks' collections.

    .venv/bin/python benchmarks/int8_quality.py [--rounds 3]

Quality: the instance collection (19 shipped photos x 13 edits + originals = 266 images, every
image a query, mAP) and the category collection (random crops, mAP) of retrieval_common.py,
GeM p=3 at 480 px (224 for the category crops' size), each described with the fp32 graph
and with the int8 graph (lookalike.backbone.quantize), plus int8 queries against fp32
database vectors (what a mixed index would see). Descriptor cosine fp32 vs int8 over all
images. Caveat: the int8 graph is calibrated on views of the same shipped photos the
collections are built from (there are no others offline), so these numbers can flatter int8.

Speed: ONNX Runtime, 2 threads, batch 1 and batch 8 at 480x360, fp32 and int8 interleaved for
`--rounds` rounds, median of each; the ratio is int8 speed / fp32 speed within the run.
Writes benchmarks/results/int8_quality.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np

from retrieval_common import RESULTS, category_collection, groups_map, instance_collection

MAX_SIDE = 480


def describe(images, precision: str) -> np.ndarray:
    from lookalike.extract import Extractor

    ext = Extractor("lite0", "gem:p=3", MAX_SIDE, precision=precision, threads=2)
    return np.stack([ext.describe_image(im).descriptor for im in images])


def cross_map(q: np.ndarray, db: np.ndarray, labels: np.ndarray) -> float:
    """mAP of queries `q` against database `db` (same images), the query's own row excluded."""
    scores = q @ db.T
    np.fill_diagonal(scores, -np.inf)
    aps = []
    for i in range(len(q)):
        order = np.argsort(-scores[i])[:-1]  # the excluded diagonal sorts last
        rel = labels[order] == labels[i]
        if not rel.any():
            continue
        hits = np.cumsum(rel)
        aps.append(float(np.sum(hits[rel] / (np.flatnonzero(rel) + 1)) / rel.sum()))
    return float(np.mean(aps))


def speed(rounds: int) -> dict:
    import onnxruntime as ort

    from lookalike.backbone.export import export_onnx
    from lookalike.backbone.quantize import quantize_int8

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    sessions = {
        "fp32": ort.InferenceSession(str(export_onnx("lite0")), opts),
        "int8": ort.InferenceSession(str(quantize_int8("lite0")), opts),
    }
    rng = np.random.default_rng(0)
    out = {}
    for batch in (1, 8):
        x = rng.uniform(-1, 1, size=(batch, 3, 360, 480)).astype(np.float32)
        times: dict[str, list[float]] = {k: [] for k in sessions}
        for s in sessions.values():
            s.run(None, {"input": x})
        for _ in range(rounds):
            for k, s in sessions.items():
                start = time.perf_counter()
                for _ in range(max(1, 16 // batch)):
                    s.run(None, {"input": x})
                times[k].append((time.perf_counter() - start) / (max(1, 16 // batch) * batch))
        med = {k: statistics.median(v) for k, v in times.items()}
        out[f"batch{batch}"] = {
            "fp32_img_per_s": round(1 / med["fp32"], 1),
            "int8_img_per_s": round(1 / med["int8"], 1),
            "int8_speedup": round(med["fp32"] / med["int8"], 2),
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", type=Path, default=RESULTS / "int8_quality.json")
    args = ap.parse_args()

    load = os.getloadavg()[0]
    result: dict = {"benchmark": "int8_quality", "load_avg_1min_start": round(load, 2)}
    for label, (images, labels) in {
        "instance": instance_collection(),
        "category": category_collection(),
    }.items():
        fp32 = describe(images, "fp32")
        int8 = describe(images, "int8")
        cos = np.sum(fp32 * int8, axis=1)
        result[label] = {
            "images": len(images),
            "map_fp32": round(groups_map(fp32, labels), 4),
            "map_int8": round(groups_map(int8, labels), 4),
            "map_int8_queries_fp32_db": round(cross_map(int8, fp32, labels), 4),
            "cosine_min": round(float(cos.min()), 4),
            "cosine_mean": round(float(cos.mean()), 4),
        }
        print(label, result[label], flush=True)
    result["speed"] = speed(args.rounds)
    result["load_avg_1min_end"] = round(os.getloadavg()[0], 2)
    print(result["speed"])
    print("\n| collection | images | mAP fp32 | mAP int8 | int8 q / fp32 db | cosine min / mean |")
    print("|---|---|---|---|---|---|")
    for label in ("instance", "category"):
        r = result[label]
        print(
            f"| {label} | {r['images']} | {r['map_fp32']:.4f} | {r['map_int8']:.4f} | "
            f"{r['map_int8_queries_fp32_db']:.4f} | {r['cosine_min']:.3f} / "
            f"{r['cosine_mean']:.3f} |"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
