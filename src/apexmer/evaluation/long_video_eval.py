"""Spot every video of a long-video corpus and score the intervals the MEGC way.

Two sources of spotted intervals, scored identically:
- ``spot_videos``: apexmer's interval spotter (``spotting.intervals.spot_intervals``) on
  each video's frames, with its defaults. Nothing is tuned on the evaluated videos: the
  spotter's threshold is relative to each video's own noise (``IntervalConfig``).
- ``read_spotted_csv``: intervals found by any other method, as a CSV.

``tune_loso`` optionally moves the spotter's threshold leave-one-subject-out (each
subject's videos get the value that scored best on the other subjects), from the curves
already computed. ``evaluate_long_videos`` then scores them (``evaluation.intervals``):
coded intervals of a video that could not be spotted (no frames, no face) stay in the
score as false negatives and the video is reported; coded intervals without an offset are
completed by ``data.long_videos.coded_span`` and those that cannot be completed are listed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd

from apexmer.data.frames import open_frames
from apexmer.data.long_videos import Interval, LongVideo, LongVideoSet, coded_span
from apexmer.errors import ApexmerError, ConfigError, DataError
from apexmer.evaluation.intervals import (
    IOU_THRESHOLD,
    Counts,
    Span,
    SpotScores,
    pool_scores,
    score_video,
)
from apexmer.face.landmarks import LandmarkDetector
from apexmer.fileio import write_json
from apexmer.spotting.intervals import (
    IntervalConfig,
    SpottedInterval,
    TwoScaleIntervals,
    intervals_from_curves,
    spot_intervals,
)


@dataclass(frozen=True, eq=False)
class VideoSpotting:
    """What was spotted in one video, or why nothing could be.

    The spotter's two scores (``IntervalSpotResult``): micro intervals come from ``curve``
    (short detrend window), macro ones from ``macro_curve`` (long window); each has its own
    threshold. Intervals read from a CSV have neither."""

    key: str  # LongVideo.key
    intervals: tuple[SpottedInterval, ...] = ()
    curve: np.ndarray | None = None  # (T,) micro score of frames ``numbers``; NaN: no face
    numbers: tuple[int, ...] = ()
    threshold: float | None = None  # of ``curve``
    problem: str = ""  # non-empty: the spotter could not run on this video
    macro_curve: np.ndarray | None = None  # (T,) macro score of frames ``numbers``
    macro_threshold: float | None = None  # of ``macro_curve``


@dataclass(frozen=True)
class LongEvalResult:
    """Scores plus everything the report shows beside them."""

    scores: SpotScores
    spottings: dict[str, VideoSpotting]
    coded: dict[str, list[tuple[Interval, Span]]]  # per video: coded interval, scored span
    unscored: list[str] = field(default_factory=list)  # coded intervals left out, and why
    skipped: list[str] = field(default_factory=list)  # videos the spotter could not run on


def _interval_json(i: SpottedInterval) -> dict[str, Any]:
    return {"onset": i.onset, "apex": i.apex, "offset": i.offset, "kind": i.kind, "score": i.score}


def _cache_name(video: LongVideo) -> str:
    return f"{video.subject}__{video.video}.json"


# Version of the per-video cache file; a file of another version is spotted again.
# 2: both scores (micro ``curve`` and ``macro_curve``) and both thresholds.
CACHE_FORMAT = 2


def _curve_of(values: list[float | None]) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def _threshold_of_json(value: float | None) -> float:
    return float("inf") if value is None else float(value)  # saved as null when infinite


def _load_cached(path: Path, config: dict[str, Any], video: LongVideo) -> VideoSpotting | None:
    """The saved result when it was spotted with ``config`` from the same frames and
    written in this ``CACHE_FORMAT`` (an older file, e.g. one without the macro score, is
    not used)."""
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(saved, dict) or saved.get("format") != CACHE_FORMAT:
        return None
    if saved.get("config") != config or saved.get("source") != _source_of(video):
        return None
    try:
        numbers = tuple(int(n) for n in saved["numbers"])
        curve, macro_curve = _curve_of(saved["curve"]), _curve_of(saved["macro_curve"])
        spotting = VideoSpotting(
            saved["key"],
            tuple(SpottedInterval(**i) for i in saved["intervals"]),
            curve,
            numbers,
            _threshold_of_json(saved["threshold"]),
            saved.get("problem", ""),
            macro_curve,
            _threshold_of_json(saved["macro_threshold"]),
        )
    except (KeyError, TypeError, ValueError):
        return None
    if not len(curve) == len(macro_curve) == len(numbers):
        return None
    return spotting


def spot_videos(
    video_set: LongVideoSet,
    detector: LandmarkDetector,
    config: IntervalConfig | None = None,
    cache: Path | None = None,
    progress: Callable[[int, int, str], None] | None = None,
) -> dict[str, VideoSpotting]:
    """Run the interval spotter on every video with frames (one at a time, streamed).

    With ``cache`` each video's result is written to ``cache/<subject>__<video>.json`` as
    soon as it is done and reused by a rerun with the same config (a killed run resumes).
    A video without frames, or where the spotter fails (no face, unreadable frames), gets a
    VideoSpotting with its ``problem`` and the run goes on.
    """
    config = config or IntervalConfig()
    settings = json.loads(json.dumps(config.to_dict(), default=str))
    out: dict[str, VideoSpotting] = {}
    for done, video in enumerate(video_set.videos, start=1):
        path = cache / _cache_name(video) if cache is not None else None
        cached = (
            _load_cached(path, settings, video) if path is not None and path.is_file() else None
        )
        if cached is not None:
            out[video.key] = cached
        elif video.frames is None:
            out[video.key] = VideoSpotting(video.key, problem="no frames (see the data problems)")
        else:
            out[video.key] = _spot_one(video, detector, config)
            if path is not None and not out[video.key].problem:
                write_json(path, _spotting_json(out[video.key], settings, _source_of(video)))
        if progress is not None:
            progress(done, len(video_set.videos), video.key)
    return out


def _spot_one(
    video: LongVideo, detector: LandmarkDetector, config: IntervalConfig
) -> VideoSpotting:
    try:
        with open_frames(video.frames) as src:
            result = spot_intervals(src, video.fps, detector, config)
    except (ApexmerError, OSError, ValueError, cv2.error) as exc:
        return VideoSpotting(video.key, problem=f"{type(exc).__name__}: {exc}".strip())
    return VideoSpotting(
        video.key,
        tuple(result.intervals),
        np.asarray(result.curve, dtype=np.float64),
        tuple(result.numbers),
        float(result.threshold),
        macro_curve=np.asarray(result.macro_curve, dtype=np.float64),
        macro_threshold=float(result.macro_threshold),
    )


def _source_of(video: LongVideo) -> dict[str, Any]:
    """What identifies the frames a result came from: their path, count and fps."""
    return {"frames": str(video.frames), "n_frames": video.n_frames, "fps": video.fps}


def _curve_json(curve: np.ndarray | None) -> list[float | None]:
    """A score curve for JSON: exact floats (a cached curve re-thresholded by ``tune_loso``
    must give what the spotter gave), None where NaN."""
    values = [] if curve is None else curve.tolist()
    return [v if math.isfinite(v) else None for v in values]


def _spotting_json(s: VideoSpotting, config: dict[str, Any], source: dict) -> dict[str, Any]:
    def threshold(value: float | None) -> float | None:
        return value if value is not None and math.isfinite(value) else None

    return {
        "format": CACHE_FORMAT,
        "key": s.key,
        "config": config,
        "source": source,
        "intervals": [_interval_json(i) for i in s.intervals],
        "numbers": list(s.numbers),
        "curve": _curve_json(s.curve),
        "threshold": threshold(s.threshold),
        "macro_curve": _curve_json(s.macro_curve),
        "macro_threshold": threshold(s.macro_threshold),
        "problem": s.problem,
    }


SPOTTED_COLUMNS = ("video", "onset", "offset", "type")


def read_spotted_csv(path: str | Path, video_set: LongVideoSet) -> dict[str, VideoSpotting]:
    """Spotted intervals from a CSV: columns ``video`` (``15_0101``, ``006_1`` or the key
    ``casme2-lv/s15/15_0101``), ``onset``, ``offset``, ``type`` (micro | macro); optional
    ``apex``, ``score``. Videos of the corpus absent from the file spotted nothing."""
    path = Path(path)
    try:
        table = pd.read_csv(path, dtype={"video": str})
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read the CSV ({exc})", file=path, fix="write a CSV") from None
    missing = [c for c in SPOTTED_COLUMNS if c not in table.columns]
    if missing:
        raise DataError(
            f"missing column(s) {', '.join(missing)}",
            file=path,
            fix="write the columns video,onset,offset,type (apex and score optional)",
        )
    keys = {v.video: v.key for v in video_set} | {v.key: v.key for v in video_set}
    found: dict[str, list[SpottedInterval]] = {v.key: [] for v in video_set}
    for row, r in enumerate(table.itertuples(index=False), start=2):
        key = keys.get(str(r.video))
        kind = str(r.type).strip().lower()
        try:
            onset, offset = int(r.onset), int(r.offset)
        except (TypeError, ValueError):
            onset, offset = -1, -2
        if key is None or kind not in ("micro", "macro") or not 0 <= onset <= offset:
            raise DataError(
                f"bad row (video {r.video!r}, onset {r.onset}, offset {r.offset}, type {r.type!r})",
                file=path,
                row=row,
                fix="use a video of the corpus, whole frame numbers onset <= offset, and "
                "type micro or macro",
            )
        apex, score = getattr(r, "apex", None), getattr(r, "score", None)
        apex = (onset + offset) // 2 if apex is None or pd.isna(apex) else int(apex)
        score = 0.0 if score is None or pd.isna(score) else float(score)
        found[key].append(SpottedInterval(onset, apex, offset, kind, score))
    return {k: VideoSpotting(k, tuple(v)) for k, v in found.items()}


def coded_spans(video: LongVideo) -> tuple[list[tuple[Interval, Span]], list[str]]:
    """The scored span of each coded interval of ``video``, and the ones left out (why)."""
    pairs, left_out = [], []
    for interval in video.intervals:
        span = coded_span(interval)
        if span is None:
            left_out.append(
                f"{video.key} {interval.name or interval.onset} (row {interval.row}): no "
                "offset and no apex; left out of the score"
            )
            continue
        pairs.append((interval, Span(span[0], span[1], interval.kind)))
    return pairs, left_out


def evaluate_long_videos(
    video_set: LongVideoSet,
    spottings: dict[str, VideoSpotting],
    threshold: float = IOU_THRESHOLD,
) -> LongEvalResult:
    """Score every video of ``video_set`` against its spotted intervals (module doc)."""
    scores, coded_of, unscored, skipped = [], {}, [], []
    for video in video_set:
        spotting = spottings.get(video.key, VideoSpotting(video.key, problem="not spotted"))
        if spotting.problem:
            n = len(video.intervals)
            skipped.append(
                f"{video.key}: {spotting.problem} ({n} coded interval(s) count as false negatives)"
            )
        pairs, left_out = coded_spans(video)
        unscored += left_out
        coded_of[video.key] = pairs
        spotted = [Span(i.onset, i.offset, i.kind) for i in spotting.intervals]
        scores.append(
            score_video(video.key, video.subject, [s for _, s in pairs], spotted, threshold)
        )
    return LongEvalResult(pool_scores(scores, threshold), spottings, coded_of, unscored, skipped)


MAD_K_GRID = (3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 12.0, 16.0)


@dataclass(frozen=True)
class LosoTuning:
    """A spotter threshold chosen leave-one-subject-out: each subject's videos are spotted
    with the value that scored best (overall F1, pooled) on the other subjects' videos."""

    parameter: str
    grid: tuple[float, ...]
    chosen: dict[str, float]  # held-out subject -> value used for its videos
    criterion: str = "overall F1 pooled over the other subjects' videos"

    def describe(self) -> str:
        values = ", ".join(f"{s}: {v:g}" for s, v in sorted(self.chosen.items()))
        return (
            f"{self.parameter} chosen leave-one-subject-out from {list(self.grid)} on the "
            f"{self.criterion}; per held-out subject: {values}"
        )


