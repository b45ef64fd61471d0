"""Report: files written, numbers in the markdown, valid PNGs, oracle label, paper table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from apexmer.evaluation.metrics import classification_metrics
from apexmer.evaluation.paper import (
    TABLE3,
    TABLE4,
    matching_paper_row,
    paper_mismatch,
)
from apexmer.evaluation.report import ORACLE_LABEL, write_ablation_table, write_report

CLASSES = ["disgust", "happiness", "others", "repression", "surprise"]


def _run(
    dataset: str = "casme2",
    n_subjects: int = 4,
    oracle: bool = False,
    datasets: tuple[str, ...] | None = None,
    **setting: Any,
) -> tuple[dict[str, Any], pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(0)
    rows = []
    for s in range(n_subjects):
        ds = datasets[s % len(datasets)] if datasets else dataset
        for c in range(6):
            y = int(rng.integers(0, 5))
            yp = y if rng.random() < 0.6 else int(rng.integers(0, 5))
            rows.append(
                {
                    "key": f"{ds}/sub{s:02d}/c{c}",
                    "dataset": ds,
                    "subject": f"sub{s:02d}",
                    "fold": s,
                    "y_true": y,
                    "y_pred": yp,
                    "label": CLASSES[y],
                    "pred_label": CLASSES[yp],
                    **{f"prob_{k}": 0.2 for k in CLASSES},
                }
            )
    preds = pd.DataFrame(rows)
    m = classification_metrics(preds["y_true"].to_numpy(), preds["y_pred"].to_numpy(), CLASSES)
    folds = []
    for f, g in preds.groupby("fold"):
        folds.append(
            {
                "fold": int(f),
                "subject": f"{g['dataset'].iloc[0]}/{g['subject'].iloc[0]}",
                "n": len(g),
                "accuracy": float((g.y_true == g.y_pred).mean()),
                "warnings": ["single-class test set"] if f == 0 else [],
            }
        )
    summary = {
        "accuracy": m["accuracy"],
        "uf1": m["uf1"],
        "uar": m["uar"],
        "n_samples": len(preds),
        "n_folds": n_subjects,
        "protocol": f"LOSO, {n_subjects} folds, fixed 100 epochs",
        "config": {
            "model": {"name": "seresnext50_32x4d"},
            "data": {"frame": "apex"},
            "train": {"epochs": 100, "batch_size": 2},
            "optim": {"name": "adam", "lr": 1e-4},
        },
        "classes": CLASSES,
        "per_class": m["per_class"],
        "confusion": m["confusion"],
        "folds": folds,
        "coding_version": "casme2-2019",
        "version": "0.1.0",
        "oracle": oracle,
        "setting": setting,
    }
    history = pd.DataFrame(
        [
            {"fold": f, "epoch": e, "loss": 1.0 / (e + 1 + f), "train_acc": e / 5}
            for f in range(n_subjects)
            for e in range(5)
        ]
    )
    return summary, preds, history


def _read_png(path: Path) -> np.ndarray:
    import matplotlib.image as mpimg

    assert path.stat().st_size > 0
    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[0] > 10 and img.shape[1] > 10
    return img


def test_report_files_and_numbers(tmp_path: Path) -> None:
    summary, preds, history = _run()
    out = write_report(tmp_path, summary, preds, history, CLASSES)
    text = out.read_text()
    assert out == tmp_path / "report.md"
    for png in ("confusion.png", "per_subject.png", "curves.png"):
        _read_png(tmp_path / png)
        assert f"({png})" in text
    assert f"{summary['accuracy']:.4f}" in text and f"{summary['uf1']:.4f}" in text
    assert f"{summary['uar']:.4f}" in text
    assert "UF1 (pooled)" in text and "per fold averaged" in text
    assert "casme2-2019" in text and "0.1.0" in text and "seresnext50_32x4d" in text
    assert "single-class test set" in text
    assert ORACLE_LABEL not in text
    assert "Per corpus" not in text
    assert not list(tmp_path.glob("*.tmp"))


def test_oracle_label_and_no_history(tmp_path: Path) -> None:
    summary, preds, _ = _run(oracle=True)
    text = write_report(tmp_path, summary, preds, None, CLASSES).read_text()
    assert text.splitlines()[0].find(ORACLE_LABEL) >= 0
    assert not (tmp_path / "curves.png").exists()
    assert "oracle run" in text  # and no paper comparison for an oracle run


def test_paper_comparison_only_when_matching(tmp_path: Path) -> None:
    summary, preds, history = _run(n_samples=249, n_subjects=26)
    text = write_report(tmp_path / "a", summary, preds, history, CLASSES).read_text()
    assert "0.5926" in text and "0.5853" in text and "No comparison" not in text
    assert "STCLQP" in text and "0.5839" in text  # Table 3 beside a matching run

    summary, preds, history = _run()  # 24 samples: not the paper's 249
    text = write_report(tmp_path / "b", summary, preds, history, CLASSES).read_text()
    assert "No comparison" in text and "0.5926" not in text

    summary, preds, history = _run(datasets=("casme2", "samm"))
    text = write_report(tmp_path / "c", summary, preds, history, CLASSES).read_text()
    assert "Per corpus" in text and "No comparison" in text and "| samm |" in text


def test_matching_paper_row() -> None:
    base = {"dataset": "casme2", "num_classes": 5, "model": "resnet50", "frame": "non-apex"}
    row = matching_paper_row(base)
    assert row is not None and (row.accuracy, row.uf1) == (0.4457, 0.3739)
    assert matching_paper_row({**base, "dataset": "samm"}) is None
    assert matching_paper_row({**base, "num_classes": 3}) is None
    assert matching_paper_row({**base, "model": "tiny"}) is None
    assert matching_paper_row({**base, "frame": "onset"}) is None
    assert matching_paper_row({**base, "n_samples": 246}) is None
    assert matching_paper_row({**base, "input": "diff"}) is None
    assert matching_paper_row({**base, "input": "frame"}) is not None
    assert paper_mismatch({"model": "resnet50", "frame": "apex"}, require=False) == []
    assert TABLE3["SDF"][1] is None and len(TABLE4) == 6


def test_ablation_table(tmp_path: Path) -> None:
    rows = [
        {
            "model": "seresnext50_32x4d",
            "frame": "apex",
            "accuracy": 0.61,
            "uf1": 0.57,
            "n_samples": 249,
        },
        {
            "model": "resnet50",
            "frame": "mid",
            "accuracy": 0.40,
            "uf1": 0.35,
            "n_samples": 30,
            "oracle": True,
        },
    ]
    text = write_ablation_table(rows, tmp_path / "ablation.md").read_text()
    lines = text.splitlines()
    apex = next(x for x in lines if x.startswith("| apex frame"))
    assert "0.6100 / 0.5700" in apex and "0.5926 / 0.5853" in apex
    mid = next(x for x in lines if x.startswith("| non-apex frame"))
    assert "0.4000 / 0.3500 (ORACLE)" in mid and "0.4457 / 0.3739" not in mid
    assert "n/c" in mid  # 30 samples, oracle: the paper's cell is not set beside it
    assert "30 samples" in text and "seresnext50_32x4d, apex:" not in text


@pytest.mark.parametrize("frame", ["apex", "mid"])
def test_table4_models_match_registry_names(frame: str) -> None:
    assert {m for m, f in TABLE4 if f == frame} == {
        "resnet50",
        "resnext50_32x4d",
        "seresnext50_32x4d",
    }


def test_composite_rerun_numbers_beside_a_composite_loso_run(tmp_path: Path) -> None:
    composite = {
        "classes": ["negative", "positive", "surprise"],
        "n_samples": 442,
        "n_subjects": 68,
        "protocol": "loso",
    }
    summary, preds, history = _run(datasets=("casme2", "samm", "smic"), **composite)
    summary["uf1_ci"] = [0.6350, 0.7840]
    text = write_report(tmp_path / "a", summary, preds, history, CLASSES).read_text()
    section = text.split("## Compared with published re-runs")[1].split("##")[0]
    assert "MEGC 2019 composite, LOSO, fixed epochs" in section
    for name, f1 in (("SSSNet", "0.7390"), ("STSTNet", "0.7130"), ("OFF-ApexNet", "0.7030")):
        assert f"| {name} (MEGC 2019 composite, LOSO, fixed epochs) | – | {f1} | – |" in section
    assert f"{summary['uf1']:.4f} [0.6350, 0.7840]" in section
    assert "Inside this run's UF1 interval" in section and "SSSNet, STSTNet, OFF-ApexNet" in section

    summary, preds, history = _run(
        datasets=("casme2", "samm", "smic"), **{**composite, "protocol": "lodo"}
    )
    text = write_report(tmp_path / "b", summary, preds, history, CLASSES).read_text()
    assert "Not shown: protocol lodo" in text and "| SSSNet" not in text
    summary, preds, history = _run(datasets=("casme2", "samm"), **composite)
    text = write_report(tmp_path / "c", summary, preds, history, CLASSES).read_text()
    assert "published re-runs" not in text
