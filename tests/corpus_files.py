"""Writers of small corpus files in the real published formats (METHOD.md section 7).

Reusable by any test: ``from corpus_files import write_casme2_sheet`` (pytest puts
``tests/`` on ``sys.path``).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import openpyxl

# Published CASME II counts (2019 sheet), 255 samples over 26 subjects.
CASME2_COUNTS_2019 = {
    "others": 99,
    "disgust": 63,
    "happiness": 32,
    "surprise": 28,
    "repression": 27,
    "sadness": 4,
    "fear": 2,
}
# The three clips whose label differs: sadness in 2014, surprise in 2019.
CASME2_CHANGED = (("sub24", "EP07_01"), ("sub24", "EP07_04f"), ("sub24", "EP10_03"))
CASME2_HEADER = [
    "Subject",
    "Filename",
    None,
    "OnsetFrame",
    "ApexFrame",
    "OffsetFrame",
    None,
    "Action Units",
    "Estimated Emotion",
]
_AUS: tuple[Any, ...] = (12, "4+7", "R12", 4, "L10+25", 14, "1+2")
_OBJECTIVE = {
    "happiness": 1,
    "surprise": 2,
    "disgust": 3,
    "repression": 3,
    "others": 7,
    "sadness": 5,
    "fear": 6,
}


def casme2_rows(version: str = "2019") -> list[dict[str, Any]]:
    """255 rows reproducing the published class counts of the ``version`` sheet."""
    assert version in ("2014", "2019")
    changed = "surprise" if version == "2019" else "sadness"
    rows = [dict(subject=24, filename=c, emotion=changed) for _, c in CASME2_CHANGED]
    rows.append(dict(subject=4, filename="EP12_01f", emotion="others", apex="/"))
    pool = dict(CASME2_COUNTS_2019, others=98, surprise=25)
    emotions = [e for e, n in pool.items() for _ in range(n)]
    per_subject: dict[int, int] = {}
    for i, emotion in enumerate(emotions):
        subject = i % 26 + 1
        k = per_subject[subject] = per_subject.get(subject, -1) + 1
        clip = f"EP{13 + k // 3:02d}_{k % 3 + 1:02d}" + ("f" if k % 2 else "")
        rows.append(dict(subject=subject, filename=clip, emotion=emotion))
    for i, row in enumerate(rows):
        row.setdefault("onset", 40 + i)
        row.setdefault("apex", 50 + i)
        row.setdefault("offset", 80 + i)
        row["aus"] = _AUS[i % len(_AUS)]
        row["objective"] = _OBJECTIVE[row["emotion"]]
    return rows


def write_casme2_sheet(
    path: Path, version: str = "2019", rows: Sequence[dict[str, Any]] | None = None
) -> Path:
    """A CASME2-coding-*.xlsx: first sheet, header in row 1, two empty unnamed columns;
    the 2019 version adds ``Objective Classes``."""
    rows = casme2_rows(version) if rows is None else rows
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "Sheet1"
    sheet.append(CASME2_HEADER + (["Objective Classes"] if version == "2019" else []))
    for r in rows:
        cells = [
            r["subject"],
            r["filename"],
            None,
            r["onset"],
            r["apex"],
            r["offset"],
            None,
            r["aus"],
            r["emotion"],
        ]
        sheet.append(cells + ([r["objective"]] if version == "2019" else []))
    book.save(path)
    return path


SAMM_HEADER = [
    "Subject",
    "Filename",
    "Inducement Code",
    "Onset Frame",
    "Apex Frame",
    "Offset Frame",
    "Duration",
    "Micro",
    "Action Units",
    "Estimated Emotion",
    "Objective Classes",
    "Notes",
]
SAMM_ROWS: tuple[tuple[Any, ...], ...] = (
    # subject, filename, onset, apex, offset, AUs, emotion
    (6, "006_1_2", 5562, 5588, 5632, "4+7", "Anger"),
    (6, "006_1_3", 3912, 3948, 3988, 12, "Happiness"),
    (6, "006_2_1", 1200, 1230, 1260, "R14", "Contempt"),
    (7, "007_3_1", 800, 815, 850, "1+2", "Surprise"),
    (7, "007_5_2", 300, 320, 360, "9", "Disgust"),
    (11, "011_2_3", 2000, 2010, 2040, "R2", "Other"),
    (11, "011_4_1", 100, 130, 170, "15", "Sadness"),
    (11, "011_6_2", 4500, 4520, 4560, 25, "Fear"),
    (26, "026_7_1", 900, 920, 950, "6+12", "Happiness"),
)


# SAMM v2 "Estimated Emotion" counts over its 159 micro-movements as SAMM studies commonly
# list them (the 5-class task anger/contempt/happiness/other/surprise then has 136).
SAMM_COUNTS = {
    "Anger": 57,
    "Contempt": 12,
    "Disgust": 9,
    "Fear": 8,
    "Happiness": 26,
    "Other": 26,
    "Sadness": 6,
    "Surprise": 15,
}
SAMM_SUBJECTS = 29
# Rows of the published sheet whose coded apex lies outside onset..offset (a known coding
# error; which rows they are in the real file does not matter to the readers): here the
# 10th and the 100th row, one apex after the offset and one before the onset.
SAMM_APEX_OUTSIDE = {9: "after", 99: "before"}


def samm_published_rows() -> list[tuple[Any, ...]]:
    """159 rows over 29 subjects (folders 006..034) with ``SAMM_COUNTS`` and the two rows of
    ``SAMM_APEX_OUTSIDE``: the published sheet's shape, for ``write_samm_sheet``."""
    emotions = [e for e, n in SAMM_COUNTS.items() for _ in range(n)]
    rows = []
    for i, emotion in enumerate(emotions):
        subject = 6 + i % SAMM_SUBJECTS
        k = i // SAMM_SUBJECTS
        onset = 1000 + 400 * k
        apex, offset = onset + 25, onset + 60
        if SAMM_APEX_OUTSIDE.get(i) == "after":
            apex = offset + 12
        elif SAMM_APEX_OUTSIDE.get(i) == "before":
            apex = onset - 7
        name = f"{subject:03d}_{k % 7 + 1}_{k + 1}"
        rows.append((subject, name, onset, apex, offset, _AUS[i % len(_AUS)], emotion))
    return rows


