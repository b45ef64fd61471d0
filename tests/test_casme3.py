"""CAS(ME)^3 Part A reader: the label sheet as published (METHOD.md section 13)."""

from __future__ import annotations

import json
from pathlib import Path

import openpyxl
import pytest
from typer.testing import CliRunner

from apexmer.cli.main import app
from apexmer.data.casme3 import CASME3_NAME, read_casme3
from apexmer.data.readers import CORPORA, read_corpus
from apexmer.errors import DataError
from corpus_files import (
    CASME3_ROWS,
    CASME3_SUBJECTS,
    casme3_published_rows,
    truncate,
    write_casme3_sheet,
    write_frames,
)


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("casme3")
    return write_casme3_sheet(folder / CASME3_NAME, casme3_published_rows())


def test_published_counts_per_class_map(published: Path) -> None:
    seven = read_casme3(published)
    assert len(seven) == 860 and len(seven.subjects) == CASME3_SUBJECTS
    assert seven.problems == [] and seven.coding_version == "casme3-partA-v2"
    assert seven.class_counts() == {
        "anger": 64,
        "disgust": 250,
        "fear": 86,
        "happy": 55,
        "others": 161,  # 158 + the 3 spelled "Others"
        "sad": 57,
        "surprise": 187,
    }
    four = read_casme3(published, classes="4class")
    assert four.classes == ("negative", "positive", "surprise", "others")
    assert four.class_counts() == {"negative": 457, "positive": 55, "surprise": 187, "others": 161}
    three = read_casme3(published, classes="3class")
    assert three.classes == ("negative", "positive", "surprise")
    assert three.class_counts() == {"negative": 457, "positive": 55, "surprise": 187}
    assert len(read_casme3(published, classes="all")) == 860
    # Every key unique although videos hold several MEs.
    assert len({s.key for s in seven}) == 860


def test_offset_zero_is_not_coded_as_in_casme2(tmp_path: Path) -> None:
    # The published sheet: 860 rows, two with offset 0 ("not coded", as CAS(ME)^2 writes
    # it) and one with a genuine onset after offset.
    rows = casme3_published_rows()
    rows[10] = (*rows[10][:2], 500, 510, 0, *rows[10][5:])
    rows[20] = (*rows[20][:2], 700, 704, 0, *rows[20][5:])
    rows[30] = (*rows[30][:2], 900, 905, 880, *rows[30][5:])
    result = read_casme3(write_casme3_sheet(tmp_path / CASME3_NAME, rows), classes="all")
    assert len(result) == 859
    (error,) = result.errors
    assert error.row == 32 and "Onset 900 is after Offset 880" in error.message
    warned = result.warnings
    assert [w.row for w in warned] == [12, 22]
    assert all(
        "offset not coded" in w.message and "apex + (apex - onset)" in w.message for w in warned
    )
    by_row = {s.extra["row"]: s for s in result}
    first, second = by_row[12], by_row[22]
    assert (first.onset, first.apex, first.offset) == (500, 510, 520)  # the rise mirrored
    assert first.clip == f"{rows[10][1]}_500_520" and first.extra["offset_not_coded"] is True
    assert (second.offset, "offset_not_coded" in by_row[2].extra) == (708, False)
    # Without an apex the clip's end cannot be known: a problem, not a guess.
    rows[10] = (*rows[10][:2], 500, "/", 0, *rows[10][5:])
    again = read_casme3(write_casme3_sheet(tmp_path / "b.xlsx", rows), classes="all")
    assert sorted(p.row for p in again.errors) == [12, 32]


def test_cells_several_mes_per_video_and_others_spelling(tmp_path: Path) -> None:
    sheet = write_casme3_sheet(tmp_path / CASME3_NAME)
    result = read_casme3(sheet, classes="4class")
    assert len(result) == len(CASME3_ROWS) and result.problems == []
    first = result.samples[0]
    assert (first.dataset, first.subject, first.clip) == ("casme3", "spNO.1", "a_157_175")
    assert (first.onset, first.apex, first.offset) == (157, 163, 175)
    assert first.extra["video"] == "a" and first.extra["objective_class"] == "I"
    assert first.action_units == "R12" and first.label == "positive"
    in_a = [s for s in result if s.subject == "spNO.1" and s.extra["video"] == "a"]
    assert [s.clip for s in in_a] == ["a_157_175", "a_402_421", "a_600_618"]
    others = [s for s in result if s.emotion == "others"]
    assert len(others) == 2 and {s.label for s in others} == {"others"}
    assert "spNO.10" in result.subjects


