"""Checks of the command line's options at the edge: each numeric option has a range, each
choice its values, and a value outside them is a one-line error naming the option
(``--port 70000 is out of range ...``), never a library class or a Python argument.

Use as typer callbacks: ``typer.Option(3, "--lag", callback=in_range(1))``. Each callback
keeps its range (``low``, ``high``, ``low_open``, ``high_open``) or choices as attributes,
so tests can read every option's range back from the app (typer keeps them on the
wrapped callback).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import typer

from apexmer.data.frames import MAX_FPS, check_fps
from apexmer.errors import ConfigError

Callback = Callable[[typer.CallbackParam, Any], Any]


def option_name(param: typer.CallbackParam) -> str:
    """The name a user typed for ``param``: its long option (``--max-frames``)."""
    longs = [o for o in param.opts if o.startswith("--")]
    return longs[-1] if longs else (param.opts[0] if param.opts else str(param.name))


def _describe(integer: bool, low: float | None, high: float | None, lo: bool, ho: bool) -> str:
    kind = "an integer" if integer else "a number"
    if low is not None and high is not None:
        if integer and not lo and not ho:
            return f"{kind} in {low}..{high}"
        return f"{kind} in {'(' if lo else '['}{low}, {high}{')' if ho else ']'}"
    if low is not None:
        return f"{kind} {'>' if lo else '>='} {low}"
    if high is not None:
        return f"{kind} {'<' if ho else '<='} {high}"
    return f"a finite {'integer' if integer else 'number'}"


def in_range(
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
    hint: str = "",
) -> Callback:
    """A callback refusing values outside ``low``..``high`` (open ends with ``*_open``),
    NaN and infinities; None (an optional option not given) passes. ``hint`` follows the
    range in the message, e.g. ``"(the paper uses 3)"``."""

    def check(param: typer.CallbackParam, value: Any) -> Any:
        values = value if isinstance(value, (list, tuple)) else [value]
        for v in values:
            if v is None:
                continue
            inside = math.isfinite(v)
            if inside and low is not None:
                inside = v > low if low_open else v >= low
            if inside and high is not None:
                inside = v < high if high_open else v <= high
            if not inside:
                wanted = _describe(isinstance(v, int), low, high, low_open, high_open)
                raise ConfigError(
                    f"{option_name(param)} {v!r} is out of range. Fix: use {wanted}"
                    + (f" {hint}" if hint else "")
                )
        return value

    check.low, check.high = low, high  # type: ignore[attr-defined]
    check.low_open, check.high_open = low_open, high_open  # type: ignore[attr-defined]
    return check


def frame_rate(param: typer.CallbackParam, value: float | None) -> float | None:
    """``--fps``: None (the video's own) or a valid frame rate (``data.frames.check_fps``:
    "not a valid frame rate", unlike a rate that is unknown)."""
    return check_fps(value, option_name(param))


frame_rate.low, frame_rate.high = 0.0, MAX_FPS  # type: ignore[attr-defined]
frame_rate.low_open, frame_rate.high_open = True, False  # type: ignore[attr-defined]


def one_of(choices: Sequence[str]) -> Callback:
    """A callback refusing a value that is not one of ``choices`` (case as given)."""

    def check(param: typer.CallbackParam, value: Any) -> Any:
        if value is not None and value not in choices:
            raise ConfigError(
                f"{option_name(param)} {value!r} is not known. Fix: use one of {', '.join(choices)}"
            )
        return value

    check.choices = tuple(choices)  # type: ignore[attr-defined]
    return check


# Shared ranges. A count of things (workers, subjects) is at least 1; frame numbers >= 0.
COUNT = in_range(1)
FRAME_NUMBER = in_range(0)
SEED = in_range(0, 2**32 - 1)  # numpy's seed range
POSITIVE = in_range(0, low_open=True)
NON_NEGATIVE = in_range(0)
LAG = in_range(1, hint="frames (the paper uses 3)")
PORT = in_range(0, 65535)
# Subject resamples of the bootstrap intervals (0: none); a million is minutes of work.
RESAMPLES = in_range(0, 1_000_000)
CONFIDENCE = in_range(0, 1, low_open=True, high_open=True)
