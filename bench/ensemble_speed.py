"""Cost of an ensemble (``train.ensemble``) and of the test-time flip (``eval.tta``) against
one network of the ``flow`` preset, measured in ONE process on the same folds.

The corpus is ``flow_loso_speed.py``'s composite-shaped synthetic one (442 clips of 28 x 28
(u, v, strain) PNGs, 68 subjects in 3 corpora, classes 250 / 109 / 83). Each variant
trains the first ``--folds`` LOSO folds as ``apexmer loso`` groups them (``fold_groups``:
``pack_folds`` networks per packed model, members included) with the local executor on
one thread, and scores the held-out subjects; the time is the whole of it, wall and CPU
(this process's; steadier than wall on a shared machine), the best of ``--repeats``
interleaved rounds. The ratio to the first row is the answer (absolute seconds depend on
the machine and its load).

    PYTHONPATH=src python bench/ensemble_speed.py [--folds 8] [--epochs 5]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from apexmer.config import load_config
from apexmer.evaluation.folds import fold_groups, train_fold_group
from apexmer.evaluation.splits import loso_folds
from apexmer.training.dataset import load_manifest_data

sys.path.insert(0, str(Path(__file__).parent))
from flow_loso_speed import write_corpus  # a bench script beside this one

# (label, overrides on top of the flow preset); the first row is one network, no flip.
ONE = ["train.ensemble=1", "eval.tta=none"]
VARIANTS = (
    ("one network (K=1), no flip", ONE),
    ("K=1, tta hflip", ["train.ensemble=1"]),
    ("K=2, tta hflip: the preset", []),
    ("K=2, pack_folds 16, tta hflip", ["train.pack_folds=16"]),
    ("K=3, pack_folds 8 (2 folds), tta", ["train.ensemble=3"]),
    ("K=3, pack_folds 24 (8 folds), tta", ["train.ensemble=3", "train.pack_folds=24"]),
    ("K=1, channels_last off, no flip", [*ONE, "train.channels_last=false"]),
)


def time_variant(manifest: Path, overrides: list[str], n_folds: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of training and scoring the folds."""
    config = load_config("flow", overrides)
    data = load_manifest_data(manifest, config.data)
    folds = loso_folds(data.groups)
    todo = folds[:n_folds]
    wanted = {f.index for f in todo}
    start, cpu = time.perf_counter(), time.process_time()
    for group in fold_groups(folds, todo, config.train.pack_folds, config.train.ensemble):
        train_fold_group(data, [f for f in group if f.index in wanted], config)
    return time.perf_counter() - start, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/apexmer-ensemble-bench"))
    parser.add_argument("--folds", type=int, default=8, help="LOSO folds timed (of 68)")
    parser.add_argument("--epochs", type=int, default=5, help="epochs (the preset has 50)")
    parser.add_argument("--repeats", type=int, default=2, help="rounds over all variants")
    args = parser.parse_args()
    manifest = write_corpus(args.out / "corpus")
    times: dict[str, list[tuple[float, float]]] = {label: [] for label, _ in VARIANTS}
    for r in range(args.repeats):  # rounds interleave the variants: load drifts alike
        for label, sets in VARIANTS:
            wall, cpu = time_variant(manifest, [f"train.epochs={args.epochs}", *sets], args.folds)
            times[label].append((wall, cpu))
            print(f"round {r + 1}  {label:36s} wall {wall:7.1f} s  cpu {cpu:7.1f} s", flush=True)
    # The best of the rounds: other load on the machine only ever adds time.
    best = {label: (min(w for w, _ in t), min(c for _, c in t)) for label, t in times.items()}
    base_wall, base_cpu = best[VARIANTS[0][0]]
    rows = [
        {
            "variant": label,
            "wall_s": round(wall, 1),
            "cpu_s": round(cpu, 1),
            "wall_ratio": round(wall / base_wall, 2),
            "cpu_ratio": round(cpu / base_cpu, 2),
        }
        for label, (wall, cpu) in best.items()
    ]
    summary = {"folds": args.folds, "epochs": args.epochs, "repeats": args.repeats, "rows": rows}
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
