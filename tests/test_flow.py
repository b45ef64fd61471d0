"""Optical flow on a real face photo with a known motion; strain, colour wheel, global motion."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apexmer.data.synth import base_face
from apexmer.errors import ConfigError
from apexmer.face.align import AlignConfig, align_face, face_mask, transform_points
from apexmer.preprocess.flow import (
    FLOW_CHANNELS,
    FarnebackParams,
    FlowConfig,
    TVL1Params,
    compute_flow,
    flow_features,
    flow_to_color,
    global_motion,
    nose_box,
    optical_strain,
    remove_global_motion,
    strain_to_image,
    warp_by_flow,
)

SIZE = 160
# mean endpoint error bounds on the face (px); bench/flow_accuracy.py measures them at 224
TOLERANCE = {"tvl1": 0.1, "dis": 0.15, "farneback": 0.2}


@pytest.fixture(scope="module")
def face() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 160 x 160 unmasked crop of the real sample photo, its landmarks, its face region."""
    identity = base_face()
    config = AlignConfig(size=SIZE, mask=False)
    crop, matrix = align_face(identity.image, identity.landmarks, config)
    points = transform_points(identity.landmarks, matrix)
    region = face_mask(points, AlignConfig(size=SIZE, feather=0.0)) > 0.5
    return crop, points, region


def bump_field(points: np.ndarray, peak: float = 1.2) -> np.ndarray:
    """Two smooth bumps on the mouth corners, moving outwards and up (a smile), (S, S, 2)."""
    ys, xs = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
    field = np.zeros((SIZE, SIZE, 2))
    for index, direction in ((48, (-0.8, -0.6)), (54, (0.8, -0.6))):
        cx, cy = points[index]
        bump = np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * 12.0**2))
        field += bump[..., None] * np.array(direction)
    return (field * peak).astype(np.float32)


def noisy(image: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(np.round(image + rng.normal(0, 2.0, image.shape)), 0, 255).astype(np.uint8)


def epe(flow: np.ndarray, truth: np.ndarray, region: np.ndarray) -> float:
    return float(np.hypot(*(flow - truth).transpose(2, 0, 1))[region].mean())


@pytest.mark.parametrize("algorithm", ["tvl1", "dis", "farneback"])
def test_a_known_shift_and_a_smooth_field_are_recovered(face, algorithm: str) -> None:
    crop, points, region = face
    config = FlowConfig(algorithm)
    for truth in (np.broadcast_to(np.float32([0.6, -0.4]), (SIZE, SIZE, 2)), bump_field(points)):
        nxt = warp_by_flow(crop, truth)
        flow = compute_flow(noisy(crop, 1), noisy(nxt, 2), config)
        assert flow.shape == (SIZE, SIZE, 2) and flow.dtype == np.float32
        assert epe(flow, truth, region) < TOLERANCE[algorithm]
        # and far better than no flow at all
        assert epe(flow, truth, region) < 0.5 * epe(np.zeros_like(flow), truth, region)


def test_flow_of_identical_frames_is_zero_and_inputs_are_checked(face) -> None:
    crop, _, _ = face
    gray = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
    flow = compute_flow(gray, gray, FlowConfig())
    assert np.abs(flow).max() < 1e-3
    with pytest.raises(ValueError, match="one size"):
        compute_flow(crop, crop[:-1], FlowConfig())
    with pytest.raises(ValueError, match="8-bit"):
        compute_flow(crop.astype(np.float32), crop, FlowConfig())


def test_warp_by_flow_moves_content_by_the_flow(face) -> None:
    crop, _, _ = face
    shifted = warp_by_flow(crop, np.broadcast_to(np.float32([3.0, -2.0]), (SIZE, SIZE, 2)))
    # content at (x, y) moves to (x + 3, y - 2)
    np.testing.assert_array_equal(shifted[20:-20, 20:-20], crop[22:-18, 17:-23])


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(-0.5, 0.5), min_size=6, max_size=6))
def test_strain_of_a_linear_field_is_the_formula(coefficients: list[float]) -> None:
    a, b, c, d, e, f = coefficients
    ys, xs = np.mgrid[0:12, 0:15].astype(np.float64)
    flow = np.dstack([a * xs + b * ys + e, c * xs + d * ys + f])
    # ux = a, uy = b, vx = c, vy = d everywhere, borders included (np.gradient is exact here)
    expected = np.sqrt(a**2 + d**2 + 0.5 * (b + c) ** 2)
    np.testing.assert_allclose(optical_strain(flow), expected, atol=1e-5)
    features = flow_features(flow)
    assert features.shape == (12, 15, len(FLOW_CHANNELS)) and features.dtype == np.float32
    np.testing.assert_allclose(features[..., 0], flow[..., 0], atol=1e-5)
    np.testing.assert_allclose(features[..., 1], flow[..., 1], atol=1e-5)
    np.testing.assert_allclose(features[..., 2], expected, atol=1e-5)
    np.testing.assert_allclose(features[..., 3], np.hypot(flow[..., 0], flow[..., 1]), atol=1e-5)


