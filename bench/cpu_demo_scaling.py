"""The CPU target: demo-preset LOSO throughput on this machine's cores (the demo preset as
it was before flow, bench/demo_diff.yaml: seresnext_tiny on 64 px images).

Sequential baseline (local executor, all cores) vs the process executor (one worker per
core, one thread each) vs fold packing (local, all cores) vs both. Synthetic in-memory
data shaped like the demo (64 samples, 8 subjects, 64 px), so no preprocessing is needed.
Images/s counts training images (epochs x fold training-set sizes) over the wall time,
process start-up included.

    PYTHONPATH=src python bench/cpu_demo_scaling.py --quick
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

from apexmer.config import load_config
from apexmer.evaluation.executors import run as execute
from apexmer.evaluation.folds import fold_groups
from apexmer.evaluation.splits import loso_folds
from apexmer.training.dataset import ManifestData

DEMO_DIFF = str(Path(__file__).parent / "demo_diff.yaml")


def synthetic_data(n: int, subjects: int, size: int, classes: int = 5) -> ManifestData:
    g = torch.Generator().manual_seed(0)
    groups = [f"synth/s{i % subjects:02d}" for i in range(n)]
    return ManifestData(
        samples=[],
        inputs=torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g),
        labels=torch.randint(0, classes, (n,), generator=g),
        classes=tuple(f"c{i}" for i in range(classes)),
        groups=groups,
        coding_version="synthetic",
        problems=[],
        manifest=Path("synthetic"),
        digest="synthetic",
    )


def run(
    data: ManifestData, n_folds: int, overrides: list[str], executor: str, workers: int | None
) -> float:
    """Training images/s of ``n_folds`` LOSO folds."""
    config = load_config(DEMO_DIFF, overrides)
    folds = loso_folds(data.groups)[:n_folds]
    groups = fold_groups(folds, folds, config.train.pack_folds)
    t0 = time.perf_counter()
    results = list(
        execute(executor, data, groups, config, workers=workers, ray_address=None, progress=None)
    )
    wall = time.perf_counter() - t0
    assert len(results) == n_folds
    images = sum(len(f.train_idx) for f in folds) * config.train.epochs
    return images / wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="4 folds, 1 epoch")
    ap.add_argument("--model", default=None, help="default: the demo preset's network")
    ap.add_argument("--epochs", type=int, default=None)
    args = ap.parse_args()
    cores = os.cpu_count() or 1
    n_folds = 4 if args.quick else 8
    epochs = args.epochs or (1 if args.quick else 2)
    data = synthetic_data(64, 8, 64)
    base = [f"train.epochs={epochs}"] + ([f"model.name={args.model}"] if args.model else [])
    model = args.model or load_config(DEMO_DIFF).model.name
    settings = [
        ("local sequential", "local", None, [f"train.threads={cores}"]),
        (f"process x{cores} (1 thread each)", "process", cores, ["train.threads=1"]),
        ("local packed k=2", "local", None, [f"train.threads={cores}", "train.pack_folds=2"]),
        ("local packed k=4", "local", None, [f"train.threads={cores}", "train.pack_folds=4"]),
        (
            f"process x{cores} packed k=2",
            "process",
            cores,
            ["train.threads=1", "train.pack_folds=2"],
        ),
    ]
    print(
        f"# cpu_demo_scaling: {model}, demo preset (64 px, batch 8), {n_folds} folds, "
        f"{epochs} epoch(s), {cores} cores"
    )
    print("setting,train_img_s,vs_sequential")
    baseline = None
    for label, executor, workers, extra in settings:
        rate = run(data, n_folds, base + extra, executor, workers)
        baseline = baseline or rate
        print(f"{label},{rate:.2f},{rate / baseline:.2f}", flush=True)


if __name__ == "__main__":
    main()
