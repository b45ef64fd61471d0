"""The LOSO fold-training unit: one fold (or a pack of folds) trained, its result as data.

Both the runner (``protocol``) and the executors (``executors``) use it; it imports
neither, so the dependency runs one way: protocol -> executors -> folds.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from apexmer.config import Config
from apexmer.errors import NonFiniteTraining
from apexmer.evaluation.splits import Fold, fold_diagnostics
from apexmer.preprocess.pipeline import ProgressFn
from apexmer.training.dataset import ManifestData
from apexmer.training.engine import FitResult, fit, predict_proba, seed_for
from apexmer.training.packed import FoldData, fit_packed


def train_fold(
    data: ManifestData, fold: Fold, config: Config, on_epoch: ProgressFn | None = None
) -> dict[str, Any]:
    """Train on every subject but one, score the held-out one. Returns a JSON-ready dict."""
    train_idx = torch.as_tensor(fold.train_idx)
    x_eval = data.inputs[torch.as_tensor(fold.test_idx)] if config.eval.oracle else None
    try:
        result = fit(
            config,
            data.inputs[train_idx],
            data.labels[train_idx],
            len(data.classes),
            seed=seed_for(config, fold.index),
            x_eval=x_eval,
            on_epoch=on_epoch,
        )
    except NonFiniteTraining as exc:
        raise exc.named(fold.name, _keys(data, fold)) from None
    return fold_result(data, fold, config, result)


def _keys(data: ManifestData, fold: Fold) -> list[str]:
    """The sample keys of a fold's training set, in its order."""
    return [data.samples[i].key for i in fold.train_idx]


def train_fold_group(
    data: ManifestData, folds: list[Fold], config: Config, on_epoch: ProgressFn | None = None
) -> list[dict[str, Any]]:
    """Train ``folds`` together as one packed network (``train.pack_folds``); the fold
    dicts are those ``train_fold`` gives, up to float rounding. ``on_epoch`` rows carry
    ``"fold"`` (the fold index)."""
    if len(folds) == 1:
        fold = folds[0]

        def one(row: dict) -> None:
            if on_epoch:
                on_epoch({**row, "fold": fold.index})

        return [train_fold(data, fold, config, on_epoch=one)]
    fold_data = []
    for fold in folds:
        train_idx = torch.as_tensor(fold.train_idx)
        x_eval = data.inputs[torch.as_tensor(fold.test_idx)] if config.eval.oracle else None
        fold_data.append(
            FoldData(
                x=data.inputs[train_idx],
                y=data.labels[train_idx],
                seed=seed_for(config, fold.index),
                x_eval=x_eval,
            )
        )

    def packed_epoch(row: dict) -> None:
        if on_epoch:
            row = dict(row)
            on_epoch({**row, "fold": folds[row.pop("pack_index")].index})

    try:
        results = fit_packed(config, fold_data, len(data.classes), on_epoch=packed_epoch)
    except NonFiniteTraining as exc:
        fold = folds[exc.pack_index]
        raise exc.named(fold.name, _keys(data, fold)) from None
    return [fold_result(data, fold, config, res) for fold, res in zip(folds, results, strict=True)]


def fold_groups(folds: list[Fold], todo: list[Fold], pack: int) -> list[list[Fold]]:
    """Groups of ``pack`` consecutive folds of the WHOLE run, keeping those with a fold to
    do. Fixed by the fold list, not by what is left: a resumed run packs each fold with the
    same companions, so it repeats the uninterrupted run's arithmetic bit for bit."""
    if pack <= 1:
        return [[f] for f in todo]
    wanted = {f.index for f in todo}
    groups = [folds[i : i + pack] for i in range(0, len(folds), pack)]
    return [g for g in groups if any(f.index in wanted for f in g)]


def fold_result(
    data: ManifestData, fold: Fold, config: Config, result: FitResult
) -> dict[str, Any]:
    """A trained fold's JSON-ready record: held-out probabilities, history, diagnostics."""
    num_classes = len(data.classes)
    test_idx = torch.as_tensor(fold.test_idx)
    y_test = data.labels[test_idx].numpy()
    if config.eval.oracle:
        # ORACLE: the epoch with the best accuracy on the held-out subject (labelled).
        accs = [float((p.argmax(1) == y_test).mean()) for p in result.eval_probs]
        best = int(np.argmax(accs))
        probs, chosen_epoch = result.eval_probs[best], best + 1
    else:
        probs, chosen_epoch = (
            predict_proba(result.model, data.inputs[test_idx], config),
            config.train.epochs,
        )
    return {
        "fold": fold.index,
        "group": fold.name,
        "test_idx": [int(i) for i in fold.test_idx],
        "probs": probs.round(6).tolist(),
        "epoch_used": chosen_epoch,
        "oracle": config.eval.oracle,
        "history": result.history,
        "diagnostics": fold_diagnostics(
            fold, data.labels.numpy(), num_classes, class_names=data.classes
        ),
    }
