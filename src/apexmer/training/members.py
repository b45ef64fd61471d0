"""Many networks trained as ``fit`` trains one: ensemble members and LOSO folds alike.

A network is a ``FoldData`` (its training set and seed). ``fit_networks`` trains a list of
them ``train.pack_folds`` at a time as one packed network (``training/packed.py``), or one
at a time when ``pack_folds`` is 1: ``pack_folds`` counts networks, whether they are folds,
members or both. Each network's result is that of ``engine.fit`` with its seed, up to float
rounding when packed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from apexmer.config import Config
from apexmer.errors import NonFiniteTraining
from apexmer.models.ensemble import Ensemble
from apexmer.training.engine import EpochCallback, FitResult, fit, member_seed
from apexmer.training.packed import FoldData, fit_packed


def member_seeds(config: Config, seed: int) -> list[int]:
    """The ``train.ensemble`` member seeds of a network seeded ``seed``."""
    return [member_seed(seed, m) for m in range(config.train.ensemble)]


def fit_networks(
    config: Config,
    nets: Sequence[FoldData],
    num_classes: int,
    *,
    on_epoch: EpochCallback | None = None,
) -> list[FitResult]:
    """Train every network of ``nets`` for ``train.epochs``; one ``FitResult`` each, in
    order. ``on_epoch`` rows carry ``"pack_index"``: the network's index in ``nets``."""
    pack = config.train.pack_folds
    results: list[FitResult] = []
    for start in range(0, len(nets), pack):
        chunk = list(nets[start : start + pack])

        def row_of(row: dict, start: int = start) -> None:
            if on_epoch is not None:
                on_epoch({**row, "pack_index": start + row.get("pack_index", 0)})

        if len(chunk) == 1:
            fd = chunk[0]
            res = fit(config, fd.x, fd.y, num_classes, fd.seed, x_eval=fd.x_eval, on_epoch=row_of)
            results.append(res)
        else:
            try:
                results += fit_packed(config, chunk, num_classes, on_epoch=row_of)
            except NonFiniteTraining as exc:  # its pack_index counts within the chunk
                exc.pack_index = start + (getattr(exc, "pack_index", None) or 0)
                raise
    return results


def fit_ensemble(
    config: Config,
    x: torch.Tensor,
    y: torch.Tensor,
    num_classes: int,
    seed: int,
    *,
    on_epoch: EpochCallback | None = None,
) -> list[FitResult]:
    """The ``train.ensemble`` members of one training set (``fit`` for K = 1), packed by
    ``train.pack_folds``; rows carry ``"member"`` when K > 1."""
    nets = [FoldData(x=x, y=y, seed=s) for s in member_seeds(config, seed)]

    def row_of(row: dict) -> None:
        if on_epoch is not None:
            row = dict(row)
            index = row.pop("pack_index")
            on_epoch({**row, "member": index} if len(nets) > 1 else row)

    return fit_networks(config, nets, num_classes, on_epoch=row_of)


def ensemble_model(results: Sequence[FitResult]) -> torch.nn.Module:
    """One module for the trained members: the model itself for one, else an ``Ensemble``."""
    models = [r.model for r in results]
    return models[0] if len(models) == 1 else Ensemble(models)


def mean_probs(probs: Sequence[np.ndarray]) -> np.ndarray:
    """The members' softmax probabilities ``(N, C)`` each, averaged (float32)."""
    if len(probs) == 1:
        return probs[0]
    return np.mean(np.stack(probs), axis=0, dtype=np.float64).astype(np.float32)
