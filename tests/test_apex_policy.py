"""The apex policy for a coded apex outside onset..offset, on a real synthetic clip."""

from __future__ import annotations

import json
from pathlib import Path

import openpyxl
import pandas as pd
import pytest
from typer.testing import CliRunner

from apexmer.cli.main import app
from apexmer.data.casme2 import read_casme2
from apexmer.data.frames import open_frames
from apexmer.errors import ApexmerError, ConfigError
from apexmer.face.align import AlignConfig
from apexmer.face.landmarks import get_detector
from apexmer.preprocess.pipeline import PreprocessConfig, process_clip

SMALL = AlignConfig(size=48)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory):
    from apexmer.data.synth import write_synthetic_corpus

    out = tmp_path_factory.mktemp("apexcorpus")
    return write_synthetic_corpus(out, subjects=1, clips_per_subject=2, seed=11, size=(320, 240))


@pytest.fixture(scope="module")
def clip(corpus):
    row = corpus.ground_truth.iloc[0]
    return open_frames(corpus.frames_root / f"sub{int(row['subject']):02d}" / row["clip"]), row


def test_policy_config_is_checked_and_recorded() -> None:
    with pytest.raises(ConfigError, match="apex_outside='nearest'"):
        PreprocessConfig(apex_outside="nearest")
    config = PreprocessConfig(apex_outside="clamped")
    assert config.to_dict()["apex_outside"] == "clamped"
    assert PreprocessConfig.from_dict(config.to_dict()) == config
    assert PreprocessConfig.from_dict({}).apex_outside == "spotted"  # the documented default


@pytest.mark.parametrize("policy", ["spotted", "clamped", "labelled"])
def test_apex_outside_span_follows_the_policy(clip, policy: str) -> None:
    source, row = clip
    onset, coded = int(row["onset"]), int(row["apex"])
    offset = coded - 2  # the coded apex is now 2 frames after the offset; the frame exists
    config = PreprocessConfig(apex_outside=policy, align=SMALL)
    res = process_clip(
        source, onset, offset, detector=get_detector("dlib"), config=config, apex_label=coded
    )
    assert res.apex_labelled == coded and onset <= res.apex_spotted <= offset
    expected = {"spotted": res.apex_spotted, "clamped": offset, "labelled": coded}[policy]
    assert res.apex == expected and res.apex_source == policy
    assert onset <= res.mid <= max(res.apex, onset)


def test_inside_apex_is_used_whatever_the_policy(clip) -> None:
    source, row = clip
    onset, coded, offset = (int(row[k]) for k in ("onset", "apex", "offset"))
    res = process_clip(
        source,
        onset,
        offset,
        detector=get_detector("dlib"),
        config=PreprocessConfig(apex_outside="clamped", align=SMALL),
        apex_label=coded,
    )
    assert res.apex == coded and res.apex_source == "labelled"


def test_labelled_policy_names_the_fix_when_the_frame_is_missing(clip) -> None:
    source, row = clip
    onset, offset = int(row["onset"]), int(row["offset"])
    with pytest.raises(ApexmerError, match="--apex-outside spotted"):
        process_clip(
            source,
            onset,
            offset,
            detector=get_detector("dlib"),
            config=PreprocessConfig(apex_outside="labelled", align=SMALL),
            apex_label=offset + 500,
        )


@pytest.fixture(scope="module")
def flagged(corpus, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """The corpus's sheet with row 2's apex 40 frames after its offset (no such frame):
    the sheet and that offset."""
    book = openpyxl.load_workbook(corpus.coding)
    sheet = book.active
    header = [c.value for c in sheet[1]]
    apex_col = header.index("ApexFrame") + 1
    offset = sheet.cell(row=2, column=header.index("OffsetFrame") + 1).value
    sheet.cell(row=2, column=apex_col).value = offset + 40
    coding = tmp_path_factory.mktemp("flagged") / corpus.coding.name
    book.save(coding)
    return coding, offset


def test_spot_eval_does_not_score_a_flagged_apex(corpus, flagged) -> None:
    from apexmer.spotting.apex_eval import evaluate_spotting

    samples = read_casme2(flagged[0], root=corpus.frames_root, classes="all")
    table = evaluate_spotting(samples).set_index("key")
    key = next(s.key for s in samples if s.extra.get("apex_outside"))
    assert "not scored" in table.loc[key, "problem"] and pd.isna(table.loc[key, "error"])
    other = table.drop(index=key)
    assert len(other) == 1 and (other["problem"] == "").all() and other["error"].notna().all()


def test_preprocess_cli_keeps_the_flagged_sample(corpus, flagged, tmp_path: Path) -> None:
    coding, offset = flagged
    samples = read_casme2(coding, root=corpus.frames_root, classes="all")
    assert len(samples) == 2 and len(samples.warnings) == 1
    flagged = next(s for s in samples if s.extra.get("apex_outside"))

    out = tmp_path / "cache"
    args = ["preprocess", "--corpus", "casme2", "--coding", str(coding), "--out", str(out)]
    args += ["--root", str(corpus.frames_root), "--classes", "all", "--size", "48"]
    result = CliRunner().invoke(app, [*args, "--apex-outside", "clamped"])
    assert result.exit_code == 0, result.output
    assert "2 samples preprocessed, 0 problems" in result.output
    assert "1 warnings (samples kept, flagged)" in result.output
    settings = json.loads((out / "preprocess.json").read_text())
    assert settings["preprocess"]["apex_outside"] == "clamped"
    record = json.loads(
        (out / "records" / "casme2" / flagged.subject / f"{flagged.clip}.json").read_text()
    )
    assert record["apex_source"] == "clamped" and record["apex"] == offset
    table = pd.read_csv(out / "problems.csv")
    assert list(table["level"]) == ["warning"] and table["sample"][0] == flagged.key
    assert len(pd.read_csv(out / "manifest.csv")) == 2
