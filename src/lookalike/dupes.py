"""Duplicate finder: `exact` copies, `near` duplicates (the same photo after edits) and, on
request, `similar` shots (another shot of the same scene), each with its own evidence.

How it works, never with an N x N matrix:

1. `exact`: images with the same content hash (BLAKE2b of the file), from the catalog.
2. Candidates: the vectors are read from the catalog in batches and each batch asks the index's
   own FAISS index (exact below 100k images, approximate above) for its `k` nearest
   neighbours; a pair is a candidate when its cosine is at least `CANDIDATE_MIN` (or the
   `similar` threshold, when lower). Time is N k-NN queries; memory is the candidate pairs.
3. `near`, verified (lookalike.verify): the CNN cosine alone cannot tell a strongly edited copy
   from another shot of the scene (a downscaled, recompressed copy scores about the same as
   another view of the object), so a candidate is `near` only when
   - the stored perceptual hashes (of the image or of its mirror) differ by at most
     `PHASH_NEAR` bits: resized, recompressed, recoloured, brightened, lightly blurred copies;
   - or, failing that, local features of the two files fit one similarity transform under
     which one image lies inside the other and the aligned pixels agree
     (lookalike.verify.geometry): crops, borders, captions, flips, small rotations.
4. Groups do not chain: images are taken in keeper order (largest first: the likely original,
   which its crops lie inside); each one not yet in a group becomes a group's representative
   and takes every image verified directly against it. (Taking the image with the most
   matches first was measured worse: a small crop matches both its original and another
   framing that contains it, and pulled the two shots into one group.) So every member of a
   `near` group is the same photo as the group's representative, not merely a neighbour of a
   neighbour. `similar` groups are
   formed the same way over what is left (one image per exact or near group: its
   representative), from pairs whose cosine is at least `similar` that were not verified as
   near.
5. Each group suggests a keeper: the largest resolution, then the best quality (most bytes per
   pixel: least compressed), then the oldest file; `keep_reason` says which rule decided.

The thresholds were measured with benchmarks/dupes_vs_phash.py (see BENCHMARKS.md).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import numpy as np

from lookalike.errors import ConfigError, ImageError
from lookalike.index.catalog import ImageRecord

if TYPE_CHECKING:
    from lookalike.engine import Index
    from lookalike.verify.geometry import Prepared

log = logging.getLogger(__name__)

KINDS = ("exact", "near", "similar")
DEFAULT_K = 16
CANDIDATE_MIN = 0.50  # cosine from which a neighbour is checked for `near`; see BENCHMARKS.md
PHASH_NEAR = 2  # Hamming distance (of 64 bits) from which stored hashes alone say `near`
DEFAULT_SIMILAR = 0.80  # cosine from which two different shots are `similar`
BATCH = 2048
PREPARED_CACHE = 512  # images whose verification features are kept while a run goes on


@dataclass(frozen=True, slots=True)
class Member:
    """One image of a group: its facts, its cosine to the group's representative (1.0 for the
    representative itself and for exact copies) and the evidence that put it in the group."""

    id: int
    path: str
    score: float
    evidence: str
    width: int
    height: int
    bytes: int
    mtime_ns: int

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "path": self.path,
            "score": round(self.score, 4),
            "evidence": self.evidence,
            "width": self.width,
            "height": self.height,
            "bytes": self.bytes,
        }


@dataclass(frozen=True, slots=True)
class DuplicateGroup:
    """Images that are copies (`exact`, `near`) or other shots (`similar`) of one photo.

    `paths[0]` is the suggested keeper (`keep`), chosen by `keep_reason`. Every member was
    matched directly against the group's `representative` (for near and similar groups, the
    keeper itself);
    `scores[i]` is the cosine similarity of `paths[i]` to it (1.0 for the representative
    itself and for exact copies).
    """

    kind: str
    members: tuple[Member, ...]
    keep_reason: str
    representative: str = ""  # the member every other one was matched against

    @property
    def ids(self) -> tuple[int, ...]:
        return tuple(m.id for m in self.members)

    @property
    def paths(self) -> tuple[str, ...]:
        return tuple(m.path for m in self.members)

    @property
    def scores(self) -> tuple[float, ...]:
        return tuple(m.score for m in self.members)

    @property
    def keep(self) -> str:
        return self.members[0].path

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "ids": list(self.ids),
            "paths": list(self.paths),
            "scores": [round(s, 4) for s in self.scores],
            "keep": self.keep,
            "keep_id": self.members[0].id,
            "keep_reason": self.keep_reason,
            "representative": self.representative or self.keep,
            "members": [m.to_dict() for m in self.members],
        }


# -- the keeper ---------------------------------------------------------------------------------


def _pixels(r: ImageRecord) -> int:
    return max(0, r.width) * max(0, r.height)


def _quality(r: ImageRecord) -> float:
    """Bytes per pixel of the file: among copies of one photo at one resolution, the least
    compressed has the most."""
    return r.size / _pixels(r) if _pixels(r) else 0.0


def keeper_order(r: ImageRecord) -> tuple:
    """Sort key: the best keeper first (largest, then best quality, then oldest, then id)."""
    return (-_pixels(r), -round(_quality(r), 3), r.mtime_ns, r.id)


def keep_reason(keep: ImageRecord, others: list[ImageRecord]) -> str:
    """Which rule picked `keep` (first in `keeper_order`) over `others`, in words."""
    if not others:
        return "only image"
    size = f"{keep.width}x{keep.height}"
    tied = [o for o in others if _pixels(o) == _pixels(keep)]
    if not tied:
        return f"largest resolution ({size})"
    if all(round(_quality(o), 3) < round(_quality(keep), 3) for o in tied):
        return f"largest resolution ({size}), best quality ({_quality(keep):.2f} bytes/pixel)"
    when = datetime.fromtimestamp(keep.mtime_ns / 1e9, UTC).strftime("%Y-%m-%d %H:%M")
    return f"same resolution ({size}) and quality: the oldest file (modified {when} UTC)"


# -- grouping without chaining ----------------------------------------------------------------


def star_groups(
    order: list[int], edges: dict[int, dict[int, float]]
) -> list[tuple[int, list[int]]]:
    """Groups in which every member is linked to the group's representative directly.

    `order`: node ids, best representative first; `edges[a][b]`: the score of a verified link.
    Each node not yet taken, in order, takes all its untaken neighbours. Returns
    (representative, members other than it) for groups of two or more.
    """
    taken: set[int] = set()
    out = []
    for rep in order:
        if rep in taken:
            continue
        members = [b for b in edges.get(rep, {}) if b not in taken and b != rep]
        if not members:
            continue
        taken.add(rep)
        taken.update(members)
        out.append((rep, members))
    return out


def candidate_pairs(
    index: Index,
    k: int,
    min_score: float,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs (a < b) among each image's `k` nearest neighbours with cosine >= `min_score`, each
    once, from the index's own FAISS index: (a int64, b int64, cosine float32) arrays."""
    vectors = index.vector_index()
    if vectors is None:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    total = len(index)
    parts_a, parts_b, parts_s = [], [], []
    done = 0
    for ids, raw in index.catalog.iter_descriptors(BATCH):
        scores, neighbours = vectors.search(index.transform(raw), k + 1)
        keep = (scores >= min_score) & (neighbours >= 0) & (neighbours != ids[:, None])
        rows, cols = np.nonzero(keep)
        a = ids[rows]
        b = neighbours[rows, cols].astype(np.int64)
        parts_a.append(np.minimum(a, b))
        parts_b.append(np.maximum(a, b))
        parts_s.append(scores[rows, cols].astype(np.float32))
        done += len(ids)
        if progress is not None:
            progress(done, total)
    if not parts_a:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    a, b, s = np.concatenate(parts_a), np.concatenate(parts_b), np.concatenate(parts_s)
    # each pair once (found from both ends): keep the higher score of the two searches
    order = np.lexsort((-s, b, a))
    a, b, s = a[order], b[order], s[order]
    first = np.ones(len(a), dtype=bool)
    first[1:] = (a[1:] != a[:-1]) | (b[1:] != b[:-1])
    return a[first], b[first], s[first]


