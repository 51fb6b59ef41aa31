"""Indexing throughput against the best simple loop: lookalike vs a serial ONNX Runtime loop.

    .venv/bin/python benchmarks/indexing_vs_serial.py [--n640 120] [--n4032 24] [--rounds 2]

The baseline is the 15-line loop a user would write: for each file, PIL decode (no draft),
EXIF transpose, resize to a long side of 480 (bicubic), normalize, one ONNX Runtime session
with 2 threads, batch 1, GeM. Its model is a plain static-shape export of the same network
(`torch.onnx.export` at exactly the input shape, one graph per shape: landscape and portrait),
so ONNX Runtime sees constant pads. The photos are generated phone-size JPEGs (640x480 and
4032x3024, every 4th portrait; benchmarks/indexing_throughput.py's generator).

lookalike variants, each `pipeline.extract_files` over the same files:
- `threads`: decoding in threads of this process (the default since the start-up work),
- `processes`: decoding in worker processes (the previous default),
- `inline`: decoding in the calling thread (workers=0);
- `threads+int8`: `threads` with the int8 backbone (`precision="int8"`, not the default).

Every variant runs once per round, interleaved with the baseline, and the best of the rounds is
kept; the table gives images/s and the ratio to the baseline of the same run. Descriptors are
compared with the baseline's (cosine). Writes benchmarks/results/indexing_vs_serial.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

sys.path.insert(0, str(Path(__file__).parent))
from indexing_throughput import make_photos  # noqa: E402

RESULTS = Path(__file__).parent / "results"
MAX_SIDE = 480


def static_exports(shapes: set[tuple[int, int]], folder: Path) -> dict[tuple[int, int], Path]:
    """A plain static-shape ONNX export of lite0 per (height, width)."""
    import torch

    from lookalike.backbone.efficientnet import load_model

    model = load_model("lite0")
    out = {}
    for h, w in sorted(shapes):
        path = folder / f"lite0-static-{h}x{w}.onnx"
        if not path.exists():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(
                    model,
                    (torch.zeros(1, 3, h, w),),
                    str(path),
                    dynamo=False,
                    opset_version=17,
                    input_names=["input"],
                    output_names=["feature_map", "logits"],
                )
        out[(h, w)] = path
    return out


def serial_shape(path: str) -> tuple[int, int]:
    with Image.open(path) as im:
        w, h = ImageOps.exif_transpose(im).size
    s = MAX_SIDE / max(w, h)
    return (max(1, round(h * s)), max(1, round(w * s))) if s < 1 else (h, w)


def run_serial(paths: list[str], graphs: dict[tuple[int, int], Path]) -> tuple[float, np.ndarray]:
    """The 15-line loop. Sessions are created before the clock starts."""
    import onnxruntime as ort

    from lookalike.pooling import gem

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    sessions = {
        s: ort.InferenceSession(str(p), opts, providers=["CPUExecutionProvider"])
        for s, p in graphs.items()
    }
    out = []
    start = time.perf_counter()
    for p in paths:
        with Image.open(p) as im:
            im = ImageOps.exif_transpose(im.convert("RGB"))
            w, h = im.size
            s = MAX_SIDE / max(w, h)
            if s < 1:
                im = im.resize((max(1, round(w * s)), max(1, round(h * s))), Image.BICUBIC)
        x = (np.asarray(im, dtype=np.float32).transpose(2, 0, 1)[None] - 127.0) / 128.0
        fmap, _ = sessions[x.shape[2:]].run(None, {"input": x})
        v = gem(fmap, 3.0)[0]
        out.append(v / np.linalg.norm(v))
    return time.perf_counter() - start, np.stack(out)


def run_lookalike(paths: list[str], extractor, decode: str) -> tuple[float, np.ndarray]:
    from lookalike.pipeline import Extracted, extract_files

    decode = decode.removesuffix("+int8")
    kwargs = {"workers": 0} if decode == "inline" else {"decode": decode}
    start = time.perf_counter()
    results = list(extract_files(paths, extractor, **kwargs))
    seconds = time.perf_counter() - start
    assert all(isinstance(r, Extracted) for r in results), results[:3]
    return seconds, np.stack([r.features.descriptor for r in results])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n640", type=int, default=120)
    ap.add_argument("--n4032", type=int, default=24)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--variants", default="threads,processes,inline,threads+int8")
    ap.add_argument("--out", type=Path, default=RESULTS / "indexing_vs_serial.json")
    args = ap.parse_args()

    from lookalike.extract import Extractor

    tmp = Path(tempfile.mkdtemp(prefix="lookalike-ivs-"))
    sets = {
        "640x480": make_photos(tmp / "p640", args.n640, (640, 480)),
        "4032x3024": make_photos(tmp / "p4032", args.n4032, (4032, 3024)),
    }
    shapes = {serial_shape(p) for paths in sets.values() for p in paths}
    graphs = static_exports(shapes, tmp)
    extractor = Extractor("lite0", "gem:p=3", MAX_SIDE)
    _ = extractor.backbone  # load (and export, if not cached) before timing
    variants = [v for v in args.variants.split(",") if v]
    extractors = {v: extractor for v in variants}
    if any(v.endswith("+int8") for v in variants):
        int8 = Extractor("lite0", "gem:p=3", MAX_SIDE, precision="int8")
        _ = int8.backbone  # quantize (once, cached) before timing
        extractors.update({v: int8 for v in variants if v.endswith("+int8")})
    load = os.getloadavg()[0]
    rows = []
    for label, paths in sets.items():
        best: dict[str, float] = {}
        vecs: dict[str, np.ndarray] = {}
        for ext in {id(e): e for e in extractors.values()}.values():
            run_lookalike(paths[:8], ext, "inline")  # warm each shape's ORT set-up
        for r in range(args.rounds):
            t, vecs["serial"] = run_serial(paths, graphs)
            best["serial"] = min(best.get("serial", 1e9), t)
            for v in variants:
                t, vecs[v] = run_lookalike(paths, extractors[v], v)
                best[v] = min(best.get(v, 1e9), t)
            print(f"{label} round {r + 1}: " + ", ".join(f"{k} {v:.1f}s" for k, v in best.items()))
        for v in ["serial", *variants]:
            cos = np.sum(vecs[v] * vecs["serial"], axis=1)
            rows.append(
                {
                    "photos": label,
                    "n": len(paths),
                    "variant": v,
                    "img_per_s": round(len(paths) / best[v], 2),
                    "x_serial": round(best["serial"] / best[v], 2),
                    "cosine_min": round(float(cos.min()), 4),
                    "cosine_mean": round(float(cos.mean()), 4),
                }
            )
    print("\n| photos | n | variant | img/s | x serial loop | cosine min / mean |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['photos']} | {r['n']} | {r['variant']} | {r['img_per_s']:.1f} | "
            f"{r['x_serial']:.2f} | {r['cosine_min']:.4f} / {r['cosine_mean']:.4f} |"
        )
    result = {
        "benchmark": "indexing_vs_serial",
        "rounds": args.rounds,
        "load_avg_1min_start": round(load, 2),
        "load_avg_1min_end": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
