"""Words on an index: the stored top ImageNet classes of each image ("tags"), searching by
text, and filtering or boosting image-search results by a tag.

The catalog's `labels` table holds each image's top classes with probabilities, written from
the same forward pass as its descriptor. A text query becomes weighted classes
(lookalike.text); an image's score for it is the weighted probability mass the CNN gave those
classes: score = sum_c weight(c) * prob(image, c), over the image's stored top classes.

These functions work on (image id, score) pairs; lookalike.search turns them into hits.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from lookalike.errors import ConfigError
from lookalike.labels import labels_from_pairs

if TYPE_CHECKING:
    from lookalike.index.store import Store
    from lookalike.text import TextMatch

TAG_EXACT_MAX = 20_000  # a tag filter matching at most this many images scores them all exactly
TAG_BOOST = 0.2  # tag_mode="boost": score + TAG_BOOST * probability mass on the tag's classes
TAG_MODES = ("filter", "boost")

Pair = tuple[int, float]


def text_classes(text: str) -> dict[int, float]:
    """ImageNet class id -> weight for a text query (see lookalike.text)."""
    from lookalike.text import default_matcher

    return default_matcher().match(text).weights()


def check_tag_mode(tag_mode: str) -> None:
    if tag_mode not in TAG_MODES:
        raise ConfigError(f"tag mode must be one of {', '.join(TAG_MODES)}, got {tag_mode!r}")


def paths_and_tags(
    store: Store, ids: Sequence[int]
) -> dict[int, tuple[str, tuple[dict, ...] | None]]:
    """id -> (path, tags as dicts, or None for an image without labels), in one catalog query;
    ids no longer in the catalog are absent."""
    with store.lock:
        rows = store.catalog.paths_and_labels(list(ids))
    return {
        i: (path, tuple(x.to_dict() for x in labels_from_pairs(stored)) if stored else None)
        for i, (path, stored) in rows.items()
    }


def text_pairs(store: Store, text: str, k: int, *, min_score: float | None = None) -> list[Pair]:
    """Images whose stored classes match the words, best first; score = probability mass."""
    return text_search(store, text, k, min_score=min_score)[0]


def text_search(
    store: Store, text: str, k: int, *, min_score: float | None = None
) -> tuple[list[Pair], TextMatch, str | None]:
    """(pairs, what the words matched, why there are no pairs or None): `text_pairs` that also
    explains an empty answer (no class close to the words; an index without tags; no tagged
    image among the matched classes; every score below `min_score`)."""
    from lookalike.text import TextMatch, default_matcher
    from lookalike.training.heads import class_pairs

    if k < 1:
        raise ConfigError(f"k must be at least 1, got {k}")

    own = class_pairs(store, text, k, min_score)  # a class of the user's attached head
    if own is not None:
        note = None if own else f"no image scored for {text!r}, a class of the index's own head"
        return own, TextMatch(text, ()), note
    match = default_matcher().match(text)
    pairs: list[Pair] = []
    if match.classes:
        with store.lock:
            pairs = store.catalog.search_labels(match.weights(), k)
    kept = [p for p in pairs if min_score is None or p[1] >= min_score]
    if kept:
        return kept, match, None
    if pairs:
        return kept, match, f"{match.explain()}; no image scored at least {min_score}"
    return kept, match, _empty_note(store, match)


def _empty_note(store: Store, match: TextMatch) -> str:
    if not match.classes:
        return match.explain()
    with store.lock:
        total = store.catalog.count()
        unlabelled = store.catalog.unlabelled_count()
    if total == 0:
        return "the index holds no images yet"
    if unlabelled == total:
        return (
            "this index stores no tags (it was built from bare vectors, e.g. by `lookalike "
            "eval` or Index.add_vectors), so it cannot be searched by words; build an index "
            "with `lookalike index FOLDER --index PATH`, which stores each image's top classes"
        )
    missing = f" ({unlabelled} of {total} images have no tags)" if unlabelled else ""
    return f"{match.explain()}, but no indexed image has those among its top classes{missing}"


def tagged_images(store: Store, tag: str) -> dict[int, float]:
    """id -> probability mass on the tag's classes, for up to TAG_EXACT_MAX + 1 images (or,
    when the tag names a class of the user's attached head, that class's probability)."""
    from lookalike.training.heads import tagged_by_class

    own = tagged_by_class(store, tag)
    if own is not None:
        return own
    weights = text_classes(tag)
    with store.lock:
        return dict(store.catalog.search_labels(weights, TAG_EXACT_MAX + 1))


def score_exactly(
    store: Store,
    transform: Callable[[np.ndarray], np.ndarray],
    raw: np.ndarray,
    ids: Sequence[int],
) -> list[Pair]:
    """The cosine score of every image in `ids` against the query, from their stored raw
    descriptors (whatever the FAISS index type)."""
    with store.lock:
        got, vectors = store.catalog.descriptors(list(ids))
    if len(got) == 0:
        return []
    scores = transform(vectors) @ transform(raw)[0]
    return [(int(i), float(s)) for i, s in zip(got, scores, strict=True)]


def apply_tag(shortlist: Sequence[Pair], tagged: Mapping[int, float], tag_mode: str) -> list[Pair]:
    """`filter` keeps only images with mass on the tag; `boost` adds TAG_BOOST x that mass."""
    pairs = []
    for i, s in shortlist:
        mass = tagged.get(i, 0.0)
        if tag_mode == "filter" and mass <= 0:
            continue
        pairs.append((i, s + TAG_BOOST * mass if tag_mode == "boost" else s))
    return pairs
