"""Apex spotting on synthetic motion injected into a real face photograph."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apexmer.data.frames import ArrayFrames
from apexmer.errors import ConfigError, DataError, NoFaceError
from apexmer.face import ROIS, FaceLandmarks, get_detector, roi_boxes
from apexmer.spotting import SpotConfig, intensity_curve, spot_apex, spot_clip
from apexmer.spotting.apex import (
    CURVE_BLOCK_BYTES,
    curve_from_crops,
    stream_curve,
    stream_frames,
)
from faces import GRACE
from procs import cli_command

N = 40


@pytest.fixture(scope="module")
def detector():
    return get_detector("dlib")


@pytest.fixture(scope="module")
def base() -> np.ndarray:
    """Grace Hopper at half size in a 320x240 frame (face ~110 px)."""
    face = cv2.imread(str(GRACE))
    matrix = cv2.getRotationMatrix2D((256.0, 300.0), 4.0, 0.5)
    matrix[:, 2] += (160.0 - 256.0, 120.0 - 300.0)
    return cv2.warpAffine(face, matrix, (320, 240), borderMode=cv2.BORDER_REFLECT)


@pytest.fixture(scope="module")
def face(detector, base) -> FaceLandmarks:
    found = detector.detect(base)
    assert found is not None
    return found


def make_clip(
    base: np.ndarray,
    centre: np.ndarray,
    peak: int,
    n: int = N,
    amp: float = 2.0,
    noise: float = 2.0,
    seed: int = 0,
) -> list[np.ndarray]:
    """A local upward bump motion (brow raise) that rises and falls, peaking at ``peak``."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0 : base.shape[0], 0 : base.shape[1]].astype(np.float32)
    bump = np.exp(-((xx - centre[0]) ** 2 + (yy - centre[1]) ** 2) / (2 * 12.0**2))
    frames = []
    for t in range(n):
        a = amp * np.exp(-0.5 * ((t - peak) / 4.0) ** 2)
        moved = cv2.remap(
            base,
            xx,
            (yy + a * bump).astype(np.float32),
            cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REFLECT,
        )
        noisy = moved + noise * rng.standard_normal(moved.shape, dtype=np.float32)
        frames.append(np.clip(np.round(noisy), 0, 255).astype(np.uint8))
    return frames


def gray_stack(frames: list[np.ndarray]) -> np.ndarray:
    return np.stack([cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in frames]).astype(np.float32)


def test_roi_boxes_square_inside_and_scaled(face: FaceLandmarks) -> None:
    boxes = roi_boxes(face.points, (240, 320), size=0.5)
    assert boxes.shape == (len(ROIS), 4) == (10, 4)
    side = round(0.5 * face.inter_ocular)
    assert np.all(boxes[:, 2:] == side)
    assert np.all(boxes[:, :2] >= 0) and np.all(boxes[:, 0] + side <= 320)
    assert np.all(boxes[:, 1] + side <= 240)
    doubled = roi_boxes(face.points * 2, (480, 640), size=0.5)
    assert abs(doubled[0, 2] - 2 * side) <= 1  # scales with the face


@pytest.mark.parametrize("peak", [9, 20, 31])
@pytest.mark.parametrize("offset_term", [True, False])
def test_spots_injected_peak(base, face, peak: int, offset_term: bool) -> None:
    centre = face.points[[21, 22]].mean(0)
    frames = gray_stack(make_clip(base, centre, peak, seed=peak))
    curve = intensity_curve(
        frames, roi_boxes(face.points, base.shape), SpotConfig(offset_term=offset_term)
    )
    assert curve.shape == (N,)
    # the backward lag-3 difference makes the method about lag/2 frames late
    assert 0 <= spot_apex(curve) - peak <= 2


def test_spot_clip_with_real_detection(detector, base, face) -> None:
    frames = make_clip(base, face.points[[48, 54]].mean(0), peak=22, seed=1)
    result = spot_clip(ArrayFrames(frames), onset=4, offset=36, detector=detector)
    assert result.numbers == list(range(4, 37))
    assert (result.onset, result.offset) == (4, 36)
    assert result.curve.shape == (33,)
    assert result.numbers[result.apex_index] == result.apex
    assert 22 <= result.apex <= 24
    assert np.isnan(result.curve[:3]).all() and np.isfinite(result.curve[3:]).all()
    assert result.as_dict()["curve"][0] is None


