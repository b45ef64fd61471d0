"""Corpus readers on files written in the real published formats (tests/corpus_files.py)."""

from __future__ import annotations

import json
import subprocess
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from apexmer.cli.main import app
from apexmer.data.casme2 import read_casme2
from apexmer.data.megc import read_megc
from apexmer.data.readers import CORPORA, check_frames, read_corpus
from apexmer.data.samm import read_samm
from apexmer.data.smic import read_smic
from apexmer.errors import DataError
from corpus_files import (
    MEGC_ROWS,
    SAMM_ROWS,
    SMIC_CLIPS,
    casme2_rows,
    truncate,
    write_casme2_sheet,
    write_frames,
    write_megc_csv,
    write_samm_sheet,
    write_smic_tree,
)
from procs import cli_command


@pytest.fixture(scope="module")
def sheets(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("casme2")
    return {v: write_casme2_sheet(folder / f"CASME2-coding-{v}.xlsx", v) for v in ("2014", "2019")}


# --- CASME II ------------------------------------------------------------------------------


def test_casme2_2019_five_classes_match_the_paper(sheets):
    ss = read_casme2(sheets["2019"])
    assert ss.coding_version == "casme2-2019"
    assert len(ss) == 249 and not ss.problems
    assert ss.class_counts() == {
        "disgust": 63,
        "happiness": 32,
        "others": 99,
        "repression": 27,
        "surprise": 28,
    }
    assert ss.classes == tuple(sorted(ss.classes))
    assert len(ss.subjects) == 26 and ss.subjects[0] == "sub01" and ss.subjects[-1] == "sub26"
    assert {s.emotion for s in ss} <= {"disgust", "happiness", "others", "repression", "surprise"}


def test_casme2_2014_differs_in_three_labels(sheets):
    ss = read_casme2(sheets["2014"])
    assert ss.coding_version == "casme2-2014"
    assert len(ss) == 246 and ss.class_counts()["surprise"] == 25
    assert not {"EP07_01", "EP07_04f", "EP10_03"} & {s.clip for s in ss if s.subject == "sub24"}


@pytest.mark.parametrize(
    ("version", "counts"),
    [
        ("2019", {"negative": 96, "positive": 32, "surprise": 28}),
        ("2014", {"negative": 99, "positive": 32, "surprise": 25}),
    ],
)
def test_casme2_three_classes(sheets, version, counts):
    ss = read_corpus("casme2", sheets[version], classes="3class")
    assert ss.class_counts() == counts and len(ss) == 156
    assert len(read_corpus("casme2", sheets[version], classes="all")) == 255


def test_casme2_cells_slash_apex_and_mixed_action_units(sheets):
    by_key = {(s.subject, s.clip): s for s in read_casme2(sheets["2019"])}
    slash = by_key["sub04", "EP12_01f"]
    assert slash.apex is None and slash.onset is not None and slash.offset is not None
    assert {s.action_units for s in by_key.values()} >= {"12", "4+7", "R12"}
    first = by_key["sub24", "EP07_01"]
    assert first.extra["row"] == 2 and (first.onset, first.apex, first.offset) == (40, 50, 80)


def _casme2_with(tmp_path, changes: dict[int, dict]) -> Path:
    rows = casme2_rows("2019")
    for index, change in changes.items():
        rows[index].update(change)
    return write_casme2_sheet(tmp_path / "CASME2-coding-20190701.xlsx", "2019", rows)


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"emotion": "joy"}, "unknown emotion 'joy'"),
        ({"onset": "abc"}, "OnsetFrame 'abc' is not a frame number"),
        ({"offset": None}, "OffsetFrame is empty"),
        ({"apex": 12.5}, "not a whole"),
        ({"onset": 90, "apex": 95, "offset": 60}, "after OffsetFrame"),
        ({"onset": "/"}, "OnsetFrame '/' is not a frame number"),
        ({"subject": "abc"}, "Subject 'abc'"),
        ({"subject": 1, "filename": "EP13_01"}, "appears twice"),
    ],
)
def test_casme2_bad_row_is_a_problem_with_its_row(tmp_path, change, words):
    ss = read_casme2(_casme2_with(tmp_path, {9: change}))  # rows[9] is sheet row 11
    assert len(ss.problems) == 1, ss.problems
    problem = ss.problems[0]
    assert problem.row == 11 and words in problem.message and "Fix:" in problem.message
    assert "CASME2-coding-20190701.xlsx, row 11" in str(problem)
    assert len(ss) == 248  # rows[9] is an "others" row; every other row still read


