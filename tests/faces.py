"""A real face for tests that need dlib: matplotlib's Grace Hopper photograph."""

from __future__ import annotations

from pathlib import Path

import cv2
import matplotlib
import numpy as np

GRACE = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"


def grace_with_landmarks(detector) -> tuple[np.ndarray, np.ndarray]:
    """The photo (BGR) and its 68 landmarks (float64, (68, 2)) found by ``detector``."""
    image = cv2.imread(str(GRACE))
    face = detector.detect(image)
    assert face is not None
    return image, face.points.astype(np.float64)
