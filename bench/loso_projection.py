"""Projected wall time of the paper's full LOSO recipe on this device, sequential vs packed.

Recipe: CASME II 5-class, 249 samples, 26 folds, 100 epochs, batch 2, 224 px,
SE-ResNeXt-50. Step times are measured here (train step at batch 2 for one model, and for
a k-fold packed network), then multiplied by the recipe's step counts (per fold
floor(n_train / 2) steps per epoch, n_train = 249 - test subject; a pack takes as many
steps per epoch as its largest fold). ``--full`` (GPU) runs the real recipe on synthetic
data with fit_packed and reports the measured time.

    PYTHONPATH=src python bench/loso_projection.py --quick
    PYTHONPATH=src python3 bench/loso_projection.py --device cuda --full --epochs 100
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from gpu_compat import describe_device, make_config
from train_throughput import packed_vs_sequential

# Samples per subject: an illustrative split of the 249 (the real per-subject counts of
# the licensed sheet are not available here); uneven like CASME II's.
SUBJECT_SIZES = (
    9,
    13,
    7,
    5,
    19,
    5,
    9,
    3,
    13,
    13,
    10,
    12,
    8,
    4,
    3,
    4,
    34,
    3,
    15,
    11,
    2,
    2,
    12,
    7,
    7,
    19,
)
EPOCHS, BATCH, SIZE, MODEL = 100, 2, 224, "seresnext50_32x4d"


def steps_per_epoch(n_train: int) -> int:
    full, tail = divmod(n_train, BATCH)
    return full + (1 if tail >= 2 else 0)  # a trailing batch of one is dropped


def project(step_time: dict[int, float], k: int, epochs: int) -> float:
    """Seconds for all folds with packs of ``k`` (k=1: sequential)."""
    n = sum(SUBJECT_SIZES)
    steps = [steps_per_epoch(n - s) for s in SUBJECT_SIZES]
    total = 0.0
    for i in range(0, len(steps), k):
        total += max(steps[i : i + k]) * epochs * step_time[len(steps[i : i + k])]
    return total


def full_run(device: str, k: int, epochs: int) -> float:
    """Measured seconds of the real recipe (synthetic images) with packs of ``k``."""
    from apexmer.training.engine import seed_for
    from apexmer.training.packed import FoldData, fit_packed

    cfg = make_config(
        {
            "model": {"name": MODEL},
            "data": {"input_size": SIZE},
            "train": {
                "epochs": epochs,
                "batch_size": BATCH,
                "device": device,
                "amp": "bf16",
                "channels_last": True,
            },
        }
    )
    g = torch.Generator().manual_seed(0)
    n = sum(SUBJECT_SIZES)
    x = torch.randint(0, 256, (n, 3, SIZE, SIZE), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 5, (n,), generator=g)
    bounds = [0]
    for s in SUBJECT_SIZES:
        bounds.append(bounds[-1] + s)
    t0 = time.perf_counter()
    for start in range(0, len(SUBJECT_SIZES), k):
        folds = []
        for f in range(start, min(start + k, len(SUBJECT_SIZES))):
            keep = torch.ones(n, dtype=torch.bool)
            keep[bounds[f] : bounds[f + 1]] = False
            folds.append(FoldData(x=x[keep], y=y[keep], seed=seed_for(cfg, f)))
        fit_packed(cfg, folds, 5)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--quick", action="store_true", help="k=2 only, 2 timed steps")
    ap.add_argument("--packs", type=int, nargs="+", default=None)
    ap.add_argument("--full", action="store_true", help="also run the real recipe (GPU)")
    ap.add_argument("--epochs", type=int, default=EPOCHS, help="epochs of --full")
    args = ap.parse_args()
    cuda = args.device.startswith("cuda")
    packs = args.packs or ([2] if args.quick else [2, 4] if not cuda else [2, 7, 13, 26])
    iters = 2 if args.quick else 20 if cuda else 4
    print(
        f"# loso_projection on {describe_device(args.device)}: {MODEL}, {SIZE} px, "
        f"batch {BATCH}, {EPOCHS} epochs, 26 folds, 249 samples; bf16={cuda}"
    )
    step_time: dict[int, float] = {}
    needed = sorted({1, *packs, *{26 % k for k in packs if 26 % k}})
    for k in needed:
        # (sequential, packed with the per-parameter optimizer loop, packed): images/s
        seq, _, pk = packed_vs_sequential(
            MODEL, max(k, 1), BATCH, SIZE, args.device, iters, bf16=cuda
        )
        step_time[k] = max(k, 1) * BATCH / pk  # seconds per packed step
        if k == 1:
            step_time[1] = BATCH / seq
        print(f"# measured step: k={k}: {step_time[k] * 1000:.1f} ms", flush=True)
    print("setting,projected_hours,vs_sequential")
    seq_s = project(step_time, 1, EPOCHS)
    print(f"sequential,{seq_s / 3600:.2f},1.00")
    for k in packs:
        t = project(step_time, k, EPOCHS)
        print(f"packed k={k} ({math.ceil(26 / k)} packs),{t / 3600:.2f},{seq_s / t:.2f}")
    if args.full:
        k = max(packs)
        t = full_run(args.device, k, args.epochs)
        scale = EPOCHS / args.epochs
        print(
            f"# full recipe measured (packs of {k}, {args.epochs} epochs): {t:.0f} s "
            f"-> {t * scale / 3600:.2f} h for {EPOCHS} epochs"
        )


if __name__ == "__main__":
    main()
