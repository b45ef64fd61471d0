"""The ``apexmer`` command. Each area registers its commands from its own module."""

from __future__ import annotations

import importlib
import sys
import warnings

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
    "compare",
    "inference",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(__version__)
        raise typer.Exit()


# ``apexmer --verbose``: third-party messages and tracebacks of unexpected errors shown.
_VERBOSE = {"on": False}


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
    verbose: bool = typer.Option(
        False,
        "--verbose",
        help="Show what FFmpeg, OpenCV and other libraries print themselves (warnings "
        "included), and the traceback of an unexpected error.",
    ),
) -> None:
    """apexmer command line."""
    _VERBOSE["on"] = verbose
    if not verbose:
        from apexmer.data.frames import quiet_decoders

        quiet_decoders()
        # Other libraries' warnings (torch, timm, sklearn...); apexmer's own stay.
        warnings.filterwarnings("ignore", module=r"^(?!apexmer)")


# The base of click's errors (typer >= 0.20 vendors click: found by name, not imported).
_CLICK_ERROR = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")

for _name in COMMAND_MODULES:
    importlib.import_module(f"apexmer.cli.{_name}").register(app)
use_help_classes(app)  # clean help for every command (cli/help.py)


def main() -> None:
    """Entry point: user-facing errors print one clear line and exit 2, no traceback (a
    usage error too: an unknown option, a missing one, a value of the wrong type)."""
    try:
        code = app(standalone_mode=False)
    except _CLICK_ERROR as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # bare `apexmer data`: its help
            exc.show()
            sys.exit(exc.exit_code)
        ctx = getattr(exc, "ctx", None)
        where = f"{ctx.command_path}: " if ctx is not None else ""
        fix = f" Fix: see {ctx.command_path} --help" if ctx is not None else ""
        message = " ".join(exc.format_message().split()).rstrip(".")  # one line
        typer.secho(f"error: {where}{message}.{fix}", err=True, fg=typer.colors.RED)
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):  # Ctrl-C
        typer.echo("Aborted!", err=True)
        sys.exit(1)
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
    except Exception as exc:  # a bug: one line, the traceback with --verbose
        if _VERBOSE["on"]:
            raise
        typer.secho(
            f"error: unexpected {type(exc).__name__}: {' '.join(str(exc).split())}. Fix: "
            "this is a bug in apexmer; run again as `apexmer --verbose ...` for the "
            "traceback and report it",
            err=True,
            fg=typer.colors.RED,
        )
        sys.exit(1)
    if isinstance(code, int) and code:  # typer.Exit(code) comes back as the return value
        sys.exit(code)
