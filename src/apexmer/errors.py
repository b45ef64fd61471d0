"""Exceptions that carry a user-facing message: what was wrong, where, and how to fix it."""

from __future__ import annotations

from pathlib import Path


class ApexmerError(Exception):
    """Base class. The CLI prints ``str(error)`` without a traceback."""


class DataError(ApexmerError, ValueError):
    """Bad input data: a coding sheet, a manifest, a frame folder, an image."""

    def __init__(
        self,
        message: str,
        file: str | Path | None = None,
        row: int | None = None,
        fix: str | None = None,
    ) -> None:
        self.file = str(file) if file is not None else None
        self.row = row
        self.fix = fix
        where = ""
        if self.file is not None:
            where = f"{self.file}"
            if row is not None:
                where += f", row {row}"
            where += ": "
        text = where + message
        if fix:
            text += f" Fix: {fix}"
        super().__init__(text)
        self.message = message


class FrameError(DataError):
    """A frame or video could not be read."""


class NoFaceError(ApexmerError):
    """No face was found where one was needed."""


class ConfigError(ApexmerError, ValueError):
    """An invalid configuration or override."""


class WeightsError(ApexmerError, ValueError):
    """A weights file does not fit the network."""
