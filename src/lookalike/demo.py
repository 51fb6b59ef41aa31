"""`lookalike demo`: the main job on real photos with known answers.

Builds a collection from the photos scikit-image ships plus edited copies of each (crop,
rescale + recompression, mirror, rotation), indexes it, then searches with other edited copies
that are not in the index. A search is right when its hits come from the same source photo.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from lookalike.edits import apply_edit
from lookalike.samples import sample_photos

INDEXED_EDITS = (("crop",), ("rescale", "jpeg"), ("flip",), ("rotate",))
QUERY_EDITS = ("crop", "rotate", "jpeg")


def build_demo_collection(out: Path) -> dict[str, str]:
    """Write the collection under out/photos and the queries under out/queries.
    Returns query path -> source photo name."""
    photos_dir = out / "photos"
    edited_dir = photos_dir / "edited"
    queries_dir = out / "queries"
    for d in (photos_dir, edited_dir, queries_dir):
        d.mkdir(parents=True, exist_ok=True)
    queries: dict[str, str] = {}
    for n, (name, image) in enumerate(sorted(sample_photos().items())):
        image.save(photos_dir / f"{name}.jpg", quality=92)
        for e, chain in enumerate(INDEXED_EDITS):
            edited = image
            for step, edit in enumerate(chain):
                edited = apply_edit(edit, edited, seed=1000 * n + 10 * e + step)
            edited.save(edited_dir / f"{name}-{'-'.join(chain)}.jpg", quality=90)
        query = image
        for step, edit in enumerate(QUERY_EDITS):
            query = apply_edit(edit, query, seed=77_000 + 1000 * n + step)
        qpath = queries_dir / f"{name}-query.jpg"
        query.save(qpath, quality=85)
        queries[str(qpath)] = source_of(str(qpath))
    return queries


def source_of(path: str) -> str:
    """The scene a demo file shows: its source photo's name, where the two views of the
    stereo pair count as one scene (the same place from another angle)."""
    stem = Path(path).stem
    for suffix in ("-query",) + tuple("-" + "-".join(c) for c in INDEXED_EDITS):
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    return stem.removesuffix("_left").removesuffix("_right")


def run_demo(out: Path, *, k: int = 5, echo: Callable[[str], None] = print) -> bool:
    from lookalike.engine import Index, is_index

    out = Path(out).absolute()
    echo(f"Building the demo collection in {out} from scikit-image's photos ...")
    queries = build_demo_collection(out)
    index_dir = out / "index"
    idx = Index.open(index_dir, writable=True) if is_index(index_dir) else Index.create(index_dir)
    with idx:
        report = idx.sync([out / "photos"])
        echo(
            f"Indexed {report.count} images ({report.added} new) in {report.seconds:.1f} s "
            f"with {idx.settings.model}, {idx.settings.descriptor}, "
            f"max side {idx.settings.max_side}."
        )
        collection = [r.path for r in idx.catalog.records()]
        right_first = 0
        right_total = 0
        expected_total = 0
        for qpath, name in sorted(queries.items()):
            hits = idx.search(qpath, k=k)
            expected = min(k, sum(source_of(p) == name for p in collection))
            good = [source_of(h.path) == name for h in hits]
            right_first += bool(good and good[0])
            right_total += sum(good[:expected])
            expected_total += expected
            echo(f"\nquery {Path(qpath).name}  (edited copy of '{name}', not in the index)")
            for rank, (h, ok) in enumerate(zip(hits, good, strict=True), 1):
                mark = "right" if ok else "wrong"
                echo(f"  {rank}. {h.score:.3f}  {mark:5s}  {Path(h.path).relative_to(out)}")
    n = len(queries)
    echo(
        f"\nFirst result right for {right_first}/{n} queries; "
        f"{right_total}/{expected_total} of the results that could be right are "
        f"(other copies of the query's photo, or of the same scene from another angle)."
    )
    echo(f"Try it yourself: lookalike search {next(iter(sorted(queries)))} --index {index_dir}")
    return right_first == n
