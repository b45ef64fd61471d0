"""MEGC 2019 composite reader (``combined_3class_gt.csv``: CASME II + SAMM + SMIC-HS).

The file has no header; each row is ``dataset,subject,clip,label`` with label 0 negative,
1 positive, 2 surprise, e.g. ``casme2,sub01,EP02_01f,1``, ``samm,6,006_1_2,0``,
``smic,s01,s01_ne_01,0``.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

from apexmer.data.casme2 import casme2_subject
from apexmer.data.checks import check_frames
from apexmer.data.frames import clip_location
from apexmer.data.labels import class_names, label_map
from apexmer.data.samm import samm_subject
from apexmer.data.sample import Problem, Sample, SampleSet
from apexmer.data.sheets import RowError, frames_root
from apexmer.data.smic import smic_subject
from apexmer.errors import DataError

MEGC_FIX = "use the original combined_3class_gt.csv (no header: dataset,subject,clip,label)"


def _smic_subject(value: str) -> str:
    subject = smic_subject(value)
    if subject is None:
        raise RowError(f"subject {value!r} is not a SMIC subject. Fix: write it as s01")
    return subject


SUBJECT_RULES: dict[str, Callable[[str], str]] = {
    "casme2": casme2_subject,  # 1 or sub01 -> sub01
    "samm": samm_subject,  # 6 -> 006
    "smic": _smic_subject,  # s1, s01 -> s01
}


def read_megc(
    coding: str | Path, root: str | Path | None = None, classes: str = "3class"
) -> SampleSet:
    """Read the composite list; ``Sample.dataset`` is each row's corpus.

    With ``root`` the frames are expected at ``root/<dataset>/<subject>/<clip>`` (a frame
    folder, or a video ``<clip>.mp4`` etc.), e.g.
    ``root/casme2/sub01/EP02_01f``, ``root/samm/006/006_1_2``, ``root/smic/s01/s01_ne_01``
    (subject ids as normalised here), and are checked. Onset, apex and offset are not in
    this file: they stay None (the spotter works on the whole folder).
    """
    coding = Path(coding)
    mapping = label_map("megc", classes)
    root = frames_root(root, "pass the folder that holds casme2/, samm/ and smic/")
    if not coding.is_file():
        raise DataError("MEGC list not found", file=coding, fix=MEGC_FIX)
    try:
        with open(coding, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.reader(fh))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"not a text CSV file ({exc})", file=coding, fix=MEGC_FIX) from None
    if not any(any(cell.strip() for cell in r) for r in rows):
        raise DataError("the file has no rows", file=coding, fix=MEGC_FIX)
    samples: list[Sample] = []
    problems: list[Problem] = []
    seen: set[str] = set()
    for number, cells in enumerate(rows, start=1):
        if not any(c.strip() for c in cells):
            continue
        try:
            sample = composite_row(cells, mapping, root)
            if sample.key in seen:
                raise RowError(f"{sample.key} appears twice. Fix: delete the duplicate row")
        except RowError as exc:
            problems.append(Problem(str(coding), str(exc), row=number))
            continue
        seen.add(sample.key)
        samples.append(sample.with_(extra={"row": number}))
    result = SampleSet(samples, class_names(mapping), "megc2019-composite", str(coding), problems)
    if root is not None:
        result = check_frames(result)
    return result


def composite_row(cells: list[str], mapping: dict[str, str], root: Path | None) -> Sample:
    """One ``dataset,subject,clip,label`` row as a Sample (subject ids normalised); RowError."""
    if len(cells) != 4:
        raise RowError(
            f"{len(cells)} fields, expected 4 (dataset,subject,clip,label). "
            "Fix: keep the original four columns"
        )
    dataset, subject, clip, label = (c.strip() for c in cells)
    dataset = dataset.lower()
    if dataset not in SUBJECT_RULES:
        raise RowError(f"unknown dataset {dataset!r}. Fix: use one of {', '.join(SUBJECT_RULES)}")
    if label not in mapping:
        raise RowError(
            f"label {label!r} is not one of {', '.join(mapping)}. "
            "Fix: 0 negative, 1 positive, 2 surprise"
        )
    if not clip:
        raise RowError("the clip name is empty. Fix: write the clip folder name")
    subject = SUBJECT_RULES[dataset](subject)
    return Sample(
        dataset=dataset,
        subject=subject,
        clip=clip,
        label=mapping[label],
        frames=clip_location(Path(root) / dataset / subject / clip) if root is not None else None,
        emotion=label,
    )
