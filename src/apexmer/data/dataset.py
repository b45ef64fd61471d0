"""Aligned crops from a manifest as one in-memory uint8 tensor, ready for training.

A CASME II-sized corpus at 224 px is ~37 MB as uint8, so every fold and epoch reads from
memory; nothing is decoded twice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from apexmer.data.frames import read_image
from apexmer.data.manifest import read_manifest
from apexmer.data.sample import Problem, Sample
from apexmer.errors import DataError, FrameError

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


DIFF_GAIN = 2.0  # difference images: 128 + 2 * (frame - onset), clipped to 0..255


def frame_difference(frame: np.ndarray, onset: np.ndarray, gain: float = DIFF_GAIN) -> np.ndarray:
    """uint8 difference image ``128 + gain * (frame - onset)``; mid-grey means no motion."""
    diff = frame.astype(np.float32) - onset.astype(np.float32)
    return np.clip(np.rint(128.0 + gain * diff), 0, 255).astype(np.uint8)


def load_input(sample: Sample, frame: str, size: int, input: str = "frame") -> np.ndarray:
    """The network input of one sample, RGB uint8 ``(3, size, size)``; raises FrameError."""
    paths = {role: frame_path(sample, role) for role in {frame, "onset"}}
    needed = [frame] if input == "frame" else [frame, "onset"]
    for role in needed:
        if paths[role] is None:
            raise FrameError(
                f"manifest has no {role} crop for {sample.key}",
                file=sample.key,
                fix="re-run `apexmer preprocess`, or use --frame apex",
            )
    crop = load_crop(paths[frame], size)
    if input == "diff":
        return frame_difference(crop, load_crop(paths["onset"], size))
    return crop


def load_images(
    samples: Sequence[Sample], frame: str, size: int, input: str = "frame"
) -> tuple[torch.Tensor, list[int], list[Problem]]:
    """Load the network input (``input``: frame or diff) of every sample.

    Returns ``(images (N, 3, size, size) uint8 RGB, kept indices into samples, problems)``:
    a sample whose crop is missing or unreadable is left out and reported, never fatal.
    """
    images: list[np.ndarray] = []
    kept: list[int] = []
    problems: list[Problem] = []
    for i, sample in enumerate(samples):
        try:
            images.append(load_input(sample, frame, size, input))
        except FrameError as exc:
            problems.append(
                Problem(file=exc.file or sample.key, sample=sample.key, message=str(exc))
            )
            continue
        kept.append(i)
    if not images:
        return torch.empty((0, 3, size, size), dtype=torch.uint8), kept, problems
    return torch.from_numpy(np.stack(images)), kept, problems


@dataclass
class ManifestData:
    """A manifest's samples with the chosen frame of each loaded: what training needs."""

    samples: list[Sample]
    images: torch.Tensor  # (N, 3, S, S) uint8 RGB
    labels: torch.Tensor  # (N,) int64, indices into classes
    classes: tuple[str, ...]
    groups: list[str]  # "dataset/subject" per sample (the LOSO groups)
    coding_version: str
    problems: list[Problem]
    manifest: Path
    digest: str  # identifies the exact data (keys, labels, pixels)


def load_manifest_data(
    manifest: str | Path, frame: str, size: int, input: str = "frame"
) -> ManifestData:
    """Read a manifest and load the chosen frame of every sample; bad samples are left out
    and reported in ``problems``; no usable sample at all is an error."""
    manifest = Path(manifest)
    sample_set = read_manifest(manifest)
    images, kept, problems = load_images(sample_set.samples, frame, size, input)
    samples = [sample_set.samples[i] for i in kept]
    if not samples:
        raise DataError(
            "no usable samples",
            file=manifest,
            fix="check the problems listed by `apexmer data summary --corpus manifest`",
        )
    labels = torch.tensor([sample_set.label_index(s.label) for s in samples])
    digest = hashlib.sha256()
    for s in samples:
        digest.update(f"{s.key}|{s.label}\n".encode())
    digest.update(images.numpy().tobytes())
    return ManifestData(
        samples=samples,
        images=images,
        labels=labels,
        classes=sample_set.classes,
        groups=[s.group for s in samples],
        coding_version=sample_set.coding_version,
        problems=[*sample_set.problems, *problems],
        manifest=manifest,
        digest=digest.hexdigest()[:16],
    )
