"""Manifest CSV: one row per preprocessed clip, pointing at its aligned crops.

Required columns: ``subject,label`` and ``apex_path`` or ``flow_path`` (an onset->apex flow:
a float16 ``.npy`` from preprocessing, or an 8-bit (u, v, strain) image as STSTNet and HTNet
distribute them). Optional: ``dataset,clip,onset_path,mid_path,flow_mid_path,onset,apex,
offset,apex_labelled,apex_spotted,coding_version`` and, as written here,
``emotion,action_units,frames``. Paths are relative to the manifest's folder (absolute
paths are accepted). ``apex`` is the frame shown in ``apex_path``; ``apex_labelled`` is the
coding sheet's apex (``Sample.apex``); ``apex_spotted`` the spotter's. Other columns are
kept in ``Sample.extra`` as text.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from apexmer.data.sample import Problem, Sample, SampleSet
from apexmer.errors import DataError
from apexmer.fileio import atomic_open

REQUIRED = ("subject", "label")
# ...and at least one network input per row: an aligned apex crop or an onset->apex flow.
INPUT_COLUMNS = ("apex_path", "flow_path")
COLUMNS = (
    "dataset",
    "subject",
    "clip",
    "label",
    "apex_path",
    "onset_path",
    "mid_path",
    "flow_path",
    "flow_mid_path",
    "onset",
    "apex",
    "offset",
    "apex_labelled",
    "apex_spotted",
    "coding_version",
    "emotion",
    "action_units",
    "frames",
)
OPTIONAL = tuple(c for c in COLUMNS if c not in REQUIRED)
_INTS = ("onset", "apex", "offset", "apex_labelled", "apex_spotted")
_PATHS = ("apex_path", "onset_path", "mid_path", "flow_path", "flow_mid_path", "frames")
MANIFEST_FIX = (
    "a manifest needs the columns subject,label and apex_path or flow_path "
    "(see `apexmer preprocess`)"
)


def read_manifest(path: str | Path) -> SampleSet:
    """Read a manifest CSV; rows whose apex image is missing or whose fields are bad go to
    ``problems``. Classes are the sorted unique labels."""
    path = Path(path)
    if not path.is_file():
        raise DataError("manifest not found", file=path, fix="check the path")
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (ValueError, OSError) as exc:  # EmptyDataError, ParserError, UnicodeDecodeError
        raise DataError(
            f"not a readable CSV ({type(exc).__name__}: {exc})", file=path, fix=MANIFEST_FIX
        ) from None
    table.columns = [str(c).strip() for c in table.columns]
    missing = [c for c in REQUIRED if c not in table.columns]
    if not any(c in table.columns for c in INPUT_COLUMNS):
        missing.append(" or ".join(INPUT_COLUMNS))
    if missing:
        raise DataError(
            f"missing column(s) {', '.join(missing)}; required: "
            f"{', '.join(REQUIRED)} and {' or '.join(INPUT_COLUMNS)}; found: "
            f"{', '.join(table.columns)}",
            file=path,
            fix=MANIFEST_FIX,
        )
    samples: list[Sample] = []
    problems: list[Problem] = []
    seen: set[str] = set()
    for index, record in enumerate(table.to_dict("records")):
        row = index + 2  # the header is row 1
        try:
            sample = _row_sample(record, path.parent, row, seen)
        except ValueError as exc:
            problems.append(Problem(str(path), str(exc), row=row))
            continue
        seen.add(sample.key)
        samples.append(sample)
    versions = sorted({v.strip() for v in table.get("coding_version", []) if v.strip()})
    return SampleSet(
        samples,
        tuple(sorted({s.label for s in samples})),
        "+".join(versions) or "manifest",
        str(path),
        problems,
    )


def _row_sample(record: dict[str, str], folder: Path, row: int, seen: set[str]) -> Sample:
    cells = {k: str(v).strip() for k, v in record.items()}
    for column in REQUIRED:
        if not cells[column]:
            raise ValueError(f"{column} is empty. Fix: fill it in or delete the row")
    if not any(cells.get(c) for c in INPUT_COLUMNS):
        raise ValueError("apex_path and flow_path are both empty. Fix: fill one in")
    paths = {c: _resolve(cells[c], folder) if cells.get(c) else None for c in _PATHS}
    for column, what in zip(INPUT_COLUMNS, ("apex image", "flow file"), strict=True):
        if paths[column] is not None and not paths[column].is_file():
            raise ValueError(
                f"{what} not found: {paths[column]}. Fix: re-run "
                f"preprocessing or correct {column} (relative to the manifest)"
            )
    ints = {c: _int(cells, c) for c in _INTS}
    onset, offset = ints["onset"], ints["offset"]
    if onset is not None and offset is not None and onset > offset:
        raise ValueError(f"onset {onset} is after offset {offset}. Fix: swap or correct them")
    for column in ("apex", "apex_labelled", "apex_spotted"):
        value = ints[column]
        if (
            value is not None
            and onset is not None
            and offset is not None
            and not (onset <= value <= offset)
        ):
            raise ValueError(
                f"{column} {value} is outside onset..offset ({onset}..{offset}). Fix: correct "
                "the frame numbers"
            )
    dataset = cells.get("dataset") or "manifest"
    clip = cells.get("clip") or (paths["apex_path"] or paths["flow_path"]).stem.strip()
    if not cells.get("clip") and f"{dataset}/{cells['subject']}/{clip}" in seen:
        clip = f"row{row}"  # two crops with one file name: the row number keeps keys unique
    key = f"{dataset}/{cells['subject']}/{clip}"
    if key in seen:
        raise ValueError(f"{key} appears twice. Fix: delete the duplicate row")
    has_labelled = "apex_labelled" in cells
    extra: dict[str, Any] = {k: v for k, v in cells.items() if k not in REQUIRED + OPTIONAL}
    extra["row"] = row
    if has_labelled:
        extra["apex_used"] = ints["apex"]
    return Sample(
        dataset=dataset,
        subject=cells["subject"],
        clip=clip,
        label=cells["label"],
        frames=paths["frames"],
        onset=ints["onset"],
        apex=ints["apex_labelled"] if has_labelled else ints["apex"],
        offset=ints["offset"],
        emotion=cells.get("emotion", ""),
        action_units=cells.get("action_units", ""),
        apex_path=paths["apex_path"],
        onset_path=paths["onset_path"],
        mid_path=paths["mid_path"],
        flow_path=paths["flow_path"],
        flow_mid_path=paths["flow_mid_path"],
        apex_spotted=ints["apex_spotted"],
        extra=extra,
    )


def _resolve(text: str, folder: Path) -> Path:
    path = Path(text)
    return path if path.is_absolute() else Path(os.path.normpath(folder / path))


def _int(cells: dict[str, str], column: str) -> int | None:
    text = cells.get(column, "")
    if not text:
        return None
    try:
        return int(float(text)) if float(text).is_integer() else int(text)
    except ValueError:
        raise ValueError(
            f"{column} {text!r} is not a whole frame number. "
            "Fix: write an integer or leave it empty"
        ) from None


def write_manifest(
    samples: SampleSet | Iterable[Sample],
    path: str | Path,
    coding_version: str | None = None,
    extra_columns: Sequence[str] = (),
) -> Path:
    """Write samples as a manifest CSV (atomically), paths relative to its folder.

    ``coding_version`` defaults to the SampleSet's; ``extra_columns`` names keys of
    ``Sample.extra`` written as further columns.
    """
    path = Path(path)
    if isinstance(samples, SampleSet):
        coding_version = coding_version or samples.coding_version
    folder = path.parent.absolute()
    columns = [*COLUMNS, *extra_columns]
    with atomic_open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        for s in samples:
            if s.apex_path is None and s.flow_path is None:
                raise DataError(
                    f"sample {s.key} has neither apex_path nor flow_path",
                    file=path,
                    fix="preprocess the sample before writing a manifest",
                )
            used, labelled = apex_columns(s)
            writer.writerow(
                {
                    "dataset": s.dataset,
                    "subject": s.subject,
                    "clip": s.clip,
                    "label": s.label,
                    "apex_path": _relative(s.apex_path, folder),
                    "onset_path": _relative(s.onset_path, folder),
                    "mid_path": _relative(s.mid_path, folder),
                    "flow_path": _relative(s.flow_path, folder),
                    "flow_mid_path": _relative(s.flow_mid_path, folder),
                    "onset": _text(s.onset),
                    "apex": _text(used),
                    "offset": _text(s.offset),
                    "apex_labelled": _text(labelled),
                    "apex_spotted": _text(s.apex_spotted),
                    "coding_version": coding_version or "",
                    "emotion": s.emotion,
                    "action_units": s.action_units,
                    "frames": _relative(s.frames, folder),
                    **{c: _text(s.extra.get(c)) for c in extra_columns},
                }
            )
    return path


def apex_columns(sample: Sample) -> tuple[int | None, int | None]:
    """``(apex, apex_labelled)`` columns: the frame the crop shows, and the sheet's apex.

    Either ``extra["apex_labelled"]`` holds the sheet's apex and ``Sample.apex`` the frame
    used (the preprocessing pipeline's way), or ``Sample.apex`` is the sheet's apex and the
    frame used is ``extra["apex_used"]``, else the spotted apex, else ``Sample.apex``.
    """
    if "apex_labelled" in sample.extra:
        return sample.extra.get("apex_used", sample.apex), sample.extra["apex_labelled"]
    spotted_or_labelled = sample.apex_spotted if sample.apex_spotted is not None else sample.apex
    return sample.extra.get("apex_used", spotted_or_labelled), sample.apex


def _relative(path: Path | None, folder: Path) -> str:
    if path is None:
        return ""
    try:
        return Path(os.path.relpath(Path(path).absolute(), folder)).as_posix()
    except ValueError:  # another drive on Windows: keep it absolute
        return Path(path).absolute().as_posix()


def _text(value: Any) -> str:
    return "" if value is None else str(value)
