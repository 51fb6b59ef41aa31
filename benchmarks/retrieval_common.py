"""Shared pieces of the retrieval-quality benchmarks: collections built from the photos
scikit-image ships, feature maps computed once and pooled many ways, and groups-protocol mAP.

- instance collection: every shipped photo plus one copy per lookalike edit (crop, rotate,
  rescale, JPEG, colour, ...): 19 photos x 14 = 266 images; every image is a query whose
  positives are the other images of its photo.
- category collection: many random crops (30-60 % of each side) of every photo; the
  "category" of a crop is its photo. Crops of one photo show different parts of one scene, so
  this stands in for category-level retrieval (similar, not identical, content).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from PIL import Image

from lookalike.edits import EDITS, apply_edit
from lookalike.evaluation.metrics import average_precision, rank_by_scores
from lookalike.pooling import pool
from lookalike.samples import sample_photos

RESULTS = Path(__file__).parent / "results"


def _shrink(im: Image.Image, side: int) -> Image.Image:
    im = im.convert("RGB").copy()
    im.thumbnail((side, side), Image.Resampling.BICUBIC)
    return im


def instance_collection(side: int = 640, seed: int = 0) -> tuple[list[Image.Image], np.ndarray]:
    images, labels = [], []
    for g, (_, photo) in enumerate(sorted(sample_photos().items())):
        photo = _shrink(photo, side)
        images.append(photo)
        labels.append(g)
        for j, edit in enumerate(EDITS):
            images.append(apply_edit(edit, photo, seed * 1000 + g * 50 + j))
            labels.append(g)
    return images, np.array(labels)


def category_collection(
    per_photo: int = 16, side: int = 224, seed: int = 0
) -> tuple[list[Image.Image], np.ndarray]:
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for g, (_, photo) in enumerate(sorted(sample_photos().items())):
        photo = _shrink(photo, 640)
        w, h = photo.size
        for _ in range(per_photo):
            fw, fh = rng.uniform(0.3, 0.6, size=2)
            cw, ch = max(16, int(w * fw)), max(16, int(h * fh))
            x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
            images.append(_shrink(photo.crop((x0, y0, x0 + cw, y0 + ch)), side))
            labels.append(g)
    return images, np.array(labels)


def feature_maps(images, model: str, max_side: int, scales=(1.0,), both: bool = False):
    """Per image, the list of feature maps (one per scale); and images/s of the CNN part at
    scale 1 (and, with `both`, also images/s with every scale)."""
    from lookalike.extract import Extractor
    from lookalike.postprocess.localize import feature_map

    ext = Extractor(model, max_side=max_side)
    feature_map(ext, images[0])  # load the model outside the timing
    out = []
    t_one = t_all = 0.0
    for im in images:
        maps = []
        for s in scales:
            start = time.perf_counter()
            scaled = im
            if s != 1.0:
                w, h = im.size
                scaled = im.resize((max(32, round(w * s)), max(32, round(h * s))))
            maps.append(feature_map(ext, scaled))
            took = time.perf_counter() - start
            t_all += took
            t_one += took if s == 1.0 else 0.0
        out.append(maps)
    if both:
        return out, len(images) / t_one, len(images) / t_all
    return out, len(images) / t_one


def pooled(maps, descriptor: str, n_scales: int = 1) -> np.ndarray:
    vecs = []
    for per_image in maps:
        v = sum(pool(descriptor, m) for m in per_image[:n_scales])
        vecs.append(v / (np.linalg.norm(v) + 1e-12))
    return np.stack(vecs).astype(np.float32)


def groups_map(x: np.ndarray, labels: np.ndarray, queries: np.ndarray | None = None) -> float:
    """mAP with every image (or `queries`) a query, positives its same-label images, itself
    excluded."""
    scores = x @ x.T
    np.fill_diagonal(scores, -np.inf)
    ranks = rank_by_scores(scores)
    qs = range(len(x)) if queries is None else queries
    aps = []
    for i in qs:
        pos = set(np.flatnonzero(labels == labels[i]).tolist()) - {i}
        if pos:
            aps.append(average_precision(ranks[i], pos, {i}))
    return float(np.mean(aps))