def test_frames_under_either_layout_and_a_chosen_one(tmp_path: Path) -> None:
    sheet = write_casme3_sheet(tmp_path / CASME3_NAME, CASME3_ROWS[:4])
    root = tmp_path / "part_A"
    write_frames(root / "spNO.1" / "a" / "color", range(150, 620), "{}.jpg")
    write_frames(root / "spNO.1" / "a" / "depth", range(150, 160), "{}.png")
    write_frames(root / "spNO.1" / "b", range(30, 51), "{}.jpg")  # a colour-only release
    result = read_casme3(sheet, root=root)
    assert len(result) == 4 and result.problems == []
    assert result.samples[0].frames == root / "spNO.1" / "a" / "color"
    assert result.samples[3].frames == root / "spNO.1" / "b"
    # An explicit layout is the only one tried; the others are reported with a fix.
    chosen = read_casme3(sheet, root=root, layout="{subject}/{video}/color")
    assert [s.clip for s in chosen] == ["a_157_175", "a_402_421", "a_600_618"]
    (problem,) = chosen.problems
    assert "spNO.1/b/color" in problem.file and "Fix:" in problem.message
    truncate(root / "spNO.1" / "a" / "color" / "410.jpg", 1 / 3)
    cut = read_casme3(sheet, root=root)
    assert [s.clip for s in cut] == ["a_157_175", "a_600_618", "b_30_50"]
    with pytest.raises(DataError, match="must be relative and contain"):
        read_casme3(sheet, root=root, layout="/abs/{subject}")
    with pytest.raises(DataError, match="unknown field"):
        read_casme3(sheet, root=root, layout="{subject}/{clip}")


def test_bad_rows_are_problems_and_duplicates_caught(tmp_path: Path) -> None:
    rows = [
        *CASME3_ROWS,
        ("sp1", "a", 10, 12, 20, "4", "I", "disgust"),  # bad subject
        ("spNO.3", "a", 10, 12, 20, "4", "I", "contempt"),  # not a CAS(ME)^3 emotion
        ("spNO.1", "a", 157, 160, 175, "R12", "I", "happy"),  # the same ME twice
        ("spNO.3", "b", 30, 90, 50, "4", "I", "fear"),  # apex outside: kept, flagged
    ]
    result = read_casme3(write_casme3_sheet(tmp_path / CASME3_NAME, rows))
    messages = {p.row: p.message for p in result.errors}
    n = len(CASME3_ROWS) + 1  # sheet row of the last CASME3_ROWS row
    assert "Subject 'sp1'" in messages[n + 1] and "spNO.<number>" in messages[n + 1]
    assert "unknown emotion 'contempt'" in messages[n + 2]
    assert "appears twice" in messages[n + 3]
    assert [w.row for w in result.warnings] == [n + 4]
    assert len(result) == len(CASME3_ROWS) + 1


def test_registry_cli_and_wrong_sheet(tmp_path: Path, published: Path) -> None:
    assert "casme3" in CORPORA
    assert len(read_corpus("casme3", coding=published, classes="3class")) == 699
    out = CliRunner().invoke(
        app,
        ["data", "summary", "--corpus", "casme3", "--coding", str(published), "--json"],
    )
    assert out.exit_code == 0, out.output
    info = json.loads(out.output)
    assert info["samples"] == 860 and info["subjects"] == CASME3_SUBJECTS
    assert info["coding_version"] == "casme3-partA-v2"
    with pytest.raises(DataError, match="--layout applies to casme3 only"):
        read_corpus("samm", coding=published, layout="{subject}/{video}")
    with pytest.raises(DataError, match="has no '5class' label map"):
        read_casme3(published, classes="5class")
    book = openpyxl.Workbook()
    book.active.title = "Sheet1"
    book.save(tmp_path / "other.xlsx")
    with pytest.raises(DataError, match="no sheet 'label'"):
        read_casme3(tmp_path / "other.xlsx")
