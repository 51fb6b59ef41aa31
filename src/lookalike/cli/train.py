"""Learning commands: train (fine-tune a retrieval model) and train-classes (a classifier head
for your own classes)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from lookalike.cli import JsonOpt, app


@app.command("train")
def train_cmd(
    groups_dir: Annotated[
        Path | None,
        typer.Argument(
            help="One subfolder per group of matching images (views of one object or place), "
            "as for `eval groups`. Leave out with --self-supervised.",
            show_default=False,
        ),
    ] = None,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Model folder to write (new or empty).")
    ] = ...,  # type: ignore[assignment]
    self_supervised: Annotated[
        Path | None,
        typer.Option(
            "--self-supervised",
            help="No groups: learn from a folder of your own photos, each photo and edited "
            "copies of it (crop, rotation, colour, JPEG, ...) making a group.",
        ),
    ] = None,
    base: Annotated[str, typer.Option(help="Backbone to start from: lite0, lite1, lite2.")] = (
        "lite0"
    ),
    minutes: Annotated[
        float, typer.Option(help="Training time budget (the frozen part's pass comes first).")
    ] = 5.0,
    loss: Annotated[str, typer.Option(help="contrastive (Siamese) or triplet.")] = "contrastive",
    lr: Annotated[float, typer.Option(help="Adam learning rate (GeM p gets 10x).")] = 1e-4,
    train_blocks: Annotated[
        int, typer.Option(help="How many of the last blocks are trained.", min=1, max=8)
    ] = 2,
    max_side: Annotated[
        int, typer.Option(help="Image size the model will index at (for its whitening).")
    ] = 480,
    whitening: Annotated[
        bool,
        typer.Option(
            "--whitening/--no-whitening",
            help="Learn a supervised whitening from the pairs (kept only when a held-out "
            "check says it helps).",
        ),
    ] = True,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    as_json: JsonOpt = False,
) -> None:
    """Fine-tune the backbone for retrieval on your own images (last blocks + GeM p, Siamese
    contrastive or triplet loss, hard negatives mined every epoch, augmentations) and write a
    model folder. Use it with `lookalike index DIRS --model MODEL_DIR` or
    `lookalike eval ... --model MODEL_DIR`. Runs on the CPU within --minutes (a GPU when
    present).
    """
    from lookalike.training import train

    def progress(epoch: int, value: float, seconds: float) -> None:
        if not as_json:
            typer.echo(f"epoch {epoch}: loss {value:.4f} ({seconds:.0f} s)", err=True)

    report = train(
        groups_dir,
        out,
        self_supervised=self_supervised,
        base=base,
        minutes=minutes,
        loss=loss,
        max_side=max_side,
        whitening=whitening,
        seed=seed,
        lr=lr,
        train_blocks=train_blocks,
        progress=progress if sys.stderr.isatty() else None,
    )
    d = report.to_dict()
    if as_json:
        typer.echo(json.dumps(d))
        return
    w = d["whitening"]
    typer.echo(
        f"trained {d['base']} on {d['images']} images in {d['groups']} groups: "
        f"{d['epochs']} epochs, {d['steps']} steps, {d['seconds']:.0f} s on {d['device']}"
    )
    typer.echo(f"descriptor   {d['descriptor']}")
    typer.echo(
        f"training-set mAP  base {d['train_map_base']:.4f} -> fine-tuned "
        f"{d['train_map_finetuned']:.4f} (groups it learned from; measure on others with eval)"
    )
    typer.echo(f"whitening    {'kept' if w.get('use') else 'not kept'}: {w.get('reason')}")
    typer.echo(f"model        {d['model_dir']} (hash {d['hash']})")
    for line in d["skipped"]:
        typer.echo(f"  skipped {line}")


@app.command("train-classes")
def train_classes_cmd(
    labeled_dir: Annotated[
        Path, typer.Argument(help="One subfolder per class; the subfolder's name is the class.")
    ],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Class head folder to write (new or empty).")
    ] = ...,  # type: ignore[assignment]
    index: Annotated[
        Path | None,
        typer.Option(
            "--index",
            "-i",
            help="Train on this index's descriptors' settings and attach the head to it: its "
            "classes then work with search --tag, search --text and classify --index.",
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(help="Without --index: backbone or trained model folder. [default: lite0]"),
    ] = None,
    max_side: Annotated[
        int | None, typer.Option(help="Without --index: image long side. [default: 480]")
    ] = None,
    views: Annotated[
        int, typer.Option(help="Views per image (the image and augmented copies).", min=1)
    ] = 3,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    as_json: JsonOpt = False,
) -> None:
    """Teach lookalike your own classes: a new classifier head on the frozen descriptors
    (transfer learning). With --index, the head is attached to that index, and
    `search --tag CLASS`, `search --text CLASS` and `classify --index` use your classes.
    """
    from lookalike.training import train_classes

    head = train_classes(
        labeled_dir, out, index=index, model=model, max_side=max_side, views=views, seed=seed
    )
    facts = head.info["training"]
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "out": str(out),
                    "classes": list(head.classes),
                    "attached_to": str(index) if index is not None else None,
                    **facts,
                }
            )
        )
        return
    typer.echo(
        f"trained a head for {len(head.classes)} classes on {facts['images']} images "
        f"({facts['seconds']:.0f} s): {', '.join(head.classes)}"
    )
    acc = facts["holdout_accuracy"]
    typer.echo(
        "held-out accuracy "
        + (f"{acc:.3f}" if acc is not None else "not measured (classes need 3+ images)")
    )
    typer.echo(f"head         {out}" + (f" (attached to {index})" if index is not None else ""))
    for line in facts["skipped"]:
        typer.echo(f"  skipped {line}")
