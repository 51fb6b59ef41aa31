"""Evaluation commands: eval (score a benchmark) and make-benchmark (build one from photos)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from lookalike.cli import JsonOpt, app

KIND_HELP = (
    "ukbench, holidays, oxford5k, paris6k, roxford5k, rparis6k, groups (one subfolder per "
    "group of matching images) or copydays (original/ + edited copies)."
)


@app.command("eval")
def eval_cmd(
    kind: Annotated[str, typer.Argument(help=f"Benchmark layout: {KIND_HELP}")],
    root: Annotated[Path, typer.Argument(help="The benchmark's folder.")],
    model: Annotated[
        str | None,
        typer.Option(
            help="Backbone (lite0, lite1, lite2) or a model folder written by `lookalike "
            "train`. [default: lite0]"
        ),
    ] = None,
    descriptor: Annotated[
        str | None, typer.Option(help="Pooling, e.g. gem:p=3, rmac:levels=3. [default: gem:p=3]")
    ] = None,
    max_side: Annotated[int | None, typer.Option(help="Image long side. [default: 480]")] = None,
    scales: Annotated[str | None, typer.Option(help="Multi-scale, e.g. '1,0.707'.")] = None,
    whiten_dim: Annotated[
        int | None,
        typer.Option(help="PCA-whitening dimension, 0 for none (trained when the rule allows)."),
    ] = None,
    expand: Annotated[
        str | None, typer.Option(help="Query expansion: 'aqe:n=3' or 'alpha-qe:n=3,alpha=3'.")
    ] = None,
    dba: Annotated[
        str | None,
        typer.Option(
            help="Database-side augmentation, same syntax as --expand (what "
            "`lookalike index --dba` stores in an index)."
        ),
    ] = None,
    rerank: Annotated[
        int,
        typer.Option(help="Re-rank each query's top N by localized region score (slow).", min=0),
    ] = 0,
    distractors: Annotated[
        Path | None, typer.Option(help="Folder of extra non-matching database images.")
    ] = None,
    index_dir: Annotated[
        Path | None,
        typer.Option(
            "--index-dir",
            help="Keep the benchmark's index here and reuse it next time (same settings).",
        ),
    ] = None,
    report: Annotated[
        Path | None,
        typer.Option(help="Write a report folder: Markdown table, PR and rank plots, HTML."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Index a benchmark's images with the given settings and score its queries.

    Prints mAP (and the N-S score for ukbench, easy/medium/hard mAP and mP@k for the revisited
    sets), the number of queries and database images, and the time taken.
    """
    from lookalike.cli.core import _parse_scales
    from lookalike.evaluation.datasets import distractor_paths, load_benchmark
    from lookalike.evaluation.harness import evaluate
    from lookalike.index.manifest import validate_settings
    from lookalike.postprocess.qe import parse_expansion

    parse_expansion(expand)
    parse_expansion(dba)
    from lookalike.training.model_dir import resolve_model

    settings = validate_settings(
        **resolve_model(model, descriptor),
        max_side=max_side,
        scales=_parse_scales(scales),
        whiten_dim=whiten_dim,
    )
    bench = load_benchmark(kind, root)
    if distractors is not None:
        bench = bench.with_distractors(distractor_paths(distractors))
    result = evaluate(bench, settings, expand=expand, dba=dba, rerank=rerank, index_path=index_dir)
    summary = result.summary()
    if report is not None:
        from lookalike.evaluation.report import write_report

        summary["report"] = write_report(result, report)
    if as_json:
        typer.echo(json.dumps(summary))
        return
    for key, value in summary.items():
        if key == "report":
            typer.echo(f"{'report':14s} {Path(value['markdown']).parent}")
        elif key == "unreadable":
            typer.echo(f"{'unreadable':14s} {len(value)} files")
            for line in value:
                typer.echo(f"  {line}")
        else:
            typer.echo(f"{key:14s} {value}")


@app.command("make-benchmark")
def make_benchmark_cmd(
    src_dir: Annotated[Path, typer.Argument(help="Folder of source photos.")],
    out_dir: Annotated[Path, typer.Argument(help="Where to write the benchmark (new folder).")],
    edits: Annotated[
        str | None,
        typer.Option(help="Comma-separated edits to apply. [default: all of them]"),
    ] = None,
    layout: Annotated[
        str, typer.Option(help="groups (every image finds its siblings) or copydays.")
    ] = "groups",
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same files).")] = 0,
    max_side: Annotated[int, typer.Option(help="Shrink sources to this long side first.")] = 1024,
    as_json: JsonOpt = False,
) -> None:
    """Write a benchmark from any photos: each photo plus edited copies (crop, rotate,
    rescale, strong JPEG, colour, brightness, grayscale, blur, caption, border, flip, pasted
    into a larger canvas). Score it with `lookalike eval groups OUT_DIR` (or copydays)."""
    from lookalike.edits import EDITS
    from lookalike.evaluation.synthetic import make_benchmark

    chosen = [e.strip() for e in edits.split(",") if e.strip()] if edits else None
    info = make_benchmark(
        src_dir, out_dir, edits=chosen, seed=seed, layout=layout, max_side=max_side
    )
    if as_json:
        typer.echo(json.dumps(info))
        return
    typer.echo(
        f"wrote {info['images']} images ({info['sources']} photos x {len(info['edits'])} edits "
        f"+ originals) to {info['out']} as a {info['layout']} benchmark"
    )
    typer.echo(f"edits available: {', '.join(EDITS)}")
