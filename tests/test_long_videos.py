"""Long-video readers (CAS(ME)^2, SAMM Long Videos) on files in the published layouts."""

from __future__ import annotations

import json

import openpyxl
import pytest
from typer.testing import CliRunner

from apexmer.cli.main import app
from apexmer.data.long_corpora import read_long_videos
from apexmer.data.long_videos import Interval, coded_span, frame_cell
from apexmer.data.sheets import RowError
from apexmer.errors import DataError
from corpus_files import (
    CASME2_LV_ROWS,
    SAMM_LV_ROWS,
    samm_lv_published_rows,
    write_casme2_lv_frames,
    write_casme2_lv_workbook,
    write_samm_lv_frames,
    write_samm_lv_sheet,
)

CASME_FOLDERS = [
    ("s15", "15_0101disgustingteeth", 2100),
    ("s15", "15_0401girlcrashing", 200),
    ("s16", "16_0502x", 1000),
    ("s19", "19_0505y", 100),
    ("s19", "19_0102z", 100),
]


def _by_key(videos):
    return {v.video: v for v in videos}


def test_casme2_lv_sheet_quirks(tmp_path):
    coding = write_casme2_lv_workbook(tmp_path / "CAS(ME)^2code_final.xlsx")
    result = read_long_videos("casme2-lv", coding)
    summary = result.summary()
    assert summary["videos"] == 5
    assert summary["expressions"] == len(CASME2_LV_ROWS) == 7
    assert (summary["micro"], summary["macro"], summary["subjects"]) == (3, 4, 3)
    assert summary["problems"] == []
    # The placeholder row is skipped and said so; trailing formula rows are not expressions.
    assert any("row 1" in w and "'###'" in w for w in summary["warnings"])
    # Offset 0: kept with offset None, reported, completed by mirroring the rise.
    assert summary["offset_not_coded"] == 2
    videos = _by_key(result)
    anger = videos["15_0401"].intervals[0]
    assert (anger.onset, anger.apex, anger.offset, anger.row) == (120, 131, None, 4)
    assert coded_span(anger) == (120, 142)
    assert sum("offset not coded" in w for w in summary["warnings"]) == 2
    # Index 1 -> s15 via naming rule1; disgust1 -> 0101, anger1 -> 0401 (a number cell).
    disgust = videos["15_0101"]
    assert (disgust.subject, disgust.name, disgust.fps) == ("s15", "disgust1", 30.0)
    first = disgust.intervals[0]
    assert first == Interval(
        557, 572, 608, "macro", "4+10+14", "disgust", "negative", 2, "disgust1_1"
    )
    assert disgust.intervals[1].action_units == "4"  # an int cell
    assert disgust.intervals[1].kind == "micro"
    assert videos["19_0505"].subject == "s19"
    assert all(v.frames is None for v in result)


def test_casme2_lv_without_placeholder_reads_first_row(tmp_path):
    coding = write_casme2_lv_workbook(tmp_path / "c.xlsx", placeholder=False, trailing_empty=0)
    result = read_long_videos("casme2-lv", coding)
    assert result.summary()["expressions"] == 7
    assert not any("###" in str(w) for w in result.warnings)
    assert min(i.row for v in result for i in v.intervals) == 1


@pytest.mark.parametrize("cropped", [False, True])
def test_casme2_lv_frames_both_releases(tmp_path, cropped):
    coding = write_casme2_lv_workbook(tmp_path / "c.xlsx")
    release = "longVideoFaceCropped" if cropped else "rawpic"
    write_casme2_lv_frames(tmp_path / release, CASME_FOLDERS, cropped=cropped)
    write_casme2_lv_frames(tmp_path / release, [("s16", "16_0508uncoded", 30)], cropped=cropped)
    # --root may be the release folder or the folder above it.
    for root in (tmp_path / release, tmp_path):
        result = read_long_videos("casme2-lv", coding, root=root)
        videos = _by_key(result)
        assert videos["15_0101"].frames == tmp_path / release / "s15" / "15_0101disgustingteeth"
        assert videos["15_0101"].n_frames == 2100
        assert result.problems == []
        # A frame folder without coded rows is a video without intervals, reported.
        assert videos["16_0508"].intervals == () and videos["16_0508"].name == "happy5"
        assert any("16_0508" in str(w) for w in result.warnings)


