"""Where does the query object sit in a result image? Approximate max-pooling localization.

Tolias, Sicre & Jegou, "Particular object retrieval with integral max-pooling of CNN
activations" (ICLR 2016): the descriptor of any rectangle of a feature map is obtained in O(C)
from integral images of ``x ** p`` -- ``(sum over the region of x^p / area) ** (1/p)`` is the
generalized mean of the region, which tends to its max-pooling (MAC) as p grows. Localization
scores many windows by cosine similarity to the query vector, keeps the best, and refines it
by moving its edges (AML). The region score can re-rank the top results.

Here ``p`` follows the index's pooling (GeM's own p, 1 for SPoC/neural, 10 for MAC/R-MAC), so
the region descriptor lives in the same space as the query's raw descriptor.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Localization", "cells_to_pixels", "integral_power", "localize", "region_power_mean"]

MAX_WINDOWS = 3000  # windows scored before refinement (all of them on maps up to ~10 x 10)


@dataclass(frozen=True, slots=True)
class Localization:
    score: float  # cosine similarity of the best region to the query
    cells: tuple[int, int, int, int]  # (x0, y0, x1, y1) in feature-map cells, x1/y1 exclusive
    map_size: tuple[int, int]  # (width, height) of the feature map


def integral_power(fmap: np.ndarray, p: float) -> np.ndarray:
    """(C, H+1, W+1) integral images of ``max(x, eps) ** p`` (float64)."""
    x = np.power(np.maximum(np.asarray(fmap, dtype=np.float64), 1e-6), p)
    c, h, w = x.shape
    ii = np.zeros((c, h + 1, w + 1))
    ii[:, 1:, 1:] = x.cumsum(axis=1).cumsum(axis=2)
    return ii


def region_power_mean(ii: np.ndarray, boxes: np.ndarray, p: float) -> np.ndarray:
    """(B, C) generalized means of boxes (B, 4) as (x0, y0, x1, y1) cells, x1/y1 exclusive."""
    x0, y0, x1, y1 = (boxes[:, i] for i in range(4))
    s = ii[:, y1, x1] - ii[:, y0, x1] - ii[:, y1, x0] + ii[:, y0, x0]  # (C, B)
    area = ((x1 - x0) * (y1 - y0)).astype(np.float64)
    return np.power(np.maximum(s / area, 0.0), 1.0 / p).T


def _scores(ii: np.ndarray, boxes: np.ndarray, q: np.ndarray, p: float) -> np.ndarray:
    out = np.empty(len(boxes))
    for start in range(0, len(boxes), 1024):
        r = region_power_mean(ii, boxes[start : start + 1024], p)
        r /= np.linalg.norm(r, axis=1, keepdims=True) + 1e-12
        out[start : start + 1024] = r @ q
    return out


def _windows(h: int, w: int, min_side: int) -> np.ndarray:
    def spans(n: int) -> list[tuple[int, int]]:
        return [(a, b) for a in range(n) for b in range(a + min(min_side, n), n + 1)]

    xs, ys = spans(w), spans(h)
    step = 1
    while len(xs[::step]) * len(ys[::step]) > MAX_WINDOWS:
        step += 1
    return np.array(
        [(x0, y0, x1, y1) for (x0, x1) in xs[::step] for (y0, y1) in ys[::step]], dtype=np.int64
    )


def localize(
    fmap: np.ndarray, query: np.ndarray, p: float = 3.0, *, min_side: int = 1, refine: int = 10
) -> Localization:
    """Best-matching region of ``fmap`` (C, H, W) for the query vector (C,)."""
    fmap = np.asarray(fmap)
    c, h, w = fmap.shape
    q = np.asarray(query, dtype=np.float64).reshape(-1)
    if q.shape[0] != c:
        raise ValueError(f"query has dimension {q.shape[0]}, feature map has {c} channels")
    q = q / (np.linalg.norm(q) + 1e-12)
    ii = integral_power(fmap, p)
    boxes = _windows(h, w, min_side)
    scores = _scores(ii, boxes, q, p)
    best = boxes[int(np.argmax(scores))].copy()
    best_score = float(scores.max())
    for _ in range(refine):  # AML refinement: move each edge by one or two cells
        moves = []
        for i in range(4):
            for d in (-2, -1, 1, 2):
                b = best.copy()
                b[i] += d
                x0, y0, x1, y1 = b
                if 0 <= x0 and x1 <= w and 0 <= y0 and y1 <= h and x1 - x0 >= 1 and y1 - y0 >= 1:
                    moves.append(b)
        if not moves:
            break
        cand = np.array(moves)
        s = _scores(ii, cand, q, p)
        if s.max() <= best_score + 1e-9:
            break
        best, best_score = cand[int(np.argmax(s))].copy(), float(s.max())
    return Localization(best_score, tuple(int(v) for v in best), (w, h))  # type: ignore[arg-type]


def cells_to_pixels(loc: Localization, image_size: tuple[int, int]) -> tuple[int, int, int, int]:
    """The localized box in the pixel coordinates of an image of ``image_size`` (w, h)."""
    mw, mh = loc.map_size
    iw, ih = image_size
    x0, y0, x1, y1 = loc.cells
    return (
        int(round(x0 * iw / mw)),
        int(round(y0 * ih / mh)),
        int(round(x1 * iw / mw)),
        int(round(y1 * ih / mh)),
    )


def pooling_power(descriptor: str) -> float:
    """The generalized-mean power matching an index's pooling spec."""
    from lookalike.pooling import parse_descriptor

    spec = parse_descriptor(descriptor)
    if spec.name == "gem":
        return float(spec.get("p"))
    if spec.name in ("spoc", "neural"):
        return 1.0
    return 10.0  # mac, rmac: approximate max-pooling as in the paper


def feature_map(extractor, image) -> np.ndarray:
    """The backbone's last feature map (C, H, W) of a PIL image, resized as the extractor
    resizes it (long side at most ``max_side``), at scale 1."""
    from PIL import Image

    from lookalike.backbone import preprocess

    image = image.convert("RGB")
    w, h = image.size
    if max(w, h) > extractor.max_side:
        s = extractor.max_side / max(w, h)
        image = image.resize((max(1, round(w * s)), max(1, round(h * s))), Image.Resampling.BICUBIC)
    fmaps, _ = extractor.backbone.run(preprocess(np.asarray(image))[None])
    return np.asarray(fmaps[0])


def localize_file(
    extractor, query: np.ndarray, path: str
) -> tuple[float, tuple[int, int, int, int]]:
    """Localize the query vector (a raw descriptor) in the image file ``path``; returns the
    region score and the box in the file's pixel coordinates (EXIF orientation applied).
    Raises ImageError when the file cannot be read."""
    from lookalike.images import image_size

    width, height = image_size(path)
    fmap = feature_map(extractor, extractor.load(path))
    loc = localize(fmap, query, pooling_power(extractor.descriptor))
    return loc.score, cells_to_pixels(loc, (width, height))
