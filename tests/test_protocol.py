"""The LOSO runner: pooled metrics, no leaks, resume, oracle labelling, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

from apexmer.config import load_config
from apexmer.errors import ApexmerError, WeightsError
from apexmer.evaluation import folds as fold_unit
from apexmer.evaluation.protocol import run_loso
from apexmer.models.registry import create_model
from apexmer.models.weights import save_weights
from manifests import TINY_RUN, write_tiny_manifest

FAST = TINY_RUN


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_manifest(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def finished(manifest: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run")
    run_loso(manifest, load_config("demo", FAST), out)
    return out


def test_run_folder_and_pooled_metrics_agree_with_sklearn(finished: Path) -> None:
    summary = json.loads((finished / "summary.json").read_text())
    preds = pd.read_csv(finished / "predictions.csv")
    for key in ("accuracy", "uf1", "uar", "n_samples", "n_folds", "protocol", "config"):
        assert key in summary
    assert summary["n_samples"] == len(preds) == 24 and summary["n_folds"] == 4
    y, p = preds["y_true"], preds["y_pred"]
    assert summary["accuracy"] == pytest.approx(accuracy_score(y, p))
    assert summary["uf1"] == pytest.approx(
        f1_score(y, p, average="macro", labels=[0, 1, 2], zero_division=0)
    )
    assert summary["uar"] == pytest.approx(balanced_accuracy_score(y, p))
    probs = preds[[c for c in preds if c.startswith("prob_")]].to_numpy()
    assert probs.shape == (24, 3)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-4)
    assert (probs.argmax(1) == p).all()
    assert summary["coding_version"] == "casme2-2019"
    assert summary["config"]["train"]["epochs"] == 2
    for name in ("report.md", "confusion.png", "per_subject.png", "history.csv", "run.json"):
        assert (finished / name).stat().st_size > 0
    assert "last epoch" in summary["protocol"] and summary["oracle"] is False


def test_no_subject_in_its_own_training_set(
    manifest: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[str, set[str]]] = []
    real = fold_unit.train_fold

    def spy(data, fold, config, on_epoch=None):
        train_subjects = {data.groups[i] for i in fold.train_idx}
        test_subjects = {data.groups[i] for i in fold.test_idx}
        seen.append((fold.name, train_subjects))
        assert test_subjects == {fold.name}
        return real(data, fold, config, on_epoch)

    monkeypatch.setattr(fold_unit, "train_fold", spy)
    run_loso(manifest, load_config("demo", [*FAST, "train.epochs=1"]), tmp_path / "r")
    assert len(seen) == 4
    for held_out, train_subjects in seen:
        assert held_out not in train_subjects and len(train_subjects) == 3


def test_killed_run_resumes_to_the_same_numbers(
    manifest: Path, finished: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "killed"
    real = fold_unit.train_fold
    calls = {"n": 0}

    def dies_after_two(data, fold, config, on_epoch=None):
        if calls["n"] == 2:
            raise KeyboardInterrupt  # a kill in the middle of the third fold
        calls["n"] += 1
        return real(data, fold, config, on_epoch)

    monkeypatch.setattr(fold_unit, "train_fold", dies_after_two)
    with pytest.raises(KeyboardInterrupt):
        run_loso(manifest, load_config("demo", FAST), out)
    assert len(list((out / "folds").glob("fold_*.json"))) == 2
    monkeypatch.setattr(fold_unit, "train_fold", real)
    resumed = run_loso(manifest, load_config("demo", FAST), out)
    full = json.loads((finished / "summary.json").read_text())
    for key in ("accuracy", "uf1", "uar"):
        assert resumed[key] == full[key]
    pd.testing.assert_frame_equal(
        pd.read_csv(out / "predictions.csv"), pd.read_csv(finished / "predictions.csv")
    )


def test_resume_with_another_config_is_refused(manifest: Path, finished: Path) -> None:
    with pytest.raises(ApexmerError, match="different config"):
        run_loso(manifest, load_config("demo", [*FAST, "train.epochs=3"]), finished)


def test_oracle_mode_is_labelled_everywhere(manifest: Path, tmp_path: Path) -> None:
    summary = run_loso(manifest, load_config("demo", [*FAST, "eval.oracle=true"]), tmp_path)
    assert summary["oracle"] is True and summary["protocol"].startswith("ORACLE")
    assert "ORACLE" in (tmp_path / "report.md").read_text()
    assert all(1 <= f["epoch_used"] <= 2 for f in summary["folds"])


def test_missing_crop_is_reported_and_the_rest_runs(manifest: Path, tmp_path: Path) -> None:
    table = pd.read_csv(manifest)
    table.loc[0, "mid_path"] = "images/nowhere/mid.png"
    broken = manifest.parent / "broken.csv"
    table.to_csv(broken, index=False)
    summary = run_loso(
        broken, load_config("demo", [*FAST, "train.epochs=1", "data.frame=mid"]), tmp_path
    )
    assert summary["n_samples"] == 23
    assert any("nowhere" in p for p in summary["data_problems"])
    assert "nowhere" in (tmp_path / "report.md").read_text()


def test_degenerate_folds_are_reported(tmp_path: Path) -> None:
    manifest = write_tiny_manifest(tmp_path / "d", subjects=3, per_subject=1)
    summary = run_loso(manifest, load_config("demo", [*FAST, "train.epochs=1"]), tmp_path / "r")
    warnings = [w for f in summary["folds"] for w in f["warnings"]]
    assert any("one sample" in w or "single" in w for w in warnings)
    assert "warn" in (tmp_path / "r" / "report.md").read_text().lower()


def test_wrong_architecture_weights_fail_clearly(manifest: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    weights = save_weights(create_model("resnet50", num_classes=3), tmp_path / "r50.safetensors")
    cfg = load_config("demo", [*FAST, f"model.weights={weights}"])
    with pytest.raises(WeightsError, match="resnet50"):
        run_loso(manifest, cfg, tmp_path / "run")
    assert not list((tmp_path / "run").glob("folds/*.json"))


def test_damaged_fold_file_is_moved_aside_and_retrained(
    manifest: Path, finished: Path, tmp_path: Path
) -> None:
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(finished, out)
    damaged = out / "folds" / "fold_002.json"
    damaged.write_text(damaged.read_text()[:100])  # a partial copy
    resumed = run_loso(manifest, load_config("demo", FAST), out)
    assert (out / "folds" / "fold_002.json.bad").exists()
    full = json.loads((finished / "summary.json").read_text())
    assert all(resumed[k] == full[k] for k in ("accuracy", "uf1", "uar"))
    (out / "run.json").write_text("{")
    with pytest.raises(ApexmerError, match="damaged"):
        run_loso(manifest, load_config("demo", FAST), out)
