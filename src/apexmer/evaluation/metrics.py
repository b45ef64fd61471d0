"""Classification metrics, pure numpy; each agrees with scikit-learn (see tests).

Labels are integers in ``[0, K)``. The headline numbers are computed ONCE on predictions
pooled over all LOSO folds (the paper's and MEGC's way); ``per_fold_f1`` gives the other
aggregation so a report can name both (they differ, e.g. 0.739 vs 0.666 in one study).

Classes that never occur (absent from ``y_true`` AND never predicted) make F1 0/0. Two
rules, chosen by ``absent``:

- ``"zero"`` (default for pooled UF1): the class scores 0 and stays in the mean over all K
  classes = ``sklearn.metrics.f1_score(average="macro", labels=range(K), zero_division=0)``.
  A pooled 5-class CASME II run has every class present, so both rules agree there.
- ``"skip"``: the mean runs over classes seen in ``y_true`` or ``y_pred`` only =
  ``f1_score(average="macro")`` with sklearn's default labels. This is what per-fold
  averaging in the field does, and close to the MEGC 2019 script (which skips a class when
  its one-vs-rest confusion matrix collapses).

UAR is the mean recall over classes present in ``y_true`` (MEGC's meaning), equal to
``sklearn.metrics.balanced_accuracy_score``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from apexmer.errors import DataError

Absent = Literal["zero", "skip"]


def _check(
    y_true: Any, y_pred: Any, num_classes: int | None = None
) -> tuple[np.ndarray, np.ndarray, int]:
    t = np.asarray(y_true)
    p = np.asarray(y_pred)
    if t.ndim != 1 or p.shape != t.shape:
        raise DataError(
            f"y_true and y_pred must be 1-D of equal length, got shapes {t.shape} and {p.shape}"
        )
    if t.size == 0:
        raise DataError("no predictions to score", fix="check that the folds are not empty")
    if not (np.issubdtype(t.dtype, np.integer) and np.issubdtype(p.dtype, np.integer)):
        raise DataError(
            f"labels must be integer class indices, got {t.dtype} and {p.dtype}",
            fix="map class names to indices with the run's class list",
        )
    k = int(max(t.max(), p.max())) + 1 if num_classes is None else int(num_classes)
    if min(t.min(), p.min()) < 0 or max(t.max(), p.max()) >= k:
        raise DataError(
            f"labels must lie in [0, {k}), got {min(t.min(), p.min())}..{max(t.max(), p.max())}",
            fix="pass the right num_classes",
        )
    return t.astype(np.int64), p.astype(np.int64), k


def confusion_matrix(y_true: Any, y_pred: Any, num_classes: int) -> np.ndarray:
    """(K, K) int64 counts; rows are true classes, columns predicted classes."""
    t, p, k = _check(y_true, y_pred, num_classes)
    return np.bincount(t * k + p, minlength=k * k).reshape(k, k)


def accuracy(y_true: Any, y_pred: Any) -> float:
    """Share of correct predictions."""
    t, p, _ = _check(y_true, y_pred)
    return float(np.mean(t == p))


def _f1_per_class(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(F1 per class with 0 for 0/0, mask of classes where 2TP+FP+FN > 0)."""
    tp = np.diag(cm).astype(np.float64)
    denom = 2 * tp + (cm.sum(axis=0) - tp) + (cm.sum(axis=1) - tp)  # 2TP + FP + FN
    seen = denom > 0
    return np.divide(2 * tp, denom, out=np.zeros_like(tp), where=seen), seen


def uf1(y_true: Any, y_pred: Any, num_classes: int, absent: Absent = "zero") -> float:
    """Unweighted (macro) F1: mean over classes of 2TP/(2TP+FP+FN); see module doc."""
    f1, seen = _f1_per_class(confusion_matrix(y_true, y_pred, num_classes))
    if absent == "zero":
        return float(f1.mean())
    if absent == "skip":
        return float(f1[seen].mean())
    raise ValueError(f"absent must be 'zero' or 'skip', got {absent!r}")


def uar(y_true: Any, y_pred: Any, num_classes: int | None = None) -> float:
    """Unweighted average recall over classes present in ``y_true`` (balanced accuracy)."""
    t, p, k = _check(y_true, y_pred, num_classes)
    cm = confusion_matrix(t, p, k)
    support = cm.sum(axis=1)
    present = support > 0
    return float(np.mean(np.diag(cm)[present] / support[present]))


