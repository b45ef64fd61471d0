"""Coding-sheet reading shared by the CASME II and SAMM readers: both sheets hold one row
per clip with an integer subject, the clip folder's name, onset/apex/offset frame numbers
as in the file names, action units and an estimated emotion.
"""

from __future__ import annotations

import math
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from openpyxl.utils.exceptions import InvalidFileException

from apexmer.data.frames import clip_location
from apexmer.data.sample import Problem, Sample
from apexmer.errors import DataError


class RowError(ValueError):
    """One sheet row is unusable; the reader turns it into a Problem and skips the row."""


def open_sheet(
    path: str | Path,
    sheet: str | int = 0,
    header_row: int | None = 1,
    header_keys: Iterable[str] = ("Subject", "Filename"),
    scan_rows: int = 30,
    fix: str = "use the original coding sheet (first sheet, header in row 1)",
) -> pd.DataFrame:
    """One sheet as a DataFrame of raw cell values, indexed by 1-based sheet row.

    ``header_row`` is the header's 1-based row; None searches the first ``scan_rows`` rows
    for one holding all ``header_keys``. Empty header cells become ``Unnamed: <i>`` (as in
    pandas). A missing file, a file that is not an xlsx, or a missing sheet raises DataError.
    """
    raw = read_raw_sheet(path, sheet, fix)
    keys = [k.lower() for k in header_keys]
    if header_row is None:
        header_row = next(
            (r for r in raw.index[:scan_rows] if all(k in _header_cells(raw.loc[r]) for k in keys)),
            None,
        )
        if header_row is None:
            raise DataError(
                f"no header row with columns {', '.join(header_keys)} in the first "
                f"{scan_rows} rows of sheet {sheet!r}",
                file=path,
                fix=fix,
            )
    if header_row not in raw.index:
        raise DataError("the sheet is empty", file=path, fix=fix)
    names = [cell_text(v) or f"Unnamed: {i}" for i, v in enumerate(raw.loc[header_row])]
    table = raw.loc[header_row + 1 :].copy()
    table.columns = names
    return table.dropna(how="all")


