"""Evaluation: LOSO splits, metrics (pure numpy), the paper's numbers, reports."""

from apexmer.evaluation.metrics import (
    accuracy,
    classification_metrics,
    confusion_matrix,
    per_class,
    per_fold_f1,
    per_group_metrics,
    uar,
    uf1,
)
from apexmer.evaluation.splits import (
    Fold,
    fold_diagnostics,
    loso_folds,
    protocol_folds,
    subject_groups,
)

__all__ = [
    "Fold",
    "accuracy",
    "classification_metrics",
    "confusion_matrix",
    "fold_diagnostics",
    "loso_folds",
    "per_class",
    "per_fold_f1",
    "per_group_metrics",
    "protocol_folds",
    "subject_groups",
    "uar",
    "uf1",
]
