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
    as_json: JsonOpt = False,
) -> None:
    """Print the top ImageNet-1k classes of each image with probabilities, e.g.
    '0.5061 mountain bike, all-terrain bike, off-roader'.

    --json prints one object per line: {"path", "labels": [{"class_id", "name", "prob"}]}.
    """
    from lookalike.extract import Extractor
    from lookalike.labels import top_labels

    for p in images:
        if not p.is_file():
            raise ConfigError(f"{p}: file not found")
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
    threshold: Annotated[
        float | None,
        typer.Option(
            help="Cosine similarity from which two images are near-duplicates "
            "(default 0.80, measured on edited copies: higher = stricter)."
        ),
    ] = None,
    k: Annotated[int, typer.Option("-k", help="Neighbours looked at per image.", min=1)] = 8,
    exact_only: Annotated[
        bool, typer.Option("--exact-only", help="Only identical files (same content hash).")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Find duplicates in an index: exact copies (same content hash) and near-duplicates
    (resized, recompressed, lightly edited copies) through the index's k-NN search.

    --json prints {"groups": [{"kind": "exact"|"near", "paths": [...], "scores": [...]}]}.
    """
    from lookalike.engine import Index

    with Index.open(index) as idx:
        groups = idx.duplicates(threshold, k=k, near=not exact_only)
    if as_json:
        typer.echo(json.dumps({"groups": [g.to_dict() for g in groups]}))
        return
    if not groups:
        typer.echo("no duplicates")
    for g in groups:
        typer.echo(f"{g.kind} ({len(g.paths)} images)")
        for path, score in zip(g.paths, g.scores, strict=True):
            typer.echo(f"  {score:.4f}  {path}")
