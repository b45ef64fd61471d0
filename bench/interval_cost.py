"""What the confidence intervals add to a composite-sized LOSO run's wall time.

The intervals are computed once, after the folds, from the pooled predictions
(``scores.score_predictions``: headline and per-dataset intervals, 2,000 subject
resamples each by default). Their cost does not depend on training, only on the number of
samples, subjects and classes, so it is timed here on predictions of the composite's shape
(442 clips, 68 subjects: 24 CASME II / 28 SAMM / 16 SMIC with 145 / 133 / 164 clips,
3 classes; ``flow_loso_speed.py``'s corpus) and divided by a LOSO wall time:

- by default the ``flow`` preset's composite-sized LOSO as measured by
  ``flow_loso_speed.py`` (466.9 s, bench/README.md), given with ``--loso-seconds``;
- with ``--loso-epochs N``, a LOSO of that corpus measured here with N epochs (a far
  shorter run than the preset's 50, so a ratio against it is an upper bound).

    .venv/bin/python bench/interval_cost.py [--repeats 20] [--loso-epochs 1]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from apexmer.evaluation.scores import score_predictions

sys.path.insert(0, str(Path(__file__).parent))
from flow_loso_speed import CLASSES, CORPORA, timed_loso, write_corpus


def composite_predictions(seed: int = 0, accuracy: float = 0.7) -> pd.DataFrame:
    """Pooled predictions of the composite's shape, one fold per subject."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(CLASSES)), [n for _, n in CLASSES])
    rng.shuffle(labels)
    rows, i = [], 0
    for dataset, n_subjects, n_clips in CORPORA:
        for j in range(n_clips):
            y = int(labels[i])
            i += 1
            wrong = int(rng.integers(0, len(CLASSES)))
            rows.append(
                {
                    "dataset": dataset,
                    "subject": f"{dataset}{j % n_subjects:02d}",
                    "y_true": y,
                    "y_pred": y if rng.random() < accuracy else wrong,
                }
            )
    preds = pd.DataFrame(rows)
    groups = preds["dataset"] + "/" + preds["subject"]
    preds["fold"] = pd.factorize(groups, sort=True)[0]
    return preds


def time_scores(preds: pd.DataFrame, n_resamples: int, repeats: int) -> float:
    names = [c for c, _ in CLASSES]
    meta = [{"fold": int(f), "name": str(f)} for f in sorted(preds["fold"].unique())]
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        score_predictions(preds, names, meta, n_resamples=n_resamples)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--resamples", type=int, default=2000)
    parser.add_argument("--loso-seconds", type=float, default=466.9)
    parser.add_argument("--loso-epochs", type=int, default=0, help="also measure a LOSO")
    parser.add_argument("--out", type=Path, default=Path("/tmp/apexmer-interval-cost"))
    args = parser.parse_args()
    preds = composite_predictions()
    with_ci = time_scores(preds, args.resamples, args.repeats)
    without = time_scores(preds, 0, args.repeats)
    extra = with_ci - without
    result = {
        "samples": len(preds),
        "subjects": int(preds["fold"].nunique()),
        "resamples": args.resamples,
        "scores_with_intervals_s": round(with_ci, 4),
        "scores_without_intervals_s": round(without, 4),
        "intervals_extra_s": round(extra, 4),
        "loso_seconds_flow_preset": args.loso_seconds,
        "ratio_vs_flow_preset_loso": round(extra / args.loso_seconds, 6),
    }
    if args.loso_epochs:
        manifest = write_corpus(args.out / "corpus")
        seconds, _ = timed_loso(
            manifest,
            args.out / f"run_e{args.loso_epochs}",
            [f"train.epochs={args.loso_epochs}", "eval.bootstrap=0"],
        )
        result["loso_seconds_measured"] = round(seconds, 1)
        result["loso_epochs_measured"] = args.loso_epochs
        result["ratio_vs_measured_loso"] = round(extra / seconds, 6)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