def test_per_frame_landmarks_run_and_face_loss_is_named(detector, base, face) -> None:
    frames = make_clip(base, face.points[[21, 22]].mean(0), peak=12, n=16)
    result = spot_clip(
        ArrayFrames(frames), detector=detector, config=SpotConfig(landmarks="per_frame")
    )
    assert result.curve.shape == (16,) and result.apex in range(3, 16)
    frames[9] = np.zeros_like(frames[9])
    with pytest.raises(NoFaceError, match="frame 9"):
        spot_clip(ArrayFrames(frames), detector=detector, config=SpotConfig(landmarks="per_frame"))


def test_first_frames_rule() -> None:
    crops = np.random.default_rng(0).uniform(0, 255, (12, 10, 6, 6)).astype(np.float32)
    skipped = curve_from_crops(crops, SpotConfig())
    assert np.isnan(skipped[:3]).all() and np.isfinite(skipped[3:]).all()
    clamped = curve_from_crops(crops, SpotConfig(first_frames="clamp", offset_term=False))
    np.testing.assert_allclose(clamped[:3], 1.0)  # compared with the onset: trivially 1
    skipped_onset_only = curve_from_crops(crops, SpotConfig(offset_term=False))
    np.testing.assert_allclose(clamped[3:], skipped_onset_only[3:])  # same from frame lag on
    lag5 = curve_from_crops(crops, SpotConfig(lag=5))
    assert np.isnan(lag5[:5]).all() and np.isfinite(lag5[5:]).all()


def test_offset_term_adds_the_second_ratio() -> None:
    crops = np.random.default_rng(1).uniform(0, 255, (9, 10, 5, 5)).astype(np.float32)
    both = curve_from_crops(crops, SpotConfig())
    onset_only = curve_from_crops(crops, SpotConfig(offset_term=False))
    c = crops.reshape(9, -1).astype(np.float64)
    i = 6
    den = np.abs(c[i] - c[i - 3]) + 1
    np.testing.assert_allclose(onset_only[i], np.mean((np.abs(c[i] - c[0]) + 1) / den), rtol=1e-5)
    np.testing.assert_allclose(
        both[i] - onset_only[i], np.mean((np.abs(c[i] - c[-1]) + 1) / den), rtol=1e-5
    )


@settings(max_examples=25, deadline=None)
@given(offset=st.floats(-60, 60), seed=st.integers(0, 2**16), blur=st.sampled_from([0.0, 1.0]))
def test_curve_invariant_to_global_brightness_offset(offset: float, seed: int, blur: float) -> None:
    frames = np.random.default_rng(seed).uniform(60, 190, (8, 24, 24)).astype(np.float32)
    rois = np.array([[0, 0, 8, 8], [10, 4, 8, 8], [16, 16, 8, 8]])
    cfg = SpotConfig(blur=blur)
    np.testing.assert_allclose(
        intensity_curve(frames + offset, rois, cfg),
        intensity_curve(frames, rois, cfg),
        rtol=1e-4,
        equal_nan=True,
    )


def test_bad_onset_offset_and_short_clips(detector) -> None:
    source = ArrayFrames([np.zeros((32, 32, 3), np.uint8)] * 10)
    with pytest.raises(DataError, match="onset frame 12 is not available"):
        spot_clip(source, onset=12, offset=None, detector=detector)
    with pytest.raises(DataError, match="offset frame 10 is not available"):
        spot_clip(source, onset=0, offset=10, detector=detector)
    with pytest.raises(DataError, match="not before offset"):
        spot_clip(source, onset=5, offset=5, detector=detector)
    with pytest.raises(DataError, match="needs at least 4") as info:
        spot_clip(source, onset=2, offset=4, detector=detector)
    assert "Fix:" in str(info.value)
    with pytest.raises(ValueError, match="at least 4"):
        curve_from_crops(np.zeros((3, 10, 4, 4)))


