"""The ``apexmer`` command. Each area registers its commands from its own module."""

from __future__ import annotations

import importlib
import sys

import typer

from apexmer import __version__
from apexmer.cli.help import use_help_classes
from apexmer.errors import ApexmerError

app = typer.Typer(
    name="apexmer",
    help="Micro-expression recognition: spot the apex, align the face, classify, evaluate LOSO.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Modules under apexmer.cli that define ``register(app)``; each owns its commands.
COMMAND_MODULES = (
    "synth",
    "data",
    "preprocess",
    "spotting",
    "models",
    "experiment",
    "inference",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(__version__)
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """apexmer command line."""


for _name in COMMAND_MODULES:
    importlib.import_module(f"apexmer.cli.{_name}").register(app)
use_help_classes(app)  # clean help for every command (cli/help.py)


def main() -> None:
    """Entry point: user-facing errors print one clear line and exit 2, no traceback."""
    try:
        app()
    except ApexmerError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        sys.exit(2)
    except OSError as exc:  # the file system said no: a path under a file, a full disk...
        where = f"{exc.filename}: " if exc.filename else ""
        typer.secho(
            f"error: {where}{exc.strerror or exc}. Fix: check the path and that it is writable",
            err=True,
            fg=typer.colors.RED,
        )
        sys.exit(2)
