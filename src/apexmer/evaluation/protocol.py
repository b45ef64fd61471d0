"""The evaluation runner: the folds of ``eval.protocol`` (loso, lodo, cross; ``splits``),
fixed epochs, last epoch's model.

The held-out predictions of every fold are pooled, then scored once (the paper's and
MEGC's way), with subject-bootstrap intervals (``scores``, ``bootstrap``). Each finished
fold is written to ``RUN/folds/`` atomically; a killed run started again with the same
data and config continues with the folds that are missing and ends with the same numbers
as an uninterrupted run. The bootstrap keys (``eval.bootstrap`` ...) are not part of a
run's identity: changed, they rescore the finished folds without retraining.

Run folder::

    RUN/.lock             held for the life of a run (runfolder.RunLock): pid, host, start
    RUN/run.json          resolved config, package version, coding-sheet version, data hash
    RUN/folds/fold_NN.json  one per finished fold (probabilities, history, diagnostics,
                          the run's fingerprint: another run's fold file is never reused)
    RUN/summary.json      headline figures with intervals, per-class, confusion, per-fold
                          (train/test datasets), per-corpus (scores.score_predictions)
    RUN/predictions.csv   one row per sample with the class probabilities (an ensemble's
                          averaged, and each member's prob_<class>_m<k>)
    RUN/history.csv       loss and training accuracy per fold and epoch
    RUN/report.md + PNGs
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from apexmer import __version__
from apexmer.config import Config, config_to_dict
from apexmer.errors import ApexmerError, DataError
from apexmer.evaluation.executors import EXECUTORS, run
from apexmer.evaluation.folds import fold_groups
from apexmer.evaluation.members import ensemble_summary, member_columns
from apexmer.evaluation.runfolder import (
    RunLock,
    check_header,
    fold_path,
    read_fold,
    remove_temp_files,
    run_fingerprint,
)
from apexmer.evaluation.scores import score_predictions
from apexmer.evaluation.splits import Fold, class_coverage, protocol_folds
from apexmer.fileio import write_json, write_text
from apexmer.preprocess.pipeline import ProgressFn
from apexmer.training.dataset import ManifestData, load_manifest_data
from apexmer.training.inputs import check_model_input

# eval keys that only change how finished folds are scored: not part of a run's identity,
# so a finished run is rescored (not retrained) with another bootstrap count.
SCORING_KEYS = ("bootstrap", "bootstrap_seed", "confidence")
# eval keys added with the protocols: left out of a run's identity at their default, so a
# run folder written before they existed still resumes.
# (tta came with the ensembles, likewise.)
PROTOCOL_DEFAULTS = {
    "datasets": [],
    "train_datasets": [],
    "test_datasets": [],
    "both_ways": False,
    "tta": "none",
}


def run_identity_config(config: Config) -> dict[str, Any]:
    """The resolved config as a run's identity (``run.json``, fold fingerprints)."""
    out = config_to_dict(config)
    ev = out["eval"]
    for key in SCORING_KEYS:
        ev.pop(key, None)
    for key, default in PROTOCOL_DEFAULTS.items():
        if ev.get(key) == default:
            ev.pop(key)
    return out


def run_folds(data: ManifestData, config: Config) -> list[Fold]:
    """The folds of the configured protocol over ``data``'s samples."""
    ev = config.eval
    return protocol_folds(
        data.samples, ev.protocol, ev.datasets, ev.train_datasets, ev.test_datasets, ev.both_ways
    )


def run_header(data: ManifestData, config: Config) -> dict[str, Any]:
    return {
        "config": run_identity_config(config),
        "version": __version__,
        "coding_version": data.coding_version,
        "manifest": str(data.manifest),
        "data_digest": data.digest,
        "classes": list(data.classes),
        "n_samples": len(data.samples),
    }


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
    """Run (or resume) the configured protocol (LOSO by default; ``eval.protocol``);
    write the run folder; return the summary. The folder is
    locked for the whole run (``runfolder.RunLock``); ``progress`` gets ``warning`` events
    (a fold file retrained, a dead run's lock taken over), also listed in the summary."""
    if executor not in EXECUTORS:
        raise ApexmerError(f"unknown executor {executor!r}; use one of {', '.join(EXECUTORS)}")
    out = Path(out)
    check_model_input(config)  # before minutes of loading: the model must take the input
    data = load_manifest_data(manifest, config.data)
    folds = run_folds(data, config)
    if config.eval.protocol == "loso" and len(folds) < 2:
        raise DataError(
            f"LOSO needs at least 2 subjects, found {len(folds)}",
            file=manifest,
            fix="add subjects, or check the subject column",
        )
    coverage = class_coverage(folds, data.labels.numpy(), list(data.classes))
    header = run_header(data, config)
    fingerprint = run_fingerprint(header)
    n_classes, epochs = len(data.classes), config.train.epochs
    with RunLock(out) as lock:
        notices = [lock.notice] if lock.notice else []
        notices += [coverage] if coverage else []
        removed = remove_temp_files(out)
        if removed:
            notices.append(f"{out}: removed {removed} temporary file(s) a killed run left")
        check_header(out, header)
        todo = []
        for fold in folds:
            record, problem = read_fold(out, fold, n_classes, fingerprint, epochs)
            notices += [problem] if problem else []
            if record is None:
                todo.append(fold)
        if progress:
            for message in notices:
                progress({"event": "warning", "message": message})
            progress(
                {
                    "event": "start",
                    "n_folds": len(folds),
                    "done": len(folds) - len(todo),
                    "n_samples": len(data.samples),
                    "protocol": config.eval.protocol,
                }
            )
        groups = fold_groups(folds, todo, config.train.pack_folds, config.train.ensemble)
        wanted = {f.index for f in todo}
        results = run(
            executor,
            data,
            groups,
            config,
            workers=workers,
            ray_address=ray_address,
            progress=progress,
        )
        for result in results:
            if result["fold"] not in wanted:  # a finished fold retrained with its pack: keep
                continue  # the file already written (same numbers)
            lock.check()
            write_json(
                out / "folds" / f"fold_{result['fold']:03d}.json",
                {**result, "fingerprint": fingerprint},
            )
            if progress:
                progress({"event": "fold_done", "fold": result["fold"], "group": result["group"]})
        finished = [_finished(out, f, n_classes, fingerprint, epochs) for f in folds]
        lock.check()
        return write_results(out, data, folds, finished, config, warnings=notices)