def test_casme2_missing_column_raises(tmp_path):
    import openpyxl

    path = write_casme2_sheet(tmp_path / "c.xlsx", "2019")
    book = openpyxl.load_workbook(path)
    book.active.cell(row=1, column=4).value = "Onset"
    book.save(path)
    with pytest.raises(
        DataError,
        match=r"c\.xlsx: missing column 'OnsetFrame'; found: "
        r"Subject, Filename, Onset.* Fix: use the original CASME2-coding",
    ):
        read_casme2(path)


@pytest.mark.parametrize("content", [b"Subject,Filename\n1,EP02_01f\n", b"", "zip", "half"])
def test_not_a_spreadsheet_gives_a_data_error(tmp_path, content):
    path = tmp_path / "CASME2-coding-20190701.xlsx"
    if content == "zip":
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("readme.txt", "not a workbook")
    elif content == "half":
        truncate(write_casme2_sheet(path, "2019"))
    else:
        path.write_bytes(content)
    with pytest.raises(
        DataError,
        match=r"CASME2-coding-20190701\.xlsx: not a readable "
        r"\.xlsx.*Fix:",
    ):
        read_casme2(path)


def test_missing_sheet_file_and_unknown_classes(tmp_path, sheets):
    with pytest.raises(DataError, match="coding sheet not found"):
        read_casme2(tmp_path / "nope.xlsx")
    with pytest.raises(DataError, match="no '2class' label map"):
        read_casme2(sheets["2019"], classes="2class")


def test_casme2_frames_checked_with_root(tmp_path):
    rows = casme2_rows("2019")[:6]
    # rows: sub24 EP07_01 / EP07_04f / EP10_03 (40..82), sub04 EP12_01f "/", sub01, sub02
    sheet = write_casme2_sheet(tmp_path / "c.xlsx", "2019", rows)
    root = tmp_path / "CASME2_RAW_selected"
    write_frames(root / "sub24" / "EP07_01", range(40, 81))
    write_frames(root / "sub24" / "EP07_04f", range(41, 82))
    truncate(write_frames(root / "sub24" / "EP10_03", range(42, 83)) / "img52.jpg")
    (root / "sub04" / "EP12_01f").mkdir(parents=True)  # empty folder
    write_frames(root / "sub01" / "EP13_01", [44, 54])  # no offset frame 84
    # sub02's folder is missing altogether
    ss = read_casme2(sheet, root=root, classes="all")
    assert [s.key for s in ss] == ["casme2/sub24/EP07_01", "casme2/sub24/EP07_04f"]
    assert ss.samples[0].frames == root / "sub24" / "EP07_01"
    messages = {p.sample: str(p) for p in ss.problems}
    assert "img52.jpg" in messages["casme2/sub24/EP10_03"]
    assert "JPEG is cut short" in messages["casme2/sub24/EP10_03"]
    assert "no numbered images" in messages["casme2/sub04/EP12_01f"]
    assert "frame 84 not in folder" in messages["casme2/sub01/EP13_01"]
    assert "not found" in messages["casme2/sub02/EP13_01"]
    assert all("Fix:" in m and "coding row" in m for m in messages.values())


def test_check_frames_video_and_untouched_samples(tmp_path, sheets):
    import cv2
    import numpy as np

    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (32, 24))
    for i in range(5):
        writer.write(np.full((24, 32, 3), i * 40, np.uint8))
    writer.release()
    ss = read_casme2(sheets["2019"])
    first, second = ss.samples[0], ss.samples[1]
    ss.samples = [
        first.with_(frames=video, onset=0, apex=2, offset=4),
        second.with_(frames=video, onset=0, apex=2, offset=9),
        ss.samples[2],
    ]
    checked = check_frames(ss)
    assert [s.clip for s in checked] == [first.clip, ss.samples[2].clip]
    assert "beyond the video's 5 frames" in checked.problems[0].message


# --- SAMM ----------------------------------------------------------------------------------


@pytest.mark.parametrize("notes", [13, 4])
def test_samm_sheet_with_notes_above_the_header(tmp_path, notes):
    ss = read_samm(write_samm_sheet(tmp_path / "SAMM_Micro_FACS_Codes_v2.xlsx", notes=notes))
    assert ss.coding_version == "samm-v2" and not ss.problems
    assert ss.class_counts() == {
        "anger": 1,
        "contempt": 1,
        "happiness": 2,
        "other": 1,
        "surprise": 1,
    }
    assert ss.subjects == ["006", "007", "011", "026"]
    first = ss.samples[0]
    assert (first.clip, first.onset, first.apex, first.offset) == ("006_1_2", 5562, 5588, 5632)
    assert first.emotion == "anger" and first.extra["row"] == notes + 2
    three = read_samm(tmp_path / "SAMM_Micro_FACS_Codes_v2.xlsx", classes="3class")
    assert three.class_counts() == {"negative": 5, "positive": 2, "surprise": 1}


