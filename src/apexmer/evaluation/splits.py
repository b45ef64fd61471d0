"""Leave-one-subject-out splits and the diagnostics of degenerate folds.

A group is ``f"{dataset}/{subject}"`` so that subjects of different corpora never merge
(the MEGC composite holds ``casme2/sub01`` and ``smic/s01``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from apexmer.data.sample import Sample
from apexmer.errors import DataError


@dataclass(frozen=True, eq=False)
class Fold:
    """One LOSO fold: the held-out group is ``name``; indices point into the sample list."""

    index: int  # 0-based, in sorted group order
    name: str  # the held-out group, e.g. "casme2/sub01"
    train_idx: np.ndarray  # (N_train,) int64, sorted
    test_idx: np.ndarray  # (N_test,) int64, sorted

    @property
    def dataset(self) -> str:
        return self.name.split("/", 1)[0] if "/" in self.name else ""

    @property
    def subject(self) -> str:
        return self.name.split("/", 1)[1] if "/" in self.name else self.name


def subject_groups(samples: Iterable[Sample]) -> list[str]:
    """LOSO groups, one per sample: ``"dataset/subject"``."""
    return [s.group for s in samples]


def loso_folds(groups: Sequence[str]) -> list[Fold]:
    """One fold per unique group, in sorted group order; test = that group, train = the rest."""
    arr = np.asarray([str(g) for g in groups])
    names = sorted(set(arr.tolist()))
    if len(names) < 2:
        raise DataError(
            f"leave-one-subject-out needs at least 2 subjects, got {len(names)} "
            f"({len(arr)} samples)",
            fix="evaluate on a corpus or manifest with two or more subjects",
        )
    idx = np.arange(len(arr), dtype=np.int64)
    folds = []
    for i, name in enumerate(names):
        held = arr == name
        folds.append(Fold(index=i, name=name, train_idx=idx[~held], test_idx=idx[held]))
    return folds


def fold_diagnostics(
    fold: Fold,
    labels: Sequence[int] | np.ndarray,
    num_classes: int,
    class_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Describe what is degenerate about ``fold``; never drops anything.

    ``labels`` are the integer labels of ALL samples (indexed by the fold's indices).
    Returns ``{"fold", "n_train", "n_test", "test_counts", "train_counts",
    "missing_in_train", "warnings"}``; ``warnings`` is a list of human-readable strings
    (empty for a healthy fold), ready for the report.
    """
    y = np.asarray(labels)
    if y.ndim != 1 or (y.size and (y.min() < 0 or y.max() >= num_classes)):
        raise DataError(
            f"fold {fold.name}: labels must be 1-D integers in [0, {num_classes})",
            fix="map class names to indices before building folds",
        )
    names = list(class_names) if class_names is not None else [str(k) for k in range(num_classes)]
    test_counts = np.bincount(y[fold.test_idx], minlength=num_classes)
    train_counts = np.bincount(y[fold.train_idx], minlength=num_classes)
    missing = [names[k] for k in range(num_classes) if train_counts[k] == 0]
    warnings: list[str] = []
    n_test = int(fold.test_idx.size)
    if n_test == 0:
        warnings.append("empty test set")
    elif n_test == 1:
        warnings.append("test subject has a single sample (its accuracy is 0 or 1)")
    present = [names[k] for k in range(num_classes) if test_counts[k] > 0]
    if n_test > 1 and len(present) == 1:
        warnings.append(
            f"single-class test set (all {n_test} samples are {present[0]}): "
            "per-fold macro-F1 is degenerate"
        )
    if fold.train_idx.size == 0:
        warnings.append("empty training set")
    elif missing:
        unseen = [c for c in missing if test_counts[names.index(c)] > 0]
        text = f"class(es) absent from the training set: {', '.join(missing)}"
        if unseen:
            text += f" (tested but never trained: {', '.join(unseen)})"
        warnings.append(text)
    return {
        "fold": fold.name,
        "n_train": int(fold.train_idx.size),
        "n_test": n_test,
        "test_counts": dict(zip(names, test_counts.tolist(), strict=True)),
        "train_counts": dict(zip(names, train_counts.tolist(), strict=True)),
        "missing_in_train": missing,
        "warnings": warnings,
    }
