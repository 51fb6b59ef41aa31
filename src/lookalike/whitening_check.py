"""Should this collection's search vectors be whitened? A self-check that needs no labels.

PCA-whitening learned on a collection helped a real instance-level set and wrecked a real
category-level one (mAP 0.90 -> 0.30); a size rule cannot tell the two apart. So the decision is
taken per collection, by evidence from the collection itself:

1. Hold out part of the collection (`held`, seeded) and learn the whitening on the rest.
2. Copy retrieval: each held-out image's augmented copy (`copies`, described by the CNN: a
   crop, a colour change, a rescale...) queries the whole collection, raw and whitened; the
   score is the mean reciprocal rank of its original. Whitening must do at least as well as
   raw descriptors (`min_gain`).
3. Neighbourhood stability: the overlap of each held-out image's top-`k` neighbours among the
   rest, raw vs whitened. Whitening that helps copies but reshuffles who is near whom (what
   happened on the category set) is refused below `min_overlap`.

Whitening is turned on only when both hold. The index re-runs the check whenever it would
re-learn the whitening (the collection doubled), so the answer follows the collection.

NumPy only; the CNN work (describing the copies) is the caller's.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from lookalike.pooling import l2n
from lookalike.whitening import Whitening

__all__ = ["WhiteningVerdict", "check_whitening", "copy_mrr", "neighbour_overlap"]

MIN_GAIN = 0.0  # whitened copy-retrieval MRR must be at least raw + this
MIN_OVERLAP = 0.5  # and keep at least half of the held-out images' top-k neighbours
OVERLAP_K = 10


@dataclass(frozen=True)
class WhiteningVerdict:
    use: bool
    mrr_raw: float
    mrr_whitened: float
    overlap: float
    held_out: int
    reason: str

    def to_dict(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def copy_mrr(database: np.ndarray, copies: np.ndarray, originals: np.ndarray) -> float:
    """Mean reciprocal rank of row `originals[i]` of `database` when `copies[i]` queries it
    (all vectors L2-normalized; ties count against the original)."""
    scores = copies @ database.T
    own = scores[np.arange(len(copies)), originals]
    ranks = 1 + (scores > own[:, None]).sum(axis=1) + (scores == own[:, None]).sum(axis=1) - 1
    return float(np.mean(1.0 / ranks))


def neighbour_overlap(a: np.ndarray, b: np.ndarray, queries: np.ndarray, k: int) -> float:
    """Mean fraction of shared top-k neighbours (queries' own rows excluded) between two
    representations `a` and `b` of the same database."""
    k = min(k, len(a) - 1)
    if k < 1:
        return 1.0
    out = []
    for rep in (a, b):
        s = rep[queries] @ rep.T
        s[np.arange(len(queries)), queries] = -np.inf
        out.append(np.argpartition(-s, k - 1, axis=1)[:, :k])
    shared = [len(set(x) & set(y)) / k for x, y in zip(out[0], out[1], strict=True)]
    return float(np.mean(shared))


def check_whitening(
    raw: np.ndarray,
    held: np.ndarray,
    copies_raw: np.ndarray,
    fit,
    *,
    min_gain: float = MIN_GAIN,
    min_overlap: float = MIN_OVERLAP,
    k: int = OVERLAP_K,
) -> tuple[WhiteningVerdict, Whitening]:
    """Decide with the collection's raw descriptors `raw` (n, D), the held-out rows `held`,
    the raw descriptors of their augmented copies `copies_raw` (len(held), D), and
    `fit(train_rows) -> Whitening` (learns the candidate whitening). Returns the verdict and the
    whitening learned without the held-out rows."""
    raw = l2n(np.asarray(raw, dtype=np.float32))
    copies_raw = l2n(np.asarray(copies_raw, dtype=np.float32))
    held = np.asarray(held, dtype=np.int64)
    rest = np.setdiff1d(np.arange(len(raw)), held)
    whitening = fit(raw[rest])
    white = whitening.apply(raw)
    mrr_raw = copy_mrr(raw, copies_raw, held)
    mrr_white = copy_mrr(white, whitening.apply(copies_raw), held)
    overlap = neighbour_overlap(raw, white, held, k)
    gains = mrr_white >= mrr_raw + min_gain
    stable = overlap >= min_overlap
    if gains and stable:
        reason = "whitening retrieves held-out copies as well or better and keeps neighbours"
    elif not gains:
        reason = "whitening retrieves held-out copies worse than raw descriptors"
    else:
        reason = f"whitening changes too many neighbours (overlap {overlap:.2f} < {min_overlap})"
    verdict = WhiteningVerdict(
        use=bool(gains and stable),
        mrr_raw=mrr_raw,
        mrr_whitened=mrr_white,
        overlap=overlap,
        held_out=len(held),
        reason=reason,
    )
    return verdict, whitening


# -- running the check on an index ---------------------------------------------------------------

CHECK_SAMPLE = 20_000  # database rows used by the check (a random sample beyond that)
COPY_EDITS = ("crop", "colour", "jpeg", "rescale", "rotate", "blur")


def min_check_images(out_dim: int) -> int:
    """Below this many images the check does not run and whitening stays off: the candidate
    whitening needs several vectors per dimension, and the check needs held-out images."""
    return max(4 * out_dim, 500)


def held_out_count(n: int) -> int:
    return int(min(200, max(50, n // 10)))


def copy_describer(extractor, catalog, seed: int = 0):
    """A function ids -> (mask of ids whose file could be read, raw descriptors of an edited
    copy of each readable one): the CNN side of the check, run by the index."""
    from lookalike.edits import apply_edit
    from lookalike.errors import ImageError

    def describe(ids) -> tuple[np.ndarray, np.ndarray]:
        ext = extractor()
        ok, rows = [], []
        for n, image_id in enumerate(ids):
            record = catalog.get(int(image_id))
            try:
                if record is None:
                    raise ImageError(str(image_id), "not in the catalog")
                image = ext.load(record.path)
            except (ImageError, OSError):
                ok.append(False)
                continue
            edited = apply_edit(COPY_EDITS[n % len(COPY_EDITS)], image, seed + n)
            rows.append(ext.describe_image(edited).descriptor)
            ok.append(True)
        if not rows:
            return np.asarray(ok, dtype=bool), np.zeros((0, 0), dtype=np.float32)
        return np.asarray(ok, dtype=bool), np.stack(rows).astype(np.float32)

    return describe


def decide_whitening(catalog, out_dim: int, describe_copies, fit, seed: int = 0) -> dict:
    """The index's decision: {"use", "n", "method", ...the verdict's numbers, "reason"}.

    `method` is "self-check" when the check ran; "size rule" when too few held-out images could
    be read back to make copies (an index filled with precomputed vectors): then the old rule
    (lookalike.whitening.whitening_allowed) decides, and the check is tried again next time."""
    from lookalike.whitening import whitening_allowed

    n = catalog.count()
    if n < min_check_images(out_dim):
        return {
            "use": False,
            "n": n,
            "method": "self-check",
            "reason": f"fewer than {min_check_images(out_dim)} images: not checked, off",
        }
    rng = np.random.default_rng(seed)
    keep = min(1.0, CHECK_SAMPLE / n)
    ids_parts, raw_parts = [], []
    for ids, raw in catalog.iter_descriptors():
        pick = rng.random(len(ids)) < keep
        ids_parts.append(np.asarray(ids)[pick])
        raw_parts.append(np.asarray(raw, dtype=np.float32)[pick])
    ids = np.concatenate(ids_parts)
    raw = np.concatenate(raw_parts)
    held = rng.choice(len(ids), min(held_out_count(n), len(ids) // 4), replace=False)
    ok, copies = describe_copies(ids[held]) if describe_copies is not None else (None, None)
    if ok is None or ok.sum() < max(10, len(held) // 2):
        use = whitening_allowed(n, out_dim)
        return {
            "use": bool(use),
            "n": n,
            "method": "size rule",
            "reason": "too few image files to make copies from: the size rule decides",
        }
    verdict, _ = check_whitening(raw, held[ok], copies, fit)
    return {"n": n, "method": "self-check", **verdict.to_dict()}
