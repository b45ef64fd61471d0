"""Exceptions that carry a user-facing message: what was wrong, where, and how to fix it."""

from __future__ import annotations

from collections.abc import Sequence
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


class NonFiniteTraining(ApexmerError):
    """Training produced a NaN or infinite loss or weight: it stops, and nothing (model,
    checkpoint, fold record) is written from it. ``epoch``, ``fold`` and the first training
    sample whose network input is not finite (when one is: ``sample``, its key, or
    ``sample_index``, its position in the training set) say where."""

    def __init__(
        self,
        what: str,
        epoch: int,
        *,
        fold: str | None = None,
        sample: str | None = None,
        sample_index: int | None = None,
    ) -> None:
        self.what, self.epoch, self.fold = what, epoch, fold
        self.sample, self.sample_index = sample, sample_index
        where = f"fold {fold}, " if fold is not None else ""
        if sample is None and sample_index is not None:
            sample = f"number {sample_index} of the training set"
        if sample is not None:
            cause = f"; the first training sample with a non-finite input is {sample}"
            self.fix = "check or re-create that sample's input file, or delete its row"
        else:
            cause = "; every training input is finite (the training diverged)"
            self.fix = "lower optim.lr, or set train.amp=none"
        super().__init__(
            f"training stopped at {where}epoch {epoch}: {what}{cause}; nothing was written. "
            f"Fix: {self.fix}"
        )

    def __reduce__(self):  # the keyword arguments survive pickling (process, ray executors)
        return (_non_finite, (self.what, self.epoch, self.fold, self.sample, self.sample_index))

    def named(self, fold: str | None, keys: Sequence[str]) -> NonFiniteTraining:
        """The same error with the fold's name and the sample's key (``keys``: the training
        set's sample keys, which the caller knows and the engine does not)."""
        sample = self.sample
        if sample is None and self.sample_index is not None:
            sample = keys[self.sample_index]
        return NonFiniteTraining(
            self.what, self.epoch, fold=fold, sample=sample, sample_index=self.sample_index
        )


def _non_finite(
    what: str, epoch: int, fold: str | None, sample: str | None, index: int | None
) -> NonFiniteTraining:
    return NonFiniteTraining(what, epoch, fold=fold, sample=sample, sample_index=index)
