"""Leave-one-subject-out runner: one fold per subject, fixed epochs, last epoch's model.

The held-out subject's predictions of every fold are pooled, then scored once (the
paper's and MEGC's way). Each finished fold is written to ``RUN/folds/`` atomically; a
killed run started again with the same data and config continues with the folds that are
missing and ends with the same numbers as an uninterrupted run.

Run folder::

    RUN/run.json          resolved config, package version, coding-sheet version, data hash
    RUN/folds/fold_NN.json  one per finished fold (probabilities, history, diagnostics)
    RUN/summary.json      headline figures, per-class, confusion, per-fold, per-corpus
    RUN/predictions.csv   one row per sample with the class probabilities
    RUN/history.csv       loss and training accuracy per fold and epoch
    RUN/report.md + PNGs
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from apexmer import __version__
from apexmer.config import Config, config_to_dict
from apexmer.errors import ApexmerError, DataError
from apexmer.evaluation import metrics as M
from apexmer.evaluation.splits import Fold, fold_diagnostics, loso_folds
from apexmer.fileio import write_json, write_text
from apexmer.training.dataset import ManifestData, load_manifest_data
from apexmer.training.engine import FitResult, fit, predict_proba, seed_for
from apexmer.training.inputs import check_model_input

ProgressFn = Callable[[dict], None]
EXECUTORS = ("local", "process", "ray")


# Everything a fold needs, loaded once (the same loader trains deployable models).
LosoData = ManifestData
prepare_data = load_manifest_data


def train_fold(
    data: LosoData, fold: Fold, config: Config, on_epoch: ProgressFn | None = None
) -> dict[str, Any]:
    """Train on every subject but one, score the held-out one. Returns a JSON-ready dict."""
    train_idx = torch.as_tensor(fold.train_idx)
    x_eval = data.inputs[torch.as_tensor(fold.test_idx)] if config.eval.oracle else None
    result = fit(
        config,
        data.inputs[train_idx],
        data.labels[train_idx],
        len(data.classes),
        seed=seed_for(config, fold.index),
        x_eval=x_eval,
        on_epoch=on_epoch,
    )
    return fold_result(data, fold, config, result)


def train_fold_group(
    data: LosoData, folds: list[Fold], config: Config, on_epoch: ProgressFn | None = None
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
    from apexmer.training.packed import FoldData, fit_packed

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

    results = fit_packed(config, fold_data, len(data.classes), on_epoch=packed_epoch)
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


def fold_result(data: LosoData, fold: Fold, config: Config, result: FitResult) -> dict[str, Any]:
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


def run_header(data: LosoData, config: Config) -> dict[str, Any]:
    return {
        "config": config_to_dict(config),
        "version": __version__,
        "coding_version": data.coding_version,
        "manifest": str(data.manifest),
        "data_digest": data.digest,
        "classes": list(data.classes),
        "n_samples": len(data.samples),
    }


def _check_resume(out: Path, header: dict[str, Any]) -> None:
    path = out / "run.json"
    if not path.exists():
        write_json(path, header)
        return
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        raise ApexmerError(
            f"{path} is damaged (not readable JSON), so the folds beside it cannot be checked "
            f"against this run. Fix: delete {out} to start over, or pass a new --out folder"
        ) from None
    for key in ("config", "data_digest", "classes", "version"):
        if old.get(key) != header.get(key):
            raise ApexmerError(
                f"{out}: this run folder holds a run with a different {key.replace('_', ' ')}; "
                "its finished folds cannot be reused. Fix: pass a new --out folder, or delete "
                f"{out} to start over."
            )


def fold_path(out: Path, fold: Fold) -> Path:
    return out / "folds" / f"fold_{fold.index:03d}.json"


def fold_done(out: Path, fold: Fold) -> bool:
    """A finished, intact result for this fold. Writes are atomic, but a file damaged
    outside apexmer (a partial copy, a full disk) is moved aside and the fold retrained."""
    path = fold_path(out, fold)
    if not path.exists():
        return False
    try:
        result = json.loads(path.read_text())
        intact = (
            result["fold"] == fold.index
            and result["test_idx"] == [int(i) for i in fold.test_idx]
            and len(result["probs"]) == len(fold.test_idx)
        )
    except (OSError, ValueError, KeyError, TypeError):
        intact = False
    if not intact:
        path.replace(path.with_suffix(".json.bad"))
    return intact


def run_folds_local(
    data: LosoData, groups: Iterable[list[Fold]], config: Config, progress: ProgressFn | None = None
) -> Iterable[dict[str, Any]]:
    """The ``local`` executor: fold groups one after another in this process."""
    names = {}
    for group in groups:
        names.update({f.index: f.name for f in group})

        def on_epoch(row: dict) -> None:
            if progress:
                progress({"event": "epoch", "group": names[row["fold"]], **row})

        yield from train_fold_group(data, group, config, on_epoch=on_epoch)


def run_loso(
    manifest: str | Path,
    config: Config,
    out: str | Path,
    *,
    executor: str = "local",
    workers: int | None = None,
    ray_address: str | None = None,
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Run (or resume) LOSO; write the run folder; return the summary."""
    if executor not in EXECUTORS:
        raise ApexmerError(f"unknown executor {executor!r}; use one of {', '.join(EXECUTORS)}")
    out = Path(out)
    check_model_input(config)  # before minutes of loading: the model must take the input
    data = prepare_data(manifest, config.data)
    folds = loso_folds(data.groups)
    if len(folds) < 2:
        raise DataError(
            f"LOSO needs at least 2 subjects, found {len(folds)}",
            file=manifest,
            fix="add subjects, or check the subject column",
        )
    _check_resume(out, run_header(data, config))
    todo = [f for f in folds if not fold_done(out, f)]
    if progress:
        progress(
            {
                "event": "start",
                "n_folds": len(folds),
                "done": len(folds) - len(todo),
                "n_samples": len(data.samples),
            }
        )
    groups = fold_groups(folds, todo, config.train.pack_folds)
    wanted = {f.index for f in todo}
    for result in execute(
        executor, data, groups, config, workers=workers, ray_address=ray_address, progress=progress
    ):
        if result["fold"] not in wanted:  # a finished fold retrained with its pack: keep
            continue  # the file already written (same numbers)
        write_json(out / "folds" / f"fold_{result['fold']:03d}.json", result)
        if progress:
            progress({"event": "fold_done", "fold": result["fold"], "group": result["group"]})
    results = [json.loads(fold_path(out, f).read_text()) for f in folds]
    summary = write_results(out, data, folds, results, config)
    return summary


