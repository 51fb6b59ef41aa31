"""Why a text search answered what it did: the ImageNet classes the words became and, when
nothing was found, the reason. Added to the JSON of every text search (the page shows it)."""

from __future__ import annotations

MATCHED_SHOWN = 8


def explain_text(index, text: str, hits: list) -> dict:  # noqa: ANN001 - Index, list[Hit]
    """`{"matched": [{"class_id", "name", "weight", "via"}], "reason": str | None}`: the
    ImageNet classes the words became, and, when there are no hits, why (no class is close to
    the words; the index holds no tags; no image was tagged with those classes)."""
    from lookalike.labels import class_name
    from lookalike.text import default_matcher

    # Index.search_text already matched the words (TextHits.match): reuse it.
    match = getattr(hits, "match", None) or default_matcher().match(text)
    matches = match.classes
    matched = [
        {
            "class_id": m.class_id,
            "name": class_name(m.class_id),
            "weight": round(m.weight, 3),
            "via": m.via,
        }
        for m in sorted(matches, key=lambda m: -m.weight)
    ]
    reason = None
    if not hits:
        with index.lock:
            count = index.catalog.count()
            untagged = index.catalog.unlabelled_count()
        if not matched:
            nearest = ", ".join(f"{class_name(i).split(',')[0]} {s:.2f}" for i, s in match.nearest)
            reason = (
                f"no ImageNet class is close to “{text}” (the nearest: {nearest}): text search "
                "knows the 1,000 ImageNet classes (objects, animals, places such as "
                "“seashore”); try a word for what is in the picture, or search with a photo"
            )
        elif count and untagged == count:
            reason = (
                "this index stores no tags, so it cannot be searched by words (indexes built by "
                "'lookalike eval' have none); re-index the folders with 'lookalike index'"
            )
        else:
            names = ", ".join(m["name"].split(",")[0] for m in matched[:MATCHED_SHOWN])
            reason = f"no picture here was tagged with {names}"
    nearest_classes = [
        {"class_id": i, "name": class_name(i), "similarity": round(s, 4)} for i, s in match.nearest
    ]
    return {"matched": matched[:MATCHED_SHOWN], "reason": reason, "nearest": nearest_classes}