def test_casme2_lv_missing_frames_and_bad_rows_are_reported(tmp_path):
    rows = [
        *CASME2_LV_ROWS,
        (9, "happy1_3", 10, 12, 15, 12, "positive", "micro-expression", "happy"),  # no s
        (1, "sad9_1", 10, 12, 15, 12, "negative", "micro-expression", "sad"),  # no video
        (1, "happy2_1", 10, 12, 15, 12, "positive", "tiny-expression", "happy"),  # no type
        (1, "happy2_2", 0, 12, 15, 12, "positive", "micro-expression", "happy"),  # no onset
        (1, "happy2_3", 20, 12, 15, 12, "positive", "micro-expression", "happy"),  # on > off
    ]
    coding = write_casme2_lv_workbook(tmp_path / "c.xlsx", rows=rows)
    write_casme2_lv_frames(tmp_path / "rawpic", CASME_FOLDERS[:2])  # s16, s19 missing
    write_casme2_lv_frames(tmp_path / "rawpic", [("s15", "15_0101short", 50)])  # ambiguous
    result = read_long_videos("casme2-lv", coding, root=tmp_path / "rawpic")
    text = [str(p) for p in result.problems]
    first_bad = len(CASME2_LV_ROWS) + 2
    for offset, words in enumerate(
        ["subject index 9", "'sad9'", "tiny-expression", "onset is empty or 0", "after offset"]
    ):
        assert any(f"row {first_bad + offset}:" in t and words in t for t in text), words
    assert result.summary()["expressions"] == 7  # the good rows all kept
    assert any("2 frame folders" in t and "15_0101" in t for t in text)
    assert any("no frame folder" in t and "16_0502" in t for t in text)
    assert _by_key(result)["16_0502"].frames is None
    assert _by_key(result)["15_0401"].frames is not None


def test_casme2_lv_missing_sheet_is_one_clear_error(tmp_path):
    path = tmp_path / "c.xlsx"
    book = openpyxl.Workbook()
    book.active.title = "CASFEcode_final"
    book.save(path)
    with pytest.raises(DataError, match=r"no sheet 'naming rule1'.*Fix"):
        read_long_videos("casme2-lv", path)
    empty_rule = write_casme2_lv_workbook(tmp_path / "e.xlsx", rule2=[("code", "name")])
    with pytest.raises(DataError, match=r"'naming rule2' has no rows of video code"):
        read_long_videos("casme2-lv", empty_rule)


def test_samm_lv_sheet_quirks(tmp_path):
    coding = write_samm_lv_sheet(tmp_path / "SAMM_LONG.xlsx")
    result = read_long_videos("samm-lv", coding)
    summary = result.summary()
    assert (summary["videos"], summary["expressions"]) == (4, len(SAMM_LV_ROWS))
    assert (summary["micro"], summary["macro"], summary["subjects"]) == (2, 3, 3)
    videos = _by_key(result)
    assert set(videos) == {"006_1", "006_2", "007_3", "011_5"}
    assert videos["006_1"].subject == "006" and videos["006_1"].fps == 200.0
    macro, micro = videos["006_1"].intervals
    # Fractional frames rounded to the nearest frame (halves up), one warning per row.
    assert (macro.onset, macro.apex, macro.offset, macro.kind) == (566, 591, 801, "macro")
    assert (micro.onset, micro.offset, micro.kind, micro.name) == (1200, 1290, "micro", "006_1_2")
    assert videos["011_5"].intervals[0].onset == 101  # 100.5 -> 101
    rounded = [w for w in summary["warnings"] if "fractional" in w]
    assert len(rounded) == 2 and "566.4 rounded to 566" in rounded[0] and "row 2" in rounded[0]
    assert videos["011_5"].intervals[0].action_units == "4+10+14"


def test_samm_lv_numeric_subject_and_frames(tmp_path):
    rows = [(6, "006_1_1", 10, 12, 20, "Micro - 1/2", 12), *SAMM_LV_ROWS[2:4]]
    coding = write_samm_lv_sheet(tmp_path / "s.xlsx", rows=rows, other_sheet=False)
    write_samm_lv_frames(tmp_path / "frames", [("006_1", 30), ("007_3", 900), ("020_4", 5)])
    result = read_long_videos("samm-lv", coding, root=tmp_path / "frames")
    videos = _by_key(result)
    assert videos["006_1"].subject == "006" and videos["006_1"].n_frames == 30
    assert videos["006_1"].frames == tmp_path / "frames" / "006_1"
    assert videos["020_4"].intervals == ()  # uncoded folder kept, reported
    (problem,) = [str(p) for p in result.problems]  # 007_3_1 (800..850) fits in 900 frames
    assert "006_2" in problem and "not found" in problem and "Fix:" in problem
    assert _by_key(result)["006_2"].frames is None
    assert any("020_4" in str(w) for w in result.warnings)


