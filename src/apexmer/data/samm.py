"""SAMM coding sheet reader (``SAMM_Micro_FACS_Codes_v2.xlsx``, sheet ``MICRO_ONLY``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from apexmer.data.checks import check_frames
from apexmer.data.labels import SAMM_EMOTIONS, class_names, label_map
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

SAMM_SHEET = "MICRO_ONLY"
SAMM_COLUMNS = (
    "Subject",
    "Filename",
    "Onset Frame",
    "Apex Frame",
    "Offset Frame",
    "Estimated Emotion",
)
SAMM_FIX = "use the original SAMM_Micro_FACS_Codes_v2.xlsx (sheet MICRO_ONLY)"


def samm_subject(value: Any) -> str:
    """``6`` or ``"006"`` -> ``"006"`` (the frame folder's name); else RowError."""
    text = cell_text(value)
    if not text.isdigit():
        raise RowError(
            f"Subject {text!r} is not a subject number. "
            "Fix: write the integer subject, e.g. 6 for folder 006"
        )
    return f"{int(text):03d}"


def read_samm(
    coding: str | Path, root: str | Path | None = None, classes: str = "5class"
) -> SampleSet:
    """Read the SAMM sheet into a SampleSet (``classes``: 5class, 3class, all).

    The header row is found among the first 30 rows (the v2 sheet has 13 rows of notes
    above it). Emotions are lower-cased before the label map; those outside the task are
    dropped; bad rows go to ``problems``. With ``root`` frames are ``root/006/006_1_2``
    (one image per frame, named with the absolute frame number) and are checked.
    """
    coding = Path(coding)
    mapping = label_map("samm", classes)
    root = frames_root(root, "pass the folder that holds 006, 007, ...")
    table = open_sheet(coding, sheet=SAMM_SHEET, header_row=None, fix=SAMM_FIX)
    require_columns(table, SAMM_COLUMNS, coding, SAMM_FIX)
    samples, problems = samples_from_sheet(table, coding, SAMM_SPEC, mapping, root)
    result = SampleSet(samples, class_names(mapping), "samm-v2", str(coding), problems)
    if root is not None:
        result = check_frames(result)
    return result


SAMM_SPEC = SheetSpec(
    dataset="samm",
    subject=samm_subject,
    frame_columns=("Onset Frame", "Apex Frame", "Offset Frame"),
    emotions=SAMM_EMOTIONS,
    emotion_hint=", ".join(e.capitalize() for e in SAMM_EMOTIONS),
    clip_example="006_1_2",
    extra_columns=("Inducement Code", "Objective Classes", "Micro", "Notes"),
)
