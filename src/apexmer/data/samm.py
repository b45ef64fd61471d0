"""SAMM coding sheet reader (``SAMM_Micro_FACS_Codes_v2.xlsx``, sheet ``MICRO_ONLY``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from apexmer.data.casme2 import (
    RowError,
    cell_text,
    frame_column,
    frame_triplet,
    frames_root,
    open_sheet,
    require_columns,
)
from apexmer.data.labels import SAMM_EMOTIONS, class_names, label_map
from apexmer.data.sample import Problem, Sample, SampleSet

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
    names = ("Onset Frame", "Apex Frame", "Offset Frame")
    frames = {n: frame_column(table, n, allow_slash=n == "Apex Frame") for n in names}
    samples: list[Sample] = []
    problems: list[Problem] = []
    seen: set[str] = set()
    for row, cells in table.iterrows():
        try:
            subject = samm_subject(cells["Subject"])
            clip = cell_text(cells["Filename"])
            if not clip:
                raise RowError("Filename is empty. Fix: write the clip folder name, e.g. 006_1_2")
            onset, apex, offset = frame_triplet(frames, row, names)
            emotion = cell_text(cells["Estimated Emotion"]).lower()
            if emotion not in SAMM_EMOTIONS:
                raise RowError(
                    f"unknown emotion {emotion!r}. Fix: use one of "
                    f"{', '.join(e.capitalize() for e in SAMM_EMOTIONS)}"
                )
            if f"{subject}/{clip}" in seen:
                raise RowError(f"{subject} {clip} appears twice. Fix: delete the duplicate row")
        except RowError as exc:
            problems.append(Problem(str(coding), str(exc), row=int(row)))
            continue
        seen.add(f"{subject}/{clip}")
        if emotion not in mapping:
            continue
        extra = {"row": int(row)}
        for column in ("Inducement Code", "Objective Classes", "Micro", "Notes"):
            if column in table.columns and cell_text(cells[column]):
                extra[column.lower().replace(" ", "_")] = cell_text(cells[column])
        samples.append(
            Sample(
                dataset="samm",
                subject=subject,
                clip=clip,
                label=mapping[emotion],
                frames=root / subject / clip if root is not None else None,
                onset=onset,
                apex=apex,
                offset=offset,
                emotion=emotion,
                action_units=cell_text(cells.get("Action Units")),
                extra=extra,
            )
        )
    result = SampleSet(samples, class_names(mapping), "samm-v2", str(coding), problems)
    if root is not None:
        from apexmer.data.readers import check_frames  # readers imports this module

        result = check_frames(result)
    return result
