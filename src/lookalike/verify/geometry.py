"""Geometric verification of a candidate pair: is one image the other after edits?

Steps, on grey images without their uniform margins (an added border or mat), brought to the
same working size (`WORK_SIDE`, long side; small copies are upscaled so a heavily downscaled
copy still has features at the same scales):

1. ORB key points and descriptors in both images (and in the mirrored second image, when the
   direct match fails: a flipped copy);
2. matches by Hamming distance with Lowe's ratio test, and a similarity transform (scale,
   rotation, translation) fitted with RANSAC (`cv2.estimateAffinePartial2D`);
3. containment: the second image's content (its pixels outside uniform margins such as a
   border or the corners a rotation adds), mapped into the first, must cover the first's
   content or lie inside it (a crop) - two framings of one scene that only overlap are
   different shots;
4. a dense check of the aligned images at low resolution: in a grid of cells over the common
   area, the normalized cross-correlation of the two images (so colour, brightness and
   contrast changes do not count); enough cells must agree. A caption or a watermark spoils a
   few cells; another shot taken from a slightly different place spoils the cells where
   parallax moves things; a burst frame spoils many (motion, lighting).

`verify_images` returns a `Geometry` with the numbers, and `is_same_photo` the decision; the
thresholds were measured with benchmarks/dupes_vs_phash.py (see BENCHMARKS.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

WORK_SIDE = 480  # both images are described at this long side
DENSE_SIDE = 128  # the aligned-image check runs at this long side (of the first image)
ORB_FEATURES = 1500
RATIO = 0.8  # Lowe's ratio test
RANSAC_PX = 4.0  # reprojection threshold at WORK_SIDE
MIN_INLIERS = 30
MAX_ROTATION_DEG = 20.0
MAX_SCALE_RATIO = 8.0
CONTAINED = 0.95  # fraction of the smaller frame that must lie inside the larger one
GRID = 8  # cells per side of the dense check
MIN_CELL_NCC = 0.6
MIN_CELL_STD = 6.0  # grey levels: flatter cells (in both images) are not judged
MIN_CELLS_AGREEING = 0.7
MAX_FILL = 0.35  # a corner fill larger than this is the photo's own background, not a margin
MAX_TRIM = 0.3  # uniform margins trimmed before verification, at most this much of a side


@dataclass(frozen=True, slots=True)
class Geometry:
    """What the verification found for one pair (all zero when no transform was found)."""

    inliers: int = 0
    matches: int = 0
    scale: float = 0.0  # size of the second image's content relative to the first's
    rotation: float = 0.0  # degrees
    mirrored: bool = False
    contained: float = 0.0  # 1.0: one frame lies entirely inside the other
    agreeing: float = 0.0  # fraction of the dense check's cells that agree
    cells: int = 0  # cells with enough texture to judge

    @property
    def same_photo(self) -> bool:
        return (
            self.inliers >= MIN_INLIERS
            and abs(self.rotation) <= MAX_ROTATION_DEG
            and 1 / MAX_SCALE_RATIO <= self.scale <= MAX_SCALE_RATIO
            and self.contained >= CONTAINED
            and self.cells >= 4
            and self.agreeing >= MIN_CELLS_AGREEING
        )

    def evidence(self) -> str:
        flip = ", mirrored" if self.mirrored else ""
        return (
            f"geometry: {self.inliers} inliers, scale {self.scale:.2f}, rotation "
            f"{self.rotation:.1f} deg{flip}, {100 * self.contained:.0f}% contained, "
            f"{100 * self.agreeing:.0f}% of {self.cells} cells agree"
        )


@dataclass(slots=True)
class Prepared:
    """One image ready for verification: its working grey image and ORB features (computed
    once per image and reused for every pair it takes part in)."""

    grey: np.ndarray  # uint8 (h, w), long side WORK_SIDE
    keypoints: np.ndarray  # float32 (n, 2)
    descriptors: np.ndarray | None  # uint8 (n, 32)
    mirrored: Prepared | None = None


def _cv2():
    import cv2

    cv2.setNumThreads(1)
    return cv2


def content_box(grey: np.ndarray, tolerance: float = 10.0) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of an image without its uniform margins (a border or mat added around
    a photo): rows and columns are trimmed from each side while they stay within `tolerance`
    grey levels of that side's outermost line's median, at most `MAX_TRIM` of each side."""
    h, w = grey.shape
    g = grey.astype(np.float32)

    def trim(lines: np.ndarray, limit: int) -> int:
        colour = np.median(lines[0])
        n = 0
        while n < limit and np.abs(lines[n] - colour).max() <= tolerance:
            n += 1
        return n

    top = trim(g, int(MAX_TRIM * h))
    bottom = trim(g[::-1], int(MAX_TRIM * h))
    left = trim(g.T, int(MAX_TRIM * w))
    right = trim(g.T[::-1], int(MAX_TRIM * w))
    return left, top, w - right, h - bottom


