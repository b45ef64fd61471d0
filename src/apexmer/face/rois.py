"""The 10 facial regions of interest (ROIs) both spotters measure, placed from 68 landmarks.

Geometry only: where the boxes are. The apex spotter (``spotting.apex``) compares
pixel intensities inside them, the ROI motion signal (``spotting.motion``) averages
optical flow inside them.
"""

from __future__ import annotations

import numpy as np

from apexmer.face.landmarks import eye_distance

# The 10 ROIs: name and the landmark indices whose mean is the box centre (iBUG-68,
# 0-based; left/right = image side). Chosen where micro-expression AUs move skin; the eye
# corners are left out on purpose: blinks are frequent in these clips and are not AUs.
ROIS: tuple[tuple[str, tuple[int, ...]], ...] = (
    ("brow_inner_left", (21,)),  # AU1 inner brow raiser, AU4 brow lowerer
    ("brow_inner_right", (22,)),
    ("brow_outer_left", (17, 18)),  # AU2 outer brow raiser
    ("brow_outer_right", (25, 26)),
    ("glabella", (21, 22, 27)),  # AU4 furrow between the brows
    ("nose_wing_left", (31,)),  # AU9 nose wrinkler, AU10 upper lip raiser
    ("nose_wing_right", (35,)),
    ("mouth_corner_left", (48,)),  # AU12 lip corner puller, AU14, AU15
    ("mouth_corner_right", (54,)),
    ("chin", (57, 8)),  # AU17 chin raiser (between lower lip and chin tip)
)


def square_boxes(centres: np.ndarray, side: int, shape: tuple[int, ...]) -> np.ndarray:
    """``(N, 4)`` int boxes x, y, w, h: squares of ``side`` px centred on ``centres``
    ``(N, 2)``, shifted (not shrunk) to lie inside an image of ``shape``."""
    height, width = int(shape[0]), int(shape[1])
    side = int(min(max(side, 2), height, width))
    xy = np.round(np.asarray(centres, dtype=np.float64) - side / 2).astype(np.int64)
    xy[:, 0] = np.clip(xy[:, 0], 0, width - side)
    xy[:, 1] = np.clip(xy[:, 1], 0, height - side)
    return np.concatenate([xy, np.full((len(xy), 2), side, np.int64)], axis=1)


def roi_boxes(
    points: np.ndarray, shape: tuple[int, ...], size: float = 0.5, side: int | None = None
) -> np.ndarray:
    """(10, 4) int boxes x, y, w, h of the ROIS around 68 ``points`` in an image of ``shape``.

    Every box is a square of side ``size`` x eye distance (or ``side`` pixels when given),
    centred on its landmarks and shifted, not shrunk, to lie inside the image.
    """
    points = np.asarray(points, dtype=np.float64)
    if side is None:
        side = round(size * eye_distance(points))
    centres = np.stack([points[list(idx)].mean(0) for _, idx in ROIS])  # (10, 2)
    return square_boxes(centres, side, shape)


def crop_rois(gray: np.ndarray, boxes: np.ndarray, dtype: type = np.float32) -> np.ndarray:
    """Crops ``(R, s, s)`` of one gray frame ``(H, W)`` at equal-sized ``boxes``, as
    ``dtype`` (the apex spotter keeps uint8: a quarter of float32's memory per frame)."""
    boxes = np.asarray(boxes)
    side = int(boxes[0, 2])
    if np.any(boxes[:, 2:] != side):
        raise ValueError("crop_rois needs square boxes of one size (as roi_boxes makes)")
    return np.stack([gray[y : y + side, x : x + side] for x, y, _, _ in boxes]).astype(dtype)
