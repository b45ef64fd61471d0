"""Face alignment and crop: a similarity transform puts the eyes level at fixed positions.

The canonical crop is ``size`` x ``size``: the eye centres (means of points 36-41 and 42-47)
lie on the row ``eye_y * size``, ``eye_distance * size`` apart, symmetric about the
vertical centre line. With ``mask`` on, the background outside the convex hull of the 68
points (extended upwards over the forehead, since the brows move) is set to ``fill`` with a
feathered edge. All functions are pure: arrays in, arrays out.

``face_box_crop`` is the other crop: the face box itself (brows to chin, cheek to cheek,
axis-aligned, no mask, no margin) stretched to a square, as the public MEGC 2019 flow
images show the face (METHOD.md section 15); the ``ststnet`` flow style reads it.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from apexmer.data.frames import to_bgr8
from apexmer.errors import ConfigError
from apexmer.face.landmarks import BROWS, JAW, eye_centres


@dataclass(frozen=True)
class AlignConfig:
    """Geometry of the aligned crop."""

    size: int = 224  # output side in pixels (the network input)
    eye_distance: float = 0.38  # eye-centre distance, fraction of size
    eye_y: float = 0.38  # eye-centre row, fraction of size from the top
    mask: bool = True  # remove the background outside the face
    forehead: float = 0.6  # mask reaches this many eye distances above the brows
    feather: float = 0.03  # mask edge fades to ``fill`` over this fraction of size
    fill: int = 0  # background value

    def __post_init__(self) -> None:
        if self.size < 16:
            raise ConfigError(
                f"crop size {self.size} (--size) is too small. Fix: use at least 16 pixels"
            )
        if not 0 < self.eye_distance < 1 or not 0 < self.eye_y < 1:
            raise ConfigError(
                f"alignment eye_distance {self.eye_distance} and eye_y {self.eye_y}: "
                "Fix: use fractions of the crop size in (0, 1)"
            )
        if self.forehead < 0 or self.feather < 0 or not 0 <= self.fill <= 255:
            raise ConfigError(
                f"alignment forehead {self.forehead}, feather {self.feather}, fill "
                f"{self.fill}: Fix: use forehead and feather >= 0, fill in 0..255"
            )


def similarity_from_landmarks(points: np.ndarray, config: AlignConfig | None = None) -> np.ndarray:
    """(2, 3) similarity matrix taking image pixels to the canonical crop of ``config``."""
    config = config or AlignConfig()
    if np.shape(points) != (68, 2):
        raise ValueError(f"expected 68 landmarks (68, 2), got {np.shape(points)}")
    left, right = eye_centres(points)
    dx, dy = right - left
    distance = float(np.hypot(dx, dy))
    if distance < 1e-6:
        raise ValueError("the two eye centres coincide; the landmarks are degenerate")
    scale = config.eye_distance * config.size / distance
    cos, sin = scale * dx / distance, scale * dy / distance
    linear = np.array([[cos, sin], [-sin, cos]])  # rotate by -angle(eyes), then scale
    target = np.array([config.size / 2.0, config.eye_y * config.size])
    shift = target - linear @ ((left + right) / 2.0)
    return np.concatenate([linear, shift[:, None]], axis=1)


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a (2, 3) affine ``matrix`` to points ``(N, 2)`` -> ``(N, 2)`` float64."""
    points = np.asarray(points, dtype=np.float64)
    matrix = np.asarray(matrix, dtype=np.float64)
    return points @ matrix[:, :2].T + matrix[:, 2]


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    """Inverse of a (2, 3) affine matrix, as (2, 3)."""
    matrix = np.asarray(matrix, dtype=np.float64)
    inverse = np.linalg.inv(matrix[:, :2])
    return np.concatenate([inverse, -(inverse @ matrix[:, 2])[:, None]], axis=1)


