"""Aligned crop files as network-ready arrays: one path for training and the Predictor.

Input kinds (frame, diff, flow) and the in-memory training set are built on top of these in
``training/inputs.py`` and ``training/dataset.py``.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from apexmer.data.frames import read_image
from apexmer.data.sample import Sample

FRAME_FIELDS = {"apex": "apex_path", "mid": "mid_path", "onset": "onset_path"}


def frame_path(sample: Sample, frame: str) -> Path | None:
    """The crop of ``frame`` (apex, mid or onset) for a manifest sample, or None."""
    try:
        return getattr(sample, FRAME_FIELDS[frame])
    except KeyError:
        raise ValueError(f"unknown frame {frame!r}; use apex, mid or onset") from None


def prepare_crop(image_bgr: np.ndarray, size: int) -> np.ndarray:
    """Aligned BGR crop ``(H, W, 3)`` -> network input RGB uint8 ``(3, size, size)``.
    Training and the Predictor both go through here."""
    image = image_bgr
    if image.shape[:2] != (size, size):
        interp = cv2.INTER_AREA if image.shape[0] > size else cv2.INTER_LINEAR
        image = cv2.resize(image, (size, size), interpolation=interp)
    return np.ascontiguousarray(image[:, :, ::-1].transpose(2, 0, 1))


def load_crop(path: Path, size: int) -> np.ndarray:
    """One crop file as RGB uint8 ``(3, size, size)``."""
    return prepare_crop(read_image(path), size)
