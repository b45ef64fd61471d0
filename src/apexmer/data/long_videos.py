"""Records of long videos (the MEGC spotting task): a video, its fps and its coded intervals.

Frame numbers are those of the frame files (CAS(ME)^2 ``img1.jpg`` is 1, SAMM Long Videos
``006_1_0001.jpg`` is 1); an interval ``[onset, offset]`` is inclusive at both ends. What a
coding sheet publishes that is not a plain frame number is kept and reported, never dropped
silently:

- an offset of 0 (CAS(ME)^2: "not coded", 44 rows) gives ``offset=None`` and a warning;
  ``coded_span`` says how evaluation completes such an interval;
- an apex of 0 or none gives ``apex=None`` and a warning;
- an onset of 0 (SAMM Long Videos: 10 rows, Duration = Offset + 1) means the expression
  starts at the video's first frame: kept with a warning (``FIRST_FRAME``), elsewhere
  (CAS(ME)^2) an onset of 0 is a problem;
- a fractional frame number (SAMM Long Videos: 171 macro rows, e.g. ``566.4``) is rounded
  to the nearest frame, halves up, with a warning naming the row and the published values.

A row that cannot be placed at all (no onset, an unknown video, an unknown type) is a
*problem*: reported with its 1-based sheet row, and the row is left out.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from apexmer.data.frames import list_frames
from apexmer.data.sample import Problem
from apexmer.data.sheets import RowError, cell_text, mirrored_offset, offset_not_coded_note
from apexmer.errors import FrameError

# Onset of an expression that starts at the video's first frame (SAMM Long Videos writes
# onset 0): replaced by the first frame's number when the frames are attached.
FIRST_FRAME = 0
Kind = Literal["micro", "macro"]
KINDS: tuple[Kind, ...] = ("micro", "macro")


@dataclass(frozen=True)
class Interval:
    """One coded (or spotted) expression: frames ``onset..offset`` inclusive."""

    onset: int
    apex: int | None
    offset: int | None  # None: not coded in the sheet (CAS(ME)^2 writes 0)
    kind: Kind
    action_units: str = ""  # as written, e.g. "4+10+14"
    emotion: str = ""  # CAS(ME)^2 emotion word; "" where the sheet has none (SAMM-LV)
    label: str = ""  # CAS(ME)^2 objective class (negative, positive, surprise, others)
    row: int | None = None  # 1-based sheet row it came from
    name: str = ""  # the sheet's own id: "anger1_1" (CAS(ME)^2), "006_1_2" (SAMM-LV)

    @property
    def length(self) -> int | None:
        """Frames in the interval, both ends counted; None when the offset is unknown."""
        return None if self.offset is None else self.offset - self.onset + 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "onset": self.onset,
            "apex": self.apex,
            "offset": self.offset,
            "action_units": self.action_units,
            "emotion": self.emotion,
            "label": self.label,
            "row": self.row,
        }


def coded_span(interval: Interval) -> tuple[int, int] | None:
    """``(onset, offset)`` used to score a coded interval, or None when it cannot be scored.

    An interval without an offset (CAS(ME)^2 offset 0) is completed by mirroring its rise
    (``sheets.mirrored_offset``: ``offset = apex + (apex - onset)``, the convention of
    published MEGC spotting code for these rows); without an apex too it cannot be scored
    (None: the caller reports it).
    """
    if interval.offset is not None:
        return interval.onset, interval.offset
    offset = mirrored_offset(interval.onset, interval.apex)
    return None if offset is None else (interval.onset, offset)


@dataclass(frozen=True)
class LongVideo:
    """One long video and every expression coded in it (sorted by onset)."""

    dataset: str  # "casme2-lv" or "samm-lv"
    subject: str  # frame folder of the subject: "s15" (CAS(ME)^2), "006" (SAMM-LV)
    video: str  # "15_0101" (CAS(ME)^2: folder number + video code), "006_1" (SAMM-LV)
    frames: Path | None  # frame folder or video file; None without --root or when missing
    fps: float
    intervals: tuple[Interval, ...] = ()
    name: str = ""  # the video's name in the sheet where it has one: "disgust1"
    n_frames: int | None = None  # frames found on disk (None without frames)

    @property
    def key(self) -> str:
        return f"{self.dataset}/{self.subject}/{self.video}"

    def count(self, kind: Kind) -> int:
        return sum(1 for i in self.intervals if i.kind == kind)


def videos_from_intervals(
    dataset: str,
    fps: float,
    grouped: dict[tuple[str, str], list[Interval]],
    names: dict[tuple[str, str], str] | None = None,
) -> list[LongVideo]:
    """One LongVideo per (subject, video) of a sheet, its intervals sorted by onset (then
    sheet row), videos sorted by subject and video; no frames attached yet."""
    names = names or {}
    return [
        LongVideo(
            dataset,
            subject,
            video,
            None,
            fps,
            tuple(sorted(grouped[(subject, video)], key=lambda i: (i.onset, i.row or 0))),
            name=names.get((subject, video), ""),
        )
        for subject, video in sorted(grouped)
    ]


@dataclass
class LongVideoSet:
    """What a long-video reader returns: the videos, the sheet read, problems, warnings.

    ``problems``: rows left out, and frames that are missing or do not cover a coded
    interval (each with the fix); ``warnings``: rows kept with a published quirk handled
    (offset 0, fractional frames, apex not coded) and frame folders with no coded row.
    """

    videos: list[LongVideo]
    coding_version: str
    source: str
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.videos)

    def __iter__(self):
        return iter(self.videos)

    @property
    def subjects(self) -> list[str]:
        return sorted({v.subject for v in self.videos})

    def summary(self) -> dict[str, Any]:
        """The ``apexmer data summary --json`` payload of a long-video corpus."""
        kinds = Counter(i.kind for v in self.videos for i in v.intervals)
        return {
            "videos": len(self.videos),
            "expressions": sum(kinds.values()),
            "micro": kinds.get("micro", 0),
            "macro": kinds.get("macro", 0),
            "subjects": len(self.subjects),
            "offset_not_coded": sum(1 for v in self for i in v.intervals if i.offset is None),
            "videos_with_frames": sum(1 for v in self.videos if v.frames is not None),
            "fps": sorted({v.fps for v in self.videos}),
            "coding_version": self.coding_version,
            "problems": [str(p) for p in self.problems],
            "warnings": [str(p) for p in self.warnings],
        }


# ---------------------------------------------------------------- cells shared by the readers


def frame_cell(value: Any, column: str) -> tuple[int | None, str]:
    """A frame number cell: ``(number, note)``.

    Empty, ``0`` or ``-1`` give ``(None, "")`` (not coded); a fractional number is rounded to
    the nearest frame, halves up, and the note says so; text or a negative number raises
    RowError.
    """
    text = cell_text(value)
    if not text:
        return None, ""
    try:
        number = float(text)
    except ValueError:
        raise RowError(
            f"{column} {text!r} is not a frame number. Fix: write the frame file's number"
        ) from None
    if not math.isfinite(number) or number < -1:
        raise RowError(f"{column} {text!r} is not a frame number. Fix: correct the cell")
    if number in (0, -1):
        return None, ""
    if number.is_integer():
        return int(number), ""
    rounded = math.floor(number + 0.5)
    return rounded, f"{column} {text} rounded to {rounded}"


def interval_from_cells(
    onset_cell: Any,
    apex_cell: Any,
    offset_cell: Any,
    kind: Kind,
    onset_zero_is_first: bool = False,
    **fields: Any,
) -> tuple[Interval, list[str]]:
    """An Interval from three frame cells and the notes to report (rounding, offset or apex
    not coded); RowError when the row cannot be placed (no onset, onset after offset).

    ``onset_zero_is_first`` (SAMM Long Videos): an onset cell of 0 means the expression
    starts at the video's first frame (the sheet's Duration is then Offset + 1); it is kept
    as onset 0, a note says so, and ``attach_frames`` moves it to the first frame on disk.
    """
    onset, n_on = frame_cell(onset_cell, "onset")
    at_start = onset_zero_is_first and onset is None and _is_zero(onset_cell)
    if at_start:
        onset = FIRST_FRAME
    offset, n_off = frame_cell(offset_cell, "offset")
    try:  # an unusable apex does not stop the interval from being scored
        apex, n_apex = frame_cell(apex_cell, "apex")
        bad_apex = ""
    except RowError:
        apex, n_apex, bad_apex = None, "", cell_text(apex_cell)
    rounded = [n for n in (n_on, n_apex, n_off) if n]
    notes = ["fractional frame numbers: " + ", ".join(rounded)] if rounded else []
    if onset is None:
        raise RowError("onset is empty or 0. Fix: write the onset frame number")
    if at_start:
        notes.append("onset 0: the expression starts at the video's first frame; kept")
    if offset is None:
        notes.append(offset_not_coded_note(offset_cell, apex))
    elif onset > offset:
        raise RowError(f"onset {onset} is after offset {offset}. Fix: correct the frame numbers")
    if bad_apex:
        notes.append(f"apex {bad_apex!r} is not a frame number; kept without an apex")
    elif apex is None:
        notes.append(f"apex not coded ({cell_text(apex_cell) or 'empty'}); kept")
    if apex is not None and not (onset <= apex <= (offset if offset is not None else apex)):
        notes.append(f"apex {apex} is outside [{onset}, {offset}]; kept as published")
    return Interval(onset, apex, offset, kind, **fields), notes


def _is_zero(cell: Any) -> bool:
    text = cell_text(cell)
    try:
        return float(text) == 0
    except ValueError:
        return False


def parse_kind(value: Any, column: str = "type") -> Kind:
    """``macro-expression``/``Macro`` -> macro; ``micro-expression``/``Micro - 1/2`` -> micro."""
    text = cell_text(value).lower()
    for kind in KINDS:
        if text.startswith(kind):
            return kind
    raise RowError(
        f"{column} {cell_text(value)!r} is neither macro nor micro. "
        "Fix: write macro-expression / micro-expression (CAS(ME)^2) or Macro / Micro - 1/2 "
        "(SAMM Long Videos)"
    )


def attach_frames(video: LongVideo, location: Path | None) -> tuple[LongVideo, list[Problem]]:
    """``video`` with its frames folder and frame count, and what is wrong with them: a
    missing or empty folder (frames stay None) or a coded interval beyond the last frame."""
    if location is None:
        return video, []
    if location.is_file():  # a video file: counted by the spotter, not here
        return replace(video, frames=location), []
    try:
        numbers = [n for n, _ in list_frames(location)]
    except FrameError as exc:
        fix = f". Fix: {exc.fix}" if exc.fix else ""
        return video, [Problem(exc.file or str(location), f"{exc.message}{fix}", sample=video.key)]
    # onset 0 (SAMM Long Videos): the video's first frame, whatever number its file has
    intervals = tuple(
        replace(i, onset=numbers[0]) if i.onset == FIRST_FRAME else i for i in video.intervals
    )
    found = replace(video, frames=location, n_frames=len(numbers), intervals=intervals)
    problems = []
    for interval in intervals:
        end = interval.offset if interval.offset is not None else interval.onset
        if interval.onset < numbers[0] or end > numbers[-1]:
            problems.append(
                Problem(
                    str(location),
                    f"{interval.name or 'interval'} {interval.onset}..{interval.offset} lies "
                    f"outside the frames {numbers[0]}..{numbers[-1]} (coding row "
                    f"{interval.row}). Fix: check the frame folder is complete",
                    sample=video.key,
                )
            )
    return found, problems