def test_samm_bad_rows_and_frames(tmp_path):
    rows = [
        *SAMM_ROWS,
        (6, "006_5_9", 10, 5, 20, "4", "Anger"),
        (6, "006_5_8", 10, 12, 20, "4", "Boredom"),
    ]
    sheet = write_samm_sheet(tmp_path / "samm.xlsx", rows)
    root = tmp_path / "SAMM"
    write_frames(root / "006" / "006_1_2", range(5562, 5633), "006_{:05d}.jpg")
    ss = read_samm(sheet, root=root, classes="all")
    assert [s.clip for s in ss] == ["006_1_2"]
    rowed = {p.row: p.message for p in ss.problems if p.row is not None}
    assert "Apex Frame 5 is outside [10, 20]; the row is kept" in rowed[24]
    assert "unknown emotion 'boredom'" in rowed[25] and "Anger, Contempt" in rowed[25]
    assert [p.row for p in ss.warnings] == [24]  # kept from the sheet, then its frames:
    # the other frame folders (and 006_5_9's) are missing
    assert len(ss.errors) == 1 + len(SAMM_ROWS) - 1 + 1


def test_samm_without_micro_only_sheet(tmp_path):
    path = write_casme2_sheet(tmp_path / "samm.xlsx", "2019", casme2_rows()[:3])
    with pytest.raises(DataError, match="no sheet 'MICRO_ONLY'; found sheets: Sheet1"):
        read_samm(path)


# --- SMIC-HS -------------------------------------------------------------------------------


def test_smic_folder_tree(tmp_path):
    root = write_smic_tree(tmp_path / "HS")
    ss = read_smic(root)
    assert ss.coding_version == "smic-hs" and not ss.problems
    assert ss.subjects == ["s01", "s02"]
    assert ss.class_counts() == {"negative": 3, "positive": 1, "surprise": 1}
    first = ss.samples[0]
    assert (first.clip, first.onset, first.apex, first.offset) == ("s1_ne_01", 586599, None, 586603)
    assert first.frames == root / "s1" / "micro" / "negative" / "s1_ne_01"
    assert len(read_corpus("smic", coding=root)) == len(SMIC_CLIPS)


def test_smic_bad_folders(tmp_path):
    root = write_smic_tree(tmp_path / "HS", [*SMIC_CLIPS, ("s3", "happy", "s3_ha_01", [1, 2])])
    (root / "s02" / "micro" / "positive" / "s2_po_09").mkdir(parents=True)
    (root / "s4").mkdir()
    ss = read_smic(root)
    assert len(ss) == len(SMIC_CLIPS)
    text = " | ".join(str(p) for p in ss.problems)
    assert "unknown emotion folder 'happy'" in text and "no numbered images" in text
    assert "s4: no micro/ folder" in text
    with pytest.raises(DataError, match="no subject folders"):
        read_smic(root / "s1" / "micro")


# --- MEGC 2019 composite -------------------------------------------------------------------


def test_megc_composite_list(tmp_path):
    ss = read_megc(write_megc_csv(tmp_path / "combined_3class_gt.csv"))
    assert ss.coding_version == "megc2019-composite" and not ss.problems
    assert ss.class_counts() == {"negative": 4, "positive": 2, "surprise": 2}
    assert len(ss) == len(MEGC_ROWS) and ss.datasets == ["casme2", "samm", "smic"]
    assert {s.key for s in ss} >= {
        "samm/006/006_1_2",
        "casme2/sub01/EP02_01f",
        "smic/s01/s01_ne_01",
    }
    assert all(s.onset is None and s.apex is None for s in ss)


def test_megc_normalises_subjects_and_reports_bad_rows(tmp_path):
    rows = [
        ("casme2", "1", "EP02_01f", "1"),
        ("SMIC", "s1", "s01_ne_01", "0"),
        ("samm", "006", "006_1_2", "0"),
        ("casme3", "1", "x", "0"),
        ("samm", "7", "007_3_1", "3"),
        ("samm", "7", "007_3_1"),
        ("samm", "six", "006_1_3", "1"),
        ("casme2", "sub01", "EP02_01f", "1"),
    ]
    ss = read_megc(write_megc_csv(tmp_path / "m.csv", rows))
    assert [s.key for s in ss] == [
        "casme2/sub01/EP02_01f",
        "smic/s01/s01_ne_01",
        "samm/006/006_1_2",
    ]
    rowed = {p.row: p.message for p in ss.problems}
    assert "unknown dataset 'casme3'" in rowed[4] and "label '3'" in rowed[5]
    assert "3 fields" in rowed[6] and "Subject 'six'" in rowed[7]
    assert "appears twice" in rowed[8]


