"""Confidence intervals by a bootstrap over SUBJECTS, pure numpy (METHOD.md section 14).

A resample draws as many subjects as the run has, with replacement, pools the predictions
of the subjects drawn (a subject drawn twice counts twice) and scores the pool once, as
the run itself is scored (pooled accuracy, UF1, UAR; ``metrics``). The interval is the
percentile interval of the resampled scores. The subject, not the clip, is the unit:
clips of one subject are not independent (same face, same session).

Vectorised: each subject's K x K confusion matrix is computed once; a resample is a vector
of draw counts per subject (multinomial), so all resamples' pooled confusion matrices are
one matrix product, (B, S) @ (S, K*K). 2,000 resamples of 68 subjects take milliseconds.

Two runs on the same samples are compared PAIRED: both are scored on the same resampled
subjects, and the interval is that of the difference (far tighter than two separate
intervals when the runs err on the same subjects).

Limits: with few subjects (under ~10) the percentile interval is too narrow (it cannot
see subjects the corpus lacks); subjects of very different sizes make the resampled pool
size vary, so the interval also reflects which large subjects happen to be drawn.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from apexmer.errors import DataError
from apexmer.evaluation.metrics import Absent

METRICS = ("accuracy", "uf1", "uar")


def subject_codes(groups: Sequence[str] | np.ndarray) -> tuple[np.ndarray, list[str]]:
    """(code per sample in [0, S), the S subject names in sorted order)."""
    names, codes = np.unique(np.asarray([str(g) for g in groups]), return_inverse=True)
    return codes.astype(np.int64), names.tolist()


def subject_confusions(
    y_true: np.ndarray, y_pred: np.ndarray, codes: np.ndarray, num_classes: int
) -> np.ndarray:
    """(S, K*K) int64: each subject's confusion matrix, flattened (rows true)."""
    k = num_classes
    n_subjects = int(codes.max()) + 1 if codes.size else 0
    flat = codes * (k * k) + np.asarray(y_true, np.int64) * k + np.asarray(y_pred, np.int64)
    return np.bincount(flat, minlength=n_subjects * k * k).reshape(n_subjects, k * k)


def scores_from_confusions(
    cm: np.ndarray, num_classes: int, absent: Absent = "zero"
) -> dict[str, np.ndarray]:
    """Accuracy, UF1 and UAR of each of B pooled confusion matrices, (B, K*K) -> (B,).
    The same rules as ``metrics`` (UF1 ``absent``; UAR over classes present)."""
    k = num_classes
    c = np.asarray(cm, dtype=np.float64).reshape(-1, k, k)
    tp = np.diagonal(c, axis1=1, axis2=2)  # (B, K)
    support = c.sum(axis=2)  # true counts
    predicted = c.sum(axis=1)
    total = support.sum(axis=1)
    denom = support + predicted  # 2TP + FP + FN
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    if absent == "zero":
        uf1 = f1.mean(axis=1)
    else:
        seen = denom > 0
        uf1 = np.divide(f1.sum(1), seen.sum(1), out=np.zeros(len(c)), where=seen.any(1))
    present = support > 0
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=present)
    uar = np.divide(recall.sum(1), present.sum(1), out=np.zeros(len(c)), where=present.any(1))
    accuracy = np.divide(tp.sum(1), total, out=np.zeros(len(c)), where=total > 0)
    return {"accuracy": accuracy, "uf1": uf1, "uar": uar}


def resample_counts(n_subjects: int, n_resamples: int, seed: int) -> np.ndarray:
    """(B, S) int64: how often each subject is drawn in each resample (S draws each)."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n_subjects, np.full(n_subjects, 1.0 / n_subjects), size=n_resamples)


def _interval(values: np.ndarray, confidence: float) -> list[float]:
    tail = (1.0 - confidence) / 2
    lo, hi = np.quantile(values, [tail, 1.0 - tail])
    return [float(lo), float(hi)]


def _check(y_true: Any, y_pred: Any, groups: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    t, p = np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64)
    g = np.asarray([str(x) for x in groups])
    if not (t.shape == p.shape == g.shape and t.ndim == 1 and t.size):
        raise DataError(
            f"bootstrap needs one truth, prediction and subject per sample, got "
            f"{t.shape}, {p.shape}, {g.shape}"
        )
    return t, p, g


def bootstrap_scores(
    y_true: Any,
    y_pred: Any,
    groups: Sequence[str],
    num_classes: int,
    n_resamples: int = 2000,
    seed: int = 0,
    absent: Absent = "zero",
) -> dict[str, np.ndarray]:
    """The B resampled scores of each metric, ``{"accuracy"|"uf1"|"uar": (B,)}``.
    ``groups``: the subject of each sample (``"dataset/subject"``)."""
    t, p, g = _check(y_true, y_pred, groups)
    codes, names = subject_codes(g)
    per_subject = subject_confusions(t, p, codes, num_classes)
    counts = resample_counts(len(names), n_resamples, seed)
    return scores_from_confusions(counts @ per_subject, num_classes, absent)


def bootstrap_intervals(
    y_true: Any,
    y_pred: Any,
    groups: Sequence[str],
    num_classes: int,
    n_resamples: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
    absent: Absent = "zero",
) -> dict[str, list[float]]:
    """``{"accuracy_ci": [lo, hi], "uf1_ci": ..., "uar_ci": ...}``: percentile intervals
    of the pooled scores over ``n_resamples`` subject resamples (seeded: same inputs,
    same interval)."""
    scores = bootstrap_scores(y_true, y_pred, groups, num_classes, n_resamples, seed, absent)
    return {f"{m}_ci": _interval(scores[m], confidence) for m in METRICS}


def paired_bootstrap(
    y_true: Any,
    pred_a: Any,
    pred_b: Any,
    groups: Sequence[str],
    num_classes: int,
    n_resamples: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
    absent: Absent = "zero",
) -> dict[str, dict[str, Any]]:
    """Run A minus run B on the same samples, both scored on the same resampled subjects.

    Returns per metric ``{"difference": A - B on all samples, "ci": [lo, hi] of the
    resampled differences, "a_better": share of resamples where A scores higher,
    "ties": share where they score the same}``.
    """
    t, a, g = _check(y_true, pred_a, groups)
    _, b, _ = _check(y_true, pred_b, groups)
    codes, names = subject_codes(g)
    counts = resample_counts(len(names), n_resamples, seed)
    # Row 0 weighs every subject once (the scores on all samples), the rest are resamples.
    weights = np.vstack([np.ones((1, len(names)), dtype=np.int64), counts])

    def scores(pred: np.ndarray) -> dict[str, np.ndarray]:
        confusions = weights @ subject_confusions(t, pred, codes, num_classes)
        return scores_from_confusions(confusions, num_classes, absent)

    sa, sb = scores(a), scores(b)
    out = {}
    for m in METRICS:
        diff = sa[m][1:] - sb[m][1:]
        out[m] = {
            "difference": float(sa[m][0] - sb[m][0]),
            "ci": _interval(diff, confidence),
            "a_better": float(np.mean(diff > 0)),
            "ties": float(np.mean(diff == 0)),
        }
    return out
