"""The LOSO fold-training unit: one fold (or a pack of folds, each with its ensemble
members) trained, its result as data.

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
from apexmer.training.engine import FitResult, predict_proba, seed_for
from apexmer.training.members import fit_networks, mean_probs, member_seeds
from apexmer.training.packed import FoldData


def train_fold(
    data: ManifestData, fold: Fold, config: Config, on_epoch: ProgressFn | None = None
) -> dict[str, Any]:
    """Train on every subject but one, score the held-out one. Returns a JSON-ready dict."""
    return _train_folds(data, [fold], config, on_epoch)[0]


def _keys(data: ManifestData, fold: Fold) -> list[str]:
    """The sample keys of a fold's training set, in its order."""
    return [data.samples[i].key for i in fold.train_idx]


def train_fold_group(
    data: ManifestData, folds: list[Fold], config: Config, on_epoch: ProgressFn | None = None
) -> list[dict[str, Any]]:
    """Train ``folds`` x ``train.ensemble`` members, ``train.pack_folds`` networks at a
    time as one packed network (``members.fit_networks``); the fold dicts are those of
    one-at-a-time training up to float rounding. ``on_epoch`` rows carry ``"fold"`` (the
    fold index) and, with an ensemble, ``"member"``."""
    if len(folds) == 1:
        return [train_fold(data, folds[0], config, on_epoch=on_epoch)]
    return _train_folds(data, folds, config, on_epoch)


def _train_folds(
    data: ManifestData, folds: list[Fold], config: Config, on_epoch: ProgressFn | None
) -> list[dict[str, Any]]:
    k = config.train.ensemble
    nets, owners = [], []
    for fold in folds:
        train_idx = torch.as_tensor(fold.train_idx)
        x_eval = data.inputs[torch.as_tensor(fold.test_idx)] if config.eval.oracle else None
        for m, seed in enumerate(member_seeds(config, seed_for(config, fold.index))):
            nets.append(
                FoldData(
                    x=data.inputs[train_idx], y=data.labels[train_idx], seed=seed, x_eval=x_eval
                )
            )
            owners.append((fold.index, m))

    def net_epoch(row: dict) -> None:
        if on_epoch:
            row = dict(row)
            fold, member = owners[row.pop("pack_index")]
            on_epoch({**row, "fold": fold, **({"member": member} if k > 1 else {})})

    try:
        results = fit_networks(config, nets, len(data.classes), on_epoch=net_epoch)
    except NonFiniteTraining as exc:
        index, _member = owners[getattr(exc, "pack_index", None) or 0]
        fold = next(f for f in folds if f.index == index)
        raise exc.named(fold.name, _keys(data, fold)) from None
    return [
        fold_result(data, fold, config, results[i * k : (i + 1) * k])
        for i, fold in enumerate(folds)
    ]


def fold_groups(
    folds: list[Fold], todo: list[Fold], pack: int, members: int = 1
) -> list[list[Fold]]:
    """Groups of consecutive folds of the WHOLE run, keeping those with a fold to do; a
    group holds ``pack // members`` folds (at least one): ``pack`` counts networks, and
    each fold has ``members`` of them. Fixed by the fold list, not by what is left: a
    resumed run packs each fold with the same companions, so it repeats the uninterrupted
    run's arithmetic bit for bit."""
    per_group = max(1, pack // members)
    if per_group <= 1:
        return [[f] for f in todo]
    wanted = {f.index for f in todo}
    groups = [folds[i : i + per_group] for i in range(0, len(folds), per_group)]
    return [g for g in groups if any(f.index in wanted for f in g)]


def fold_result(
    data: ManifestData, fold: Fold, config: Config, members: FitResult | list[FitResult]
) -> dict[str, Any]:
    """A trained fold's JSON-ready record: held-out probabilities (the members' mean; each
    member's under ``member_probs`` when there are several), history, diagnostics."""
    members = members if isinstance(members, list) else [members]
    num_classes = len(data.classes)
    test_idx = torch.as_tensor(fold.test_idx)
    y_test = data.labels[test_idx].numpy()
    if config.eval.oracle:
        # ORACLE: the epoch with the best accuracy on the held-out subject (labelled), of
        # the ensemble's averaged probabilities.
        per_epoch = [list(ps) for ps in zip(*(r.eval_probs for r in members), strict=True)]
        accs = [float((mean_probs(ps).argmax(1) == y_test).mean()) for ps in per_epoch]
        best = int(np.argmax(accs))
        member_probs, chosen_epoch = per_epoch[best], best + 1
    else:
        x_test = data.inputs[test_idx]
        member_probs = [predict_proba(r.model, x_test, config) for r in members]
        chosen_epoch = config.train.epochs
    several = len(members) > 1
    history = [
        {**({"member": m} if several else {}), **row}
        for m, r in enumerate(members)
        for row in r.history
    ]
    return {
        "fold": fold.index,
        "group": fold.name,
        "test_idx": [int(i) for i in fold.test_idx],
        "probs": mean_probs(member_probs).round(6).tolist(),
        **({"member_probs": [p.round(6).tolist() for p in member_probs]} if several else {}),
        "epoch_used": chosen_epoch,
        "oracle": config.eval.oracle,
        "history": history,
        "diagnostics": fold_diagnostics(
            fold, data.labels.numpy(), num_classes, class_names=data.classes
        ),
    }
