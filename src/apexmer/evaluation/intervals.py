"""Interval spotting scores the MEGC way (pure: interval lists in, counts and F1 out).

Conventions (MEGC 2019-2022 spotting task, METHOD.md section 12):

- **IoU of frame intervals**: ``[onset, offset]`` counts its frames inclusively, so
  ``[1, 10]`` is 10 frames; ``IoU = |A n B| / |A u B|`` in frames. Touching intervals
  (``[1, 5]``, ``[6, 9]``) share no frame: IoU 0.
- **True positive**: a spotted interval whose IoU with a coded interval is >= 0.5
  (exactly 0.5 counts; compared in exact fractions, no float rounding).
- **One-to-one**: a coded interval is found at most once and a spotted interval finds at
  most one coded interval. Among the pairs with IoU >= 0.5 we take a maximum matching
  (augmenting paths, each coded interval trying its partners by IoU, highest first), so
  the number of true positives never depends on list order. With the threshold at 0.5 a
  spotted interval can qualify for two coded ones only at exactly 0.5 each, so this equals
  greedy-by-IoU except in such ties.
- **Per type**: micro and macro are scored separately (a spotted micro interval is
  compared with coded micro intervals only); ``overall`` sums their TP, FP and FN, as the
  MEGC overall F1 does. A spotted interval the spotter called micro that overlaps a coded
  macro-expression is a false positive for micro and leaves that macro a false negative.
- **Pooled**: TP, FP, FN are summed over all videos, then precision, recall and F1 are
  computed once (the MEGC figure); per-video scores are reported beside it.
- **Empty lists**: precision is None without spotted intervals, recall None without coded
  ones, F1 = 2TP / (2TP + FP + FN) None when both are empty (nothing to score). Never a
  division by zero, never NaN.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

KINDS = ("micro", "macro")
SCORE_KEYS = (*KINDS, "overall")
IOU_THRESHOLD = 0.5


@dataclass(frozen=True)
class Span:
    """A frame interval ``onset..offset`` (inclusive) of one type."""

    onset: int
    offset: int
    kind: str = "micro"  # "micro" | "macro"

    def __post_init__(self) -> None:
        if self.offset < self.onset:
            raise ValueError(f"interval offset {self.offset} is before onset {self.onset}")

    @property
    def frames(self) -> int:
        return self.offset - self.onset + 1


def _overlap(a: Span, b: Span) -> tuple[int, int]:
    """(frames in both, frames in either)."""
    inter = max(0, min(a.offset, b.offset) - max(a.onset, b.onset) + 1)
    return inter, a.frames + b.frames - inter


def iou(a: Span, b: Span) -> float:
    """Intersection over union of two inclusive frame intervals, in [0, 1]."""
    inter, union = _overlap(a, b)
    return inter / union


@dataclass(frozen=True)
class Match:
    coded: int  # index into the coded list
    spotted: int  # index into the spotted list
    iou: float


def match_intervals(
    coded: Sequence[Span], spotted: Sequence[Span], threshold: float = IOU_THRESHOLD
) -> list[Match]:
    """One-to-one matches with IoU >= ``threshold`` (module doc), sorted by coded index."""
    bound = Fraction(str(threshold))
    edges: list[list[tuple[float, int]]] = []
    for c in coded:
        pairs = []
        for j, s in enumerate(spotted):
            inter, union = _overlap(c, s)
            if inter > 0 and inter >= bound * union:
                pairs.append((inter / union, j))
        edges.append(sorted(pairs, key=lambda p: (-p[0], p[1])))
    owner: dict[int, int] = {}  # spotted index -> coded index

    def augment(i: int, seen: set[int]) -> bool:
        for _, j in edges[i]:
            if j in seen:
                continue
            seen.add(j)
            if j not in owner or augment(owner[j], seen):
                owner[j] = i
                return True
        return False

    order = sorted(range(len(coded)), key=lambda i: (-(edges[i][0][0] if edges[i] else 0), i))
    for i in order:
        if edges[i]:
            augment(i, set())
    return sorted(
        (Match(i, j, iou(coded[i], spotted[j])) for j, i in owner.items()), key=lambda m: m.coded
    )


@dataclass(frozen=True)
class Counts:
    """True positives, false positives, false negatives, and the scores they give."""

    tp: int = 0
    fp: int = 0
    fn: int = 0

    def __add__(self, other: Counts) -> Counts:
        return Counts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn)

    @property
    def precision(self) -> float | None:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else None

    @property
    def recall(self) -> float | None:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else None

    @property
    def f1(self) -> float | None:
        den = 2 * self.tp + self.fp + self.fn
        return 2 * self.tp / den if den else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "coded": self.tp + self.fn,
            "spotted": self.tp + self.fp,
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
        }


@dataclass(frozen=True)
class VideoScore:
    """Scores of one video: counts per type and overall, and the matches per type."""

    key: str
    subject: str
    counts: dict[str, Counts]  # "micro", "macro", "overall"
    matches: dict[str, list[Match]]  # per type; indices into that type's lists


def score_video(
    key: str,
    subject: str,
    coded: Iterable[Span],
    spotted: Iterable[Span],
    threshold: float = IOU_THRESHOLD,
) -> VideoScore:
    """Counts of one video per type (micro, macro) and overall (module doc)."""
    coded, spotted = list(coded), list(spotted)
    for span in (*coded, *spotted):
        if span.kind not in KINDS:
            raise ValueError(f"interval kind {span.kind!r}; use micro or macro")
    counts: dict[str, Counts] = {}
    matches: dict[str, list[Match]] = {}
    for kind in KINDS:
        c = [s for s in coded if s.kind == kind]
        s = [s for s in spotted if s.kind == kind]
        found = match_intervals(c, s, threshold)
        matches[kind] = found
        counts[kind] = Counts(len(found), len(s) - len(found), len(c) - len(found))
    counts["overall"] = counts["micro"] + counts["macro"]
    return VideoScore(key, subject, counts, matches)


@dataclass(frozen=True)
class SpotScores:
    """Pooled counts over all videos (the MEGC figure) and the per-video scores."""

    pooled: dict[str, Counts]
    videos: list[VideoScore] = field(default_factory=list)
    threshold: float = IOU_THRESHOLD

    def as_dict(self) -> dict[str, Any]:
        return {
            "iou_threshold": self.threshold,
            "pooled": {k: self.pooled[k].as_dict() for k in SCORE_KEYS},
            "videos": [
                {
                    "key": v.key,
                    "subject": v.subject,
                    **{k: v.counts[k].as_dict() for k in SCORE_KEYS},
                }
                for v in self.videos
            ],
        }


def pool_scores(videos: Sequence[VideoScore], threshold: float = IOU_THRESHOLD) -> SpotScores:
    """Sum each type's TP, FP, FN over ``videos``."""
    pooled = {k: sum((v.counts[k] for v in videos), Counts()) for k in SCORE_KEYS}
    return SpotScores(pooled, list(videos), threshold)
