"""ROI motion (spotting/motion.py) on a real face photograph under known warps."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apexmer.data.frames import ArrayFrames
from apexmer.data.synth import expression_field, subject_identity
from apexmer.errors import ConfigError
from apexmer.face.landmarks import get_detector
from apexmer.face.rois import ROIS
from apexmer.spotting.motion import (
    LIDS,
    LandmarkTracker,
    MotionConfig,
    clip_motion,
    eye_aspect_ratio,
    roi_flow,
    video_motion,
    work_scale,
)

MOUTH = [i for i, (name, _) in enumerate(ROIS) if name.startswith("mouth")]
BROWS = [i for i, (name, _) in enumerate(ROIS) if name.startswith("brow")]


@pytest.fixture(scope="module")
def detector():
    return get_detector("dlib")


@pytest.fixture(scope="module")
def face():
    """A synthetic subject's neutral face (640x480, real photo texture) and its landmarks."""
    return subject_identity(0, 1)


def shifted(image: np.ndarray, dx: float, dy: float) -> np.ndarray:
    matrix = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(image, matrix, image.shape[1::-1], borderMode=cv2.BORDER_REFLECT_101)


def warped(image: np.ndarray, field: np.ndarray, a: float = 1.0) -> np.ndarray:
    h, w = image.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(
        image,
        gx - a * field[..., 0],
        gy - a * field[..., 1],
        cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REFLECT_101,
    )


def gray(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)


def eye(height: float) -> np.ndarray:
    """Six eye points p1..p6 (corner, two top, corner, two bottom) of a 30 px wide eye."""
    return np.array(
        [[0, 0], [10, -height], [20, -height], [30, 0], [20, height], [10, height]], float
    )


def landmarks_with_eyes(height: float) -> np.ndarray:
    points = np.zeros((68, 2))
    points[36:42] = eye(height)
    points[42:48] = eye(height) + np.array([60.0, 0.0])
    return points


@settings(max_examples=30, deadline=None)
@given(
    st.floats(0.2, 5.0),
    st.floats(-100, 100),
    st.floats(-100, 100),
)
def test_eye_aspect_ratio_drops_when_shut_and_ignores_scale(scale, dx, dy) -> None:
    open_eye = landmarks_with_eyes(5.0) * scale + (dx, dy)
    shut_eye = landmarks_with_eyes(0.5) * scale + (dx, dy)
    # (|p2 - p6| + |p3 - p5|) / (2 |p1 - p4|) = (10 + 10) / 60 for the open eye
    assert eye_aspect_ratio(open_eye) == pytest.approx(1 / 3)
    assert eye_aspect_ratio(shut_eye) == pytest.approx(1 / 30)


def test_head_translation_is_removed_local_motion_is_kept(face) -> None:
    """A 1.5 px head shift leaves every ROI near 0; a 3 px lip-corner pull (AU12) moves the
    mouth-corner ROIs up and out, and far more than the brows."""
    config = MotionConfig()
    scale = work_scale(face.landmarks, config)
    points = face.landmarks * scale

    def small(image: np.ndarray) -> np.ndarray:
        return cv2.resize(gray(image), None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)

    ref = small(face.image)
    head = roi_flow(ref, small(shifted(face.image, 1.5, -1.0)), points, config)
    assert head.shape == (len(ROIS) + len(LIDS), 2)
    assert np.abs(head).max() < 0.35

    field = expression_field(face.landmarks, 12, face.image.shape[:2], 3.0)
    smile = roi_flow(ref, small(warped(face.image, field)), points, config)
    mouth = np.linalg.norm(smile[MOUTH], axis=1)
    assert mouth.min() > 0.5  # the ROI mean of a 3 px peak (2 px at the working scale)
    assert mouth.min() > 3 * np.linalg.norm(smile[BROWS], axis=1).max()
    assert np.all(smile[MOUTH, 1] < 0)  # up in the image
    # lip corners move apart: the image-left one left, the image-right one right
    left, right = sorted(MOUTH, key=lambda i: face.landmarks[list(ROIS[i][1])].mean(0)[0])
    assert smile[left, 0] < 0 < smile[right, 0]


def test_clip_motion_is_zero_at_onset_and_follows_the_expression(face, detector) -> None:
    field = expression_field(face.landmarks, 12, face.image.shape[:2], 3.0)
    amplitudes = [0.0, 0.25, 0.5, 1.0, 0.5, 0.0]
    frames = [warped(face.image, field, a) for a in amplitudes]
    found = detector.detect(frames[0])
    vectors = clip_motion(ArrayFrames(frames), list(range(len(frames))), found)
    assert vectors.shape == (len(frames), len(ROIS), 2)
    assert np.abs(vectors[0]).max() < 1e-4  # a frame against itself
    mouth = np.linalg.norm(vectors[:, MOUTH], axis=2).mean(1)
    assert int(np.argmax(mouth)) == 3
    assert mouth[1] < mouth[2] < mouth[3] and mouth[5] < 0.3 * mouth[3]