def _finished(
    out: Path, fold: Fold, num_classes: int, fingerprint: str, epochs: int
) -> dict[str, Any]:
    record, problem = read_fold(out, fold, num_classes, fingerprint, epochs)
    if record is None:  # written by this run moments ago: someone else wrote over it
        raise ApexmerError(
            f"{fold_path(out, fold)} changed while this run was going ({problem or 'gone'}). "
            "Fix: stop whatever else writes into this folder, then run again: that fold "
            "is retrained"
        )
    return record


def pooled_predictions(data: ManifestData, results: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per sample: who, which fold, truth, prediction, probabilities."""
    rows = []
    for res in results:
        for j, (i, p) in enumerate(zip(res["test_idx"], res["probs"], strict=True)):
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
                    **member_columns(data.classes, res.get("member_probs"), j),
                }
            )
    return pd.DataFrame(rows).sort_values("key", kind="stable").reset_index(drop=True)


def protocol_text(config: Config, folds: list[Fold]) -> str:
    ev, n = config.eval, len(folds)
    if ev.protocol == "lodo":
        what = f"leave-one-dataset-out (LODO), {n} folds (one per dataset, trained on the others)"
    elif ev.protocol == "cross":
        what = f"cross-dataset, {n} fold(s): " + ", ".join(f.name for f in folds)
    else:
        within = f" within {', '.join(ev.datasets)}" if ev.datasets else ""
        what = f"LOSO{within}, {n} folds (one per subject)"
    base = (
        f"{what}, fixed {config.train.epochs} epochs, "
        "predictions pooled over folds then scored once (UF1 = macro-F1 on the pooled "
        "predictions)"
    )
    if config.eval.oracle:
        return (
            "ORACLE: epoch chosen by accuracy on the held-out subject (not a valid "
            "estimate); " + base
        )
    held = "subject" if ev.protocol == "loso" else "fold"
    return base + f", last epoch's model scores its held-out {held}"


def run_setting(data: ManifestData, config: Config, preds: pd.DataFrame) -> dict[str, Any]:
    """What decides whether published numbers are comparable with this run (of the
    samples it tested)."""
    datasets = sorted(set(preds["dataset"].astype(str)))
    return {
        "dataset": "+".join(datasets),
        "classes": list(data.classes),
        "model": config.model.name,
        "frame": config.data.frame,
        "input": config.data.input,
        "n_samples": len(preds),
        "n_subjects": int((preds["dataset"] + "/" + preds["subject"].astype(str)).nunique()),
        "protocol": config.eval.protocol,
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
    out: Path,
    data: ManifestData,
    folds: list[Fold],
    results: list[dict[str, Any]],
    config: Config,
    warnings: list[str] | None = None,
) -> dict[str, Any]:
    """Pool the folds, score once, write summary, predictions, history and the report.
    ``warnings``: run-level notices (listed in the summary and the report)."""
    preds = pooled_predictions(data, results)
    by_index = {f.index: f for f in folds}
    meta = [
        {
            "fold": r["fold"],
            "name": r["group"],
            "train_datasets": list(by_index[r["fold"]].train_datasets),
            "test_datasets": list(by_index[r["fold"]].test_datasets),
            "n_train": int(by_index[r["fold"]].train_idx.size),
            "epoch_used": r["epoch_used"],
            "warnings": r["diagnostics"].get("warnings", []),
        }
        for r in results
    ]
    ev = config.eval
    scores = score_predictions(
        preds,
        data.classes,
        meta,
        n_resamples=ev.bootstrap,
        seed=ev.bootstrap_seed,
        confidence=ev.confidence,
    )
    history = pd.DataFrame([{"fold": r["fold"], **h} for r in results for h in r["history"]])
    summary = {
        **scores,
        "n_folds": len(folds),
        "protocol": protocol_text(config, folds),
        "protocol_name": ev.protocol,
        "datasets": sorted(set(preds["dataset"].astype(str))),
        "oracle": ev.oracle,
        "classes": list(data.classes),
        "ensemble": ensemble_summary(preds, data.classes, config.train.ensemble),
        "coding_version": data.coding_version,
        "version": __version__,
        "manifest": str(data.manifest),
        "data_problems": [str(p) for p in data.problems],
        "config": config_to_dict(config),
        "setting": run_setting(data, config, preds),
        "warnings": list(warnings or []),
    }
    preds_path = out / "predictions.csv"
    write_text(preds_path, preds.to_csv(index=False))
    write_text(out / "history.csv", history.to_csv(index=False))
    write_json(out / "summary.json", summary)
    from apexmer.evaluation.report import write_report

    write_report(out, summary, preds, history, list(data.classes))
    return summary