def _hue(bgr: np.ndarray) -> float:
    """Hue in degrees of one BGR colour."""
    return float(cv2.cvtColor(bgr.reshape(1, 1, 3), cv2.COLOR_BGR2HSV_FULL)[0, 0, 0]) * 360 / 256


def test_colour_wheel_direction_and_magnitude() -> None:
    flow = np.zeros((3, 3, 2), np.float32)
    flow[0, 0] = (1, 0)  # +u
    flow[0, 1] = (-1, 0)  # -u
    flow[0, 2] = (0, -1)  # up
    flow[1, 0] = (0, 1)  # down
    flow[1, 1] = (0.5, 0)  # half of +u
    image = flow_to_color(flow)
    assert image.shape == (3, 3, 3) and image.dtype == np.uint8
    assert tuple(image[2, 2]) == (255, 255, 255)  # no motion is white
    assert tuple(image[0, 0]) == (0, 0, 255)  # +u at full magnitude is pure red (BGR)
    for (r1, c1), (r2, c2) in (((0, 0), (0, 1)), ((0, 2), (1, 0))):
        gap = abs(_hue(image[r1, c1]) - _hue(image[r2, c2])) % 360
        assert min(gap, 360 - gap) > 120  # opposite directions: far apart on the wheel
    # same direction, half the magnitude: same hue, paler
    assert abs(_hue(image[1, 1]) - _hue(image[0, 0])) < 5
    assert image[1, 1].astype(int).sum() > image[0, 0].astype(int).sum()
    # a fixed scale: the same flow drawn against twice the maximum is paler
    assert flow_to_color(flow, max_magnitude=2.0)[0, 0].astype(int).sum() > 255


def test_strain_image_is_a_colour_map() -> None:
    strain = np.linspace(0, 1, 20, dtype=np.float32).reshape(4, 5)
    image = strain_to_image(strain)
    assert image.shape == (4, 5, 3) and image.dtype == np.uint8
    brightness = image.astype(int).sum(2).ravel()
    assert brightness[0] < 30 and brightness[-1] > 400  # inferno: black to pale yellow
    assert (np.diff(brightness) >= -3).all()


def test_nose_median_removal_cancels_a_global_shift(face) -> None:
    _, points, _ = face
    local = bump_field(points)
    x0, y0, x1, y1 = nose_box(points)
    assert 0 <= x0 < x1 <= SIZE and 0 <= y0 < y1 <= SIZE
    assert x0 < points[30, 0] < x1 and y0 <= points[29, 1] < y1
    shift = np.float32([0.7, -0.5])
    flow = local + shift
    np.testing.assert_allclose(global_motion(flow, points), shift, atol=0.02)
    cleaned = remove_global_motion(flow, points)
    assert np.abs(cleaned - local).max() < 0.02  # the mouth bumps barely reach the bridge
    np.testing.assert_allclose(remove_global_motion(flow, (x0, y0, x1, y1)), cleaned)
    with pytest.raises(ValueError, match="outside"):
        global_motion(flow, (SIZE + 5, 0, SIZE + 9, 4))


def test_config_round_trip_and_validation() -> None:
    config = FlowConfig("tvl1", tvl1=TVL1Params(lambda_=0.2), remove_global="none")
    d = config.to_dict()
    assert d == {
        "algorithm": "tvl1",
        "params": {**d["params"], "lambda_": 0.2},
        "remove_global": "none",
        "style": "apexmer",
    }
    assert FlowConfig.from_dict(d) == config
    assert FlowConfig.from_dict({"algorithm": "dis"}).to_dict()["params"]["finest_scale"] == 0
    assert FlowConfig().to_dict()["remove_global"] == "nose_median"
    for bad in (
        lambda: FlowConfig("raft"),
        lambda: FlowConfig(remove_global="nose"),
        lambda: FlowConfig(tvl1=TVL1Params(scales=0)),
        lambda: FlowConfig(tvl1=TVL1Params(scale_step=1.5)),
        lambda: FlowConfig(tvl1=TVL1Params(warps=2.5)),
        lambda: FlowConfig("farneback", farneback=FarnebackParams(poly_n=6)),
        lambda: FlowConfig.from_dict({"algorithm": "tvl1", "params": {"lambda": 0.1}}),
        lambda: FlowConfig.from_dict({"algorithm": "nope"}),
    ):
        with pytest.raises(ConfigError, match="Fix"):
            bad()