def test_megc_frames_under_root(tmp_path):
    root = tmp_path / "megc"
    write_frames(root / "casme2" / "sub01" / "EP02_01f", [46, 47])
    write_frames(root / "samm" / "006" / "006_1_2", [5562], "006_{:05d}.jpg")
    write_frames(root / "smic" / "s01" / "s01_ne_01", [3, 4], "image{}.bmp")
    ss = read_megc(write_megc_csv(tmp_path / "m.csv", MEGC_ROWS[:1] + MEGC_ROWS[3:6]), root=root)
    assert [s.key for s in ss] == [
        "casme2/sub01/EP02_01f",
        "samm/006/006_1_2",
        "smic/s01/s01_ne_01",
    ]
    assert [p.sample for p in ss.problems] == ["samm/007/007_3_1"]


def test_megc_file_errors(tmp_path):
    with pytest.raises(DataError, match="MEGC list not found"):
        read_megc(tmp_path / "none.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match="no rows"):
        read_megc(tmp_path / "empty.csv")
    (tmp_path / "bin.csv").write_bytes(b"\xff\xfe\x00\x81\x9f" * 20)
    with pytest.raises(DataError, match="not a text CSV"):
        read_megc(tmp_path / "bin.csv")


# --- registry and CLI ----------------------------------------------------------------------


def test_registry_and_dispatch_errors(sheets):
    assert set(CORPORA) >= {"casme2", "samm", "casme3", "smic", "megc", "manifest", "megc-flow"}
    with pytest.raises(DataError, match="unknown corpus 'casme4'"):
        read_corpus("casme4", sheets["2019"])
    with pytest.raises(DataError, match="Fix: pass --coding CASME2-coding"):
        read_corpus("casme2")


def test_cli_summary_json(sheets):
    result = CliRunner().invoke(
        app, ["data", "summary", "--corpus", "casme2", "--coding", str(sheets["2014"]), "--json"]
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert list(payload) == [
        "samples",
        "subjects",
        "classes",
        "coding_version",
        "problems",
        "warnings",
    ]
    assert payload["samples"] == 246 and payload["subjects"] == 26
    assert payload["classes"]["surprise"] == 25 and payload["coding_version"] == "casme2-2014"
    table = CliRunner().invoke(
        app,
        [
            "data",
            "summary",
            "--corpus",
            "casme2",
            "--coding",
            str(sheets["2019"]),
            "--classes",
            "3class",
        ],
    )
    assert table.exit_code == 0 and "negative" in table.output and "156" in table.output


def test_cli_smic_with_root_and_clean_error(tmp_path):
    root = write_smic_tree(tmp_path / "HS")
    result = CliRunner().invoke(
        app, ["data", "summary", "--corpus", "smic", "--root", str(root), "--json"]
    )
    assert json.loads(result.output)["samples"] == len(SMIC_CLIPS)
    bad = tmp_path / "bad.xlsx"
    bad.write_text("not a spreadsheet")
    proc = subprocess.run(
        cli_command(
            "data",
            "summary",
            "--corpus",
            "casme2",
            "--coding",
            str(bad),
        ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert "bad.xlsx: not a readable .xlsx" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_missing_root_folder_is_one_clear_error(tmp_path, sheets):
    with pytest.raises(DataError, match=r"nowhere: frames folder \(--root\) not found"):
        read_casme2(sheets["2019"], root=tmp_path / "nowhere")
    with pytest.raises(DataError, match="casme2/, samm/ and smic/"):
        read_megc(write_megc_csv(tmp_path / "m.csv"), root=tmp_path / "nowhere")


def test_frames_missing_inside_the_clip_are_a_problem(tmp_path):
    from apexmer.data.readers import check_frames
    from apexmer.data.sample import Sample, SampleSet

    folder = tmp_path / "sub01" / "EP01_01"
    write_frames(folder, [n for n in range(10, 31) if n not in (17, 18)], "img{}.jpg")
    sample = Sample(
        dataset="casme2",
        subject="sub01",
        clip="EP01_01",
        label="others",
        frames=folder,
        onset=10,
        apex=20,
        offset=30,
    )
    checked = check_frames(SampleSet([sample], ("others",), "casme2-2019", "t"))
    assert not checked.samples
    assert "2 frame(s) missing" in str(checked.problems[0]) and "17, 18" in str(checked.problems[0])


def test_clips_as_video_files_beside_the_subject_folders(tmp_path):
    import cv2
    import numpy as np

    rows = casme2_rows()[:1]
    sheet = write_casme2_sheet(tmp_path / "c.xlsx", "2019", rows)
    subject, clip = f"sub{int(rows[0]['subject']):02d}", rows[0]["filename"]
    (tmp_path / "root" / subject).mkdir(parents=True)
    video = tmp_path / "root" / subject / f"{clip}.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 30, (32, 32))
    for _ in range(int(rows[0]["offset"]) + 2):
        writer.write(np.full((32, 32, 3), 100, np.uint8))
    writer.release()
    ss = read_casme2(sheet, root=tmp_path / "root", classes="all")
    assert ss.samples and ss.samples[0].frames == video, ss.problems


def test_file_name_date_contradicting_the_columns_is_reported(tmp_path):
    sheet = write_casme2_sheet(
        tmp_path / "CASME2-coding-20190701.xlsx", "2014", casme2_rows("2014")[:3]
    )
    ss = read_casme2(sheet, classes="all")
    assert ss.coding_version == "casme2-2014"
    assert any("file name says casme2-2019" in p.message for p in ss.problems)


def test_samm_published_layout_keeps_rows_with_apex_outside(tmp_path):
    from corpus_files import SAMM_APEX_OUTSIDE, SAMM_SUBJECTS, samm_published_rows

    rows = samm_published_rows()
    assert len(rows) == 159
    sheet = write_samm_sheet(tmp_path / "SAMM_Micro_FACS_Codes_v2.xlsx", rows)
    result = read_samm(sheet, classes="all")
    assert len(result) == 159 and len(result.subjects) == SAMM_SUBJECTS
    assert result.errors == [] and len(result.warnings) == 2
    flagged = [s for s in result if s.extra.get("apex_outside")]
    assert sorted(s.clip for s in flagged) == sorted(rows[i][1] for i in SAMM_APEX_OUTSIDE)
    for s in flagged:  # the coded numbers are kept as the sheet has them
        assert s.apex == rows[[r[1] for r in rows].index(s.clip)][3]
        assert not s.onset <= s.apex <= s.offset
    for warning in result.warnings:
        assert "outside" in warning.message and "kept" in warning.message
        assert "--apex-outside" in warning.message and warning.row is not None
    assert sum(not s.extra.get("apex_outside") for s in result) == 157
    # The 5-class task keeps its 136 (the two flagged rows are in it: anger and happiness).
    assert len(read_samm(sheet)) == 136

    out = CliRunner().invoke(
        app,
        [
            "data",
            "summary",
            "--corpus",
            "samm",
            "--coding",
            str(sheet),
            "--classes",
            "all",
            "--json",
        ],
    )
    info = json.loads(out.output)
    assert info["samples"] == 159 and info["subjects"] == SAMM_SUBJECTS
    assert info["problems"] == [] and len(info["warnings"]) == 2
    text = CliRunner().invoke(
        app, ["data", "summary", "--corpus", "samm", "--coding", str(sheet), "--classes", "all"]
    )
    assert "warnings        2" in text.output and "problems        0" in text.output


def test_casme2_row_with_apex_outside_is_kept_and_its_frames_checked(tmp_path):
    rows = casme2_rows("2019")
    rows[5]["apex"] = rows[5]["offset"] + 3  # beyond the offset and beyond the frames
    sheet = write_casme2_sheet(tmp_path / "CASME2-coding-20190701.xlsx", "2019", rows)
    result = read_casme2(sheet, classes="all")
    assert len(result) == 255 and result.errors == [] and len(result.warnings) == 1
    (flagged,) = [s for s in result if s.extra.get("apex_outside")]
    assert flagged.apex == rows[5]["offset"] + 3
    # With frames: only onset..offset exist; the flagged sample is still kept.
    sub = f"sub{rows[5]['subject']:02d}"
    write_frames(
        tmp_path / "raw" / sub / rows[5]["filename"], range(rows[5]["onset"], rows[5]["offset"] + 1)
    )
    one = read_casme2(sheet, root=tmp_path / "raw", classes="all")
    kept = [s for s in one if s.extra.get("apex_outside")]
    assert [s.clip for s in kept] == [rows[5]["filename"]]
    assert len(one.warnings) == 1
    assert all("apex" not in p.message.lower() for p in one.errors if p.sample == kept[0].key)