# -- verification -------------------------------------------------------------------------------


class _Verifier:
    """Decides `near` for candidate pairs: stored perceptual hashes first, then geometric
    verification of the files (features cached per image for the run)."""

    def __init__(self, index: Index, records: dict[int, ImageRecord], use_files: bool):
        from lookalike.verify.phash import hash_pair

        self.records = records
        self.use_files = use_files
        with index.lock:
            self.hashes = index.catalog.phashes(records)
        self._hash_pair = hash_pair
        self._prepared: OrderedDict[int, Prepared | None] = OrderedDict()
        self.max_side = index.settings.max_side
        self.geometry_checks = 0
        self.unreadable: set[int] = set()

    def _hash(self, image_id: int) -> tuple[int, int] | None:
        h = self.hashes.get(image_id)
        if h is None and self.use_files:
            image = self._load(image_id)
            if image is not None:
                h = self.hashes[image_id] = self._hash_pair(image)
        return h

    def _load(self, image_id: int):
        from lookalike.images import load_image

        try:
            return load_image(self.records[image_id].path, self.max_side)
        except (ImageError, OSError) as exc:
            if image_id not in self.unreadable:
                log.warning("cannot verify %s: %s", self.records[image_id].path, exc)
            self.unreadable.add(image_id)
            return None

    def _prepare(self, image_id: int) -> Prepared | None:
        from lookalike.verify.geometry import prepare

        if image_id in self._prepared:
            self._prepared.move_to_end(image_id)
            return self._prepared[image_id]
        image = self._load(image_id)
        prepared = prepare(image) if image is not None else None
        self._prepared[image_id] = prepared
        if len(self._prepared) > PREPARED_CACHE:
            self._prepared.popitem(last=False)
        return prepared

    def near(self, a: int, b: int) -> str | None:
        """The evidence that b is the same photo as a, or None."""
        from lookalike.verify.phash import distance

        ha, hb = self._hash(a), self._hash(b)
        if ha is not None and hb is not None:
            d = distance(ha[0], hb[0])
            dm = distance(ha[0], hb[1])
            if min(d, dm) <= PHASH_NEAR:
                flip = " (mirrored)" if dm < d else ""
                return f"pHash distance {min(d, dm)}{flip}"
        if not self.use_files:
            return None
        from lookalike.verify.geometry import verify_prepared

        pa, pb = self._prepare(a), self._prepare(b)
        if pa is None or pb is None:
            return None
        self.geometry_checks += 1
        g = verify_prepared(pa, pb)
        return g.evidence() if g.same_photo else None


