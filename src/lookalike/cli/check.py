"""`lookalike check`: is an index sound? (reads only)"""

from __future__ import annotations

import json

import typer

from lookalike.cli import IndexOpt, JsonOpt, app


@app.command("check")
def check_cmd(index: IndexOpt, as_json: JsonOpt = False) -> None:
    """Check an index without changing it: SQLite's integrity check of the catalog, the
    manifest, the lock file, and whether vectors.faiss is this index's own and current.
    Exit status 0 when sound, 1 when something is damaged (README, 'A damaged catalog', says
    what to do)."""
    from lookalike.index.check import check_index

    report = check_index(index)
    if as_json:
        typer.echo(json.dumps(report.to_dict()))
    else:
        state = "ok" if report.ok else "DAMAGED"
        count = "" if report.images is None else f" ({report.images} images)"
        typer.echo(f"{report.path}: {state}{count}")
        for line in report.problems:
            typer.echo(f"  problem: {line}")
        for line in report.notes:
            typer.echo(f"  note: {line}")
        if not report.ok:
            typer.echo("  see README, 'A damaged catalog', for the way out")
    if not report.ok:
        raise typer.Exit(1)