def write_samm_sheet(
    path: Path, rows: Iterable[Sequence[Any]] = SAMM_ROWS, notes: int = 13
) -> Path:
    """SAMM_Micro_FACS_Codes_v2.xlsx: a first sheet of all movements, then ``MICRO_ONLY``
    with ``notes`` rows of notes above the header row."""
    book = openpyxl.Workbook()
    book.active.title = "FACS_CODES"
    book.active.append(["not the micro sheet"])
    sheet = book.create_sheet("MICRO_ONLY")
    for i in range(notes):
        sheet.append([f"Note {i + 1}: SAMM coding notes" if i % 3 == 0 else None])
    sheet.append(SAMM_HEADER)
    for subject, name, onset, apex, offset, aus, emotion in rows:
        duration = offset - onset + 1 if isinstance(offset, int) and isinstance(onset, int) else ""
        sheet.append(
            [subject, name, "2", onset, apex, offset, duration, "Micro", aus, emotion, 1, None]
        )
    book.save(path)
    return path


def write_frames(
    folder: Path,
    numbers: Iterable[int],
    pattern: str = "img{}.jpg",
    size: tuple[int, int] = (12, 16),
) -> Path:
    """Real little images, one per frame number (``pattern`` formats the number)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for n in numbers:
        image = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        assert cv2.imwrite(str(folder / pattern.format(n)), image)
    return folder


def truncate(path: Path, keep: float = 0.5) -> Path:
    """Cut a file short, as an interrupted copy would."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


SMIC_CLIPS = (
    # subject folder, emotion folder, clip folder, frame numbers
    ("s1", "negative", "s1_ne_01", range(586599, 586604)),
    ("s1", "positive", "s1_po_01", range(10, 14)),
    ("s1", "surprise", "s1_sur_01", range(200, 203)),
    ("s02", "negative", "s2_ne_03", range(5, 9)),
    ("s02", "negative", "s2_ne_04", range(40, 43)),
)


