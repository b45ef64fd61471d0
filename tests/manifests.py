"""A tiny manifest of real PNG crops on disk, with a learnable class signal, for fast tests."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from typer.testing import CliRunner, Result

from apexmer.cli.main import app
from apexmer.data.manifest import write_manifest
from apexmer.data.sample import Sample, SampleSet

CLASSES = ("disgust", "happiness", "others")
# Config overrides for a LOSO run of seconds on the tiny manifest (the demo preset reads
# flow; these crops are images, hence the difference input and the tiny image network).
TINY_RUN = [
    "data.input=diff",
    "model.name=seresnext_tiny",
    "data.input_size=32",
    "train.epochs=2",
    "train.batch_size=4",
    "train.threads=1",
    "optim.lr=0.003",
]


def crop(label: int, rng: np.random.Generator, size: int) -> np.ndarray:
    """A face-like grey disc with a bright blob whose position encodes the class."""
    img = np.full((size, size, 3), 40, np.uint8)
    cv2.circle(img, (size // 2, size // 2), size // 2 - 2, (120, 130, 150), -1)
    cx = int(size * (0.3 + 0.2 * label))
    cv2.circle(img, (cx, int(size * 0.65)), max(2, size // 10), (230, 230, 230), -1)
    noise = rng.normal(0, 6, img.shape)
    return np.clip(img + noise, 0, 255).astype(np.uint8)


def write_tiny_manifest(
    folder: Path,
    subjects: int = 4,
    per_subject: int = 6,
    size: int = 32,
    seed: int = 0,
    classes: tuple[str, ...] = CLASSES,
    datasets: tuple[str, ...] = ("casme2",),
) -> Path:
    """``folder/manifest.csv`` with apex, mid and onset crops for every sample; subject
    ``s`` (1-based) belongs to ``datasets[(s - 1) % len(datasets)]``."""
    rng = np.random.default_rng(seed)
    samples = []
    for s in range(1, subjects + 1):
        for c in range(per_subject):
            label = c % len(classes)
            clip = f"EP{s:02d}_{c:02d}"
            paths = {}
            for role in ("apex", "mid", "onset"):
                path = folder / "images" / f"sub{s:02d}" / clip / f"{role}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(path), crop(label if role == "apex" else 1, rng, size))
                paths[role] = path
            samples.append(
                Sample(
                    dataset=datasets[(s - 1) % len(datasets)],
                    subject=f"sub{s:02d}",
                    clip=clip,
                    label=classes[label],
                    onset=1,
                    apex=5,
                    offset=9,
                    apex_path=paths["apex"],
                    mid_path=paths["mid"],
                    onset_path=paths["onset"],
                )
            )
    manifest = folder / "manifest.csv"
    write_manifest(
        SampleSet(samples=samples, classes=classes, coding_version="casme2-2019", source="tiny"),
        manifest,
    )
    return manifest


def megc_flow_manifest_args(labels: Path, folder: Path, out: Path) -> list[str]:
    """The arguments of ``apexmer data manifest --corpus megc-flow`` on a label CSV and its
    flow images."""
    args = ["data", "manifest", "--corpus", "megc-flow", "--coding", str(labels)]
    return [*args, "--root", str(folder), "--out", str(out)]


def megc_flow_manifest_cli(runner: CliRunner, labels: Path, folder: Path, out: Path) -> Result:
    """``apexmer data manifest --corpus megc-flow`` on a label CSV and its flow images."""
    return runner.invoke(app, megc_flow_manifest_args(labels, folder, out))
