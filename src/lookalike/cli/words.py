"""Words commands: classify (top ImageNet classes of images) and dupes (duplicate finder)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from lookalike.cli import IndexOpt, JsonOpt, app
from lookalike.errors import ConfigError

CLASSIFY_SIDE = 224  # the input size the ImageNet head was trained at: best-calibrated probs


@app.command("classify")
def classify_cmd(
    images: Annotated[list[Path], typer.Argument(help="Image files.")],
    k: Annotated[int, typer.Option("-k", help="Classes per image.", min=1)] = 5,
    model: Annotated[str, typer.Option(help="Backbone: lite0, lite1 or lite2.")] = "lite0",
    max_side: Annotated[
        int, typer.Option(help="Resize so the longer side is this (the head was trained at 224).")
    ] = CLASSIFY_SIDE,
    classes: Annotated[
        Path | None,
        typer.Option(
            "--classes",
            help="Your own classes: a head folder written by `lookalike train-classes`.",
        ),
    ] = None,
    index: Annotated[
        Path | None,
        typer.Option(
            "--index", "-i", help="Use the classes attached to this index (train-classes --index)."
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Print the top ImageNet-1k classes of each image with probabilities, e.g.
    '0.5061 mountain bike, all-terrain bike, off-roader'; with --classes HEAD_DIR or --index
    (an index with attached classes), your own classes instead.

    --json prints one object per line: {"path", "labels": [{"class_id", "name", "prob"}]}
    (your own classes: {"name", "prob"}).
    """
    from lookalike.extract import Extractor
    from lookalike.labels import top_labels

    for p in images:
        if not p.is_file():
            raise ConfigError(f"{p}: file not found")
    if classes is not None or index is not None:
        from lookalike.training.heads import classify_paths

        for p, labels in zip(images, classify_paths(images, k, classes, index), strict=True):
            if as_json:
                typer.echo(json.dumps({"path": str(p), "labels": labels}))
                continue
            typer.echo(str(p))
            for x in labels:
                typer.echo(f"  {x['prob']:.4f} {x['name']}")
        return
    extractor = Extractor(model, max_side=max_side)
    for p in images:
        labels = top_labels(extractor.describe_path(p).logits, k)
        if as_json:
            typer.echo(json.dumps({"path": str(p), "labels": [x.to_dict() for x in labels]}))
            continue
        typer.echo(str(p))
        for x in labels:
            typer.echo(f"  {x.prob:.4f} {x.name}")


@app.command("dupes")
def dupes_cmd(
    index: IndexOpt,
    similar: Annotated[
        bool,
        typer.Option(
            "--similar",
            help="Also report similar shots (bursts, other angles of one scene), as 'similar'.",
        ),
    ] = False,
    threshold: Annotated[
        float | None,
        typer.Option(
            help="With --similar: cosine similarity from which two shots are similar "
            "(default 0.80; higher = stricter). Near duplicates are verified, not thresholded.",
        ),
    ] = None,
    k: Annotated[int, typer.Option("-k", help="Neighbours looked at per image.", min=1)] = 16,
    exact_only: Annotated[
        bool, typer.Option("--exact-only", help="Only identical files (same content hash).")
    ] = False,
    no_files: Annotated[
        bool,
        typer.Option(
            "--no-files",
            help="Do not read the image files: near duplicates from the stored perceptual "
            "hashes only (misses crops, borders, flips and rotations; for files not at hand).",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Find duplicates in an index, in three kinds, each group with a suggested keeper:

    exact: identical files (same content hash).
    near: the same photo after edits (resized, recompressed, recoloured, captioned, bordered,
    cropped, mirrored, slightly rotated): candidates from the index's nearest neighbours,
    each verified by perceptual hash or by local-feature geometry against the group's keeper
    (groups never chain through neighbours of neighbours).
    similar (only with --similar): other shots of the same scene.

    The keeper is the largest resolution, then the best quality, then the oldest file.
    Nothing is deleted. --json prints {"groups": [{"kind", "paths", "scores", "keep",
    "keep_reason", "ids", "keep_id", "members": [{"id", "path", "score", "evidence", "width",
    "height", "bytes"}]}]}; paths[0] is the keeper, scores are cosines to it.
    """
    from lookalike.engine import Index

    if threshold is not None and not similar:
        raise ConfigError("--threshold applies to --similar; near duplicates are verified")
    with Index.open(index) as idx:
        groups = idx.duplicates(
            similar=(threshold if threshold is not None else True) if similar else False,
            k=k,
            near=not exact_only,
            verify_files=not no_files,
        )
    if as_json:
        typer.echo(json.dumps({"groups": [g.to_dict() for g in groups]}))
        return
    if not groups:
        typer.echo("no duplicates")
    for g in groups:
        typer.echo(f"{g.kind} ({len(g.paths)} images) - keep {g.keep}: {g.keep_reason}")
        for m in g.members:
            mark = "keep" if m.path == g.keep else "    "
            typer.echo(
                f"  {mark} {m.score:.4f} {m.width}x{m.height} {m.bytes:>9,} B  {m.path}"
                f"  [{m.evidence}]"
            )
