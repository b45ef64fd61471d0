"""Evaluation splits (the protocols) and the diagnostics of degenerate folds.

A group is ``f"{dataset}/{subject}"`` so that subjects of different corpora never merge
(the MEGC composite holds ``casme2/sub01`` and ``smic/s01``). Protocols (METHOD.md
section 14), each a list of ``Fold`` whose indices point into the full sample list:

- ``loso``: one fold per subject (optionally only the subjects of ``datasets``);
- ``lodo``: leave one dataset out: one fold per dataset, trained on all the others;
- ``cross``: train on ``train_datasets``, test on ``test_datasets`` (MEGC 2018's
  holdout-database evaluation); ``both_ways`` adds the reverse fold.

Samples outside the chosen datasets are in neither the training nor the test set.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from apexmer.data.sample import Sample
from apexmer.errors import DataError

PROTOCOLS = ("loso", "lodo", "cross")


@dataclass(frozen=True, eq=False)
class Fold:
    """One fold: the held-out group is ``name``; indices point into the sample list."""

    index: int  # 0-based, in sorted group order
    name: str  # what is held out: "casme2/sub01" (loso), "samm" (lodo), "casme2->samm"
    train_idx: np.ndarray  # (N_train,) int64, sorted
    test_idx: np.ndarray  # (N_test,) int64, sorted
    train_datasets: tuple[str, ...] = ()  # the corpora its training samples come from
    test_datasets: tuple[str, ...] = ()  # the corpora its test samples come from

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


def _datasets_of(idx: np.ndarray, ds: np.ndarray) -> tuple[str, ...]:
    return tuple(sorted(set(ds[idx].tolist())))


def _check_names(names: Sequence[str], known: list[str], option: str) -> list[str]:
    unknown = [n for n in names if n not in known]
    if unknown:
        raise DataError(
            f"{option}: no dataset named {', '.join(map(repr, unknown))} in the manifest",
            fix=f"use the manifest's dataset column values: {', '.join(known)}",
        )
    if len(set(names)) != len(names):
        raise DataError(f"{option} names a dataset twice: {', '.join(names)}")
    return sorted(names)


def protocol_folds(
    samples: Sequence[Sample],
    protocol: str = "loso",
    datasets: Sequence[str] | None = None,
    train_datasets: Sequence[str] | None = None,
    test_datasets: Sequence[str] | None = None,
    both_ways: bool = False,
) -> list[Fold]:
    """The folds of ``protocol`` over ``samples`` (see module doc); each records the
    datasets it trains and tests on. Unknown dataset names raise ``DataError``."""
    ds = np.asarray([s.dataset for s in samples])
    groups = np.asarray([s.group for s in samples])
    known = sorted(set(ds.tolist()))
    idx = np.arange(len(ds), dtype=np.int64)
    if protocol in ("loso", "lodo"):
        chosen = _check_names(list(datasets), known, "eval.datasets") if datasets else known
        inside = np.isin(ds, chosen)
        if protocol == "loso":
            sub = loso_folds(groups[inside].tolist())
            keep = idx[inside]
            return [
                Fold(
                    f.index,
                    f.name,
                    keep[f.train_idx],
                    keep[f.test_idx],
                    _datasets_of(keep[f.train_idx], ds),
                    (f.dataset,),
                )
                for f in sub
            ]
        if len(chosen) < 2:
            raise DataError(
                f"leave-one-dataset-out needs at least 2 datasets, the manifest"
                f"{' subset' if datasets else ''} has {len(chosen)} ({', '.join(chosen)})",
                fix="use a manifest of several corpora (dataset column), or --protocol loso",
            )
        return [
            Fold(
                i,
                name,
                idx[inside & (ds != name)],
                idx[ds == name],
                tuple(d for d in chosen if d != name),
                (name,),
            )
            for i, name in enumerate(chosen)
        ]
    if protocol == "cross":
        if not train_datasets or not test_datasets:
            raise DataError(
                "protocol cross needs both eval.train_datasets and eval.test_datasets",
                fix="pass --train-datasets casme2 --test-datasets samm (comma-separated lists)",
            )
        train = _check_names(list(train_datasets), known, "eval.train_datasets")
        test = _check_names(list(test_datasets), known, "eval.test_datasets")
        both = sorted(set(train) & set(test))
        if both:
            raise DataError(
                f"eval.train_datasets and eval.test_datasets both name {', '.join(both)}",
                fix="a cross-dataset fold trains and tests on different corpora; "
                "use --protocol loso --datasets NAME for one corpus",
            )
        pairs = [(train, test), (test, train)] if both_ways else [(train, test)]
        return [
            Fold(
                i,
                f"{'+'.join(a)}->{'+'.join(b)}",
                idx[np.isin(ds, a)],
                idx[np.isin(ds, b)],
                tuple(a),
                tuple(b),
            )
            for i, (a, b) in enumerate(pairs)
        ]
    raise DataError(f"unknown protocol {protocol!r}", fix=f"use one of {', '.join(PROTOCOLS)}")


def class_coverage(
    folds: Sequence[Fold], labels: Sequence[int] | np.ndarray, class_names: Sequence[str]
) -> str | None:
    """One line naming the classes some fold tests but does not train on (the run goes
    on: those folds cannot predict them), or None. Raises ``DataError`` when a tested class
    has no training sample in any fold: no network of the run could ever predict it."""
    y = np.asarray(labels)
    k = len(class_names)
    tested = np.zeros(k, dtype=bool)
    trained = np.zeros(k, dtype=bool)
    gaps: dict[str, list[str]] = {}
    for fold in folds:
        train_counts = np.bincount(y[fold.train_idx], minlength=k)
        test_counts = np.bincount(y[fold.test_idx], minlength=k)
        tested |= test_counts > 0
        trained |= train_counts > 0
        for c in range(k):
            if train_counts[c] == 0 and test_counts[c]:
                gaps.setdefault(class_names[c], []).append(fold.name)
    never = [class_names[c] for c in range(k) if tested[c] and not trained[c]]
    if never:
        raise DataError(
            f"class(es) {', '.join(never)} are tested but have no training sample in any "
            "fold of this protocol, so no fold could ever predict them",
            fix="train on datasets that hold them (--train-datasets, or --both-ways), or "
            "leave those samples out of the manifest",
        )
    if not gaps:
        return None
    parts = [
        f"{name} in {len(f)} fold(s) ({', '.join(f[:3])}{', ...' if len(f) > 3 else ''})"
        for name, f in gaps.items()
    ]
    return "class absent from a fold's training set but tested there: " + "; ".join(parts)


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
