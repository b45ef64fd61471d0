"""What a LOSO run of each flow preset costs on the MEGC 2019 composite, one fold at a time.

    PYTHONPATH=src .venv/bin/python bench/flow_preset_cost.py [--epochs 3] [--threads 1]

Writes a composite-sized folder of flow images as STSTNet/HTNet distribute them (442
random 28 x 28 (u, v, strain) PNGs named '<subject>_<clip> .png', 68 subjects of uneven
size, the composite's class counts) with its label CSV, reads it through the `megc-flow`
reader and a manifest exactly as a user would, then trains one fold (the largest
subject held out) of each preset for a few epochs and times them. The projection is
seconds per epoch x the preset's epochs x 68 folds, sequential, on ``--threads`` threads
(random inputs: time only, nothing about accuracy). Fold packing and processes divide it.
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from apexmer.config import load_config
from apexmer.data.flow_images import LABEL_COLUMNS
from apexmer.data.manifest import write_manifest
from apexmer.data.readers import read_corpus
from apexmer.training.dataset import load_manifest_data
from apexmer.training.engine import fit

PRESETS = ("flow", "ststnet", "off_apexnet")
CORPORA = {"casme2": 24, "samm": 28, "smic": 16}  # 68 subjects
LABELS = {"0": 250, "1": 109, "2": 83}  # 442 clips


def write_composite(folder: Path, seed: int = 0) -> Path:
    """The flow folder and label CSV; returns the CSV."""
    rng = np.random.default_rng(seed)
    subjects = [(d, n) for d, count in CORPORA.items() for n in range(1, count + 1)]
    weights = rng.gamma(2.0, 1.0, len(subjects))  # uneven subject sizes, as in the corpora
    owner = rng.choice(len(subjects), size=sum(LABELS.values()), p=weights / weights.sum())
    owner[: len(subjects)] = np.arange(len(subjects))  # every subject has a clip
    labels = rng.permutation([k for k, n in LABELS.items() for _ in range(n)])
    folder.mkdir(parents=True)
    rows = []
    for i, (s, label) in enumerate(zip(owner, labels, strict=True)):
        dataset, n = subjects[s]
        sub = {"casme2": f"sub{n:02d}", "samm": f"{n:03d}", "smic": f"s{n:02d}"}[dataset]
        clip = f"clip{i:03d}"
        name = f"{sub}_{clip} .png"
        cv2.imwrite(str(folder / name), rng.integers(0, 256, (28, 28, 3), dtype=np.uint8))
        rows.append([dataset, sub, clip, label, "", name, f"{sub}_{clip}"])
    labels_csv = folder.parent / "labels.csv"
    with open(labels_csv, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(LABEL_COLUMNS)
        writer.writerows(rows)
    return labels_csv


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=3, help="epochs timed per preset")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        labels = write_composite(Path(tmp) / "flows")
        samples = read_corpus("megc-flow", coding=labels, root=Path(tmp) / "flows")
        assert not samples.problems and len(samples) == 442
        manifest = write_manifest(samples, Path(tmp) / "manifest.csv")
        print(f"torch {torch.__version__}, {args.threads} thread(s), {args.epochs} epochs timed")
        print("preset,network,epochs,train_clips,s_per_epoch,projected_fold_s,projected_68_folds_h")
        for preset in PRESETS:
            config = load_config(
                preset, [f"train.epochs={args.epochs}", f"train.threads={args.threads}"]
            )
            data = load_manifest_data(manifest, config.data)
            groups = np.array(data.groups)
            held = max(set(data.groups), key=data.groups.count)
            train = groups != held
            full = load_config(preset).train.epochs
            t0 = time.perf_counter()
            fit(config, data.inputs[train], data.labels[train], len(data.classes), seed=0)
            per_epoch = (time.perf_counter() - t0) / args.epochs
            print(
                f"{preset},{config.model.name},{full},{int(train.sum())},{per_epoch:.3f},"
                f"{per_epoch * full:.0f},{per_epoch * full * 68 / 3600:.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
