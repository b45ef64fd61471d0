"""Aligned crops from a manifest as one in-memory uint8 tensor, ready for training.

A CASME II-sized corpus at 224 px is ~37 MB as uint8, so every fold and epoch reads from
memory; nothing is decoded twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch

from apexmer.data.frames import read_image
from apexmer.data.sample import Problem, Sample
from apexmer.errors import FrameError

FRAME_FIELDS = {"apex": "apex_path", "mid": "mid_path", "onset": "onset_path"}


def frame_path(sample: Sample, frame: str) -> Path | None:
    """The crop of ``frame`` (apex, mid or onset) for a manifest sample, or None."""
    try:
        return getattr(sample, FRAME_FIELDS[frame])
    except KeyError:
        raise ValueError(f"unknown frame {frame!r}; use apex, mid or onset") from None


def load_crop(path: Path, size: int) -> np.ndarray:
    """One crop as RGB uint8 ``(3, size, size)``."""
    image = read_image(path)                                   # (H, W, 3) BGR
    if image.shape[:2] != (size, size):
        interp = cv2.INTER_AREA if image.shape[0] > size else cv2.INTER_LINEAR
        image = cv2.resize(image, (size, size), interpolation=interp)
    return np.ascontiguousarray(image[:, :, ::-1].transpose(2, 0, 1))


def load_images(samples: Sequence[Sample], frame: str, size: int
                ) -> tuple[torch.Tensor, list[int], list[Problem]]:
    """Load the chosen frame of every sample.

    Returns ``(images (N, 3, size, size) uint8 RGB, kept indices into samples, problems)``:
    a sample whose crop is missing or unreadable is left out and reported, never fatal.
    """
    images: list[np.ndarray] = []
    kept: list[int] = []
    problems: list[Problem] = []
    for i, sample in enumerate(samples):
        path = frame_path(sample, frame)
        if path is None:
            problems.append(Problem(file=sample.key, sample=sample.key,
                                    message=f"manifest has no {frame} crop for this sample; "
                                            f"Fix: re-run `apexmer preprocess` or use "
                                            f"--frame apex"))
            continue
        try:
            images.append(load_crop(path, size))
        except FrameError as exc:
            problems.append(Problem(file=str(path), sample=sample.key, message=str(exc)))
            continue
        kept.append(i)
    if not images:
        return torch.empty((0, 3, size, size), dtype=torch.uint8), kept, problems
    return torch.from_numpy(np.stack(images)), kept, problems
