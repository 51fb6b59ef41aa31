"""Words on an index: the stored top ImageNet classes of each image ("tags"), searching by
text, and filtering or boosting image-search results by a tag.

The catalog's `labels` table holds each image's top classes with probabilities, written from
the same forward pass as its descriptor. A text query becomes weighted classes
(lookalike.text); an image's score for it is the weighted probability mass the CNN gave those
classes: score = sum_c weight(c) * prob(image, c), over the image's stored top classes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from lookalike.errors import ConfigError
from lookalike.labels import labels_from_pairs

if TYPE_CHECKING:
    from lookalike.engine import Hit, Index

TAG_EXACT_MAX = 20_000  # a tag filter matching at most this many images scores them all exactly
TAG_BOOST = 0.2  # tag_mode="boost": score + TAG_BOOST * probability mass on the tag's classes
TAG_MODES = ("filter", "boost")


def text_classes(text: str) -> dict[int, float]:
    """ImageNet class id -> weight for a text query (see lookalike.text)."""
    from lookalike.text import default_matcher

    return {m.class_id: m.weight for m in default_matcher().classes(text)}


def hits_with_tags(index: Index, pairs: Sequence[tuple[int, float]]) -> list[Hit]:
    """(image id, score) pairs -> hits with path and tags, from one catalog query (ids no
    longer in the catalog are dropped; `tags` stays None for images without labels)."""
    from lookalike.engine import Hit

    with index._mutex:
        rows = index.catalog.paths_and_labels([i for i, _ in pairs])
    hits = []
    for i, s in pairs:
        row = rows.get(i)
        if row is not None:
            path, stored = row
            tags = tuple(x.to_dict() for x in labels_from_pairs(stored)) if stored else None
            hits.append(Hit(i, path, s, tags=tags))
    return hits


def search_text(index: Index, text: str, k: int = 10, *, min_score: float | None = None):
    """Images whose stored classes match the words, best first; score = probability mass."""
    if k < 1:
        raise ConfigError(f"k must be at least 1, got {k}")
    weights = text_classes(text)
    with index._mutex:
        pairs = index.catalog.search_labels(weights, k)
    return hits_with_tags(index, [p for p in pairs if min_score is None or p[1] >= min_score])


def search_tagged(
    index: Index,
    raw: np.ndarray,
    k: int,
    *,
    tag: str,
    tag_mode: str = "filter",
    min_score: float | None = None,
    exclude: Sequence[int] = (),
    **search_options,
) -> list[Hit]:
    """Image search combined with a tag: `filter` keeps only images whose stored classes match
    `tag`; `boost` adds TAG_BOOST x their probability mass on it to the cosine score."""

    if tag_mode not in TAG_MODES:
        raise ConfigError(f"tag mode must be one of {', '.join(TAG_MODES)}, got {tag_mode!r}")
    weights = text_classes(tag)
    skip = set(int(i) for i in exclude)
    raw = np.asarray(raw, dtype=np.float32).reshape(-1)
    with index._mutex:
        tagged = dict(index.catalog.search_labels(weights, TAG_EXACT_MAX + 1))
    if tag_mode == "filter" and len(tagged) <= TAG_EXACT_MAX and not search_options:
        # Few tagged images: score every one of them exactly, whatever the FAISS index type.
        with index._mutex:
            ids, vectors = index.catalog.descriptors([i for i in tagged if i not in skip])
        if len(ids) == 0:
            return []
        scores = index._transform(vectors) @ index._transform(raw)[0]
        pairs = [(int(i), float(s)) for i, s in zip(ids, scores, strict=True)]
    else:
        shortlist = index.search_vector(raw, max(20 * k, 500), exclude=list(skip), **search_options)
        pairs = []
        for h in shortlist:
            mass = tagged.get(h.id, 0.0)
            if tag_mode == "filter" and mass <= 0:
                continue
            pairs.append((h.id, h.score + TAG_BOOST * mass if tag_mode == "boost" else h.score))
    pairs.sort(key=lambda p: (-p[1], p[0]))
    pairs = [p for p in pairs if min_score is None or p[1] >= min_score][:k]
    return hits_with_tags(index, pairs)
