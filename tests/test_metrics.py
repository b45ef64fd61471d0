"""Metrics agree with scikit-learn; pooled and per-fold F1 differ."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm

from apexmer.errors import DataError
from apexmer.evaluation import metrics as M


@st.composite
def labelled(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, int]:
    k = draw(st.integers(1, 7))
    n = draw(st.integers(1, 40))
    # draw from a random subset of classes so some are absent from y_true or y_pred
    true_classes = draw(st.lists(st.integers(0, k - 1), min_size=1, max_size=k, unique=True))
    pred_classes = draw(st.lists(st.integers(0, k - 1), min_size=1, max_size=k, unique=True))
    t = draw(st.lists(st.sampled_from(true_classes), min_size=n, max_size=n))
    p = draw(st.lists(st.sampled_from(pred_classes), min_size=n, max_size=n))
    return np.array(t), np.array(p), k


@pytest.mark.filterwarnings("ignore::UserWarning")  # sklearn: "a single label was found"
@settings(max_examples=150, deadline=None)
@given(labelled())
def test_agree_with_sklearn(data: tuple[np.ndarray, np.ndarray, int]) -> None:
    t, p, k = data
    labels = list(range(k))
    np.testing.assert_array_equal(
        M.confusion_matrix(t, p, k), skm.confusion_matrix(t, p, labels=labels)
    )
    assert M.accuracy(t, p) == pytest.approx(skm.accuracy_score(t, p))
    assert M.uf1(t, p, k) == pytest.approx(
        skm.f1_score(t, p, average="macro", labels=labels, zero_division=0)
    )
    assert M.uf1(t, p, k, absent="skip") == pytest.approx(
        skm.f1_score(t, p, average="macro", zero_division=0)
    )
    present = sorted(set(t.tolist()))
    assert M.uar(t, p, k) == pytest.approx(skm.balanced_accuracy_score(t, p))
    assert M.uar(t, p, k) == pytest.approx(
        skm.recall_score(t, p, labels=present, average="macro", zero_division=0)
    )
    prec, rec, f1, sup = skm.precision_recall_fscore_support(t, p, labels=labels, zero_division=0)
    rows = M.per_class(t, p, [f"c{i}" for i in labels])
    np.testing.assert_allclose([r["precision"] for r in rows], prec)
    np.testing.assert_allclose([r["recall"] for r in rows], rec)
    np.testing.assert_allclose([r["f1"] for r in rows], f1)
    assert [r["support"] for r in rows] == sup.tolist()


def test_absent_class_rule_documented_choice() -> None:
    t, p = np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1])  # class 2 never occurs
    f1_01 = skm.f1_score(t, p, average=None, labels=[0, 1])
    assert M.uf1(t, p, 3) == pytest.approx(f1_01.sum() / 3)
    assert M.uf1(t, p, 3, absent="skip") == pytest.approx(f1_01.mean())
    with pytest.raises(ValueError):
        M.uf1(t, p, 3, absent="megc")  # type: ignore[arg-type]


def test_classification_metrics_keys() -> None:
    t, p = np.array([0, 1, 2, 2, 1]), np.array([0, 2, 2, 2, 1])
    out = M.classification_metrics(t, p, ["a", "b", "c"])
    assert out["n"] == 5 and out["classes"] == ["a", "b", "c"]
    assert out["accuracy"] == pytest.approx(0.8)
    assert out["confusion"] == [[1, 0, 0], [0, 1, 1], [0, 0, 2]]
    assert [r["class"] for r in out["per_class"]] == ["a", "b", "c"]
    assert M.classification_metrics(t, p, 3)["uf1"] == out["uf1"]


def test_pooled_and_per_fold_differ() -> None:
    # fold 0 only has class 0, fold 1 only class 1; one error in each.
    t = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    p = np.array([0, 0, 0, 1, 1, 1, 1, 0])
    folds = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    pooled = M.uf1(t, p, 2)
    per_fold = M.per_fold_f1(t, p, folds, 2)
    assert pooled == pytest.approx(0.75)
    expected = np.mean(
        [skm.f1_score(t[folds == f], p[folds == f], average="macro") for f in (0, 1)]
    )
    assert per_fold == pytest.approx(expected)
    assert per_fold != pytest.approx(pooled)
    from apexmer.evaluation.splits import loso_folds

    assert M.per_fold_f1(t, p, loso_folds(["x/a"] * 4 + ["x/b"] * 4), 2) == per_fold


def test_per_group_metrics() -> None:
    t = np.array([0, 1, 2, 0, 1, 2])
    p = np.array([0, 1, 0, 0, 2, 2])
    groups = ["casme2/sub01", "casme2/sub01", "casme2/sub02", "samm/006", "samm/006", "samm/006"]
    out = M.per_group_metrics(t, p, groups, 3)
    assert [s["group"] for s in out["subjects"]] == ["casme2/sub01", "casme2/sub02", "samm/006"]
    assert out["subjects"][0] == {
        "group": "casme2/sub01",
        "dataset": "casme2",
        "subject": "sub01",
        "n": 2,
        "accuracy": 1.0,
    }
    samm = out["datasets"][1]
    assert (samm["dataset"], samm["n"], samm["n_subjects"]) == ("samm", 3, 1)
    assert samm["uf1"] == pytest.approx(
        skm.f1_score(t[3:], p[3:], average="macro", labels=[0, 1, 2], zero_division=0)
    )
    by_corpus = M.per_group_metrics(t, p, ["casme2"] * 3 + ["samm"] * 3, ["a", "b", "c"])
    assert [d["dataset"] for d in by_corpus["datasets"]] == ["casme2", "samm"]


def test_bad_inputs_raise() -> None:
    with pytest.raises(DataError):
        M.accuracy([], [])
    with pytest.raises(DataError):
        M.confusion_matrix([0, 3], [0, 1], 3)
    with pytest.raises(DataError):
        M.uf1([0.5, 1.0], [0, 1], 2)
    with pytest.raises(DataError):
        M.accuracy([0, 1], [0])