def face_mask(aligned_points: np.ndarray, config: AlignConfig | None = None) -> np.ndarray:
    """(size, size) float32 in 0..1: 1 inside the face hull, fading to 0 outside.

    ``aligned_points`` are the 68 points in crop coordinates; the brows are copied upwards
    by ``forehead`` eye distances (straight up, as the crop has the eyes level).
    """
    config = config or AlignConfig()
    points = np.asarray(aligned_points, dtype=np.float64)
    lift = config.forehead * config.eye_distance * config.size
    forehead = points[BROWS] - np.array([0.0, lift])
    hull = cv2.convexHull(np.round(np.concatenate([points, forehead])).astype(np.int32))
    inside = np.zeros((config.size, config.size), np.uint8)
    cv2.fillConvexPoly(inside, hull, 1)
    feather = config.feather * config.size
    if feather <= 0:
        return inside.astype(np.float32)
    # distance of each outside pixel to the hull; fades linearly over ``feather`` pixels
    outside = cv2.distanceTransform(1 - inside, cv2.DIST_L2, 3)
    return np.clip(1.0 - outside / feather, 0.0, 1.0).astype(np.float32)


def align_face(
    image_bgr: np.ndarray, points: np.ndarray, config: AlignConfig | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Aligned crop ``(size, size, 3)`` uint8 of the face with 68 ``points``, and the (2, 3)
    matrix from image to crop pixels (``transform_points(points, matrix)`` gives the
    aligned landmarks)."""
    config = config or AlignConfig()
    image = np.asarray(image_bgr)
    if not (image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3):
        image = to_bgr8(image)
    matrix = similarity_from_landmarks(points, config)
    fill = (config.fill,) * 3
    crop = cv2.warpAffine(
        image,
        matrix,
        (config.size, config.size),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=fill,
    )
    if config.mask:
        mask = face_mask(transform_points(points, matrix), config)[:, :, None]
        blended = crop.astype(np.float32) * mask + config.fill * (1.0 - mask)
        crop = np.clip(np.round(blended), 0, 255).astype(np.uint8)
    return crop, matrix


def face_box(points: np.ndarray) -> tuple[float, float, float, float]:
    """(x0, y0, x1, y1) of the face from 68 landmarks: the jaw contour (points 0-16) from
    cheek to cheek, the brows (17-26) at the top, the chin (the jaw's lowest point) at the
    bottom. Float pixels, end-exclusive in the sense of ``face_box_crop``."""
    points = np.asarray(points, dtype=np.float64)
    if points.shape != (68, 2):
        raise ValueError(f"expected 68 landmarks (68, 2), got {points.shape}")
    jaw, brows = points[JAW], points[BROWS]
    x0, x1 = float(jaw[:, 0].min()), float(jaw[:, 0].max())
    y0, y1 = float(brows[:, 1].min()), float(jaw[:, 1].max())
    if x1 - x0 < 1 or y1 - y0 < 1:
        raise ValueError(f"degenerate face box ({x0}, {y0}, {x1}, {y1}) from the landmarks")
    return x0, y0, x1, y1


def face_box_crop(
    image_bgr: np.ndarray, points: np.ndarray, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """The face box of ``points`` (``face_box``) stretched to ``size`` x ``size``: crop
    ``(size, size, 3)`` uint8 and the (2, 3) matrix from image to crop pixels.

    No rotation, no mask, no margin: the face fills the square, as in the flow images
    STSTNet (Liong et al., FG 2019) and HTNet (Wang et al. 2024) distribute (METHOD.md
    section 15; how each corpus was cropped is not documented beyond that). The box's two
    sides are scaled separately (the papers resize their crops to a square). Pixels of a
    box reaching past the frame repeat the frame's edge (``BORDER_REPLICATE``), so no
    constant border appears either.
    """
    if size < 16:
        raise ConfigError(f"face box crop size={size}; use at least 16 pixels")
    image = np.asarray(image_bgr)
    if not (image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3):
        image = to_bgr8(image)
    x0, y0, x1, y1 = face_box(points)
    sx, sy = size / (x1 - x0), size / (y1 - y0)
    matrix = np.array([[sx, 0.0, -sx * x0], [0.0, sy, -sy * y0]])
    crop = cv2.warpAffine(
        image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    return crop, matrix
