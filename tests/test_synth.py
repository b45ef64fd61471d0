"""The synthetic CASME II corpus: layout, sheet quirks, determinism, motion where it belongs."""

from __future__ import annotations

import re

import cv2
import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from apexmer.cli.synth import register
from apexmer.data import synth
from apexmer.data.frames import list_frames
from apexmer.errors import ConfigError, DataError

SIZE = (320, 240)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> synth.SynthInfo:
    return synth.write_synthetic_corpus(tmp_path_factory.mktemp("a"), 2, 3, seed=0, size=SIZE)


@pytest.fixture(scope="module")
def corpus_again(tmp_path_factory) -> synth.SynthInfo:
    return synth.write_synthetic_corpus(tmp_path_factory.mktemp("b"), 2, 3, seed=0, size=SIZE)


def _frames(info: synth.SynthInfo, row: dict) -> list[np.ndarray]:
    folder = info.frames_root / row["folder"] / row["clip"]
    return [cv2.imread(str(p)) for _, p in list_frames(folder)]


def _gray(frame: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY).astype(np.float32)


def test_determinism(corpus, corpus_again, tmp_path):
    a, b = corpus, corpus_again
    pd.testing.assert_frame_equal(a.ground_truth, b.ground_truth)
    for name in (synth.CODING_NAME, synth.GROUND_TRUTH_NAME):
        assert (a.root / name).read_bytes() == (b.root / name).read_bytes()
    files_a = sorted(p.relative_to(a.root) for p in a.root.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b.root) for p in b.root.rglob("*") if p.is_file())
    assert files_a == files_b and len(files_a) > 100
    for rel in files_a:  # every frame, the sheet and the ground truth, byte for byte
        assert (a.root / rel).read_bytes() == (b.root / rel).read_bytes(), rel
    other = synth.plan_corpus(2, 3, seed=1, size=SIZE)
    assert not other.equals(a.ground_truth)
    face0 = synth.subject_identity(0, 1, SIZE).image
    assert not np.array_equal(face0, synth.subject_identity(1, 1, SIZE).image)
    assert not np.array_equal(face0, synth.subject_identity(0, 2, SIZE).image)


def test_layout_and_ground_truth(corpus):
    truth = pd.read_csv(corpus.root / "ground_truth.csv", keep_default_na=False)
    assert corpus.n_clips == len(truth) == 6
    assert corpus.coding == corpus.root / "CASME2-coding-20190701.xlsx"
    assert sorted(p.name for p in corpus.frames_root.iterdir()) == ["sub01", "sub02"]
    for row in truth.to_dict("records"):
        numbers = [n for n, _ in list_frames(corpus.frames_root / row["folder"] / row["clip"])]
        assert numbers == list(range(row["onset"], row["offset"] + 1))
        assert row["onset"] < row["apex"] < row["offset"]
        assert 20 <= row["n_frames"] <= 40 and row["apex"] == row["onset"] + row["apex_index"]
        assert 0.25 <= row["apex_index"] / (row["n_frames"] - 1) <= 0.75
        assert row["label_5class"] == (
            "" if row["emotion"] in ("sadness", "fear") else row["emotion"]
        )
    image = cv2.imread(str(next((corpus.frames_root / "sub01").rglob("*.jpg"))))
    assert image.shape == (SIZE[1], SIZE[0], 3)


def test_frame_numbers_cross_a_digit_boundary(corpus):
    crossing = [r for r in corpus.ground_truth.to_dict("records") if r["onset"] <= 99 < r["offset"]]
    assert crossing, "one clip must hold img99.jpg and img100.jpg"
    folder = corpus.frames_root / crossing[0]["folder"] / crossing[0]["clip"]
    names = [p.name for p in folder.iterdir()]
    assert {"img99.jpg", "img100.jpg"} <= set(names)
    assert sorted(names) != [p.name for _, p in list_frames(folder)]  # lexical order is wrong


