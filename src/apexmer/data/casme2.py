"""CASME II coding sheet reader (``CASME2-coding-20140508.xlsx`` / ``-20190701.xlsx``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from apexmer.data.checks import check_frames
from apexmer.data.labels import CASME2_EMOTIONS, class_names, label_map
from apexmer.data.sample import Problem, SampleSet
from apexmer.data.sheets import (
    RowError,
    SheetSpec,
    cell_text,
    frames_root,
    open_sheet,
    require_columns,
    samples_from_sheet,
)

CASME2_COLUMNS = (
    "Subject",
    "Filename",
    "OnsetFrame",
    "ApexFrame",
    "OffsetFrame",
    "Estimated Emotion",
)
CASME2_FIX = "use the original CASME2-coding-*.xlsx (first sheet, header in row 1)"


def casme2_subject(value: Any) -> str:
    """``1`` or ``"sub01"`` -> ``"sub01"``; anything else raises RowError."""
    text = cell_text(value)
    digits = text[3:] if text.lower().startswith("sub") else text
    if not digits.isdigit():
        raise RowError(
            f"Subject {text!r} is not a subject number. Fix: write the integer subject (1..26)"
        )
    return f"sub{int(digits):02d}"


def read_casme2(
    coding: str | Path, root: str | Path | None = None, classes: str = "5class"
) -> SampleSet:
    """Read a CASME II coding sheet into a SampleSet (``classes``: 5class, 3class, all).

    The 2019 sheet (with ``Objective Classes``) gives coding_version ``casme2-2019``, the
    2014 sheet ``casme2-2014``. Emotions outside the task (sadness, fear for 5class) are
    dropped; bad rows go to ``problems`` with their 1-based row. With ``root`` each sample's
    frames are ``root/sub01/EP02_01f`` and are checked (``checks.check_frames``).
    """
    coding = Path(coding)
    mapping = label_map("casme2", classes)
    root = frames_root(
        root, "pass the folder that holds sub01, sub02, ... (e.g. CASME2_RAW_selected)"
    )
    table = open_sheet(coding, sheet=0, header_row=1, fix=CASME2_FIX)
    require_columns(table, CASME2_COLUMNS, coding, CASME2_FIX)
    version = "casme2-2019" if "Objective Classes" in table.columns else "casme2-2014"
    samples, problems = samples_from_sheet(table, coding, CASME2_SHEET, mapping, root)
    named = {"20140508": "casme2-2014", "20190701": "casme2-2019"}
    by_name = next((v for date, v in named.items() if date in coding.name), None)
    if by_name is not None and by_name != version:
        problems.append(
            Problem(
                str(coding),
                (
                    f"the file name says {by_name} but the columns say {version} (the 2019 "
                    f"sheet has 'Objective Classes'); {version} is recorded. Fix: check which "
                    "sheet this is; the two differ in three subject-24 labels"
                ),
            )
        )
    result = SampleSet(samples, class_names(mapping), version, str(coding), problems)
    if root is not None:
        result = check_frames(result)
    return result


CASME2_SHEET = SheetSpec(
    dataset="casme2",
    subject=casme2_subject,
    frame_columns=("OnsetFrame", "ApexFrame", "OffsetFrame"),
    emotions=CASME2_EMOTIONS,
    emotion_hint=", ".join(CASME2_EMOTIONS),
    clip_example="EP02_01f",
    extra_columns=("Objective Classes",),
)