def write_smic_tree(
    root: Path, clips: Iterable[tuple[str, str, str, Iterable[int]]] = SMIC_CLIPS
) -> Path:
    """SMIC-HS layout: root/s1/micro/negative/s1_ne_01/image586599.bmp."""
    for subject, emotion, clip, numbers in clips:
        write_frames(root / subject / "micro" / emotion / clip, numbers, "image{}.bmp", (8, 8))
    return root


MEGC_ROWS = (
    ("casme2", "sub01", "EP02_01f", "1"),
    ("casme2", "sub02", "EP09_01", "0"),
    ("casme2", "sub02", "EP11_01f", "2"),
    ("samm", "6", "006_1_2", "0"),
    ("samm", "7", "007_3_1", "2"),
    ("smic", "s01", "s01_ne_01", "0"),
    ("smic", "s02", "s02_po_01", "1"),
    ("smic", "s02", "s02_ne_03", "0"),
)


def write_megc_csv(path: Path, rows: Iterable[Sequence[str]] = MEGC_ROWS) -> Path:
    """combined_3class_gt.csv: no header, dataset,subject,clip,label."""
    with open(path, "w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    return path


# CAS(ME)^3 Part A label sheet (METHOD.md section 13): 860 rows, 94 subjects.
CASME3_HEADER = ["Subject", "Filename", "Onset", "Apex", "Offset", "AU", "Objective class"]
CASME3_HEADER += ["emotion"]
CASME3_COUNTS = {
    "disgust": 250,
    "surprise": 187,
    "others": 158,
    "Others": 3,  # spelled with a capital in 3 rows of the published sheet
    "fear": 86,
    "anger": 64,
    "sad": 57,
    "happy": 55,
}
CASME3_SUBJECTS = 94
_ROMAN = ("I", "II", "III", "IV", "V", "VI", "VII")
# A small sheet: several MEs in one video (spNO.1 video a), the "Others" spelling, AUs as
# text; subject, video, onset, apex, offset, AU, objective class, emotion.
CASME3_ROWS: tuple[tuple[Any, ...], ...] = (
    ("spNO.1", "a", 157, 163, 175, "R12", "I", "happy"),
    ("spNO.1", "a", 402, 410, 421, "4+7", "III", "disgust"),
    ("spNO.1", "a", 600, 606, 618, "1+2", "II", "surprise"),
    ("spNO.1", "b", 30, 38, 50, "4", "V", "sad"),
    ("spNO.2", "e", 88, 95, 104, "L10", "III", "anger"),
    ("spNO.2", "e", 250, 257, 266, "14", "VII", "Others"),
    ("spNO.2", "f", 12, 19, 30, "20", "VI", "fear"),
    ("spNO.10", "a", 5, 11, 22, "R14", "VII", "others"),
    ("spNO.10", "c", 70, 76, 90, "1+2+5", "II", "surprise"),
)


def casme3_published_rows() -> list[tuple[Any, ...]]:
    """860 rows over 94 subjects with the published emotion counts (``CASME3_COUNTS``):
    the published sheet's shape, for ``write_casme3_sheet``."""
    emotions = [e for e, n in CASME3_COUNTS.items() for _ in range(n)]
    rows = []
    for i, emotion in enumerate(emotions):
        k = i // CASME3_SUBJECTS
        video = "abcdefghij"[k % 10]
        onset = 100 + 300 * k
        subject = f"spNO.{i % CASME3_SUBJECTS + 1}"
        aus = _AUS[i % len(_AUS)]
        objective = _ROMAN[i % len(_ROMAN)]
        rows.append((subject, video, onset, onset + 8, onset + 20, aus, objective, emotion))
    return rows


def write_casme3_sheet(path: Path, rows: Iterable[Sequence[Any]] = CASME3_ROWS) -> Path:
    """cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx: sheet ``label``, header in row 1."""
    book = openpyxl.Workbook()
    book.active.title = "label"
    book.active.append(CASME3_HEADER)
    for row in rows:
        book.active.append(list(row))
    book.save(path)
    return path


# ---------------------------------------------------------------- long videos (METHOD.md 12)
# Written from the published facts, independently of apexmer.data.synth_long.

# CAS(ME)^2 "naming rule1": folder number, folder name, subject index.
CASME2_LV_RULE1 = ((15, "s15", 1), (16, "s16", 2), (19, "s19", 3))
# "naming rule2": video code, name; some codes as numbers (the leading zero lost in Excel).
CASME2_LV_RULE2 = (
    ("0101", "disgust1"),
    ("0102", "disgust2"),
    (401, "anger1"),
    (402, "anger2"),
    ("0502", "happy1"),
    (503, "happy2"),
    ("0505", "happy3"),
    ("0507", "happy4"),
    ("0508", "happy5"),
)
# CASFEcode_final rows: subject index, expression, onset, apex, offset, AUs, objective
# class, type, emotion word (the duration formula is added by the writer).
CASME2_LV_ROWS: tuple[tuple[Any, ...], ...] = (
    (1, "disgust1_1", 557, 572, 608, "4+10+14", "negative", "macro-expression", "disgust"),
    (1, "disgust1_2", 2010, 2016, 2022, 4, "negative", "micro-expression", "disgust"),
    (1, "anger1_1", 120, 131, 0, "4+7", "negative", "macro-expression", "anger"),
    (2, "happy1_1", 300, 320, 360, 12, "positive", "macro-expression", "happy"),
    (2, "happy1_2", 900, 905, 912, "R12", "positive", "micro-expression", "happy"),
    (3, "disgust2_1", 40, 52, 0, "9", "negative", "macro-expression", "disgust"),
    (3, "happy3_1", 77, 80, 89, "6+12", "others", "micro-expression", "others"),
)


def write_casme2_lv_workbook(
    path: Path,
    rows: Iterable[Sequence[Any]] = CASME2_LV_ROWS,
    rule1: Iterable[Sequence[Any]] = CASME2_LV_RULE1,
    rule2: Iterable[Sequence[Any]] = CASME2_LV_RULE2,
    placeholder: bool = True,
    trailing_empty: int = 3,
) -> Path:
    """CAS(ME)^2code_final.xlsx: ``CASFEcode_final`` without a header (a first row of
    ``###`` placeholders when ``placeholder``), a duration formula in column 10, trailing
    rows holding only a dragged-down formula or empty strings; ``naming rule1`` one row per
    expression; ``naming rule2`` one row per video."""
    rows = [list(r) for r in rows]
    book = openpyxl.Workbook()
    code = book.active
    code.title = "CASFEcode_final"
    if placeholder:
        code.append(["###"] * 9 + [None])
    first = 2 if placeholder else 1
    for n, r in enumerate(rows, start=first):
        code.append([*r, f"=(E{n}-C{n})/30"])
    for n in range(first + len(rows), first + len(rows) + trailing_empty):
        code.append(["", None, None, None, None, None, None, None, None, f"=(E{n}-C{n})/30"])
    rule1_sheet = book.create_sheet("naming rule1")
    index_of = {index: (number, name) for number, name, index in rule1}
    for r in rows:  # one row per expression (indices missing from rule1 get none)
        if r[0] in index_of:
            rule1_sheet.append([*index_of[r[0]], r[0]])
    rule2_sheet = book.create_sheet("naming rule2")
    for video_code, name in rule2:
        rule2_sheet.append([video_code, name])
    book.save(path)
    return path


def write_casme2_lv_frames(
    root: Path, videos: Iterable[tuple[str, str, int]], cropped: bool = False
) -> Path:
    """Frame folders ``root/s15/15_0101<description>/img1.jpg`` (``img_1.jpg`` when
    ``cropped``) for ``(subject folder, <number>_<code><description>, n_frames)``."""
    pattern = "img_{}.jpg" if cropped else "img{}.jpg"
    for subject, folder, n_frames in videos:
        write_frames(root / subject / folder, range(1, n_frames + 1), pattern, (8, 8))
    return root


SAMM_LV_HEADER = [
    "Subject",
    "Filename",
    "Inducement Code",
    "Onset",
    "Apex",
    "Offset",
    "Duration",
    "Type",
    "Action Units",
    "Notes",
]
# subject (text), filename, onset, apex, offset, type, AUs; fractional frames in macro rows.
SAMM_LV_ROWS: tuple[tuple[Any, ...], ...] = (
    ("006", "006_1_1", 566.4, 590.6, 801.2, "Macro", "R12+L14"),
    ("006", "006_1_2", 1200, 1230, 1290, "Micro - 1/2", "4"),
    ("006", "006_2_1", 3000, 3110, 3500, "Macro", "1+2+5"),
    ("007", "007_3_1", 800, 815, 850, "Micro - 1/2", "14"),
    ("011", "011_5_1", 100.5, 130, 170.5, "Macro", "4+10+14"),
)


def samm_lv_published_rows() -> list[tuple[Any, ...]]:
    """502 movements in the published sheet's shape (METHOD.md section 12): 159 micro, 343
    macro (171 of them with fractional frames), 147 videos, 30 subjects; 10 macro rows with
    onset 0 (the expression starts at the video's first frame; Duration = Offset + 1), one
    of them the only row of its video."""
    subjects = [f"{n:03d}" for n in range(6, 36)]  # 30
    videos = [f"{s}_{k}" for s in subjects for k in range(1, 5)]  # 120
    videos += [f"{s}_5" for s in subjects[:27]]  # 147
    per_video = {v: 3 + (i < 61) for i, v in enumerate(videos)}  # 441 + 61 = 502
    per_video[videos[-1]] = 1  # the lone onset-0 row's video
    per_video[videos[0]] += 2
    slots = [(v, m) for v in videos for m in range(1, per_video[v] + 1)]
    at_start = {(v, 1) for v in videos[:135:15]} | {(videos[-1], 1)}  # 9 + 1
    others = [slot for slot in slots if slot not in at_start]
    micro = set(others[::3][:159])
    fractional = [slot for slot in others if slot not in micro][:171]
    rows: list[tuple[Any, ...]] = []
    for n, (video, m) in enumerate(slots):
        onset: float = 0 if (video, m) in at_start else 400.0 * m
        length = 40 if (video, m) in micro else 200
        offset: float = onset + length
        if (video, m) in fractional:
            onset, offset = onset + 0.4, offset + 0.6
        kind = "Micro - 1/2" if (video, m) in micro else "Macro"
        row = (video.split("_")[0], f"{video}_{m}", onset, int(onset) + length // 3, offset)
        rows.append((*row, kind, _AUS[n % len(_AUS)]))
    return rows


def write_samm_lv_sheet(
    path: Path, rows: Iterable[Sequence[Any]] = SAMM_LV_ROWS, other_sheet: bool = True
) -> Path:
    """SAMM Long Videos coding sheet: ``FACS_Movement_Only`` with the header in row 1,
    Subject as text with leading zeros; another sheet before it when ``other_sheet``."""
    book = openpyxl.Workbook()
    if other_sheet:
        book.active.title = "Read Me"
        book.active.append(["SAMM Long Videos; see FACS_Movement_Only"])
        sheet = book.create_sheet("FACS_Movement_Only")
    else:
        sheet = book.active
        sheet.title = "FACS_Movement_Only"
    sheet.append(SAMM_LV_HEADER)
    for subject, name, onset, apex, offset, kind, aus in rows:
        numbers = all(isinstance(v, (int, float)) for v in (onset, offset))
        duration = offset - onset + 1 if numbers else ""
        sheet.append([subject, name, "2", onset, apex, offset, duration, kind, aus, None])
    for row in sheet.iter_rows(min_row=2, max_col=1):
        row[0].number_format = "@"  # Subject as text, as published
    book.save(path)
    return path


def write_samm_lv_frames(root: Path, videos: Iterable[tuple[str, int]]) -> Path:
    """``root/006_1/006_1_0001.jpg`` ... for ``(video, n_frames)``."""
    for video, n_frames in videos:
        write_frames(root / video, range(1, n_frames + 1), video + "_{:04d}.jpg", (8, 8))
    return root