def test_sheet_as_pandas_reads_it(corpus, tmp_path):
    sheet = pd.read_excel(corpus.coding)  # first sheet, header in row 1
    assert list(sheet.columns) == [
        "Subject",
        "Filename",
        "Unnamed: 2",
        "OnsetFrame",
        "ApexFrame",
        "OffsetFrame",
        "Unnamed: 6",
        "Action Units",
        "Estimated Emotion",
        "Objective Classes",
    ]
    assert sheet["Unnamed: 2"].isna().all() and sheet["Unnamed: 6"].isna().all()
    assert sorted(sheet["Subject"].unique().tolist()) == [1, 2]
    assert (sheet["ApexFrame"] == "/").sum() == 1
    assert pd.to_numeric(sheet["ApexFrame"], errors="coerce").notna().sum() == len(sheet) - 1
    truth = corpus.ground_truth
    assert sheet["OnsetFrame"].tolist() == truth["onset"].tolist()
    assert sheet["Filename"].tolist() == truth["clip"].tolist()
    assert set(sheet["Estimated Emotion"]) <= set(synth.CASME2_COUNTS)

    # A full-size plan shows the remaining quirks: mixed AU types, trailing "f" or not.
    big = synth.plan_corpus(8, 8, seed=0)
    sheet = pd.read_excel(synth.write_coding_sheet(big, tmp_path / "big.xlsx"))
    kinds = {type(v) for v in sheet["Action Units"]}
    assert kinds == {int, str}
    assert sheet["Action Units"].astype(str).str.contains(r"^[RL]\d|\+").any()
    assert all(re.fullmatch(r"EP\d\d_\d\df?", n) for n in sheet["Filename"])
    assert (
        sheet["Filename"].str.endswith("f").any() and not sheet["Filename"].str.endswith("f").all()
    )
    assert sheet["Objective Classes"].dtype.kind == "i"
    assert not sheet.duplicated(["Subject", "Filename"]).any()


def test_class_proportions():
    assert synth.class_counts(255) == synth.CASME2_COUNTS
    counts = synth.class_counts(64)
    assert sum(counts.values()) == 64
    assert counts["others"] > counts["disgust"] > counts["happiness"] >= counts["repression"]
    assert counts["sadness"] >= 1 and counts["fear"] >= 1
    assert all(synth.class_counts(6)[e] >= 1 for e in synth.FIVE_CLASSES)
    plan = synth.plan_corpus(8, 8, seed=3)
    assert plan["emotion"].value_counts().to_dict() == {k: v for k, v in counts.items() if v}
    assert (plan["apex_in_sheet"] == "/").sum() == 1


def test_apex_is_where_the_motion_peaks(corpus):
    for row in corpus.ground_truth.to_dict("records"):
        face = synth.subject_identity(0, row["subject"], SIZE)
        points = face.landmarks + np.array([row["shift_x"], row["shift_y"]])
        moving = (
            np.linalg.norm(
                synth.expression_field(
                    points, row["action_units"], (SIZE[1], SIZE[0]), row["amplitude_px"]
                ),
                axis=2,
            )
            > 0.5
        )
        frames = [_gray(f) for f in _frames(corpus, row)]
        curve = [np.abs(f - frames[0])[moving].mean() for f in frames]
        # Noise and JPEG make the flat top of the bump ambiguous by one frame at most.
        assert abs(int(np.argmax(curve)) - row["apex_index"]) <= 1, (row, np.round(curve, 2))


def test_render_clip_peaks_exactly_at_injected_frame():
    face = synth.subject_identity(5, 1, SIZE)
    rng = np.random.default_rng(0)
    frames = synth.render_clip(
        face.image, face.landmarks, "surprise", 15, 9, 4.0, rng, noise_sigma=0, jitter=0
    )
    x0, y0 = face.landmarks.min(axis=0).astype(int)
    x1, y1 = face.landmarks.max(axis=0).astype(int)
    gray = [_gray(f)[y0:y1, x0:x1] for f in frames]
    curve = np.array([np.abs(g - gray[0]).mean() for g in gray])
    assert int(np.argmax(curve)) == 9
    assert curve[0] == 0 and curve[-1] < 0.05 * curve[9]
    profile = synth.motion_profile(15, 9)
    assert profile[9] == 1 and profile[0] == 0 and profile[-1] == pytest.approx(0, abs=1e-12)


