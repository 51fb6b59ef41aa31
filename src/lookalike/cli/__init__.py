"""The `lookalike` command. It parses, calls the Python API and prints; nothing else.

Commands live in modules of this package, one per area; each registers on `app`.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import click
import typer

from lookalike.errors import LookalikeError

app = typer.Typer(
    name="lookalike",
    help="Find the photos that look like a query photo (CNN descriptors + FAISS).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
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
        check,  # noqa: F401
        core,  # noqa: F401
        evaluate,  # noqa: F401
        serve,  # noqa: F401
        train,  # noqa: F401
        words,  # noqa: F401
    )


# What --help shows in place of a value's type (typer's own "<str>", "<list[Path]>").
_METAVARS = {"str": "TEXT", "int": "N", "float": "NUMBER", "Path": "PATH"}
_ARGUMENT_NAMES = {"dirs": "FOLDER"}


def _tidy_help(command: click.Command) -> None:
    """Plain metavars in --help: nothing after a flag (no "<bool>", --help included),
    PATH/TEXT/N after an option's value, and arguments by name (FOLDER..., QUERY)."""
    for sub in (getattr(command, "commands", None) or {}).values():
        _tidy_help(sub)
    for param in command.params:
        if param.param_type_name == "argument":
            name = _ARGUMENT_NAMES.get(param.name, param.name.upper())
            shown = name + ("..." if param.nargs != 1 else "")
            param.metavar = name
            param.display_type_rich = lambda ctx: None
            param._rich_display_name = lambda shown=shown: shown
            param._usage_display_name = lambda shown=shown: shown
        elif param.metavar is None:
            if getattr(param, "is_flag", False) or getattr(param, "count", False):
                param.metavar = ""
            else:
                bare = param.bare_type() if hasattr(param, "bare_type") else ""
                param.metavar = _METAVARS.get(bare, bare.upper() or "VALUE")
    make_help_option = command.get_help_option

    def get_help_option(ctx: click.Context) -> click.Option | None:
        option = make_help_option(ctx)
        if option is not None:
            option.metavar = ""
        return option

    command.get_help_option = get_help_option  # type: ignore[method-assign]


def command() -> click.Command:
    """The click command behind `app`, every command registered, with tidy help."""
    _register()
    cmd = typer.main.get_command(app)
    _tidy_help(cmd)
    return cmd


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        command()(prog_name="lookalike")
    except LookalikeError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
