"""Alignment: a known similarity transform is undone; real landmarks from dlib."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apexmer.errors import ConfigError
from apexmer.face import (
    AlignConfig,
    align_face,
    face_mask,
    get_detector,
    invert_affine,
    similarity_from_landmarks,
    transform_points,
)
from faces import grace_with_landmarks

CFG = AlignConfig()


@pytest.fixture(scope="module")
def detector():
    return get_detector("dlib")


@pytest.fixture(scope="module")
def photo(detector) -> tuple[np.ndarray, np.ndarray]:
    return grace_with_landmarks(detector)


def similarity(angle: float, scale: float, tx: float, ty: float) -> np.ndarray:
    a = np.deg2rad(angle)
    return np.array(
        [[scale * np.cos(a), -scale * np.sin(a), tx], [scale * np.sin(a), scale * np.cos(a), ty]]
    )


def canonical_eyes(points: np.ndarray) -> np.ndarray:
    return np.stack([points[36:42].mean(0), points[42:48].mean(0)])


def test_eyes_land_on_canonical_positions(photo) -> None:
    image, points = photo
    crop, matrix = align_face(image, points, CFG)
    assert crop.shape == (224, 224, 3) and crop.dtype == np.uint8
    eyes = canonical_eyes(transform_points(points, matrix))
    half = CFG.eye_distance * CFG.size / 2
    expected = [[112 - half, CFG.eye_y * 224], [112 + half, CFG.eye_y * 224]]
    np.testing.assert_allclose(eyes, expected, atol=1e-9)


def test_round_trip_known_similarity(photo) -> None:
    image, points = photo
    known = similarity(angle=20.0, scale=1.3, tx=60.0, ty=-150.0)
    moved = cv2.warpAffine(image, known, (640, 480), flags=cv2.INTER_CUBIC)
    moved_points = transform_points(points, known)
    crop_a, m_a = align_face(image, points, CFG)
    crop_b, m_b = align_face(moved, moved_points, CFG)
    # same canonical landmarks from both
    np.testing.assert_allclose(
        transform_points(moved_points, m_b), transform_points(points, m_a), atol=1e-9
    )
    # the alignment of the moved image undoes the known transform
    composed = np.vstack([m_b, [0, 0, 1]]) @ np.vstack([known, [0, 0, 1]])
    np.testing.assert_allclose(composed[:2], m_a, atol=1e-9)
    inside = face_mask(transform_points(points, m_a), CFG) > 0.99
    diff = np.abs(crop_a.astype(np.int16) - crop_b.astype(np.int16))[inside]
    assert diff.mean() < 4.0 and np.percentile(diff, 99) < 30


def test_real_detector_agrees_on_aligned_crop(detector, photo) -> None:
    image, _points = photo
    moved = cv2.warpAffine(image, similarity(-15.0, 0.8, 150.0, 40.0), (640, 480))
    face = detector.detect(moved)
    assert face is not None
    config = AlignConfig(size=256, mask=False)
    crop, _matrix = align_face(moved, face.points, config)
    again = detector.detect(crop)
    assert again is not None
    eyes = canonical_eyes(again.points.astype(np.float64))
    assert abs(eyes[0, 1] - eyes[1, 1]) < 3  # level
    assert abs(np.linalg.norm(eyes[1] - eyes[0]) - 0.38 * 256) < 5
    np.testing.assert_allclose(eyes.mean(0), [128, 0.38 * 256], atol=4)


@settings(max_examples=40, deadline=None)
@given(
    angle=st.floats(-70, 70),
    scale=st.floats(0.3, 3.0),
    tx=st.floats(-300, 300),
    ty=st.floats(-300, 300),
    size=st.sampled_from([64, 112, 224]),
)
def test_alignment_is_invariant_to_similarity(photo, angle, scale, tx, ty, size) -> None:
    _, points = photo
    config = AlignConfig(size=size)
    known = similarity(angle, scale, tx, ty)
    m_moved = similarity_from_landmarks(transform_points(points, known), config)
    composed = np.vstack([m_moved, [0, 0, 1]]) @ np.vstack([known, [0, 0, 1]])
    np.testing.assert_allclose(composed[:2], similarity_from_landmarks(points, config), atol=1e-7)


def test_invert_affine_round_trip(photo) -> None:
    _, points = photo
    matrix = similarity_from_landmarks(points, CFG)
    back = transform_points(transform_points(points, matrix), invert_affine(matrix))
    np.testing.assert_allclose(back, points, atol=1e-9)
    np.testing.assert_allclose(invert_affine(matrix), cv2.invertAffineTransform(matrix), atol=1e-12)


def test_mask_removes_background_keeps_face(photo) -> None:
    image, points = photo
    masked, matrix = align_face(image, points, CFG)
    plain, _ = align_face(image, points, AlignConfig(mask=False))
    assert np.all(masked[:8, :8] == 0) and np.all(masked[-8:, :8] == 0)
    assert plain[:8, :8].mean() > 10  # the photo's background was really there
    nose = np.round(transform_points(points[30:31], matrix)[0]).astype(int)
    brow = np.round(transform_points(points[19:20], matrix)[0]).astype(int)
    for x, y in (nose, brow, brow - [0, 15]):  # forehead above the brows is kept
        np.testing.assert_array_equal(masked[y, x], plain[y, x])
    mask = face_mask(transform_points(points, matrix), CFG)
    assert mask.min() == 0 and mask.max() == 1 and ((mask > 0) & (mask < 1)).any()


def test_gray_input_and_fill(photo) -> None:
    image, points = photo
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    crop, _ = align_face(gray, points, AlignConfig(size=112, fill=255))
    assert crop.shape == (112, 112, 3)
    assert np.all(crop[0, 0] == 255)


@pytest.mark.parametrize(
    "bad", [{"size": 8}, {"eye_distance": 1.5}, {"eye_y": 0.0}, {"feather": -1.0}, {"fill": 300}]
)
def test_config_validation(bad: dict) -> None:
    with pytest.raises(ConfigError):
        AlignConfig(**bad)


def test_degenerate_landmarks_rejected() -> None:
    with pytest.raises(ValueError, match="eye centres coincide"):
        similarity_from_landmarks(np.zeros((68, 2)))
