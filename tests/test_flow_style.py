"""The ``ststnet`` flow style: the face box crop (no mask, fills the square), its flows in
the pipeline, recorded in preprocess.json and checkpoints, followed by the Predictor."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import matplotlib
import numpy as np
import pytest

from apexmer.data.frames import open_frames
from apexmer.data.synth import write_synthetic_corpus
from apexmer.errors import ConfigError
from apexmer.face import AlignConfig, align_face, get_detector, transform_points
from apexmer.face.align import face_box, face_box_crop
from apexmer.preprocess.flow import FlowConfig, pair_features
from apexmer.preprocess.pipeline import PreprocessConfig, process_clip

GRACE = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
SIZE = 96


@pytest.fixture(scope="module")
def detector():
    return get_detector("dlib")


@pytest.fixture(scope="module")
def photo(detector) -> tuple[np.ndarray, np.ndarray]:
    image = cv2.imread(str(GRACE))
    face = detector.detect(image)
    assert face is not None
    return image, face.points.astype(np.float64)


def test_face_box_crop_fills_the_square(photo) -> None:
    image, points = photo
    crop, matrix = face_box_crop(image, points, SIZE)
    assert crop.shape == (SIZE, SIZE, 3) and crop.dtype == np.uint8
    moved = transform_points(points, matrix)
    # cheek to cheek and brows to chin reach the four sides of the square
    np.testing.assert_allclose(moved[0:17, 0].min(), 0.0, atol=1e-9)
    np.testing.assert_allclose(moved[0:17, 0].max(), SIZE, atol=1e-9)
    np.testing.assert_allclose(moved[17:27, 1].min(), 0.0, atol=1e-9)
    np.testing.assert_allclose(moved[0:17, 1].max(), SIZE, atol=1e-9)
    x0, y0, x1, y1 = face_box(points)
    assert x1 - x0 > 50 and y1 - y0 > 50


def test_face_box_crop_has_no_mask_where_apexmer_has_one(photo) -> None:
    image, points = photo
    crop, _ = face_box_crop(image, points, SIZE)
    masked, _ = align_face(image, points, AlignConfig(size=SIZE))
    corner = (slice(0, 8), slice(0, 8))
    # apexmer's crop: the masked background is the constant fill in the corners
    assert (masked[corner] == 0).all()
    # the face box crop: image content everywhere, no constant border row or column
    assert crop[corner].std() > 1.0
    for edge in (crop[0], crop[-1], crop[:, 0], crop[:, -1]):
        assert edge.std() > 1.0
    assert (crop == 0).all(axis=2).mean() < 0.01


def test_flow_config_style_round_trip_and_legacy() -> None:
    config = FlowConfig(style="ststnet")
    assert config.to_dict()["style"] == "ststnet"
    assert FlowConfig.from_dict(config.to_dict()) == config
    old = {k: v for k, v in FlowConfig().to_dict().items() if k != "style"}
    assert FlowConfig.from_dict(old).style == "apexmer"  # written before the field
    with pytest.raises(ConfigError, match="flow style"):
        FlowConfig(style="matlab")


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("style_corpus")
    corpus = write_synthetic_corpus(out, subjects=1, clips_per_subject=1, seed=5, size=(320, 240))
    row = corpus.ground_truth.iloc[0]
    folder = corpus.frames_root / str(row["folder"]) / str(row["clip"])
    return folder, int(row["onset"]), int(row["offset"])


def test_pipeline_computes_the_ststnet_flow_on_face_box_crops(clip, detector) -> None:
    folder, onset, offset = clip
    style = FlowConfig(algorithm="farneback", style="ststnet")
    config = PreprocessConfig(align=AlignConfig(size=64), flow=style)
    with open_frames(folder) as source:
        res = process_clip(source, onset, offset, detector=detector, config=config)
        apex_points = res.landmarks["apex"].points
        first, apex_frame = source.read(res.onset), source.read(res.apex)
    a, matrix = face_box_crop(first, apex_points, 64)
    b, _ = face_box_crop(apex_frame, apex_points, 64)
    expected = pair_features(a, b, style, transform_points(apex_points, matrix))
    np.testing.assert_array_equal(res.flows["apex"], expected)
    # the other style reads the masked aligned crops: a different field
    other = PreprocessConfig(align=AlignConfig(size=64), flow=FlowConfig(algorithm="farneback"))
    with open_frames(folder) as source:
        res2 = process_clip(source, onset, offset, detector=detector, config=other)
    assert not np.allclose(res2.flows["apex"], res.flows["apex"])
    assert json.loads(json.dumps(config.to_dict()))["flow"]["style"] == "ststnet"