def _grey(image: Image.Image) -> np.ndarray:
    grey = np.asarray(image.convert("L"), dtype=np.uint8)
    x0, y0, x1, y1 = content_box(grey)
    cropped = Image.fromarray(np.ascontiguousarray(grey[y0:y1, x0:x1]))
    w, h = cropped.size
    scale = WORK_SIDE / max(w, h)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(cropped.resize(size, Image.Resampling.BICUBIC), dtype=np.uint8)


def _features(grey: np.ndarray) -> Prepared:
    cv2 = _cv2()
    orb = cv2.ORB_create(nfeatures=ORB_FEATURES, fastThreshold=10)
    keypoints, descriptors = orb.detectAndCompute(grey, None)
    points = np.array([k.pt for k in keypoints], dtype=np.float32).reshape(-1, 2)
    return Prepared(grey, points, descriptors)


def prepare(image: Image.Image) -> Prepared:
    """Grey working image and ORB features of an image (plus its mirror, computed lazily)."""
    return _features(_grey(image))


def _mirror(p: Prepared) -> Prepared:
    if p.mirrored is None:
        p.mirrored = _features(np.ascontiguousarray(p.grey[:, ::-1]))
    return p.mirrored


def _match(a: Prepared, b: Prepared) -> tuple[np.ndarray, np.ndarray]:
    """Matched point pairs (points in b, points in a) after the ratio test."""
    if a.descriptors is None or b.descriptors is None:
        return np.zeros((0, 2), np.float32), np.zeros((0, 2), np.float32)
    if len(a.descriptors) < 2 or len(b.descriptors) < 2:
        return np.zeros((0, 2), np.float32), np.zeros((0, 2), np.float32)
    cv2 = _cv2()
    matcher = cv2.BFMatcher(cv2.NORM_HAMMING)
    pairs = matcher.knnMatch(b.descriptors, a.descriptors, k=2)
    good = [m[0] for m in pairs if len(m) == 2 and m[0].distance < RATIO * m[1].distance]
    src = np.array([b.keypoints[m.queryIdx] for m in good], np.float32).reshape(-1, 2)
    dst = np.array([a.keypoints[m.trainIdx] for m in good], np.float32).reshape(-1, 2)
    return src, dst


def content_mask(grey: np.ndarray, tolerance: int = 3) -> np.ndarray:
    """True where an image has content: False on a uniform fill reached from a corner within
    `tolerance` grey levels, such as the corners a rotation adds or a border, as long as the
    fill covers at most `MAX_FILL` of the image (a dark sky or a white page is content)."""
    cv2 = _cv2()
    h, w = grey.shape
    image = np.array(grey, dtype=np.uint8)  # floodFill wants a writable array
    mask = np.zeros((h + 2, w + 2), np.uint8)
    flags = 4 | cv2.FLOODFILL_FIXED_RANGE | cv2.FLOODFILL_MASK_ONLY | (255 << 8)
    for x, y in ((0, 0), (w - 1, 0), (0, h - 1), (w - 1, h - 1)):
        if mask[y + 1, x + 1] == 0:
            cv2.floodFill(image, mask, (x, y), 0, tolerance, tolerance, flags)
    fill = mask[1:-1, 1:-1] > 0
    if fill.mean() > MAX_FILL:
        return np.ones_like(fill)
    return ~fill


