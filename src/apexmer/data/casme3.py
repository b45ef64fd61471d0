"""CAS(ME)^3 Part A label sheet reader (``cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx``).

The sheet (METHOD.md section 13): sheet ``label``, header in row 1, columns Subject
(``spNO.1``), Filename (the video's letter: ``a``, ``b``, ``e``...), Onset, Apex, Offset
(indices of that video's JPG frames), AU (``R12``, ``4+7``), Objective class (roman
numerals I..VII) and emotion (lower case, 3 rows spelled ``Others``). One video can hold
several micro-expressions, so a sample's clip is ``<video>_<onset>_<offset>`` (``a_157_175``)
and ``extra["video"]`` keeps the letter.

An Offset of 0 means "not coded" (as in CAS(ME)^2): the row is kept with a warning, its
offset completed as ``apex + (apex - onset)`` (``sheets.mirrored_offset``; the clip name
uses that offset) and flagged ``extra["offset_not_coded"]``; without an apex it cannot be
completed and is a problem. An onset after a (coded) offset stays a problem.

Frames: releases differ (colour and depth frames per video, or colour only). ``layout`` is
the frame folder under ``root`` as a template with ``{subject}`` and ``{video}``; by default
``{subject}/{video}/color`` is tried first, then ``{subject}/{video}`` (one image per JPG
index, e.g. ``spNO.1/a/color/157.jpg``).
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Any

from apexmer.data.checks import check_frames
from apexmer.data.labels import CASME3_EMOTIONS, class_names, label_map
from apexmer.data.sample import SampleSet
from apexmer.data.sheets import (
    RowError,
    SheetSpec,
    cell_text,
    frames_root,
    open_sheet,
    require_columns,
    samples_from_sheet,
)
from apexmer.errors import DataError

CASME3_SHEET = "label"
CASME3_NAME = "cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx"
CASME3_COLUMNS = ("Subject", "Filename", "Onset", "Apex", "Offset", "emotion")
CASME3_FIX = f"use the original {CASME3_NAME} (sheet 'label', header in row 1)"
CASME3_LAYOUTS = ("{subject}/{video}/color", "{subject}/{video}")
_SUBJECT = re.compile(r"^sp\s*no\.?\s*(\d+)$", re.IGNORECASE)


def casme3_subject(value: Any) -> str:
    """``spNO.1`` (or ``1``, ``spno.01``) -> ``spNO.1`` (the frame folder's name)."""
    text = cell_text(value)
    match = _SUBJECT.match(text) if not text.isdigit() else None
    if not (text.isdigit() or match):
        raise RowError(f"Subject {text!r} is not a subject id. Fix: write it as spNO.<number>")
    return f"spNO.{int(text if text.isdigit() else match.group(1))}"


def read_casme3(
    coding: str | Path,
    root: str | Path | None = None,
    classes: str = "7class",
    layout: str | None = None,
) -> SampleSet:
    """Read the CAS(ME)^3 Part A sheet into a SampleSet.

    ``classes``: 7class (= all: anger, disgust, fear, happy, others, sad, surprise), 4class
    (negative, positive, surprise, others) or 3class (others dropped). Column names are
    matched case-insensitively. With ``root`` the frames are checked; ``layout`` (e.g.
    ``"{subject}/{video}/color"``) replaces the default layouts tried in order.
    """
    coding = Path(coding)
    mapping = label_map("casme3", classes)
    layouts = CASME3_LAYOUTS if layout is None else (check_layout(layout),)
    root = frames_root(root, "pass the folder that holds spNO.1, spNO.2, ...")
    table = open_sheet(coding, sheet=CASME3_SHEET, header_row=1, fix=CASME3_FIX)
    canonical = {c.lower(): c for c in (*CASME3_COLUMNS, "AU", "Objective class")}
    table.columns = [canonical.get(str(c).lower(), c) for c in table.columns]
    require_columns(table, CASME3_COLUMNS, coding, CASME3_FIX)
    spec = replace(CASME3_SPEC, layouts=layouts)
    samples, problems = samples_from_sheet(table, coding, spec, mapping, root)
    result = SampleSet(samples, class_names(mapping), "casme3-partA-v2", str(coding), problems)
    if root is not None:
        result = check_frames(result)
    return result


def check_layout(layout: str) -> str:
    """``layout`` if it is a relative template naming ``{video}``; else DataError."""
    fix = "use a relative template like {subject}/{video}/color or {subject}/{video}"
    try:
        probe = layout.format(subject="spNO.1", video="a")
    except (KeyError, IndexError, ValueError) as exc:
        raise DataError(f"layout {layout!r} has an unknown field ({exc})", fix=fix) from None
    if "{video}" not in layout or Path(probe).is_absolute() or ".." in Path(probe).parts:
        raise DataError(f"layout {layout!r} must be relative and contain {{video}}", fix=fix)
    return layout


CASME3_SPEC = SheetSpec(
    dataset="casme3",
    subject=casme3_subject,
    frame_columns=("Onset", "Apex", "Offset"),
    emotions=CASME3_EMOTIONS,
    emotion_hint=", ".join(CASME3_EMOTIONS),
    clip_example="a (the video's letter)",
    extra_columns=("Objective class",),
    emotion_column="emotion",
    au_column="AU",
    clip_name=lambda video, onset, offset: f"{video}_{onset}_{offset}",
    layouts=CASME3_LAYOUTS,
    offset_zero_not_coded=True,
)