def test_tracker_detects_once_then_follows_the_moving_face(face, detector) -> None:
    tracker = LandmarkTracker(detector, redetect_every=1000)
    first = tracker.update(face.image)
    errors = []
    for step in range(1, 16):
        moved = shifted(face.image, 0.8 * step, 0.4 * step)
        tracked = tracker.update(gray(moved))
        expected = first.points + np.array([0.8 * step, 0.4 * step])
        errors.append(np.abs(tracked.points - expected).mean())
    assert tracker.detections == 1
    assert np.mean(errors) < 2.0


def test_tracker_detects_again_when_the_face_is_lost(face, detector) -> None:
    tracker = LandmarkTracker(detector, redetect_every=1000)
    tracker.update(face.image)
    blank = np.full_like(face.image, 128)
    assert tracker.update(blank) is None  # the fit leaves nothing sensible: detect, none
    assert tracker.update(face.image) is not None
    assert tracker.detections == 3


class RecordingFrames(ArrayFrames):
    """ArrayFrames that remembers the order frames were read in."""

    def __init__(self, frames) -> None:
        super().__init__(frames)
        self.reads: list[int] = []

    def read(self, number: int) -> np.ndarray:
        self.reads.append(number)
        return super().read(number)


def test_video_motion_streams_each_frame_once_and_restarts_after_a_lost_face(
    face, detector
) -> None:
    frames = [shifted(face.image, 0.1 * i, 0) for i in range(8)]
    frames[4] = np.full_like(face.image, 128)  # no face here
    source = RecordingFrames(frames)
    motion = video_motion(source, list(range(8)), detector, lag=2, fps=30.0)
    assert source.reads == list(range(8))
    assert motion.tracked.tolist() == [True] * 4 + [False] + [True] * 3
    assert motion.segment.tolist() == [0, 0, 0, 0, -1, 1, 1, 1]
    assert np.isnan(motion.vectors[4]).all() and np.isnan(motion.ear[4])
    assert np.abs(motion.vectors[0]).max() < 1e-4  # compared with itself
    assert np.abs(motion.vectors[5]).max() < 1e-4  # a new run starts its own reference
    assert np.abs(motion.vectors[[1, 2, 3, 6, 7]]).max() < 0.35  # head shift removed
    assert motion.lids.shape == (8, 2, 2)
    assert motion.boxes[0, 2] > 50 and not motion.boxes[4].any()


@pytest.mark.parametrize(
    "options", [{"work_iod": 4}, {"roi_size": 0}, {"margin": -1}, {"redetect_s": 0}]
)
def test_bad_motion_config_is_refused(options) -> None:
    with pytest.raises(ConfigError):
        MotionConfig(**options)


@pytest.mark.slow
def test_motion_apex_spotter_finds_the_coded_apex(tmp_path) -> None:
    """SpotConfig(method="motion") on synthetic clips (real photo, raised-cosine expression,
    sensor noise): the coded apex within one frame, also through `apexmer spot`."""
    from typer.testing import CliRunner

    from apexmer.cli.main import app
    from apexmer.data.synth import render_clip
    from apexmer.spotting.apex import SpotConfig, spot_clip

    face = subject_identity(2, 1)
    rng = np.random.default_rng(5)
    for emotion, n, apex in (("happiness", 20, 7), ("surprise", 31, 19), ("disgust", 12, 5)):
        frames = render_clip(face.image, face.landmarks, emotion, n, apex, 4.0, rng)
        res = spot_clip(ArrayFrames(frames), config=SpotConfig(method="motion"))
        assert abs(res.apex_index - apex) <= 1, (emotion, res.apex_index, apex)
        assert res.curve.shape == (n,) and not np.isnan(res.curve).any()
    folder = tmp_path / "clip"
    folder.mkdir()
    for i, frame in enumerate(frames):
        cv2.imwrite(str(folder / f"img{i + 1}.png"), frame)
    args = ["spot", "--frames", str(folder), "--spot-method", "motion", "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert abs(json.loads(result.output)["apex"] - (apex + 1)) <= 1


def test_spot_method_option_travels_with_the_preprocessing_settings() -> None:
    from apexmer.preprocess.pipeline import PreprocessConfig
    from apexmer.spotting.apex import SpotConfig

    config = PreprocessConfig(spot=SpotConfig(method="motion"))
    assert PreprocessConfig.from_dict(config.to_dict()).spot.method == "motion"
    assert PreprocessConfig.from_dict({"spot": {"lag": 3}}).spot.method == "paper"
    with pytest.raises(ConfigError, match="method"):
        SpotConfig(method="optical")