def compare(a: np.ndarray, b: np.ndarray, m: np.ndarray) -> tuple[float, float, int]:
    """Grey image b mapped into a's frame by `m` (2 x 3, working pixels), compared at low
    resolution: (containment, agreement, textured cells).

    containment: the part of the smaller content (pixels not in uniform margins) that lies
    on the other's content: 1.0 when one image is inside the other; two framings of a scene
    that only overlap score well below. agreement: in a grid over the common content, the
    fraction of textured cells whose normalized cross-correlation is at least MIN_CELL_NCC."""
    cv2 = _cv2()
    ha, wa = a.shape
    f = DENSE_SIDE / max(ha, wa)
    size = (max(8, round(wa * f)), max(8, round(ha * f)))
    m_small = f * m
    shrink = abs(np.linalg.det(m_small[:, :2])) ** 0.5
    b_src = b
    if shrink < 0.5:  # blur b before warping it down so aliasing does not decide
        b_src = cv2.GaussianBlur(b, (0, 0), min(0.5 / shrink, 16.0))
    warped = cv2.warpAffine(b_src.astype(np.float32), m_small, size, flags=cv2.INTER_LINEAR)
    content_b = content_mask(b).astype(np.uint8)
    b_area = float(content_b.sum()) * shrink**2  # b's content, in a's small pixels
    on_a = cv2.warpAffine(content_b, m_small, size, flags=cv2.INTER_NEAREST) > 0
    small_a = cv2.resize(a, size, interpolation=cv2.INTER_AREA)
    content_a = content_mask(small_a)
    common = on_a & content_a
    smaller = min(b_area, float(content_a.sum()))
    contained = float(common.sum()) / smaller if smaller > 0 else 0.0
    small_a = small_a.astype(np.float32)
    ys = np.linspace(0, size[1], GRID + 1).astype(int)
    xs = np.linspace(0, size[0], GRID + 1).astype(int)
    good = cells = 0
    for i in range(GRID):
        for j in range(GRID):
            sl = (slice(ys[i], ys[i + 1]), slice(xs[j], xs[j + 1]))
            v = common[sl]
            if v.size < 9 or v.sum() < 0.8 * v.size:
                continue
            pa = small_a[sl][v]
            pb = warped[sl][v]
            sa, sb = pa.std(), pb.std()
            if max(sa, sb) < MIN_CELL_STD:
                continue  # flat in both (sky, a wall): says nothing
            cells += 1
            if min(sa, sb) < 1e-3:
                continue
            ncc = float(np.mean((pa - pa.mean()) * (pb - pb.mean())) / (sa * sb))
            good += ncc >= MIN_CELL_NCC
    return min(1.0, contained), (good / cells if cells else 0.0), cells


def _fit(a: Prepared, b: Prepared) -> tuple[np.ndarray | None, int, int]:
    cv2 = _cv2()
    src, dst = _match(a, b)
    if len(src) < MIN_INLIERS:
        return None, 0, len(src)
    m, inliers = cv2.estimateAffinePartial2D(
        src,
        dst,
        method=cv2.RANSAC,
        ransacReprojThreshold=RANSAC_PX,
        maxIters=2000,
        confidence=0.995,
    )
    if m is None or inliers is None:
        return None, 0, len(src)
    return m, int(inliers.sum()), len(src)


def verify_prepared(a: Prepared, b: Prepared) -> Geometry:
    """Verify b against a (see the module docstring)."""
    best = Geometry()
    for mirrored in (False, True):
        bb = _mirror(b) if mirrored else b
        m, inliers, matches = _fit(a, bb)
        if m is None:
            continue
        scale = math.hypot(m[0, 0], m[1, 0])
        rotation = math.degrees(math.atan2(m[1, 0], m[0, 0]))
        if not 1 / MAX_SCALE_RATIO <= scale <= MAX_SCALE_RATIO:
            g = Geometry(inliers, matches, scale, rotation, mirrored)  # degenerate fit
        else:
            contained, agreeing, cells = compare(a.grey, bb.grey, m)
            g = Geometry(inliers, matches, scale, rotation, mirrored, contained, agreeing, cells)
        if g.same_photo:
            return g
        if (g.contained * g.agreeing, g.inliers) > (best.contained * best.agreeing, best.inliers):
            best = g
        if inliers >= 4 * MIN_INLIERS:
            break  # a strong direct fit: the mirror will not do better
    return best


def verify_images(a: Image.Image, b: Image.Image) -> Geometry:
    return verify_prepared(prepare(a), prepare(b))
