"""Typed records shared by every reader and stage."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal


@dataclass(frozen=True)
class Sample:
    """One micro-expression clip, or (from a manifest) its already-cropped frames.

    Frame numbers (``onset``, ``apex``, ``offset``) are the absolute numbers in the frame
    file names (``img46.jpg`` is 46); for a video they are 0-based frame indices.
    """

    dataset: str  # "casme2", "samm", "smic", "megc", or a manifest's own
    subject: str  # folder-style id: "sub01", "006", "s01"
    clip: str  # "EP02_01f", "006_1_2", "s01_ne_01"
    label: str  # class after the label map, e.g. "happiness", "negative"
    frames: Path | None = None  # frame folder or video file; None when no root was given
    onset: int | None = None
    apex: int | None = None  # labelled apex; None where unknown (SMIC, CASME II "/")
    offset: int | None = None
    emotion: str = ""  # the sheet's own label before mapping
    action_units: str = ""  # as written in the sheet, e.g. "4+7", "R12"
    apex_path: Path | None = None  # manifest only: aligned crop of the apex frame
    onset_path: Path | None = None  # manifest only: aligned crop of the onset frame
    mid_path: Path | None = None  # manifest only: frame midway between onset and apex
    apex_spotted: int | None = None  # manifest only: apex found by the spotter
    # manifest only: onset->apex (and onset->mid) optical flow: a float16 .npy (H, W, C)
    # written by preprocessing, or an 8-bit (u, v, strain) image as STSTNet/HTNet ship them
    flow_path: Path | None = None
    flow_mid_path: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def key(self) -> str:
        """Unique id within a corpus: ``dataset/subject/clip``."""
        return f"{self.dataset}/{self.subject}/{self.clip}"

    @property
    def group(self) -> str:
        """LOSO group: ``dataset/subject`` (subjects of different corpora never merge)."""
        return f"{self.dataset}/{self.subject}"

    def with_(self, **changes: Any) -> Sample:
        return replace(self, **changes)


@dataclass(frozen=True)
class Problem:
    """A per-sample or per-row problem, reported instead of raised."""

    file: str
    message: str  # what is wrong and how to fix it
    row: int | None = None  # 1-based spreadsheet/CSV row, header counted
    sample: str | None = None  # Sample.key where known
    # "error": the row or sample was left out. "warning": it was kept, but something in it
    # is known to be wrong (e.g. a coded apex outside onset..offset) and was worked around.
    level: Literal["error", "warning"] = "error"

    def __str__(self) -> str:
        where = self.file + (f", row {self.row}" if self.row is not None else "")
        who = f" [{self.sample}]" if self.sample else ""
        return f"{where}{who}: {self.message}"

    @property
    def is_warning(self) -> bool:
        return self.level == "warning"

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "row": self.row,
            "sample": self.sample,
            "level": self.level,
            "message": self.message,
        }


@dataclass
class SampleSet:
    """What every reader returns: the samples, their classes, the sheet version, problems."""

    samples: list[Sample]
    classes: tuple[str, ...]  # class names in label-index order
    coding_version: str  # e.g. "CASME2-coding-20190701"; recorded with every run
    source: str  # the coding sheet or manifest this came from
    problems: list[Problem] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.samples)

    def __iter__(self):
        return iter(self.samples)

    @property
    def subjects(self) -> list[str]:
        return sorted({s.subject for s in self.samples})

    @property
    def datasets(self) -> list[str]:
        return sorted({s.dataset for s in self.samples})

    def class_counts(self) -> dict[str, int]:
        counts = Counter(s.label for s in self.samples)
        return {c: counts.get(c, 0) for c in self.classes}

    def label_index(self, label: str) -> int:
        return self.classes.index(label)

    @property
    def errors(self) -> list[Problem]:
        """Problems that left a row or sample out."""
        return [p for p in self.problems if not p.is_warning]

    @property
    def warnings(self) -> list[Problem]:
        """Problems of samples that were kept (flagged, see ``Problem.level``)."""
        return [p for p in self.problems if p.is_warning]

    def summary(self) -> dict[str, Any]:
        """The ``apexmer data summary --json`` payload: ``problems`` lists what was left
        out, ``warnings`` what was kept but flagged."""
        return {
            "samples": len(self.samples),
            "subjects": len(self.subjects),
            "classes": self.class_counts(),
            "coding_version": self.coding_version,
            "problems": [str(p) for p in self.errors],
            "warnings": [str(p) for p in self.warnings],
        }
