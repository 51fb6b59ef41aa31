"""The `lookalike` command. It parses, calls the Python API and prints; nothing else.

Commands live in modules of this package, one per area; each registers on `app`.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from lookalike.errors import LookalikeError

app = typer.Typer(
    name="lookalike",
    help="Find the photos that look like a query photo (CNN descriptors + FAISS).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

IndexOpt = Annotated[
    Path,
    typer.Option(
        "--index",
        "-i",
        envvar="LOOKALIKE_INDEX",
        help="Index directory (or set LOOKALIKE_INDEX).",
        show_default=False,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of text.")]


def _register() -> None:
    # Each module adds its commands to `app` when imported.
    from lookalike.cli import (
        core,  # noqa: F401
        evaluate,  # noqa: F401
        serve,  # noqa: F401
        words,  # noqa: F401
    )


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    _register()
    try:
        app()
    except LookalikeError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