def test_no_face_on_onset_frame_names_file_and_frame(detector) -> None:
    source = ArrayFrames([np.full((120, 160, 3), 100, np.uint8)] * 8, name="clipA")
    with pytest.raises(NoFaceError, match=r"clipA, frame 2: no face"):
        spot_clip(source, onset=2, offset=7, detector=detector)


@pytest.mark.parametrize(
    "bad",
    [{"lag": 0}, {"landmarks": "every"}, {"first_frames": "x"}, {"roi_size": 0.0}, {"blur": -1.0}],
)
def test_config_validation(bad: dict) -> None:
    with pytest.raises(ConfigError):
        SpotConfig(**bad)


@pytest.mark.parametrize("peak", [9, 20, 31])
def test_symmetric_denominator_spots_the_peak_without_phase_shift(base, face, peak: int) -> None:
    centre = face.points[[21, 22]].mean(0)
    frames = gray_stack(make_clip(base, centre, peak, seed=peak))
    boxes = roi_boxes(face.points, base.shape)
    sym = intensity_curve(frames, boxes, SpotConfig(denominator="symmetric"))
    assert abs(spot_apex(sym) - peak) <= 1
    assert np.isnan(sym[:3]).all() and np.isnan(sym[-3:]).all()  # no F_{i-3} / F_{i+3}
    backward = intensity_curve(frames, boxes, SpotConfig())
    assert spot_apex(backward) >= spot_apex(sym)


def test_symmetric_needs_two_lags_of_frames() -> None:
    from apexmer.data.frames import ArrayFrames
    from apexmer.errors import DataError
    from apexmer.face.landmarks import FaceLandmarks

    clip = ArrayFrames([np.full((60, 60, 3), i, np.uint8) for i in range(6)])
    face = FaceLandmarks(box=(0, 0, 60, 60), points=np.full((68, 2), 30, np.float32))
    with pytest.raises(DataError, match="needs at least 7"):
        spot_clip(clip, detector=None, config=SpotConfig(denominator="symmetric"), face=face)