# -- the finder ---------------------------------------------------------------------------------


def find_duplicates(
    index: Index,
    *,
    similar: bool | float = False,
    k: int = DEFAULT_K,
    exact: bool = True,
    near: bool = True,
    verify_files: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> list[DuplicateGroup]:
    """Exact, near and (with `similar`) similar groups; see the module docstring.

    `similar`: False (no similar groups), True (cosine >= DEFAULT_SIMILAR) or a cosine.
    `k`: neighbours looked at per image. `verify_files`: allow the verifier to read the image
    files (geometric verification, hashes missing from an older catalog); without it only the
    stored hashes decide `near`. Groups come exact, then near, then similar, each sorted by
    their keeper's path.
    """
    if k < 1:
        raise ConfigError(f"k must be at least 1, got {k}")
    similar_min: float | None = None
    if similar is not False:
        similar_min = DEFAULT_SIMILAR if similar is True else float(similar)
        if not -1.0 <= similar_min <= 1.0:
            raise ConfigError(f"similar must be a cosine similarity in [-1, 1], got {similar_min}")
    started = time.perf_counter()
    catalog = index.catalog
    groups: list[DuplicateGroup] = []
    absorbed: dict[int, int] = {}  # image id -> keeper of the exact/near group it belongs to
    if exact:
        with index.lock:
            hash_groups = list(catalog.hash_groups())
        for records in hash_groups:
            records = sorted(records, key=keeper_order)
            keep, others = records[0], records[1:]
            members = [_member(keep, 1.0, "same content hash")]
            members += [_member(r, 1.0, "same content hash") for r in others]
            reason = keep_reason(keep, others)
            groups.append(DuplicateGroup("exact", tuple(members), reason, keep.path))
            absorbed.update((r.id, keep.id) for r in others)
    if not near and similar_min is None:
        return _sorted(groups)
    min_score = CANDIDATE_MIN if similar_min is None else min(CANDIDATE_MIN, similar_min)
    a, b, s = candidate_pairs(index, k, min_score, progress)
    mask = ~(np.isin(a, list(absorbed)) | np.isin(b, list(absorbed))) if absorbed else None
    if mask is not None:
        a, b, s = a[mask], b[mask], s[mask]
    involved = np.unique(np.concatenate([a, b])) if len(a) else np.zeros(0, np.int64)
    with index.lock:
        records = catalog.get_many(involved.tolist())
    near_edges: dict[int, dict[int, float]] = {}
    evidence: dict[tuple[int, int], str] = {}
    checked = 0
    if near:
        verifier = _Verifier(index, records, verify_files)
        # pairs sorted by their first image so the verifier's per-image cache is reused
        for x, y, score in zip(a.tolist(), b.tolist(), s.tolist(), strict=True):
            if score < CANDIDATE_MIN or x not in records or y not in records:
                continue
            checked += 1
            why = verifier.near(x, y)
            if why is not None:
                near_edges.setdefault(x, {})[y] = score
                near_edges.setdefault(y, {})[x] = score
                evidence[(x, y)] = why
        order = sorted(near_edges, key=lambda i: keeper_order(records[i]))
        for rep, others in star_groups(order, near_edges):
            groups.append(_group("near", rep, others, near_edges, evidence, records))
            absorbed.update((o, rep) for o in others)  # the representative stays for `similar`
        log.info(
            "duplicates: %d candidate pairs checked, %d by geometry, %d verified near",
            checked,
            verifier.geometry_checks,
            len(evidence),
        )
    if similar_min is not None:
        sim_edges: dict[int, dict[int, float]] = {}
        for x, y, score in zip(a.tolist(), b.tolist(), s.tolist(), strict=True):
            if score < similar_min or (x, y) in evidence or x in absorbed or y in absorbed:
                continue
            if x not in records or y not in records:
                continue
            sim_edges.setdefault(x, {})[y] = score
            sim_edges.setdefault(y, {})[x] = score
        order = sorted(sim_edges, key=lambda i: keeper_order(records[i]))
        for rep, others in star_groups(order, sim_edges):
            groups.append(_group("similar", rep, others, sim_edges, {}, records))
    log.info("duplicates: %d groups in %.1f s", len(groups), time.perf_counter() - started)
    return _sorted(groups)


def _member(r: ImageRecord, score: float, evidence: str) -> Member:
    return Member(r.id, r.path, score, evidence, r.width, r.height, r.size, r.mtime_ns)


def _group(
    kind: str,
    rep: int,
    others: list[int],
    edges: dict[int, dict[int, float]],
    evidence: dict[tuple[int, int], str],
    records: dict[int, ImageRecord],
) -> DuplicateGroup:
    """A group around its representative `rep`: the suggested keeper first, then the others
    by their score to the representative."""
    ids = [rep, *others]
    keep = min((records[i] for i in ids), key=keeper_order)
    members = []
    for i in sorted(ids, key=lambda i: (i != keep.id, -edges[rep].get(i, 1.0))):
        if i == rep:
            why = "representative: every other member was matched against it"
        else:
            why = evidence.get((min(rep, i), max(rep, i)), f"cosine {edges[rep][i]:.3f}")
        members.append(_member(records[i], edges[rep].get(i, 1.0), why))
    reason = keep_reason(keep, [records[i] for i in ids if i != keep.id])
    return DuplicateGroup(kind, tuple(members), reason, records[rep].path)


def _sorted(groups: list[DuplicateGroup]) -> list[DuplicateGroup]:
    rank = {kind: i for i, kind in enumerate(KINDS)}
    return sorted(groups, key=lambda g: (rank[g.kind], g.keep))