def per_class(y_true: Any, y_pred: Any, class_names: Sequence[str]) -> list[dict[str, Any]]:
    """One dict per class: class, precision, recall, f1, support (0 where undefined)."""
    cm = confusion_matrix(y_true, y_pred, len(class_names))
    tp = np.diag(cm).astype(np.float64)
    predicted, support = cm.sum(axis=0), cm.sum(axis=1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    f1, _ = _f1_per_class(cm)
    return [
        {
            "class": str(name),
            "precision": float(precision[k]),
            "recall": float(recall[k]),
            "f1": float(f1[k]),
            "support": int(support[k]),
        }
        for k, name in enumerate(class_names)
    ]


def classification_metrics(
    y_true: Any, y_pred: Any, class_names: Sequence[str] | int, absent: Absent = "zero"
) -> dict[str, Any]:
    """Everything a report needs from one set of (pooled) predictions.

    ``class_names`` may be an int K (names become "0".."K-1"). Returns keys accuracy, uf1,
    uar, per_class, confusion (nested list, rows true), n, classes, uf1_absent (the rule).
    """
    names = (
        [str(k) for k in range(class_names)]
        if isinstance(class_names, int)
        else [str(c) for c in class_names]
    )
    k = len(names)
    t, p, _ = _check(y_true, y_pred, k)
    return {
        "accuracy": accuracy(t, p),
        "uf1": uf1(t, p, k, absent),
        "uar": uar(t, p, k),
        "per_class": per_class(t, p, names),
        "confusion": confusion_matrix(t, p, k).tolist(),
        "n": int(t.size),
        "classes": names,
        "uf1_absent": absent,
    }


def _fold_ids(folds: Any, n: int) -> list[np.ndarray]:
    """Test index arrays from a list of ``Fold`` (``.test_idx``) or a per-sample fold id array."""
    folds = list(folds)
    if folds and hasattr(folds[0], "test_idx"):
        return [np.asarray(f.test_idx, dtype=np.int64) for f in folds]
    ids = np.asarray(folds)
    if ids.shape != (n,):
        raise DataError(
            f"folds must be a list of Fold or one fold id per sample ({n}), got shape {ids.shape}"
        )
    return [np.flatnonzero(ids == v) for v in np.unique(ids)]


def per_fold_f1(
    y_true: Any, y_pred: Any, folds: Any, num_classes: int, absent: Absent = "skip"
) -> float:
    """Macro-F1 computed per fold, then averaged over folds (the OTHER aggregation).

    ``folds``: a list of ``Fold`` (their ``test_idx`` index ``y_true``) or one fold id per
    sample (e.g. the ``fold`` column of a predictions table). The default ``"skip"`` is how
    the field computes it (sklearn's default labels per fold), which silently drops classes
    a subject lacks; that is why it is reported only beside the pooled number.
    """
    t, p, k = _check(y_true, y_pred, num_classes)
    scores = [uf1(t[i], p[i], k, absent) for i in _fold_ids(folds, t.size) if i.size]
    return float(np.mean(scores))


def _split_group(group: str) -> tuple[str, str]:
    dataset, _, subject = group.partition("/")
    return (dataset, subject) if subject else (group, group)


def per_group_metrics(
    y_true: Any,
    y_pred: Any,
    groups: Sequence[str],
    num_classes: int | Sequence[str] | None = None,
    absent: Absent = "zero",
) -> dict[str, list[dict[str, Any]]]:
    """Per-subject accuracy and per-corpus scores (the MEGC composite reports each corpus).

    ``groups`` holds ``"dataset/subject"`` per sample (a group without ``/`` is taken as
    both its dataset and its subject, so dataset names alone give per-corpus scores).
    ``num_classes``: K, or the class names. Returns ``{"subjects": [{group, dataset,
    subject, n, accuracy}], "datasets": [{dataset, n, n_subjects, accuracy, uf1, uar}]}``,
    each sorted by name.
    """
    if num_classes is not None and not isinstance(num_classes, (int, np.integer)):
        num_classes = len(num_classes)
    t, p, k = _check(y_true, y_pred, num_classes)
    g = np.asarray([str(x) for x in groups])
    if g.shape != t.shape:
        raise DataError(f"groups must give one entry per sample ({t.size}), got {g.size}")
    subjects = []
    for name in sorted(set(g.tolist())):
        m = g == name
        dataset, subject = _split_group(name)
        subjects.append(
            {
                "group": name,
                "dataset": dataset,
                "subject": subject,
                "n": int(m.sum()),
                "accuracy": float(np.mean(t[m] == p[m])),
            }
        )
    ds = np.asarray([_split_group(x)[0] for x in g.tolist()])
    datasets = []
    for name in sorted(set(ds.tolist())):
        m = ds == name
        datasets.append(
            {
                "dataset": name,
                "n": int(m.sum()),
                "n_subjects": len(set(g[m].tolist())),
                "accuracy": float(np.mean(t[m] == p[m])),
                "uf1": uf1(t[m], p[m], k, absent),
                "uar": uar(t[m], p[m], k),
            }
        )
    return {"subjects": subjects, "datasets": datasets}
