"""Searching an index: by image, by indexed id, by raw descriptor, by text.

One search goes: query -> raw descriptor (the CNN, unless given) -> search vector (whitening,
L2; index/derived.py) -> optional query expansion -> FAISS k-NN -> optional tag filter or
boost -> hits with paths and tags -> optional localization / re-ranking of the top hits.

The knobs of a search are one value, `SearchOptions`, so the faces (Python API, CLI, HTTP)
pass them along instead of repeating the same keyword arguments.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from lookalike import tags
from lookalike.errors import ConfigError, ImageError, IndexMismatchError
from lookalike.extract import Extractor
from lookalike.images import crop_box, load_image
from lookalike.index.derived import Derived
from lookalike.index.store import Store
from lookalike.index.vectors import VectorIndex
from lookalike.postprocess.qe import Expansion, parse_expansion

if TYPE_CHECKING:
    from lookalike.text import TextMatch

log = logging.getLogger(__name__)

LOCALIZE_MAX = 20  # localization re-runs the CNN on each result: only the top ones
TAG_SHORTLIST_MIN = 500  # a tag search over FAISS looks at max(20 k, this) candidates

Box = tuple[float, float, float, float]


@dataclass(frozen=True, slots=True)
class Hit:
    """One search result: a catalog id, the file path and the cosine similarity.

    Optional extras, filled by the steps that compute them: `box` (x0, y0, x1, y1) where the
    query object sits in this image, in the image's pixel coordinates; `tags`, the image's
    top ImageNet classes as `{"class_id", "name", "prob"}` dicts.
    """

    id: int
    path: str
    score: float
    box: tuple[int, int, int, int] | None = None
    tags: tuple[dict, ...] | None = None

    def to_dict(self) -> dict:
        out: dict = {"id": self.id, "path": self.path, "score": self.score}
        if self.box is not None:
            out["box"] = list(self.box)
        if self.tags is not None:
            out["tags"] = [dict(t) for t in self.tags]
        return out


class TextHits(list):
    """The hits of a text search, best first (a list of Hit), plus `match`: what the words
    were matched to (lookalike.text.TextMatch: classes, nearest classes, unmatched words), and
    `note`: why there are no hits (None when there are some)."""

    def __init__(self, hits: Sequence[Hit], match: TextMatch, note: str | None = None):
        super().__init__(hits)
        self.match = match
        self.note = note


@dataclass(frozen=True, slots=True)
class SearchOptions:
    """How to search, beyond the query and k.

    min_score: drop hits scoring below it.
    expand: query expansion, "aqe:n=3" or "alpha-qe:n=3,alpha=3" (a string is parsed).
    localize: fill each top hit's `box` with where the query object sits in it (approximate
        max-pooling localization, re-running the CNN on the top LOCALIZE_MAX results).
    rerank: also re-order those hits by that region's score (and report it as the score).
    tag / tag_mode: keep only ("filter") or favour ("boost") images whose stored classes
        match the words in `tag`.
    """

    min_score: float | None = None
    expand: Expansion | None = field(default=None)
    localize: bool = False
    rerank: bool = False
    tag: str | None = None
    tag_mode: str = "filter"

    def __init__(
        self,
        *,
        min_score: float | None = None,
        expand: str | Expansion | None = None,
        localize: bool = False,
        rerank: bool = False,
        tag: str | None = None,
        tag_mode: str = "filter",
    ) -> None:
        object.__setattr__(self, "min_score", min_score)
        object.__setattr__(self, "expand", parse_expansion(expand))
        object.__setattr__(self, "localize", bool(localize))
        object.__setattr__(self, "rerank", bool(rerank))
        object.__setattr__(self, "tag", tag)
        object.__setattr__(self, "tag_mode", tag_mode)


def check_k(k: int) -> None:
    if k < 1:
        raise ConfigError(f"k must be at least 1, got {k}")


class Searcher:
    """The search verbs over one open index (its store, derived state and extractor)."""

    def __init__(self, store: Store, derived: Derived, extractor: Callable[[], Extractor]):
        self.store = store
        self.derived = derived
        self._extractor = extractor

    def describe(self, image: str | Path | Image.Image, *, box: Box | None = None) -> np.ndarray:
        """The raw descriptor of an image file or a PIL image, with this index's settings.
        With `box` (x0, y0, x1, y1 in the image's own pixels), only that region is described."""
        if not isinstance(image, Image.Image):
            image = load_image(image, None if box is not None else self.store.settings.max_side)
        if box is not None:
            image = crop_box(image, box)
        return self._extractor().describe_image(image).descriptor

    def search(
        self,
        query: str | Path | Image.Image | np.ndarray,
        k: int,
        options: SearchOptions,
        *,
        box: Box | None = None,
    ) -> list[Hit]:
        """Search by an image file, a PIL image or a raw descriptor. An indexed query file is
        left out of its own results. `box` restricts the query to a region of the image."""
        exclude: list[int] = []
        if isinstance(query, np.ndarray):
            raw = query
        else:
            raw = self.describe(query, box=box)
            if isinstance(query, str | Path):
                with self.store.lock:
                    record = self.store.catalog.find_path(str(Path(query).expanduser().absolute()))
                if record is not None:
                    exclude.append(record.id)
        return self.search_vector(raw, k, options, exclude=exclude)

    def search_id(self, image_id: int, k: int, options: SearchOptions) -> list[Hit]:
        """Search by an indexed image (left out of its own results)."""
        with self.store.lock:
            raw = self.store.catalog.descriptor(image_id)
        if raw is None:
            raise ConfigError(f"no image with id {image_id} in {self.store.path}")
        return self.search_vector(raw, k, options, exclude=[image_id])

    def search_vector(
        self, raw: np.ndarray, k: int, options: SearchOptions, *, exclude: Sequence[int] = ()
    ) -> list[Hit]:
        """Search by a raw descriptor."""
        check_k(k)
        if options.tag is not None:
            tags.check_tag_mode(options.tag_mode)
        raw = np.asarray(raw, dtype=np.float32).reshape(-1)
        dim = self.store.manifest.dim
        if dim is not None and raw.shape[0] != dim:
            raise IndexMismatchError(
                f"query descriptor has dimension {raw.shape[0]}, index has {dim}"
            )
        skip = set(int(i) for i in exclude)
        if options.tag is not None:
            pairs = self._tagged(raw, k, options, skip)
        else:
            pairs = self._nearest(raw, k, options.expand, skip, options.min_score)
        hits = self.hits(pairs)
        if options.localize or options.rerank:
            hits = self._localize(raw, hits, options.rerank)
        return hits

    def search_text(self, text: str, k: int, *, min_score: float | None = None) -> TextHits:
        """Images whose content matches the words ("bicycle", "a cup of coffee"), ranked by the
        probability the CNN gave the matching ImageNet classes (that mass is the `score`); the
        result also says what the words matched and, when empty, why (`TextHits`)."""
        pairs, match, note = tags.text_search(self.store, text, k, min_score=min_score)
        return TextHits(self.hits(pairs), match, note)

    def hits(self, pairs: Sequence[tuple[int, float]]) -> list[Hit]:
        """(image id, score) pairs -> hits with path and tags (ids no longer in the catalog
        are dropped; `tags` stays None for images without labels)."""
        rows = tags.paths_and_tags(self.store, [i for i, _ in pairs])
        return [Hit(i, rows[i][0], s, tags=rows[i][1]) for i, s in pairs if i in rows]

    # -- steps -------------------------------------------------------------------------------

    def _nearest(
        self,
        raw: np.ndarray,
        k: int,
        spec: Expansion | None,
        skip: set[int],
        min_score: float | None,
    ) -> list[tuple[int, float]]:
        vectors = self.derived.vector_index()
        if vectors is None:
            return []
        query = self.derived.transform(raw)
        if spec is not None:
            query = self._expand(vectors, query, spec, skip)
        scores, ids = vectors.search(query, k + len(skip))
        return [
            (int(i), float(s))
            for i, s in zip(ids[0], scores[0], strict=True)
            if i >= 0 and int(i) not in skip and (min_score is None or s >= min_score)
        ][:k]

    def _tagged(
        self, raw: np.ndarray, k: int, options: SearchOptions, skip: set[int]
    ) -> list[tuple[int, float]]:
        """Image search combined with a tag. Few tagged images and no expansion: score every
        tagged image exactly. Otherwise the query (expanded over the whole collection, if
        asked) fetches a shortlist of max(20 k, TAG_SHORTLIST_MIN) that the tag filters or
        boosts."""
        assert options.tag is not None
        tagged = tags.tagged_images(self.store, options.tag)
        if (
            options.tag_mode == "filter"
            and len(tagged) <= tags.TAG_EXACT_MAX
            and options.expand is None
        ):
            ids = [i for i in tagged if i not in skip]
            pairs = tags.score_exactly(self.store, self.derived.transform, raw, ids)
        else:
            shortlist = self._nearest(
                raw, max(20 * k, TAG_SHORTLIST_MIN), options.expand, skip, None
            )
            known = tags.paths_and_tags(self.store, [i for i, _ in shortlist])
            shortlist = [(i, s) for i, s in shortlist if i in known]
            pairs = tags.apply_tag(shortlist, tagged, options.tag_mode)
        pairs.sort(key=lambda p: (-p[1], p[0]))
        min_score = options.min_score
        return [p for p in pairs if min_score is None or p[1] >= min_score][:k]

    def _expand(
        self, vectors: VectorIndex, query: np.ndarray, spec: Expansion, skip: set[int]
    ) -> np.ndarray:
        from lookalike.postprocess.qe import expand

        scores, ids = vectors.search(query, spec.n + len(skip))
        top = [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]
        top = [(i, s) for i, s in top if i not in skip][: spec.n]
        if not top:
            return query
        with self.store.lock:
            raws = [self.store.catalog.descriptor(i) for i, _ in top]
        keep = [(r, s) for r, (_, s) in zip(raws, top, strict=True) if r is not None]
        neighbours = self.derived.transform(np.stack([r for r, _ in keep]))
        if self.store.settings.dba:
            # expand with the database's own (augmented) vectors, as stored in FAISS
            try:
                kept = [i for (i, _), r in zip(top, raws, strict=True) if r is not None]
                neighbours = np.stack([vectors.faiss_index.reconstruct(i) for i in kept])
            except RuntimeError:
                log.debug("this FAISS index cannot reconstruct; expanding with plain vectors")
        sims = np.array([s for _, s in keep])
        return expand(query[0], neighbours, sims, spec.alpha)[None]

    def _localize(self, raw: np.ndarray, hits: list[Hit], rerank: bool) -> list[Hit]:
        from lookalike.postprocess.localize import localize_file

        out = []
        for hit in hits[:LOCALIZE_MAX]:
            try:
                score, box = localize_file(self._extractor(), raw, hit.path)
            except ImageError as exc:
                log.warning("cannot localize in %s: %s", hit.path, exc)
                out.append((hit.score if not rerank else -1.0, hit))
                continue
            out.append((score, replace(hit, box=box, score=score if rerank else hit.score)))
        if rerank:
            out.sort(key=lambda t: -t[0])
        return [h for _, h in out] + hits[LOCALIZE_MAX:]
