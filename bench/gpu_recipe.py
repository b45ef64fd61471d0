"""The paper's recipe through the real CLI, packed, against one fold at a time, one run.

Packed: ``apexmer loso --config paper`` (SE-ResNeXt-50, 224 px, batch 2, Adam 1e-4,
focal loss) with ``train.pack_folds`` folds per network, bf16 + channels_last, on a
CASME II-sized synthetic manifest (249 samples, 26 subjects). It runs twice, for
``--epochs`` E1 < E2 epochs: the difference gives the time per epoch, the rest is the
fixed cost (start-up, data, evaluation, report); 100 epochs are projected from both
(``--full`` also runs all 100). Baseline: one fold alone (``engine.fit``, the same
settings, ``pack_folds=1``) for 1 and 2 epochs in this process, projected to all folds
x 100 epochs by their number of training steps.

    PYTHONPATH=src python bench/gpu_recipe.py --out OUT [--results OUT/results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from gpu_results import record
from synthetic_manifest import write_synthetic_manifest

FAST_MODE = ["train.amp=bf16", "train.channels_last=true"]


def cli_loso(manifest: Path, out: Path, sets: list[str]) -> float:
    """Wall seconds of one ``apexmer loso --config paper`` run in a fresh process."""
    cmd = [
        sys.executable,
        "-c",
        "import sys; sys.argv[0] = 'apexmer'; from apexmer.cli.main import main; main()",
        "loso", "--data", str(manifest), "--config", "paper", "--out", str(out),
        *[a for s in sets for a in ("--set", s)],
    ]  # fmt: skip
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=os.environ)
    wall = time.perf_counter() - t0
    if done.returncode:
        raise RuntimeError(f"loso failed ({done.returncode}): {done.stderr[-2000:]}")
    print(done.stdout.strip().splitlines()[0], flush=True)
    return wall


def one_fold_epoch_seconds(manifest: Path, sets: list[str]) -> tuple[float, float]:
    """(seconds per epoch of fold 0 alone, training steps of all folds / fold 0's)."""
    from apexmer.config import load_config
    from apexmer.evaluation.splits import loso_folds
    from apexmer.training.dataset import load_manifest_data
    from apexmer.training.engine import fit

    config = load_config("paper", sets)
    data = load_manifest_data(manifest, config.data)
    folds = loso_folds(data.groups)
    idx = torch.as_tensor(folds[0].train_idx)
    config.train.epochs = 1  # warm-up (CUDA context, cuDNN's algorithm choice), untimed
    fit(config, data.inputs[idx[:20]], data.labels[idx[:20]], len(data.classes), seed=0)
    times = {}
    for epochs in (1, 2):
        config.train.epochs = epochs
        if config.train.device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fit(config, data.inputs[idx], data.labels[idx], len(data.classes), seed=0)
        if config.train.device.startswith("cuda"):
            torch.cuda.synchronize()
        times[epochs] = time.perf_counter() - t0
    steps = [len(f.train_idx) // config.train.batch_size for f in folds]
    return times[2] - times[1], sum(steps) / steps[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--results", type=Path, default=None)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--pack", type=int, default=26)
    ap.add_argument("--epochs", type=int, nargs=2, default=[1, 3])
    ap.add_argument("--full", action="store_true", help="also run all 100 epochs")
    ap.add_argument("--samples", type=int, default=249)
    ap.add_argument("--subjects", type=int, default=26)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--set", dest="sets", action="append", default=[])
    args = ap.parse_args()
    results = args.results or args.out / "results.json"
    manifest = write_synthetic_manifest(
        args.out / "manifest", args.samples, args.subjects, args.size
    )
    base = [
        f"train.device={args.device}",
        f"data.input_size={args.size}",
        *(FAST_MODE if args.device.startswith("cuda") else []),
        *args.sets,
    ]
    packed = [*base, f"train.pack_folds={args.pack}"]
    walls = {}
    for e in args.epochs:
        walls[e] = cli_loso(manifest, args.out / f"packed_{e}ep", [*packed, f"train.epochs={e}"])
        record(results, "paper recipe, packed (CLI)", {f"wall_s_{e}_epochs": round(walls[e], 1)})
    lo, hi = args.epochs
    per_epoch = (walls[hi] - walls[lo]) / (hi - lo)
    fixed = walls[lo] - lo * per_epoch
    projected = fixed + 100 * per_epoch
    summary = {
        "setting": f"{args.samples} samples, {args.subjects} subjects, {args.size} px, "
        f"pack_folds={args.pack}, {' '.join(base)}",
        "seconds_per_epoch": round(per_epoch, 2),
        "fixed_seconds": round(fixed, 1),
        "projected_100_epochs_min": round(projected / 60, 2),
        "target_min": 5,
    }
    record(results, "paper recipe, packed (CLI)", summary)
    print(json.dumps(summary), flush=True)
    fold_epoch, steps_ratio = one_fold_epoch_seconds(manifest, [*base, "train.pack_folds=1"])
    baseline = fold_epoch * steps_ratio * 100
    record(
        results,
        "paper recipe, one fold at a time (projected)",
        {
            "method": "fold 0 alone for 1 and 2 epochs in-process (engine.fit); the "
            "difference x (all folds' steps / fold 0's) x 100 epochs",
            "seconds_per_fold_epoch": round(fold_epoch, 2),
            "projected_100_epochs_min": round(baseline / 60, 1),
            "packed_speedup": round(baseline / projected, 2),
        },
    )
    print(f"one fold at a time: {baseline / 60:.1f} min projected; packed {projected / 60:.2f}")
    if args.full:
        wall = cli_loso(manifest, args.out / "packed_100ep", [*packed, "train.epochs=100"])
        record(results, "paper recipe, packed (CLI)", {"wall_min_100_epochs": round(wall / 60, 2)})


if __name__ == "__main__":
    main()
