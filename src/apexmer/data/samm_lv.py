"""SAMM Long Videos: the coding sheet (sheet ``FACS_Movement_Only``) and frames.

Header in row 1 (METHOD.md section 12): Subject (``006``, text with leading zeros),
Filename (``006_1_2`` = video ``006_1``, movement 2), Inducement Code, Onset, Apex, Offset,
Duration, Type (``Macro`` or ``Micro - 1/2``), Action Units, Notes. 171 macro rows hold
fractional frame numbers (``566.4``): rounded to the nearest frame with a warning (see
``long_videos``). 10 rows have onset 0 (Duration = Offset + 1): the expression starts at
the video's first frame; they are kept with a warning naming the row, so the published
counts come out (502 movements: 159 micro, 343 macro; 147 videos, 30 subjects).
Frames: ``ROOT/006_1/006_1_0001.jpg`` (four-digit frame number), 200 fps.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

from apexmer.data.frames import clip_location
from apexmer.data.long_videos import (
    Interval,
    LongVideo,
    LongVideoSet,
    attach_frames,
    interval_from_cells,
    parse_kind,
    videos_from_intervals,
)
from apexmer.data.sample import Problem
from apexmer.data.sheets import RowError, cell_text, frames_root, open_sheet, require_columns

DATASET = "samm-lv"
FPS = 200.0
SAMM_LV_SHEET = "FACS_Movement_Only"
SAMM_LV_COLUMNS = ("Subject", "Filename", "Onset", "Apex", "Offset", "Type")
SAMM_LV_FIX = "use the original SAMM Long Videos coding sheet (sheet FACS_Movement_Only)"
_FILENAME = re.compile(r"^(\d+_\d+)_(\d+)$")


def samm_lv_subject(value: object) -> str:
    """``"006"`` (text) or ``6`` (a number cell) -> ``"006"``; else RowError."""
    text = cell_text(value)
    if not text.isdigit():
        raise RowError(f"Subject {text!r} is not a subject number. Fix: write e.g. 006")
    return f"{int(text):03d}"


def read_samm_lv(coding: str | Path, root: str | Path | None = None) -> LongVideoSet:
    """Read the SAMM Long Videos sheet into a LongVideoSet (one LongVideo per ``006_1``).

    ``root`` is the folder holding ``006_1, 006_2, ...``; with it each video's frames are
    found, counted and checked, and frame folders that no row codes become videos without
    intervals (a warning: their spotted intervals count as false positives).
    """
    coding = Path(coding)
    source = str(coding)
    table = open_sheet(
        coding, SAMM_LV_SHEET, header_row=None, header_keys=SAMM_LV_COLUMNS[:3], fix=SAMM_LV_FIX
    )
    require_columns(table, SAMM_LV_COLUMNS, coding, SAMM_LV_FIX)
    problems: list[Problem] = []
    warnings: list[Problem] = []
    grouped: dict[tuple[str, str], list[Interval]] = defaultdict(list)
    for row, cells in table.iterrows():
        try:
            subject = samm_lv_subject(cells["Subject"])
            name = cell_text(cells["Filename"])
            m = _FILENAME.match(name)
            if m is None:
                raise RowError(
                    f"Filename {name!r} is not <video>_<movement>. Fix: write e.g. 006_1_2"
                )
            interval, notes = interval_from_cells(
                cells["Onset"],
                cells["Apex"],
                cells["Offset"],
                parse_kind(cells["Type"], "Type"),
                onset_zero_is_first=True,
                action_units=cell_text(cells.get("Action Units")),
                row=int(row),
                name=name,
            )
        except RowError as exc:
            problems.append(Problem(source, str(exc), row=int(row)))
            continue
        video = m.group(1)
        if not video.startswith(subject + "_"):
            notes.append(f"Filename {name} does not start with Subject {subject}; kept")
        grouped[(subject, video)].append(interval)
        warnings += [Problem(source, n, row=int(row)) for n in notes]
    videos = videos_from_intervals(DATASET, FPS, grouped)
    folder = frames_root(root, "pass the folder that holds 006_1, 006_2, ...")
    if folder is not None:
        videos, found, warned = _with_frames(videos, folder)
        problems += found
        warnings += warned
    return LongVideoSet(videos, DATASET, source, problems, warnings)


def _with_frames(
    videos: list[LongVideo], root: Path
) -> tuple[list[LongVideo], list[Problem], list[Problem]]:
    coded = {v.video for v in videos}
    extra = [
        LongVideo(DATASET, p.name.split("_")[0], p.name, None, FPS)
        for p in sorted(root.iterdir())
        if p.is_dir() and re.fullmatch(r"\d+_\d+", p.name) and p.name not in coded
    ]
    warnings = []
    if extra:
        warnings.append(
            Problem(
                str(root),
                f"{len(extra)} frame folder(s) have no coded movement; kept as videos without "
                "intervals (their spotted intervals count as false positives): "
                + ", ".join(v.video for v in extra),
            )
        )
    out: list[LongVideo] = []
    problems: list[Problem] = []
    for video in sorted(videos + extra, key=lambda v: v.video):
        attached, issues = attach_frames(video, clip_location(root / video.video))
        out.append(attached)
        problems += issues
    return out, problems, warnings
