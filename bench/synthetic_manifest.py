"""A CASME II-sized synthetic manifest without dlib: crops drawn directly as PNGs.

249 samples of 26 subjects (uneven, as in CASME II), the 5-class labels in CASME II's
proportions, 224 px crops of a face-like disc with a bright blob whose position encodes
the class (learnable, so a run's accuracy is a sanity check). No landmarks, no frames:
for timing LOSO training on a machine without dlib or opencv-contrib.

    PYTHONPATH=src python bench/synthetic_manifest.py OUT_DIR [--samples 249 --subjects 26]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from apexmer.data.manifest import write_manifest
from apexmer.data.sample import Sample

# CASME II 5-class counts (2019 sheet, 249 of the 255 samples).
CLASSES = {"others": 99, "disgust": 63, "happiness": 32, "surprise": 28, "repression": 27}


def crop(label: int, rng: np.random.Generator, size: int) -> np.ndarray:
    img = np.full((size, size, 3), 40, np.uint8)
    cv2.circle(img, (size // 2, size // 2), size // 2 - 2, (120, 130, 150), -1)
    cx = int(size * (0.2 + 0.15 * label))
    cv2.circle(img, (cx, int(size * 0.65)), max(2, size // 12), (230, 230, 230), -1)
    return np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8)


def write_synthetic_manifest(
    out: Path, samples: int = 249, subjects: int = 26, size: int = 224, seed: int = 0
) -> Path:
    rng = np.random.default_rng(seed)
    names = list(CLASSES)
    counts = np.array(list(CLASSES.values()), dtype=float)
    labels = rng.choice(len(names), size=samples, p=counts / counts.sum())
    # Uneven subjects (CASME II has 1 to 26 clips per subject), at least 2 each.
    weights = rng.gamma(1.5, 1.0, subjects)
    extra = rng.multinomial(samples - 2 * subjects, weights / weights.sum())
    subject_of = np.repeat(np.arange(subjects), extra + 2)
    rows = []
    for i, (subj, label) in enumerate(zip(subject_of, labels, strict=True)):
        path = out / "images" / f"sub{subj + 1:02d}" / f"EP{i:03d}_apex.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), crop(int(label), rng, size))
        rows.append(
            Sample(
                dataset="casme2",
                subject=f"sub{subj + 1:02d}",
                clip=f"EP{i:03d}",
                label=names[int(label)],
                apex_path=path,
            )
        )
    return write_manifest(rows, out / "manifest.csv", coding_version="synthetic-casme2-sized")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--samples", type=int, default=249)
    ap.add_argument("--subjects", type=int, default=26)
    ap.add_argument("--size", type=int, default=224)
    args = ap.parse_args()
    print(write_synthetic_manifest(args.out, args.samples, args.subjects, args.size))


if __name__ == "__main__":
    main()
