"""A run's scores, computed once from its pooled predictions: ``summary.json`` and
``report.md`` are both rendered from this one result, so they cannot disagree.

Input: the predictions table (one row per tested sample: dataset, subject, fold, y_true,
y_pred; ``protocol.pooled_predictions``) and the class names. Output (JSON-ready):

- headline ``accuracy``, ``uf1``, ``uar`` on all predictions pooled, with ``*_ci``
  intervals from the subject bootstrap (``bootstrap``; None when it is off);
- ``uf1_per_fold_mean`` (the other aggregation), ``per_class``, ``confusion``;
- ``per_corpus``: ``subjects`` (accuracy per subject) and ``datasets`` (n, n_subjects,
  accuracy, UF1, UAR and their intervals, resampling that dataset's subjects only);
- ``folds``: one row per fold (held-out name, n, accuracy; UF1 when a fold tests more
  than one subject), with the metadata the caller passes (epoch used, warnings, datasets).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from apexmer.evaluation import metrics as M
from apexmer.evaluation.bootstrap import METRICS, bootstrap_intervals


def subject_groups_of(predictions: pd.DataFrame) -> np.ndarray:
    """``"dataset/subject"`` per row: the bootstrap's unit and the LOSO group."""
    return (
        predictions["dataset"].astype(str) + "/" + predictions["subject"].astype(str)
    ).to_numpy()


def _intervals(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    groups: np.ndarray,
    k: int,
    n_resamples: int,
    seed: int,
    confidence: float,
) -> dict[str, list[float] | None]:
    if not n_resamples:
        return {f"{m}_ci": None for m in METRICS}
    return bootstrap_intervals(y_true, y_pred, groups, k, n_resamples, seed, confidence)


def score_predictions(
    predictions: pd.DataFrame,
    class_names: Sequence[str],
    fold_meta: Sequence[dict[str, Any]] = (),
    *,
    n_resamples: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """Every figure of a run (see module doc). ``fold_meta``: one dict per fold with at
    least ``fold`` (the id in ``predictions["fold"]``) and ``name``; other keys are copied
    into that fold's row. ``n_resamples`` 0: no intervals."""
    names = [str(c) for c in class_names]
    k = len(names)
    y_true = predictions["y_true"].to_numpy().astype(np.int64)
    y_pred = predictions["y_pred"].to_numpy().astype(np.int64)
    groups = subject_groups_of(predictions)
    fold_of = predictions["fold"].to_numpy()
    head = M.classification_metrics(y_true, y_pred, names)
    boot = {"n_resamples": n_resamples, "seed": seed, "confidence": confidence, "unit": "subject"}

    per = M.per_group_metrics(y_true, y_pred, groups.tolist(), k)
    datasets = []
    for row in per["datasets"]:
        m = predictions["dataset"].astype(str).to_numpy() == row["dataset"]
        datasets.append(
            {**row, **_intervals(y_true[m], y_pred[m], groups[m], k, n_resamples, seed, confidence)}
        )

    folds = []
    for meta in fold_meta:
        m = fold_of == meta["fold"]
        n = int(m.sum())
        row = {
            "fold": meta["fold"],
            "subject": meta["name"],  # what the fold holds out (a subject under LOSO)
            "n": n,
            "n_subjects": len(set(groups[m].tolist())),
            "accuracy": float((y_true[m] == y_pred[m]).mean()) if n else None,
        }
        if n and row["n_subjects"] > 1:  # a per-subject F1 is degenerate; a corpus's is not
            row["uf1"] = M.uf1(y_true[m], y_pred[m], k)
            row["uar"] = M.uar(y_true[m], y_pred[m], k)
        folds.append({**row, **{k_: v for k_, v in meta.items() if k_ not in ("fold", "name")}})

    return {
        "accuracy": head["accuracy"],
        "uf1": head["uf1"],
        "uar": head["uar"],
        **_intervals(y_true, y_pred, groups, k, n_resamples, seed, confidence),
        "bootstrap": {**boot, "n_subjects": len(set(groups.tolist()))},
        "uf1_per_fold_mean": M.per_fold_f1(y_true, y_pred, fold_of, k),
        "n_samples": int(y_true.size),
        "n_subjects": len(set(groups.tolist())),
        "per_class": head["per_class"],
        "confusion": head["confusion"],
        "per_corpus": {"subjects": per["subjects"], "datasets": datasets},
        "folds": folds,
    }