def tune_loso(
    video_set: LongVideoSet,
    spottings: dict[str, VideoSpotting],
    config: IntervalConfig | None = None,
    grid: tuple[float, ...] = MAD_K_GRID,
    iou_threshold: float = IOU_THRESHOLD,
) -> tuple[dict[str, VideoSpotting], LosoTuning]:
    """Re-threshold each spotted video with ``mad_k`` chosen leave-one-subject-out.

    The spotter's two scores are kept; only their thresholds ``median + mad_k x MAD`` move,
    and the intervals are re-derived from both (``intervals_from_curves``), so a video
    gets exactly what the spotter would give with that ``mad_k`` and no video is spotted
    twice. A subject never sees its own labels: its value is the best on the other
    subjects (ties go to the larger, more conservative value). The grid searched always
    holds ``config.mad_k``: with a single subject there is nothing to tune on and the
    config's value is kept.
    """
    config = config or IntervalConfig()
    if config.threshold != "mad":
        raise ConfigError("leave-one-subject-out tuning moves mad_k; use threshold='mad'")
    grid = tuple(sorted({float(v) for v in grid} | {float(config.mad_k)}))
    videos = [v for v in video_set if spottings.get(v.key) and spottings[v.key].curve is not None]
    for video in videos:
        if spottings[video.key].macro_curve is None:
            raise ConfigError(
                f"{video.key}: leave-one-subject-out tuning needs the spotter's two scores "
                "(VideoSpotting.curve and macro_curve); this spotting has no macro_curve"
            )
    found: dict[tuple[str, float], TwoScaleIntervals] = {}
    counts: dict[float, dict[str, Counts]] = {value: {} for value in grid}
    for video in videos:
        spotting = spottings[video.key]
        coded = [span for _, span in coded_spans(video)[0]]
        for value in grid:
            two = intervals_from_curves(
                spotting.curve,
                spotting.macro_curve,
                list(spotting.numbers),
                video.fps,
                replace(config, mad_k=value),
            )
            found[(video.key, value)] = two
            spotted = [Span(i.onset, i.offset, i.kind) for i in two.intervals]
            score = score_video(video.key, video.subject, coded, spotted, iou_threshold)
            counts[value][video.key] = score.counts["overall"]
    chosen: dict[str, float] = {}
    for subject in sorted({v.subject for v in videos}):
        others = [v.key for v in videos if v.subject != subject]
        if not others:
            chosen[subject] = float(config.mad_k)
            continue

        def f1(value: float, others: list[str] = others) -> float:
            pooled = sum((counts[value][k] for k in others), Counts())
            return pooled.f1 or 0.0

        chosen[subject] = max(sorted(grid, reverse=True), key=f1)
    out = dict(spottings)
    for video in videos:
        two = found[(video.key, chosen[video.subject])]
        out[video.key] = replace(
            spottings[video.key],
            intervals=tuple(two.intervals),
            threshold=two.micro_threshold,
            macro_threshold=two.macro_threshold,
        )
    return out, LosoTuning("mad_k", grid, chosen)
