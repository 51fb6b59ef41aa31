"""Core commands: index, search, info, demo."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated

import typer

from lookalike.cli import IndexOpt, JsonOpt, app
from lookalike.errors import ConfigError, LookalikeError


def _parse_scales(text: str | None) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise ConfigError(f"--scales: expected numbers separated by commas, got {text!r}") from None


def _parse_box(text: str | None) -> tuple[float, float, float, float] | None:
    if text is None:
        return None
    parts = text.split(",")
    try:
        values = tuple(float(x) for x in parts)
    except ValueError:
        values = ()
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise ConfigError(f"--box: expected x0,y0,x1,y1 (four finite numbers), got {text!r}")
    x0, y0, x1, y1 = values
    if x1 <= x0 or y1 <= y0:
        raise ConfigError(f"--box {text}: x1 must exceed x0 and y1 must exceed y0")
    return values  # type: ignore[return-value]


@app.command("index")
def index_cmd(
    dirs: Annotated[list[Path], typer.Argument(help="Folders of images (searched recursively).")],
    index: IndexOpt,
    model: Annotated[
        str | None,
        typer.Option(
            help="Backbone: lite0, lite1 or lite2, or a model folder written by "
            "`lookalike train`. [default: lite0]"
        ),
    ] = None,
    descriptor: Annotated[
        str | None,
        typer.Option(
            help="Pooling: mac, spoc, spoc:center=1, gem:p=3, rmac:levels=3, neural. "
            "[default: gem:p=3]"
        ),
    ] = None,
    max_side: Annotated[
        int | None, typer.Option(help="Resize images so the longer side is this. [default: 480]")
    ] = None,
    scales: Annotated[
        str | None, typer.Option(help="Multi-scale extraction, e.g. '1,0.707'. [default: 1]")
    ] = None,
    whiten_dim: Annotated[
        int | None,
        typer.Option(help="PCA-whitening output dimension, 0 to disable. [default: 256]"),
    ] = None,
    index_key: Annotated[
        str | None,
        typer.Option(
            help="FAISS factory string, e.g. 'Flat' or 'IVF4096,PQ64x4fs,RFlat' "
            "[default: chosen from the collection size]"
        ),
    ] = None,
    index_params: Annotated[
        str | None, typer.Option(help="FAISS search parameters, e.g. 'nprobe=32'.")
    ] = None,
    dba: Annotated[
        str | None,
        typer.Option(
            help="Database-side augmentation of the stored vectors: 'alpha-qe:n=3,alpha=3' or "
            "'aqe:n=1' (each vector averaged with its n nearest neighbours). Any change then "
            "rebuilds all vectors (a neighbour search over the collection). [default: off]"
        ),
    ] = None,
    precision: Annotated[
        str | None,
        typer.Option(
            help="The CNN's arithmetic: fp32, or int8 (static quantization, calibrated once "
            "on the first use: a faster CNN, retrieval mAP within 0.01 of fp32 on the "
            "project's benchmarks). [default: fp32]"
        ),
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Images committed per transaction.")] = 32,
    store: Annotated[
        str | None,
        typer.Option(
            help="Where the search vectors live: 'faiss' (a file in the index), 'milvus' "
            "(Milvus Lite in the index), 'milvus:PATH.db' (Milvus Lite) or "
            "'milvus:http://HOST:19530' (a Milvus server; token from $MILVUS_TOKEN). "
            "[default: faiss]"
        ),
    ] = None,
    executor: Annotated[
        str,
        typer.Option(
            help="Where decoding and the CNN run: 'local' (this machine), 'ray' (a local Ray "
            "instance) or 'ray:ADDRESS' (a Ray cluster, e.g. 'ray:auto' on a cluster node or "
            "'ray:ray://head:10001'). Ray workers read the files under the same paths, so every "
            "node must see them (shared filesystem); results are written here.",
        ),
    ] = "local",
    as_json: JsonOpt = False,
) -> None:
    """Index folders of images: add new files, re-embed changed ones, remove deleted ones.

    Settings options apply when the index is created; an existing index keeps its settings
    and refuses different ones.
    """
    from lookalike.engine import Index, is_index
    from lookalike.index.manifest import validate_settings
    from lookalike.training.model_dir import resolve_model

    given = {
        **resolve_model(model, descriptor),
        "max_side": max_side,
        "scales": _parse_scales(scales),
        "whiten_dim": whiten_dim,
        "index_key": index_key,
        "index_params": index_params,
        "dba": dba,
        "store": store,
        "precision": precision,
    }
    given = {k: v for k, v in given.items() if v is not None}
    from lookalike.executors import parse_executor

    runner = parse_executor(executor)
    for d in dirs:
        if not d.exists():
            raise ConfigError(f"{d}: folder not found")
        if not d.is_dir():
            raise ConfigError(f"{d}: not a folder")
    if is_index(index):
        idx = Index.open(index, writable=True)
        try:
            idx.check_settings(**given)
        except LookalikeError:
            idx.close()
            raise
    else:
        idx = Index.create(index, validate_settings(**given))
    from lookalike.cli.progress import sync_progress

    with idx, runner:
        view = sync_progress(as_json)
        try:
            report = idx.sync(dirs, progress=view, batch_size=batch_size, executor=runner)
        except KeyboardInterrupt:
            if view is not None:
                view.close()
            typer.echo(
                f"interrupted: {len(idx)} images are safely in {idx.path}; "
                "run the same command again to resume",
                err=True,
            )
            raise typer.Exit(130) from None
        if view is not None:
            view.close()
    if as_json:
        typer.echo(json.dumps(report.to_dict()))
        return
    d = report.to_dict()
    speed = (
        f", embedding {report.embedded} at {d['images_per_second']:.1f} images/s"
        if report.embedded
        else ""
    )
    typer.echo(
        f"added {d['added']}, updated {d['updated']}, removed {d['removed']}, "
        f"unchanged {d['unchanged']}, skipped {len(report.skipped)}; "
        f"{d['count']} images in the index; {d['seconds']:.1f} s{speed}"
    )
    for s in report.skipped:
        typer.echo(f"  skipped {s.path}: {s.reason}")


@app.command("search")
def search_cmd(
    index: IndexOpt,
    query: Annotated[
        str | None,
        typer.Argument(help="An image file, or id:N for an indexed image (or use --text)."),
    ] = None,
    k: Annotated[int, typer.Option("-k", help="Number of results.", min=1)] = 10,
    text: Annotated[
        str | None,
        typer.Option(
            "--text",
            help="Search by words instead of an image: 'bicycle', 'dog', 'a cup of coffee' "
            "(ranked by the CNN's probability for the matching ImageNet classes), or the name "
            "of one of your own classes attached with train-classes.",
        ),
    ] = None,
    tag: Annotated[
        str | None,
        typer.Option(
            help="With an image query: keep only results whose content matches WORD (an "
            "ImageNet word or one of your own classes from train-classes)."
        ),
    ] = None,
    tag_mode: Annotated[
        str, typer.Option(help="'filter' (keep only tagged results) or 'boost' (rank them up).")
    ] = "filter",
    min_score: Annotated[
        float | None, typer.Option(help="Leave out results scoring below this (cosine).")
    ] = None,
    box: Annotated[
        str | None,
        typer.Option(
            help="Search with only this region of the query image: x0,y0,x1,y1 in its pixels."
        ),
    ] = None,
    expand: Annotated[
        str | None,
        typer.Option(
            help="Query expansion: 'aqe:n=3' (average of the query and its top n) or "
            "'alpha-qe:n=3,alpha=3' (weighted by similarity^alpha). [default: none]"
        ),
    ] = None,
    localize: Annotated[
        bool,
        typer.Option(
            "--localize",
            help="Find where the query object sits in each of the top 20 results "
            "(box in the result's pixels; re-runs the CNN on them).",
        ),
    ] = False,
    rerank: Annotated[
        bool,
        typer.Option(
            "--rerank",
            help="Re-order the top 20 results by the score of their best-matching region "
            "(implies --localize).",
        ),
    ] = False,
    mmap: Annotated[
        bool,
        typer.Option(
            "--mmap",
            help="Memory-map the vector index instead of reading it into memory (for "
            "collections larger than RAM; the first searches read from disk).",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Find the indexed images most similar to QUERY, best first; or with --text, the images
    whose content matches the words. Results show each image's top classes (tags)."""
    from lookalike.engine import Index

    region = _parse_box(box)
    options = {"min_score": min_score, "expand": expand, "localize": localize, "rerank": rerank}
    if tag is not None:
        options.update(tag=tag, tag_mode=tag_mode)
    if (query is None) == (text is None):
        raise ConfigError("give either an image QUERY or --text WORDS (one of them)")
    with Index.open(index, mmap=mmap) as idx:
        if text is not None:
            hits = idx.search_text(text, k, min_score=min_score)
            query = text
        elif query.startswith("id:"):
            try:
                image_id = int(query[3:])
            except ValueError:
                raise ConfigError(f"query {query!r}: expected id:N with a number N") from None
            if region is None:
                hits = idx.search_id(image_id, k, **options)
            else:
                record = idx.get(image_id)
                if record is None:
                    raise ConfigError(f"no image with id {image_id} in {idx.path}")
                hits = idx.search(record.path, k, box=region, **options)
        else:
            path = Path(query)
            if not path.exists():
                raise ConfigError(f"{query}: file not found")
            hits = idx.search(path, k, box=region, **options)
    note = getattr(hits, "note", None)  # a text search says why it found nothing
    if as_json:
        out = {"query": query, "hits": [h.to_dict() for h in hits]}
        if hasattr(hits, "match"):
            out.update(matched=hits.match.to_dict(), note=note)
        typer.echo(json.dumps(out))
        return
    if not hits:
        typer.echo(f"no results: {note}" if note else "no results")
    for rank, h in enumerate(hits, 1):
        where = f"  box:{','.join(map(str, h.box))}" if h.box is not None else ""
        tags = f"  [{h.tags[0]['name'].split(',')[0]} {h.tags[0]['prob']:.2f}]" if h.tags else ""
        typer.echo(f"{rank:3d}  {h.score:.4f}  id:{h.id}  {h.path}{where}{tags}")


@app.command("info")
def info_cmd(index: IndexOpt, as_json: JsonOpt = False) -> None:
    """Show what an index holds and how it was built."""
    from lookalike.engine import Index

    with Index.open(index) as idx:
        info = idx.info()
    if as_json:
        typer.echo(json.dumps(info))
        return
    for key, value in info.items():
        typer.echo(f"{key:18s} {value}")


@app.command("demo")
def demo_cmd(
    out: Annotated[Path, typer.Option(help="Where to write the demo photos and index.")] = Path(
        "demo-output"
    ),
    k: Annotated[int, typer.Option("-k", help="Results shown per query.")] = 5,
) -> None:
    """Build a small collection from the photos scikit-image ships plus edited copies, index
    it, and run searches whose right answers are known."""
    from lookalike.demo import run_demo

    ok = run_demo(out, k=k, echo=typer.echo)
    if not ok:
        raise typer.Exit(1)
