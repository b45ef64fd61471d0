"""LOSO splits: no subject in its own training set; every sample tested exactly once."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apexmer.data.sample import Sample
from apexmer.errors import DataError
from apexmer.evaluation.splits import fold_diagnostics, loso_folds, subject_groups

GROUPS = st.lists(
    st.sampled_from([f"casme2/sub{i:02d}" for i in range(1, 7)] + ["samm/006", "smic/s01"]),
    min_size=2,
    max_size=60,
)


@settings(max_examples=60, deadline=None)
@given(GROUPS)
def test_loso_properties(groups: list[str]) -> None:
    if len(set(groups)) < 2:
        with pytest.raises(DataError):
            loso_folds(groups)
        return
    folds = loso_folds(groups)
    g = np.asarray(groups)
    n = len(groups)
    assert [f.name for f in folds] == sorted(set(groups))
    assert [f.index for f in folds] == list(range(len(folds)))
    tested = np.concatenate([f.test_idx for f in folds])
    assert sorted(tested.tolist()) == list(range(n))  # each sample tested exactly once
    for f in folds:
        assert f.name not in set(g[f.train_idx].tolist())  # never in its own training set
        assert set(g[f.test_idx].tolist()) == {f.name}
        assert np.intersect1d(f.train_idx, f.test_idx).size == 0
        assert sorted(np.union1d(f.train_idx, f.test_idx).tolist()) == list(range(n))


def test_subject_groups_keep_corpora_apart() -> None:
    samples = [
        Sample("casme2", "sub01", "EP02_01f", "happiness"),
        Sample("smic", "sub01", "x", "positive"),
        Sample("casme2", "sub01", "EP03_02", "others"),
    ]
    groups = subject_groups(samples)
    assert groups == ["casme2/sub01", "smic/sub01", "casme2/sub01"]
    folds = loso_folds(groups)
    assert [f.name for f in folds] == ["casme2/sub01", "smic/sub01"]
    assert folds[0].test_idx.tolist() == [0, 2]
    assert (folds[0].dataset, folds[0].subject) == ("casme2", "sub01")


def test_fold_diagnostics_reports_degenerate_folds() -> None:
    groups = ["a/1", "a/1", "a/2", "a/3", "a/3"]
    labels = [0, 0, 2, 1, 1]
    folds = loso_folds(groups)
    d1 = fold_diagnostics(folds[0], labels, 3, ["x", "y", "z"])
    assert any("single-class" in w for w in d1["warnings"])
    assert d1["missing_in_train"] == ["x"]
    assert any("never trained: x" in w for w in d1["warnings"])
    d2 = fold_diagnostics(folds[1], labels, 3)
    assert any("single sample" in w for w in d2["warnings"])
    assert d2["test_counts"] == {"0": 0, "1": 0, "2": 1}
    healthy = fold_diagnostics(loso_folds(["a", "b", "a", "b"])[0], [0, 0, 1, 1], 2)
    assert healthy["warnings"] == []
    with pytest.raises(DataError):
        fold_diagnostics(folds[0], [0, 0, 5, 1, 1], 3)
