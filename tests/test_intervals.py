"""MEGC interval scoring on hand-made interval lists, plus properties of the matching."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apexmer.evaluation.intervals import (
    Counts,
    Span,
    iou,
    match_intervals,
    pool_scores,
    score_video,
)


def test_iou_counts_frames_inclusively():
    assert iou(Span(1, 10), Span(1, 10)) == 1.0
    assert iou(Span(1, 5), Span(6, 9)) == 0.0  # touching: no shared frame
    assert iou(Span(1, 5), Span(5, 9)) == pytest.approx(1 / 9)  # one shared frame
    assert iou(Span(1, 10), Span(3, 7)) == 0.5  # nested: 5 of 10 frames
    assert iou(Span(7, 7), Span(7, 7)) == 1.0  # a one-frame interval
    with pytest.raises(ValueError):
        Span(5, 4)


def test_iou_exactly_half_is_a_true_positive():
    (m,) = match_intervals([Span(1, 10)], [Span(3, 7)])
    assert (m.coded, m.spotted, m.iou) == (0, 0, 0.5)
    # 5 of 11 frames: just under one half, not a match
    assert match_intervals([Span(1, 11)], [Span(3, 7)]) == []


def test_touching_and_nested():
    coded = [Span(1, 5), Span(6, 10)]
    assert [m.spotted for m in match_intervals(coded, [Span(6, 10), Span(1, 5)])] == [1, 0]
    # a spotted interval nested in a long coded one, covering less than half: no match
    assert match_intervals([Span(1, 100)], [Span(40, 60)]) == []


def test_one_spotted_over_two_coded_matches_one():
    coded = [Span(1, 2), Span(3, 4)]  # each is half of the spotted [1, 4]
    score = score_video("v", "s", coded, [Span(1, 4)])
    assert score.counts["micro"] == Counts(tp=1, fp=0, fn=1)
    assert len(score.matches["micro"]) == 1


def test_two_spotted_over_one_coded_match_once():
    score = score_video("v", "s", [Span(1, 10)], [Span(1, 9), Span(2, 10)])
    assert score.counts["micro"] == Counts(tp=1, fp=1, fn=0)


def test_matching_is_maximum_not_greedy():
    # greedy by IoU pairs S1 with A (0.91) and leaves S2 and B alone; S1-B (0.75) and
    # S2-A (0.6) find both coded intervals.
    coded = [Span(1, 10), Span(3, 12)]
    spotted = [Span(1, 11), Span(1, 6)]
    assert iou(coded[0], spotted[0]) > iou(coded[1], spotted[0]) >= 0.5
    found = match_intervals(coded, spotted)
    assert {(m.coded, m.spotted) for m in found} == {(0, 1), (1, 0)}


def test_types_are_scored_apart_and_summed_overall():
    coded = [Span(10, 20, "macro"), Span(50, 55, "micro")]
    spotted = [Span(10, 20, "micro"), Span(50, 55, "micro"), Span(80, 99, "macro")]
    score = score_video("v", "s", coded, spotted)
    assert score.counts["micro"] == Counts(tp=1, fp=1, fn=0)
    assert score.counts["macro"] == Counts(tp=0, fp=1, fn=1)
    assert score.counts["overall"] == Counts(tp=1, fp=2, fn=1)
    assert score.counts["overall"].f1 == pytest.approx(2 / 5)


def test_empty_lists_never_divide_by_zero():
    nothing = score_video("v", "s", [], [])
    assert nothing.counts["overall"] == Counts()
    assert nothing.counts["overall"].as_dict() | {} == {
        "tp": 0,
        "fp": 0,
        "fn": 0,
        "coded": 0,
        "spotted": 0,
        "precision": None,
        "recall": None,
        "f1": None,
    }
    only_spotted = score_video("v", "s", [], [Span(1, 5)]).counts["micro"]
    assert (only_spotted.precision, only_spotted.recall, only_spotted.f1) == (0.0, None, 0.0)
    only_coded = score_video("v", "s", [Span(1, 5)], []).counts["micro"]
    assert (only_coded.precision, only_coded.recall, only_coded.f1) == (None, 0.0, 0.0)


def test_pooled_is_summed_then_scored():
    a = score_video("a", "s1", [Span(1, 10)], [Span(1, 10)])
    b = score_video("b", "s2", [Span(1, 10), Span(30, 40)], [Span(60, 70)])
    scores = pool_scores([a, b])
    assert scores.pooled["micro"] == Counts(tp=1, fp=1, fn=2)
    assert scores.pooled["micro"].f1 == pytest.approx(2 / 5)  # not the mean of 1.0 and 0.0
    payload = scores.as_dict()
    assert payload["pooled"]["overall"]["f1"] == pytest.approx(0.4)
    assert [v["key"] for v in payload["videos"]] == ["a", "b"]
    assert payload["videos"][1]["macro"]["f1"] is None


spans = st.builds(lambda a, n: Span(a, a + n), st.integers(0, 40), st.integers(0, 12)).filter(
    lambda s: s.offset >= s.onset
)


def _best(coded, spotted) -> int:
    """Largest one-to-one matching size by brute force."""
    ok = {(i, j) for i, c in enumerate(coded) for j, s in enumerate(spotted) if iou(c, s) >= 0.5}
    best = 0
    if len(coded) <= len(spotted):
        for perm in itertools.permutations(range(len(spotted)), len(coded)):
            best = max(best, sum((i, j) in ok for i, j in enumerate(perm)))
    else:
        for perm in itertools.permutations(range(len(coded)), len(spotted)):
            best = max(best, sum((i, j) in ok for j, i in enumerate(perm)))
    return best


@settings(max_examples=150, deadline=None)
@given(st.lists(spans, max_size=4), st.lists(spans, max_size=4), st.randoms())
def test_matching_properties(coded, spotted, rnd):
    found = match_intervals(coded, spotted)
    assert len({m.coded for m in found}) == len({m.spotted for m in found}) == len(found)
    assert all(m.iou >= 0.5 and m.iou == iou(coded[m.coded], spotted[m.spotted]) for m in found)
    assert len(found) == _best(coded, spotted)
    shuffled = spotted[:]
    rnd.shuffle(shuffled)
    assert len(match_intervals(coded, shuffled)) == len(found)
    counts = score_video("v", "s", coded, spotted).counts["micro"]
    assert counts.tp + counts.fn == len(coded) and counts.tp + counts.fp == len(spotted)
