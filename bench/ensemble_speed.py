"""Cost of an ensemble (``train.ensemble``) and of the test-time flip (``eval.tta``) against
the ``flow`` preset as it is, measured in ONE process on the same folds.

The corpus is ``flow_loso_speed.py``'s composite-shaped synthetic one (442 clips of 28 x 28
(u, v, strain) PNGs, 68 subjects in 3 corpora, classes 250 / 109 / 83). Each variant
trains the first ``--folds`` LOSO folds as ``apexmer loso`` groups them (``fold_groups``:
``pack_folds`` networks per packed model, members included) with the local executor on
one thread, and scores the held-out subjects; the time is the whole of it. The ratio to
the first row is the answer (absolute seconds depend on the machine and its load).

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

# (label, overrides on top of the flow preset)
VARIANTS = (
    ("flow preset (K=1)", []),
    ("K=3, pack_folds 8", ["train.ensemble=3"]),
    ("K=3, pack_folds 24", ["train.ensemble=3", "train.pack_folds=24"]),
    (
        "K=3, pack_folds 24, tta hflip",
        ["train.ensemble=3", "train.pack_folds=24", "eval.tta=hflip"],
    ),
    ("K=1, tta hflip", ["eval.tta=hflip"]),
)


def time_variant(manifest: Path, overrides: list[str], n_folds: int) -> float:
    config = load_config("flow", overrides)
    data = load_manifest_data(manifest, config.data)
    folds = loso_folds(data.groups)
    todo = folds[:n_folds]
    wanted = {f.index for f in todo}
    start = time.perf_counter()
    for group in fold_groups(folds, todo, config.train.pack_folds, config.train.ensemble):
        train_fold_group(data, [f for f in group if f.index in wanted], config)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/apexmer-ensemble-bench"))
    parser.add_argument("--folds", type=int, default=8, help="LOSO folds timed (of 68)")
    parser.add_argument("--epochs", type=int, default=5, help="epochs (the preset has 50)")
    args = parser.parse_args()
    manifest = write_corpus(args.out / "corpus")
    rows = []
    for label, sets in VARIANTS:
        seconds = time_variant(manifest, [f"train.epochs={args.epochs}", *sets], args.folds)
        rows.append({"variant": label, "seconds": round(seconds, 1)})
        print(f"{label:32s} {seconds:7.1f} s", flush=True)
    base = rows[0]["seconds"]
    for row in rows:
        row["ratio"] = round(row["seconds"] / base, 2)
    print(json.dumps({"folds": args.folds, "epochs": args.epochs, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
