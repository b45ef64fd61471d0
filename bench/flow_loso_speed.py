"""LOSO speed of the ``flow`` preset on a composite-sized corpus (442 clips, 68 subjects).

The real MEGC 2019 composite is licensed, so the corpus here is synthetic but has its
shape: 68 subjects (24 CASME II, 28 SAMM, 16 SMIC) with the composite's clip counts per
corpus (145 / 133 / 164) and classes (negative 250, positive 109, surprise 83), one 28 x 28
(u, v, strain) PNG per clip named as STSTNet ships them (``sub01_EP02_01f .png``, min-max
scaled, RGB = u, v, strain). Each class moves a different face region (brows down, lip
corners up, brows up), with per-subject and per-clip variation and noise; the point is the
TIME, the accuracy printed beside it only shows that the run learnt something.

Measures, in one run: the full LOSO with the preset (as ``apexmer loso`` runs it), and the
one-fold-at-a-time baseline (``pack_folds=1``, local executor) on a few folds, projected
to all 68 (the baseline's cost per fold is the same for every fold: same data size).

    .venv/bin/python bench/flow_loso_speed.py [--baseline-folds 4] [--out /tmp/flowbench]
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import cv2
import numpy as np

from apexmer.config import load_config
from apexmer.evaluation.folds import train_fold
from apexmer.evaluation.protocol import run_loso
from apexmer.evaluation.splits import loso_folds
from apexmer.training.dataset import load_manifest_data

CORPORA = (("casme2", 24, 145), ("samm", 28, 133), ("smic", 16, 164))
CLASSES = (("negative", 250), ("positive", 109), ("surprise", 83))
SIZE = 28


def _bump(cx: float, cy: float, sigma: float) -> np.ndarray:
    y, x = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    return np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * sigma**2))


# (centre x, centre y, u, v) of each class's moving regions, in 28 px face coordinates.
PATTERNS = {
    "negative": [(9, 8, 0.6, 1.0), (19, 8, -0.6, 1.0)],  # brows down and together
    "positive": [(8, 20, -0.8, -0.8), (20, 20, 0.8, -0.8)],  # lip corners up and out
    "surprise": [(9, 7, 0.0, -1.2), (19, 7, 0.0, -1.2)],  # brows up
}


def flow_image(label: str, rng: np.random.Generator, subject_shift: np.ndarray) -> np.ndarray:
    """An 8-bit (u, v, strain) image, channels min-max scaled, in RGB order."""
    u = rng.normal(0, 0.25, (SIZE, SIZE)).astype(np.float32)
    v = rng.normal(0, 0.25, (SIZE, SIZE)).astype(np.float32)
    amp = rng.uniform(0.4, 1.2)
    for cx, cy, du, dv in PATTERNS[label]:
        cx, cy = cx + subject_shift[0] + rng.normal(0, 1), cy + subject_shift[1] + rng.normal(0, 1)
        bump = _bump(cx, cy, rng.uniform(2.0, 3.5))
        u += amp * du * bump
        v += amp * dv * bump
    u += rng.normal(0, 0.15)  # residual head motion
    v += rng.normal(0, 0.15)
    uy, ux = np.gradient(u)
    vy, vx = np.gradient(v)
    strain = np.sqrt(ux**2 + vy**2 + 0.5 * (uy + vx) ** 2)
    channels = []
    for c in (u, v, strain):
        lo, hi = float(c.min()), float(c.max())
        channels.append(np.rint(255 * (c - lo) / max(hi - lo, 1e-6)).astype(np.uint8))
    return np.stack(channels, axis=-1)  # (28, 28, 3) RGB


def write_corpus(out: Path, seed: int = 0) -> Path:
    """442 flow PNGs and a manifest (subject, dataset, clip, label, flow_path)."""
    rng = np.random.default_rng(seed)
    labels = [name for name, n in CLASSES for _ in range(n)]
    rng.shuffle(labels)
    flows = out / "flows"
    flows.mkdir(parents=True, exist_ok=True)
    rows, i = [], 0
    for dataset, n_subjects, n_clips in CORPORA:
        subjects = [f"{dataset}{s:02d}" for s in range(n_subjects)]
        owners = [subjects[j % n_subjects] for j in range(n_clips)]
        shifts = {s: rng.normal(0, 1.0, 2) for s in subjects}
        for j, subject in enumerate(owners):
            label = labels[i]
            i += 1
            name = f"{subject}_clip{j:03d} .png"  # the space, as the distributed files have it
            rgb = flow_image(label, rng, shifts[subject])
            cv2.imwrite(str(flows / name), rgb[:, :, ::-1])  # OpenCV writes BGR
            rows.append((dataset, subject, f"clip{j:03d}", label, f"flows/{name}"))
    manifest = out / "manifest.csv"
    with manifest.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["dataset", "subject", "clip", "label", "flow_path"])
        writer.writerows(rows)
    return manifest


def timed_loso(manifest: Path, out: Path, overrides: list[str], **kwargs) -> tuple[float, dict]:
    config = load_config("flow", overrides)
    start = time.perf_counter()
    summary = run_loso(manifest, config, out, **kwargs)
    return time.perf_counter() - start, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/apexmer-flow-loso-bench"))
    parser.add_argument("--baseline-folds", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--pack", type=int, default=0, help="pack_folds (0: the preset's)")
    parser.add_argument("--epochs", type=int, default=0, help="epochs (0: the preset's)")
    parser.add_argument("--set", dest="sets", action="append", default=[], help="override")
    args = parser.parse_args()
    out = args.out
    manifest = write_corpus(out / "corpus")
    common = [*([f"train.epochs={args.epochs}"] if args.epochs else []), *args.sets]
    preset = load_config("flow", common)
    packed = [*common, f"train.pack_folds={args.pack}"] if args.pack else common
    print(
        f"flow preset: {preset.model.name} at {preset.data.input_size} px, "
        f"{preset.train.epochs} epochs, batch {preset.train.batch_size}, "
        f"pack_folds {load_config('flow', packed).train.pack_folds}, {args.workers} workers"
    )

    # Baseline: one fold at a time on the first N folds of the full manifest (every fold
    # trains on ~435 clips, so the cost per fold is the same for all 68).
    base_cfg = load_config("flow", [*common, "train.pack_folds=1"])
    data = load_manifest_data(manifest, base_cfg.data)
    folds = loso_folds(data.groups)
    start = time.perf_counter()
    for fold in folds[: args.baseline_folds]:
        train_fold(data, fold, base_cfg)
    per_fold = (time.perf_counter() - start) / args.baseline_folds
    baseline = per_fold * len(folds)
    print(
        f"baseline one fold at a time: {per_fold:.2f} s/fold x {len(folds)} folds = "
        f"{baseline:.0f} s projected (measured on {args.baseline_folds} folds)"
    )

    seconds, summary = timed_loso(
        manifest,
        out / "run",
        packed,
        executor="process" if args.workers > 1 else "local",
        workers=args.workers,
    )
    result = {
        "samples": summary.get("n_samples"),
        "folds": len(folds),
        "seconds": round(seconds, 1),
        "baseline_seconds_projected": round(baseline, 1),
        "speedup": round(baseline / seconds, 2),
        "uf1": summary.get("uf1"),
        "uar": summary.get("uar"),
        "accuracy": summary.get("accuracy"),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