def execute(
    executor: str,
    data: LosoData,
    groups: list[list[Fold]],
    config: Config,
    *,
    workers: int | None,
    ray_address: str | None,
    progress: ProgressFn | None,
) -> Iterable[dict[str, Any]]:
    """Dispatch fold groups (one fold each unless ``train.pack_folds`` > 1) to an
    executor; every executor yields finished fold dicts."""
    if executor == "local":
        return run_folds_local(data, groups, config, progress)
    from apexmer.evaluation import executors  # process/ray live apart: heavier imports

    return executors.run(
        executor, data, groups, config, workers=workers, ray_address=ray_address, progress=progress
    )


def pooled_predictions(data: LosoData, results: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per sample: who, which fold, truth, prediction, probabilities."""
    rows = []
    for res in results:
        for i, p in zip(res["test_idx"], res["probs"], strict=True):
            s = data.samples[i]
            y_pred = int(np.argmax(p))
            rows.append(
                {
                    "key": s.key,
                    "dataset": s.dataset,
                    "subject": s.subject,
                    "clip": s.clip,
                    "fold": res["fold"],
                    "y_true": int(data.labels[i]),
                    "y_pred": y_pred,
                    "label": s.label,
                    "pred_label": data.classes[y_pred],
                    **{f"prob_{c}": float(v) for c, v in zip(data.classes, p, strict=True)},
                }
            )
    return pd.DataFrame(rows).sort_values("key", kind="stable").reset_index(drop=True)


def protocol_text(config: Config, n_folds: int) -> str:
    base = (
        f"LOSO, {n_folds} folds (one per subject), fixed {config.train.epochs} epochs, "
        "predictions pooled over folds then scored once (UF1 = macro-F1 on the pooled "
        "predictions)"
    )
    if config.eval.oracle:
        return (
            "ORACLE: epoch chosen by accuracy on the held-out subject (not a valid "
            "estimate); " + base
        )
    return base + ", last epoch's model scores its held-out subject"


def run_setting(data: LosoData, config: Config, n_folds: int) -> dict[str, Any]:
    """What decides whether the paper's numbers are comparable with this run."""
    datasets = sorted({s.dataset for s in data.samples})
    return {
        "dataset": "+".join(datasets),
        "classes": list(data.classes),
        "model": config.model.name,
        "frame": config.data.frame,
        "input": config.data.input,
        "n_samples": len(data.samples),
        "n_subjects": n_folds,
        "protocol": "loso",
        "oracle": config.eval.oracle,
        "input_size": config.data.input_size,
        "epochs": config.train.epochs,
        "batch_size": config.train.batch_size,
        "optimizer": config.optim.name,
        "lr": config.optim.lr,
        "loss": config.loss.name,
        "coding_version": data.coding_version,
    }


def write_results(
    out: Path, data: LosoData, folds: list[Fold], results: list[dict[str, Any]], config: Config
) -> dict[str, Any]:
    """Pool the folds, score once, write summary, predictions, history and the report."""
    preds = pooled_predictions(data, results)
    y_true, y_pred = preds["y_true"].to_numpy(), preds["y_pred"].to_numpy()
    headline = M.classification_metrics(y_true, y_pred, list(data.classes))
    fold_of = preds["fold"].to_numpy()
    fold_rows = []
    for res in results:
        mask = fold_of == res["fold"]
        fold_rows.append(
            {
                "fold": res["fold"],
                "subject": res["group"],
                "n": int(mask.sum()),
                "accuracy": float((y_true[mask] == y_pred[mask]).mean()) if mask.any() else None,
                "epoch_used": res["epoch_used"],
                "warnings": res["diagnostics"].get("warnings", []),
            }
        )
    history = pd.DataFrame([{"fold": r["fold"], **h} for r in results for h in r["history"]])
    summary = {
        "accuracy": headline["accuracy"],
        "uf1": headline["uf1"],
        "uar": headline["uar"],
        "uf1_per_fold_mean": M.per_fold_f1(y_true, y_pred, fold_of, len(data.classes)),
        "n_samples": len(preds),
        "n_folds": len(folds),
        "protocol": protocol_text(config, len(folds)),
        "oracle": config.eval.oracle,
        "classes": list(data.classes),
        "per_class": headline["per_class"],
        "confusion": headline["confusion"],
        "folds": fold_rows,
        "per_corpus": (
            M.per_group_metrics(y_true, y_pred, preds["dataset"].to_numpy(), list(data.classes))
            if preds["dataset"].nunique() > 1
            else {}
        ),
        "coding_version": data.coding_version,
        "version": __version__,
        "manifest": str(data.manifest),
        "data_problems": [str(p) for p in data.problems],
        "config": config_to_dict(config),
        "setting": run_setting(data, config, len(folds)),
    }
    preds_path = out / "predictions.csv"
    write_text(preds_path, preds.to_csv(index=False))
    write_text(out / "history.csv", history.to_csv(index=False))
    write_json(out / "summary.json", summary)
    from apexmer.evaluation.report import write_report

    write_report(out, summary, preds, history, list(data.classes))
    return summary