REGIONS = {  # landmark indices spanning a region
    "mouth": list(range(48, 68)),
    "brows": list(range(17, 27)),
    "eyes": list(range(36, 48)),
}


def _region_change(diff: np.ndarray, points: np.ndarray, region: str, pad: int = 6) -> float:
    x0, y0 = points[REGIONS[region]].min(axis=0).astype(int) - pad
    x1, y1 = points[REGIONS[region]].max(axis=0).astype(int) + pad
    return float(diff[y0:y1, x0:x1].mean())


@pytest.mark.parametrize(
    ("emotion", "moves", "still"),
    [
        ("happiness", "mouth", "brows"),
        ("surprise", "brows", "mouth"),
        ("repression", "mouth", "eyes"),
        ("sadness", "mouth", "brows"),
    ],
)
def test_motion_is_localised(emotion, moves, still):
    face = synth.subject_identity(0, 1)
    frames = synth.render_clip(
        face.image,
        face.landmarks,
        emotion,
        5,
        2,
        4.0,
        np.random.default_rng(1),
        noise_sigma=0,
        jitter=0,
    )
    diff = np.abs(_gray(frames[2]) - _gray(frames[0]))
    assert _region_change(diff, face.landmarks, moves) > 5 * _region_change(
        diff, face.landmarks, still
    )


def test_unilateral_action_unit_moves_one_side():
    face = synth.subject_identity(0, 1)
    field = np.linalg.norm(synth.expression_field(face.landmarks, "R12", (480, 640), 5.0), axis=2)
    right, left = face.landmarks[48], face.landmarks[54]  # subject's right is image left
    assert field[int(right[1]), int(right[0])] > 3
    assert field[int(left[1]), int(left[0])] < 0.1
    assert synth.parse_action_units("R1+R2") == [(1, "R"), (2, "R")]
    assert synth.parse_action_units(12) == [(12, None)]
    with pytest.raises(ConfigError):
        synth.parse_action_units("AU12x")


def test_dlib_finds_the_synthetic_face():
    dlib = pytest.importorskip("dlib")
    face = synth.subject_identity(0, 2)
    frames = synth.render_clip(
        face.image, face.landmarks, "happiness", 5, 2, 5.0, np.random.default_rng(2)
    )
    rgb = np.ascontiguousarray(frames[2][:, :, ::-1])
    boxes = dlib.get_frontal_face_detector()(rgb, 0)
    assert len(boxes) == 1
    assert 180 <= boxes[0].width() <= 300  # CASME II-like face size in a 640x480 frame
    shape = dlib.shape_predictor(str(synth.dlib_model_path()))(rgb, boxes[0])
    points = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float32)
    assert points.shape == (68, 2)
    error = np.linalg.norm(points - face.landmarks, axis=1)
    # dlib's fit itself wobbles by several px between near-identical frames of this face
    # (glasses; most on the jaw line): compare the inner-face points, relative to face size.
    face_width = np.ptp(face.landmarks[:17, 0])
    assert np.median(error[17:]) < 0.06 * face_width, np.round(error, 1)


def test_refuses_to_mix_with_an_earlier_run(corpus):
    with pytest.raises(DataError, match="--overwrite"):
        synth.write_synthetic_corpus(corpus.root, 2, 3, seed=0, size=SIZE)
    with pytest.raises(ConfigError):
        synth.plan_corpus(0, 3)
    with pytest.raises(ConfigError, match="clips per subject"):
        synth.plan_corpus(1, synth.MAX_CLIPS_PER_SUBJECT + 1)
    with pytest.raises(ConfigError):
        synth.make_identity(0, (100, 80))


def test_cli(tmp_path):
    app = typer.Typer()
    register(app)

    @app.command()
    def _other() -> None:  # a second command keeps typer from flattening the app
        """unused"""

    result = CliRunner().invoke(
        app,
        [
            "synth",
            str(tmp_path / "c"),
            "--subjects",
            "1",
            "--clips-per-subject",
            "2",
            "--size",
            "320x240",
            "--seed",
            "4",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "2 clips" in result.output and "CASME2-coding-20190701.xlsx" in result.output
    assert (tmp_path / "c" / "ground_truth.csv").is_file()