def test_samm_lv_published_counts_keep_onset_zero_rows(tmp_path):
    # The published sheet: 10 macro rows start at the video's first frame (onset 0,
    # Duration = Offset + 1); the published counts include them.
    rows = samm_lv_published_rows()
    result = read_long_videos("samm-lv", write_samm_lv_sheet(tmp_path / "s.xlsx", rows=rows))
    summary = result.summary()
    counts = [summary[k] for k in ("expressions", "micro", "macro", "subjects", "videos")]
    assert counts == [502, 159, 343, 30, 147]
    assert result.problems == []
    zero_rows = [n + 2 for n, r in enumerate(rows) if r[2] == 0]  # header is row 1
    at_start = [w for w in result.warnings if "onset 0" in w.message]
    assert [w.row for w in at_start] == zero_rows and len(zero_rows) == 10
    assert all("first frame" in str(w) and f"row {w.row}" in str(w) for w in at_start)
    kept = [i for v in result for i in v.intervals if i.row in zero_rows]
    assert [(i.onset, i.kind) for i in kept] == [(0, "macro")] * 10


def test_samm_lv_onset_zero_becomes_the_first_frame_on_disk(tmp_path):
    rows = [("006", "006_1_1", 0, 5, 20, "Macro", 12), ("006", "006_1_2", 30, 33, 40, "Micro", 4)]
    coding = write_samm_lv_sheet(tmp_path / "s.xlsx", rows=rows)
    write_samm_lv_frames(tmp_path / "frames", [("006_1", 50)])  # 006_1_0001.jpg first
    result = read_long_videos("samm-lv", coding, root=tmp_path / "frames")
    assert result.problems == []  # 0..20 is not "outside the frames 1..50"
    first, second = result.videos[0].intervals
    assert (first.onset, first.apex, first.offset) == (1, 5, 20)
    assert second.onset == 30
    # CAS(ME)^2 onset 0 stays a problem (0 there means "not coded", not "first frame").
    casme = [(1, "anger1_1", 0, 131, 140, "4", "negative", "macro-expression", "anger")]
    bad = read_long_videos("casme2-lv", write_casme2_lv_workbook(tmp_path / "c.xlsx", rows=casme))
    assert ["onset is empty or 0" in p.message for p in bad.problems] == [True]


def test_samm_lv_bad_rows(tmp_path):
    rows = [
        ("006", "006_1", 10, 12, 20, "Micro - 1/2", 12),  # no movement number
        ("abc", "006_1_3", 10, 12, 20, "Macro", 12),
        ("006", "006_1_4", "x", 12, 20, "Macro", 12),
        ("006", "006_1_5", 10, -1, 20, "Macro", 12),  # apex not coded: kept
        ("006", "006_1_6", 30, "/", 40, "Macro", 12),  # apex unusable: kept without it
    ]
    result = read_long_videos("samm-lv", write_samm_lv_sheet(tmp_path / "s.xlsx", rows=rows))
    assert [p.row for p in result.problems] == [2, 3, 4]
    (video,) = result.videos
    assert [i.apex for i in video.intervals] == [None, None]
    assert any("apex not coded" in str(w) for w in result.warnings)
    assert any("row 6" in str(w) and "'/' is not a frame number" in str(w) for w in result.warnings)


def test_frame_cell():
    assert frame_cell(566.4, "onset") == (566, "onset 566.4 rounded to 566")
    assert frame_cell(566.5, "onset")[0] == 567
    assert frame_cell("12", "onset") == (12, "")
    assert frame_cell(0, "offset") == (None, "")
    assert frame_cell(None, "apex") == (None, "")
    with pytest.raises(RowError):
        frame_cell("/", "apex")
    with pytest.raises(RowError):
        frame_cell(-4, "apex")


def test_data_summary_cli(tmp_path):
    coding = write_casme2_lv_workbook(tmp_path / "c.xlsx")
    runner = CliRunner()
    result = runner.invoke(
        app, ["data", "summary", "--corpus", "casme2-lv", "--coding", str(coding), "--json"]
    )
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert {k: info[k] for k in ("videos", "expressions", "micro", "macro", "subjects")} == {
        "videos": 5,
        "expressions": 7,
        "micro": 3,
        "macro": 4,
        "subjects": 3,
    }
    assert info["problems"] == [] and len(info["warnings"]) == 3
    text = runner.invoke(app, ["data", "summary", "--corpus", "samm-lv", "--coding", str(coding)])
    assert text.exit_code != 0
    assert "no sheet 'FACS_Movement_Only'" in str(text.exception)
