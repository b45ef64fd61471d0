"""Ensemble members in a LOSO run's outputs: their probability columns and the spread of
their scores beside the ensemble's (``train.ensemble``).

``predictions.csv`` keeps the ensemble's ``prob_<class>`` (the members' softmax averaged)
and each member's ``prob_<class>_m<k>``; the summary's ``ensemble`` entry scores every
member alone on the same pooled predictions, and gives the min / mean / max / sd of their
UF1, UAR and accuracy, so a reader sees what the averaging bought over a single network.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from apexmer.evaluation import metrics as M

SCORES = ("uf1", "uar", "accuracy")


def member_column(class_name: str, member: int) -> str:
    return f"prob_{class_name}_m{member}"


def member_columns(
    classes: Sequence[str], member_probs: Sequence[Sequence[Sequence[float]]] | None, row: int
) -> dict[str, float]:
    """Sample ``row``'s members' probabilities as ``prob_<class>_m<k>`` columns (none for a
    single network)."""
    if not member_probs:
        return {}
    return {
        member_column(c, m): float(v)
        for m, probs in enumerate(member_probs)
        for c, v in zip(classes, probs[row], strict=True)
    }


def ensemble_summary(preds: pd.DataFrame, classes: Sequence[str], k: int) -> dict[str, Any]:
    """``{"members", "member_scores", "spread"}``: each member's pooled UF1, UAR and
    accuracy, and their min / mean / max / sd. ``{"members": 1}`` for a single network."""
    if k < 2:
        return {"members": 1}
    y_true = preds["y_true"].to_numpy()
    rows = []
    for m in range(k):
        probs = preds[[member_column(c, m) for c in classes]].to_numpy()
        scores = M.classification_metrics(y_true, probs.argmax(1), list(classes))
        rows.append({"member": m, **{s: scores[s] for s in SCORES}})
    spread = {}
    for s in SCORES:
        values = np.array([r[s] for r in rows], dtype=np.float64)
        spread[s] = {
            "min": float(values.min()),
            "mean": float(values.mean()),
            "max": float(values.max()),
            "sd": float(values.std(ddof=1)),
        }
    return {"members": k, "member_scores": rows, "spread": spread}