def read_raw_sheet(
    path: str | Path, sheet: str | int = 0, fix: str = "use the original coding sheet"
) -> pd.DataFrame:
    """Every cell of one sheet, no header, indexed by 1-based sheet row (for sheets with
    no header row, such as CAS(ME)^2's ``CASFEcode_final``). A missing file, a file that is
    not an xlsx, or a missing sheet raises DataError."""
    path = Path(path)
    if not path.is_file():
        raise DataError("coding sheet not found", file=path, fix=fix)
    try:
        with pd.ExcelFile(path, engine="openpyxl") as book:
            if isinstance(sheet, str) and sheet not in book.sheet_names:
                raise DataError(
                    f"no sheet {sheet!r}; found sheets: {', '.join(book.sheet_names)}",
                    file=path,
                    fix=fix,
                )
            raw = pd.read_excel(book, sheet_name=sheet, header=None, dtype=object)
    except (zipfile.BadZipFile, InvalidFileException, KeyError, ValueError, OSError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(
            f"not a readable .xlsx spreadsheet ({type(exc).__name__}: {exc})", file=path, fix=fix
        ) from None
    raw.index = raw.index + 1  # 1-based sheet rows
    return raw


def require_columns(
    table: pd.DataFrame, columns: Iterable[str], path: str | Path, fix: str
) -> None:
    """Raise DataError naming the first missing column and the columns found."""
    found = [c for c in table.columns if not c.startswith("Unnamed: ")]
    for column in columns:
        if column not in table.columns:
            raise DataError(
                f"missing column {column!r}; found: {', '.join(found)}", file=path, fix=fix
            )


def frame_column(
    table: pd.DataFrame, column: str, allow_slash: bool = False
) -> dict[int, int | RowError | None]:
    """Frame numbers of one column per sheet row: int, None (a ``/`` where allowed), or the
    RowError that row raises (empty, non-numeric, fractional or negative)."""
    numbers = pd.to_numeric(table[column], errors="coerce")
    out: dict[int, int | RowError | None] = {}
    fix = "write the frame number of the image file (img46.jpg -> 46)"
    for row, raw, num in zip(table.index, table[column], numbers, strict=True):
        text = cell_text(raw)
        if pd.isna(num):
            if allow_slash and text == "/":
                out[row] = None
            elif not text:
                out[row] = RowError(f"{column} is empty. Fix: {fix}")
            else:
                out[row] = RowError(f"{column} {text!r} is not a frame number. Fix: {fix}")
        elif float(num) != math.floor(float(num)) or float(num) < 0:
            out[row] = RowError(
                f"{column} {text!r} is not a whole, non-negative frame number. Fix: {fix}"
            )
        else:
            out[row] = int(num)
    return out


def mirrored_offset(onset: int, apex: int | None) -> int | None:
    """The offset of an expression whose offset is not coded (CAS(ME)^2 and CAS(ME)^3 write
    0): its rise mirrored, ``apex + (apex - onset)``, the convention of published MEGC
    spotting code for these rows; None without an apex (it cannot be completed)."""
    return None if apex is None else apex + (apex - onset)


def offset_not_coded_note(cell: Any, apex: int | None) -> str:
    """The warning of a row kept although its offset is not coded (one wording for every
    reader: CAS(ME)^2 long videos, CAS(ME)^3 clips)."""
    shown = cell_text(cell) or "empty"
    if apex is None:
        return f"offset not coded ({shown}) and no apex; kept, cannot be scored"
    return f"offset not coded ({shown}); kept, completed as apex + (apex - onset)"


def frame_triplet(
    frames: dict[str, dict[int, int | RowError | None]],
    row: int,
    names: tuple[str, str, str],
    offset_zero_not_coded: bool = False,
) -> tuple[int, int | None, int]:
    """(onset, apex, offset) of one row, checked: onset <= offset. An apex outside them is
    returned as coded (see ``apex_outside``): published sheets hold such rows.

    ``offset_zero_not_coded`` (CAS(ME)^3): an offset of 0 means "not coded"; the offset
    returned is then ``mirrored_offset`` (a RowError without an apex)."""
    values = []
    for name in names:
        value = frames[name][row]
        if isinstance(value, RowError):
            raise value
        values.append(value)
    onset, apex, offset = values
    if onset is None or offset is None:
        raise RowError(f"{names[0]} and {names[2]} must be frame numbers. Fix: fill them in")
    if offset_zero_not_coded and offset == 0 and onset > 0:
        offset = mirrored_offset(onset, apex)
        if offset is None:
            raise RowError(
                f"{names[2]} 0 (not coded) and no {names[1]}: the clip's end is unknown. "
                "Fix: write the offset frame number"
            )
    if onset > offset:
        raise RowError(
            f"{names[0]} {onset} is after {names[2]} {offset}. "
            "Fix: swap or correct the frame numbers"
        )
    return onset, apex, offset


def apex_outside(onset: int | None, apex: int | None, offset: int | None) -> bool:
    """True when a coded apex lies outside onset..offset (a coding error the published
    SAMM sheet has in two rows): such a sample is kept, flagged ``extra["apex_outside"]``,
    and preprocessing's ``apex_outside`` policy chooses its apex."""
    if apex is None or onset is None or offset is None:
        return False
    return not onset <= apex <= offset


def frames_root(root: str | Path | None, fix: str) -> Path | None:
    """``root`` as a Path after checking it is a folder (None stays None)."""
    if root is None:
        return None
    if not Path(root).is_dir():
        raise DataError("frames folder (--root) not found", file=root, fix=fix)
    return Path(root)


def cell_text(value: Any) -> str:
    """A cell as text: integers without ``.0``, empty cells as ``""``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _header_cells(row: pd.Series) -> set[str]:
    return {cell_text(v).lower() for v in row}


@dataclass(frozen=True)
class SheetSpec:
    """How one corpus's sheet spells its rows."""

    dataset: str  # Sample.dataset, e.g. "casme2"
    subject: Callable[[Any], str]  # sheet subject -> frame folder name
    frame_columns: tuple[str, str, str]  # onset, apex ("/" allowed), offset
    emotions: tuple[str, ...]  # known emotions, lower case
    emotion_hint: str  # how the sheet spells them, for the fix
    clip_example: str  # e.g. "EP02_01f"
    extra_columns: tuple[str, ...] = ()  # kept in Sample.extra when non-empty
    emotion_column: str = "Estimated Emotion"
    au_column: str = "Action Units"
    # Sample.clip from (Filename, onset, offset): the Filename itself where it names one
    # clip; CAS(ME)^3 names a video that holds several MEs.
    clip_name: Callable[[str, int, int], str] | None = None
    # Frame folders under root, tried in order (the first that exists is used; the first
    # is reported when none does); fields {subject} and {video} (the Filename).
    layouts: tuple[str, ...] = ("{subject}/{video}",)
    # An offset of 0 means "not coded" (CAS(ME)^3, as CAS(ME)^2): the row is kept, its
    # offset completed by ``mirrored_offset``, flagged ``extra["offset_not_coded"]``.
    offset_zero_not_coded: bool = False


def frames_folder(root: Path, layouts: tuple[str, ...], subject: str, video: str) -> Path:
    """The clip's frames under ``root``: the first layout whose folder (or video file
    beside it) exists, else the first layout's path (its absence is reported later)."""
    folders = [root / layout.format(subject=subject, video=video) for layout in layouts]
    for folder in folders:
        found = clip_location(folder)
        if found.exists():
            return found
    return folders[0]


def samples_from_sheet(
    table: pd.DataFrame,
    coding: Path,
    spec: SheetSpec,
    mapping: dict[str, str],
    root: Path | None,
) -> tuple[list[Sample], list[Problem]]:
    """Samples of every usable row; a bad row becomes a Problem (with its 1-based row) and
    the rest are still read. Emotions outside ``mapping`` (the task) are dropped."""
    apex_col = spec.frame_columns[1]
    frames = {n: frame_column(table, n, allow_slash=n == apex_col) for n in spec.frame_columns}
    samples: list[Sample] = []
    problems: list[Problem] = []
    seen: set[str] = set()
    for row, cells in table.iterrows():
        try:
            subject = spec.subject(cells["Subject"])
            video = cell_text(cells["Filename"])
            if not video:
                raise RowError(
                    f"Filename is empty. Fix: write the clip folder name, e.g. {spec.clip_example}"
                )
            onset, apex, offset = frame_triplet(
                frames, row, spec.frame_columns, spec.offset_zero_not_coded
            )
            clip = spec.clip_name(video, onset, offset) if spec.clip_name else video
            emotion = cell_text(cells[spec.emotion_column]).lower()
            if emotion not in spec.emotions:
                raise RowError(f"unknown emotion {emotion!r}. Fix: use one of {spec.emotion_hint}")
            if f"{subject}/{clip}" in seen:
                raise RowError(f"{subject} {clip} appears twice. Fix: delete the duplicate row")
        except RowError as exc:
            problems.append(Problem(str(coding), str(exc), row=int(row)))
            continue
        seen.add(f"{subject}/{clip}")
        if emotion not in mapping:
            continue
        extra: dict[str, Any] = {"row": int(row)}
        for column in spec.extra_columns:
            if column in table.columns and cell_text(cells[column]):
                extra[column.lower().replace(" ", "_")] = cell_text(cells[column])
        if clip != video:
            extra["video"] = video
        if spec.offset_zero_not_coded and frames[spec.frame_columns[2]][row] == 0:
            extra["offset_not_coded"] = True
            note = offset_not_coded_note(0, apex)
            problems.append(
                Problem(
                    str(coding),
                    f"{note} = {offset}",
                    row=int(row),
                    sample=f"{spec.dataset}/{subject}/{clip}",
                    level="warning",
                )
            )
        if apex_outside(onset, apex, offset):
            extra["apex_outside"] = True
            problems.append(
                apex_outside_warning(coding, int(row), spec, subject, clip, (onset, apex, offset))
            )
        samples.append(
            Sample(
                dataset=spec.dataset,
                subject=subject,
                clip=clip,
                label=mapping[emotion],
                frames=frames_folder(root, spec.layouts, subject, video)
                if root is not None
                else None,
                onset=onset,
                apex=apex,
                offset=offset,
                emotion=emotion,
                action_units=cell_text(cells.get(spec.au_column)),
                extra=extra,
            )
        )
    return samples, problems


def apex_outside_warning(
    coding: Path, row: int, spec: SheetSpec, subject: str, clip: str, frames: tuple
) -> Problem:
    """The warning of a kept row whose coded apex lies outside onset..offset."""
    onset, apex, offset = frames
    return Problem(
        str(coding),
        f"{spec.frame_columns[1]} {apex} is outside [{onset}, {offset}]; the row is kept and "
        "flagged apex_outside. `apexmer preprocess --apex-outside` chooses its apex "
        "(default: spotted inside onset..offset). Fix: correct the apex in the sheet if the "
        "true apex is known",
        row=row,
        sample=f"{spec.dataset}/{subject}/{clip}",
        level="warning",
    )