@pytest.mark.parametrize("count", [1, 2])
def test_too_short_clip_gets_advice_for_a_clip_not_a_coding_sheet(tmp_path: Path, count) -> None:
    import subprocess

    folder = tmp_path / "upload"
    folder.mkdir()
    for i in range(count):
        cv2.imwrite(str(folder / f"img{i}.jpg"), np.full((40, 40, 3), 90, np.uint8))
    proc = subprocess.run(
        cli_command("spot", "--frames", str(folder), "--spot-method", "paper"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    line = proc.stderr.strip()
    assert "\n" not in line and "coding sheet" not in line
    frames = "1 frame;" if count == 1 else "2 frames;"
    assert f"the clip has {frames} spotting with lag 3 needs at least 4 frames" in line
    assert "Fix: pass a longer clip" in line


SPOT_OPTIONS = st.builds(
    SpotConfig,
    offset_term=st.booleans(),
    lag=st.integers(1, 5),
    first_frames=st.sampled_from(["skip", "clamp"]),
    denominator=st.sampled_from(["backward", "symmetric"]),
    blur=st.sampled_from([0.0, 0.8]),
)


@settings(max_examples=150, deadline=None)
@given(
    config=SPOT_OPTIONS,
    n=st.integers(6, 60),
    side=st.integers(2, 7),
    block=st.one_of(st.none(), st.integers(1, 70)),
    seed=st.integers(0, 2**16),
)
def test_streamed_curve_equals_curve_from_crops(config, n, side, block, seed) -> None:
    """Issue 11: the spotter streams crops through a window of frames; its curve is the
    reference curve_from_crops, bit for bit, NaNs in the same places, for every option."""
    crops = np.random.default_rng(seed).integers(0, 256, (n, len(ROIS), side, side), np.uint8)
    reference = curve_from_crops(crops, config, block)
    streamed = stream_curve(iter(crops), n, crops[-1], config, block)
    assert np.array_equal(streamed, reference, equal_nan=True)


def test_stream_curve_holds_a_window_and_checks_its_count() -> None:
    config = SpotConfig(denominator="symmetric", first_frames="clamp")
    crops = np.random.default_rng(2).integers(0, 256, (200, len(ROIS), 4, 4), np.uint8)
    alive: list[int] = []  # crops not yet garbage collected when each frame is handed over

    def one_by_one():
        import weakref

        refs = []
        for c in crops:
            frame = c.copy()
            refs.append(weakref.ref(frame))
            alive.append(sum(r() is not None for r in refs))
            yield frame
            del frame

    expected = curve_from_crops(crops, config, block=8)
    assert np.array_equal(stream_curve(one_by_one(), 200, crops[-1], config, 8), expected)
    # one block of 8, lag frames either side, the onset frame (the offset's are passed)
    assert max(alive) <= 8 + 2 * config.lag + 1, max(alive)  # not 200
    assert stream_frames(crops[0].size, config.lag) == CURVE_BLOCK_BYTES // 640 + 8
    with pytest.raises(ValueError, match="told 200 frames and got 199"):
        stream_curve(iter(crops[:199]), 200, crops[-1], config)
    with pytest.raises(ValueError, match="needs the offset frame"):
        stream_curve(iter(crops), 200, None, SpotConfig())


class ShiftingDetector:
    """Landmarks that move with the frame (its pixel [0, 0, 0] shifts them 0..3 px)."""

    def __init__(self, face: FaceLandmarks) -> None:
        self.face = face

    def detect(self, frame: np.ndarray) -> FaceLandmarks | None:
        if not frame.any():
            return None
        shift = float(frame[0, 0, 0] % 4)
        return FaceLandmarks(self.face.box, self.face.points + shift)


@pytest.mark.parametrize("landmarks", ["onset", "per_frame"])
@pytest.mark.parametrize("offset_term", [True, False])
@pytest.mark.parametrize("denominator", ["backward", "symmetric"])
def test_spot_clip_curve_equals_the_reference_on_a_video(
    tmp_path: Path, face, landmarks, offset_term, denominator
) -> None:
    """spot_clip reads the video forward (twice with the offset term) and holds a window of
    crops: its curve equals curve_from_crops on the crops of every frame."""
    from apexmer.data.frames import VideoFrames
    from apexmer.face.rois import crop_rois

    rng = np.random.default_rng(4)
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (320, 240))
    for _ in range(30):
        writer.write(rng.integers(0, 256, (240, 320, 3), np.uint8))
    writer.release()
    config = SpotConfig(
        landmarks=landmarks, offset_term=offset_term, denominator=denominator, lag=2
    )
    detector = ShiftingDetector(face)
    with VideoFrames(path) as src:
        frames = [src.read(n) for n in src.numbers]
    boxes = roi_boxes(face.points, frames[0].shape, config.roi_size)
    crops = []
    for k, frame in enumerate(frames[3:27]):
        at = boxes
        if landmarks == "per_frame" and k:
            at = roi_boxes(detector.detect(frame).points, frame.shape, side=int(boxes[0, 2]))
        crops.append(crop_rois(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), at, np.uint8))
    reference = curve_from_crops(np.stack(crops), config)
    with VideoFrames(path) as src:
        result = spot_clip(src, 3, 26, detector, config, face=face)
    assert np.array_equal(result.curve, reference, equal_nan=True)


def test_face_lost_on_the_offset_frame_names_the_first_lost_frame(face) -> None:
    rng = np.random.default_rng(5)
    frames = [rng.integers(1, 256, (240, 320, 3), np.uint8) for _ in range(12)]
    frames[7] = np.zeros_like(frames[7])
    frames[11] = np.zeros_like(frames[11])
    config = SpotConfig(landmarks="per_frame")
    with pytest.raises(NoFaceError, match="frame 7"):
        spot_clip(ArrayFrames(frames), detector=ShiftingDetector(face), config=config, face=face)
    frames[7] = frames[6]
    with pytest.raises(NoFaceError, match="frame 11"):
        spot_clip(ArrayFrames(frames), detector=ShiftingDetector(face), config=config, face=face)
