"""CAS(ME)^2 long videos: the coding workbook (``CAS(ME)^2code_final.xlsx``) and frames.

The workbook has three sheets (METHOD.md section 12):

- ``CASFEcode_final``: no header; the first row may be placeholders (``###``); trailing
  empty rows. Ten columns: subject index (1..22), expression name (``anger1_1`` = video
  ``anger1``, expression 1), onset, apex, offset (0 = not coded), action units (``4`` or
  ``4+10+14``), objective class (negative, positive, surprise, others), type
  (``macro-expression`` / ``micro-expression``), emotion word, duration (a formula; unused).
- ``naming rule1``: folder number, folder name, subject index (``15, s15, 1``).
- ``naming rule2``: video code, video name (``0101, disgust1``; a code may have lost its
  leading zero in the cell: ``101``).

Frames: ``rawpic/s15/15_0101disgustingteeth/img1.jpg`` or the face-cropped release
``longVideoFaceCropped/s15/15_0101disgustingteeth/img_1.jpg``; a folder is
``<folder number>_<video code><description>`` and the description is not in the sheet, so
the folder is found by its prefix. 30 fps.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import pandas as pd

from apexmer.data.frames import VIDEO_SUFFIXES
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
from apexmer.data.sheets import RowError, cell_text, frames_root, read_raw_sheet
from apexmer.errors import DataError

DATASET = "casme2-lv"
FPS = 30.0
CODE_SHEET = "CASFEcode_final"
RULE1_SHEET = "naming rule1"
RULE2_SHEET = "naming rule2"
FRAME_RELEASES = ("rawpic", "longVideoFaceCropped")  # raw frames first
CASME2_LV_FIX = (
    "use the original CAS(ME)^2 coding workbook (sheets CASFEcode_final, naming rule1, "
    "naming rule2)"
)
_VIDEO_FOLDER = re.compile(r"^(\d+)_(\d{4})(?!\d)")


def read_naming_rule1(
    table: pd.DataFrame, path: str
) -> tuple[dict[int, tuple[int, str]], list[Problem]]:
    """Subject index -> (folder number, folder name) from ``naming rule1``; problems."""
    mapping: dict[int, tuple[int, str]] = {}
    problems: list[Problem] = []
    for row, cells in table.iterrows():
        number, name, index = (cell_text(v) for v in [*cells, None, None, None][:3])
        if not (number.isdigit() and index.isdigit() and name):
            continue  # a title or header row
        entry = (int(number), name)
        if mapping.setdefault(int(index), entry) != entry:
            problems.append(
                Problem(
                    path,
                    f"{RULE1_SHEET}: subject index {index} is mapped to both "
                    f"{mapping[int(index)][1]} and {name}; the first is used. Fix: correct "
                    "the sheet",
                    row=int(row),
                )
            )
    return mapping, problems


def read_naming_rule2(table: pd.DataFrame) -> dict[str, str]:
    """Video name -> four-digit video code from ``naming rule2`` (``disgust1 -> 0101``)."""
    codes: dict[str, str] = {}
    for _, cells in table.iterrows():
        code, name = (cell_text(v) for v in [*cells, None, None][:2])
        if code.isdigit() and name:
            codes[name] = code.zfill(4)
    return codes


def read_casme2_lv(coding: str | Path, root: str | Path | None = None) -> LongVideoSet:
    """Read the CAS(ME)^2 workbook into a LongVideoSet (one LongVideo per subject and video).

    ``root`` is the folder holding ``s15, s16, ...`` (``rawpic`` or
    ``longVideoFaceCropped``) or the folder above them (``rawpic`` is then preferred). With
    it, each video's frame folder is found by its prefix ``15_0101``, counted and checked,
    and frame folders that no row codes become videos without intervals (a warning: their
    spotted intervals are false positives, as in MEGC).
    """
    coding = Path(coding)
    source = str(coding)
    code = read_raw_sheet(coding, CODE_SHEET, CASME2_LV_FIX)
    rule1, problems = read_naming_rule1(read_raw_sheet(coding, RULE1_SHEET, CASME2_LV_FIX), source)
    rule2 = read_naming_rule2(read_raw_sheet(coding, RULE2_SHEET, CASME2_LV_FIX))
    for sheet, rule, shape in (
        (RULE1_SHEET, rule1, "folder number, folder name, subject index (15, s15, 1)"),
        (RULE2_SHEET, rule2, "video code, video name (0101, disgust1)"),
    ):
        if not rule:
            raise DataError(
                f"sheet {sheet!r} has no rows of {shape}", file=coding, fix=CASME2_LV_FIX
            )
    warnings: list[Problem] = []
    grouped: dict[tuple[str, str], list[Interval]] = defaultdict(list)
    names: dict[tuple[str, str], str] = {}
    first = True
    for row, cells in code.iterrows():
        values = [*cells, *[None] * 10][:10]
        if all(not cell_text(v) for v in values[:9]):
            continue  # trailing empty rows (a dragged-down duration formula alone counts)
        try:
            index_text = cell_text(values[0])
            if not index_text.isdigit():
                if first:  # no real header: a row of placeholders such as "###"
                    shown = ", ".join(repr(cell_text(v)) for v in values if cell_text(v))
                    warnings.append(
                        Problem(source, f"{CODE_SHEET}: not an expression ({shown}); skipped", row)
                    )
                    first = False
                    continue
                raise RowError(
                    f"subject index {index_text!r} is not a number. Fix: write 1..22 as in "
                    f"{RULE1_SHEET}"
                )
            first = False
            key, video_name, interval, notes = _coded_row(int(row), values, rule1, rule2)
        except RowError as exc:
            problems.append(Problem(source, f"{CODE_SHEET}: {exc}", row=int(row)))
            continue
        grouped[key].append(interval)
        names[key] = video_name
        warnings += [Problem(source, f"{CODE_SHEET}: {n}", row=int(row)) for n in notes]
    videos = videos_from_intervals(DATASET, FPS, grouped, names)
    frames_dir = _frames_dir(root)
    if frames_dir is not None:
        videos, found_problems, found_warnings = _with_frames(
            videos, frames_dir, {code: name for name, code in rule2.items()}
        )
        problems += found_problems
        warnings += found_warnings
    return LongVideoSet(videos, DATASET, source, problems, warnings)


def _coded_row(
    row: int,
    values: list[Any],
    rule1: dict[int, tuple[int, str]],
    rule2: dict[str, str],
) -> tuple[tuple[str, str], str, Interval, list[str]]:
    index = int(cell_text(values[0]))
    if index not in rule1:
        raise RowError(
            f"subject index {index} is not in {RULE1_SHEET}. Fix: add it there or correct the index"
        )
    number, folder = rule1[index]
    name = cell_text(values[1])
    video_name = name.rsplit("_", 1)[0] if "_" in name else name
    if video_name not in rule2:
        raise RowError(
            f"expression {name!r}: video {video_name!r} is not in {RULE2_SHEET}. Fix: write "
            "the expression as <video name>_<n>, e.g. anger1_1"
        )
    interval, notes = interval_from_cells(
        values[2],
        values[3],
        values[4],
        parse_kind(values[7]),
        action_units=cell_text(values[5]),
        label=cell_text(values[6]).lower(),
        emotion=cell_text(values[8]).lower(),
        row=row,
        name=name,
    )
    return (folder, f"{number}_{rule2[video_name]}"), video_name, interval, notes


def _frames_dir(root: str | Path | None) -> Path | None:
    folder = frames_root(root, "pass rawpic (or longVideoFaceCropped), the folder holding s15, ...")
    if folder is None or any(_is_subject(p) for p in folder.iterdir()):
        return folder
    for release in FRAME_RELEASES:
        if (folder / release).is_dir():
            return folder / release
    return folder


def _is_subject(path: Path) -> bool:
    return path.is_dir() and re.fullmatch(r"s\d+", path.name) is not None


def _with_frames(
    videos: list[LongVideo],
    root: Path,
    code_names: dict[str, str],
) -> tuple[list[LongVideo], list[Problem], list[Problem]]:
    """Attach each video's frame folder (found by prefix); add uncoded folders as videos."""
    problems: list[Problem] = []
    warnings: list[Problem] = []
    on_disk: dict[tuple[str, str], list[Path]] = defaultdict(list)
    for subject in sorted(p for p in root.iterdir() if _is_subject(p)):
        for entry in sorted(subject.iterdir()):
            m = _VIDEO_FOLDER.match(entry.name)
            is_video = entry.is_file() and entry.suffix.lower() in VIDEO_SUFFIXES
            if m and (entry.is_dir() or is_video):
                on_disk[(subject.name, f"{m.group(1)}_{m.group(2)}")].append(entry)
    out: list[LongVideo] = []
    coded = {(v.subject, v.video) for v in videos}
    extra = [
        LongVideo(DATASET, s, v, None, FPS, (), name=code_names.get(v.split("_")[1], ""))
        for s, v in sorted(set(on_disk) - coded)
    ]
    if extra:
        warnings.append(
            Problem(
                str(root),
                f"{len(extra)} frame folder(s) have no coded expression; kept as videos "
                "without intervals (their spotted intervals count as false positives): "
                + ", ".join(f"{v.subject}/{v.video}" for v in extra),
            )
        )
    for video in sorted(videos + extra, key=lambda v: (v.subject, v.video)):
        found = on_disk.get((video.subject, video.video), [])
        dirs = [p for p in found if p.is_dir()] or found
        if len(dirs) != 1:
            what = "no frame folder" if not dirs else f"{len(dirs)} frame folders"
            problems.append(
                Problem(
                    str(root / video.subject),
                    f"{what} named {video.video}<description> for {video.name or video.video}"
                    f" [{video.key}]. Fix: check --root (it holds s15, s16, ...) and the "
                    "folder names (<folder number>_<video code><description>)",
                )
            )
            out.append(video)
            continue
        attached, issues = attach_frames(video, dirs[0])
        out.append(attached)
        problems += issues
    return out, problems, warnings
