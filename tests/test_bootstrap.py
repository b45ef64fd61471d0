"""The subject bootstrap: known answers, seeds, agreement with the metrics, pairing."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apexmer.evaluation import metrics as M
from apexmer.evaluation.bootstrap import (
    bootstrap_intervals,
    bootstrap_scores,
    paired_bootstrap,
    scores_from_confusions,
    subject_codes,
    subject_confusions,
)


def _groups(n_subjects: int, per: int) -> list[str]:
    return [f"casme2/s{s:02d}" for s in range(n_subjects) for _ in range(per)]


def test_identical_subjects_give_a_zero_width_interval() -> None:
    # every subject: the same 5 clips with the same (imperfect) predictions
    one_t, one_p = [0, 1, 2, 2, 1], [0, 2, 2, 1, 1]
    t, p = one_t * 12, one_p * 12
    ci = bootstrap_intervals(t, p, _groups(12, 5), 3, n_resamples=500, seed=3)
    for metric, value in (
        ("accuracy", M.accuracy(t, p)),
        ("uf1", M.uf1(t, p, 3)),
        ("uar", M.uar(t, p, 3)),
    ):
        lo, hi = ci[f"{metric}_ci"]
        assert lo == hi == pytest.approx(value)
        assert 0 < value < 1


def test_a_perfectly_separable_run_gives_one_one() -> None:
    rng = np.random.default_rng(0)
    t = rng.integers(0, 3, 60)
    t[:3] = [0, 1, 2]
    ci = bootstrap_intervals(t, t, _groups(10, 6), 3, n_resamples=300)
    assert ci == {"accuracy_ci": [1.0, 1.0], "uf1_ci": [1.0, 1.0], "uar_ci": [1.0, 1.0]}


def test_seeded_intervals_reproduce_exactly_and_the_seed_matters() -> None:
    rng = np.random.default_rng(1)
    t = rng.integers(0, 3, 200)
    p = np.where(rng.random(200) < 0.6, t, rng.integers(0, 3, 200))
    g = [f"d/s{i % 23}" for i in range(200)]
    a = bootstrap_intervals(t, p, g, 3, n_resamples=2000, seed=7)
    b = bootstrap_intervals(t, p, g, 3, n_resamples=2000, seed=7)
    c = bootstrap_intervals(t, p, g, 3, n_resamples=2000, seed=8)
    assert a == b and a != c
    # a sensible width around the point estimate for 23 subjects of ~9 clips
    lo, hi = a["uf1_ci"]
    assert lo < M.uf1(t, p, 3) < hi and 0.05 < hi - lo < 0.4


def test_the_subject_is_the_unit() -> None:
    # two subjects: one all right (10 clips), one all wrong (10 clips): a resample holds
    # 2 x A, A + B or 2 x B, so its accuracy is exactly 1, 0.5 or 0, never anything else
    t = np.zeros(20, dtype=int)
    p = np.r_[np.zeros(10, int), np.ones(10, int)]
    scores = bootstrap_scores(t, p, _groups(2, 10), 2, n_resamples=400, seed=0)
    assert set(np.unique(scores["accuracy"]).tolist()) == {0.0, 0.5, 1.0}


@settings(max_examples=40, deadline=None)
@given(
    st.integers(2, 5),
    st.lists(st.tuples(st.integers(0, 4), st.integers(0, 4), st.integers(0, 6)), min_size=1),
)
def test_pooled_confusions_score_as_the_metrics_do(k: int, rows: list) -> None:
    t = np.array([r[0] % k for r in rows])
    p = np.array([r[1] % k for r in rows])
    g = [f"x/{r[2]}" for r in rows]
    codes, names = subject_codes(g)
    per_subject = subject_confusions(t, p, codes, k)
    assert per_subject.shape == (len(names), k * k)
    pooled = per_subject.sum(0, keepdims=True)
    for absent in ("zero", "skip"):
        got = scores_from_confusions(pooled, k, absent)
        assert got["uf1"][0] == pytest.approx(M.uf1(t, p, k, absent))
    got = scores_from_confusions(pooled, k)
    assert got["accuracy"][0] == pytest.approx(M.accuracy(t, p))
    assert got["uar"][0] == pytest.approx(M.uar(t, p, k))


def test_paired_bootstrap() -> None:
    rng = np.random.default_rng(2)
    n = 300
    g = [f"d/s{i % 30}" for i in range(n)]
    t = rng.integers(0, 3, n)
    a = np.where(rng.random(n) < 0.7, t, rng.integers(0, 3, n))
    same = paired_bootstrap(t, a, a, g, 3, n_resamples=500)
    for m in ("accuracy", "uf1", "uar"):
        assert same[m] == {"difference": 0.0, "ci": [0.0, 0.0], "a_better": 0.0, "ties": 1.0}
    # B = A with 10 % of its correct answers turned wrong: A is better in every resample
    # that draws one of them, and the paired interval is far tighter than an unpaired one
    b = a.copy()
    right = np.flatnonzero(a == t)
    b[right[::10]] = (t[right[::10]] + 1) % 3
    diff = paired_bootstrap(t, a, b, g, 3, n_resamples=2000, seed=1)
    acc = diff["accuracy"]
    assert acc["difference"] == pytest.approx(M.accuracy(t, a) - M.accuracy(t, b))
    assert 0 < acc["ci"][0] <= acc["ci"][1] and acc["a_better"] > 0.99
    # unpaired: A and B resampled independently; the difference's interval is far wider
    sa = bootstrap_scores(t, a, g, 3, n_resamples=2000, seed=1)["accuracy"]
    sb = bootstrap_scores(t, b, g, 3, n_resamples=2000, seed=2)["accuracy"]
    lo, hi = np.quantile(sa - sb, [0.025, 0.975])
    assert acc["ci"][1] - acc["ci"][0] < (hi - lo) / 2
