"""Interval spotting in long videos: where does each expression start, peak and end?

Training-free, in four steps (options in ``IntervalConfig``, each with its source):

1. **ROI motion against a frame ``k`` frames earlier** (``spotting.motion.video_motion``):
   the skip-k-frame ROI optical flow of the MEGC spotting baselines (He et al., FG 2020;
   Moilanen et al., ICPR 2014 use the same k = half the expression length), the nose
   bridge's flow subtracted (head motion), landmarks tracked by fitting in the previous
   box. ``k = round(lag_s * fps)`` with ``lag_s`` = 0.25 s, half the longest
   micro-expression. (Fitting a rotation + scale to the flow at the nose and eye corners
   instead was tried: blinks move the eye corners' flow and it spotted 28 false
   micro-expressions in two synthetic videos where the nose gave none.)
2. **Displacement from the lagged flows** (an apexmer step): the flow against ``t - k``
   is ``d(t) - d(t - k)`` for the ROI displacement ``d``; summing it along each of the
   ``k`` chains ``t, t - k, t - 2k, ...`` gives ``d(t)`` back. A lagged difference alone
   shows every expression twice (going and returning, ``k`` apart) and splits a
   macro-expression into two bursts; the displacement shows each expression once, as a
   bump from onset to offset. Each chain is detrended by a running median (slow head
   turns and the chains' drift go, expressions shorter than half the window stay) and
   lightly smoothed. Two windows, as MEGC spotters use two scales for the two types:
   ``micro_baseline_s`` (3 s) for micro-expressions, where a short window keeps the
   chains' noise low, and ``baseline_s`` (10 s) for macro-expressions of up to 4 s.
3. **Score per frame**: the mean displacement magnitude of the ``top_rois`` most moving
   ROIs (a micro-expression moves one or two regions; averaging all ten would dilute
   it). During a blink the ROIs next to the eyes are ignored: where the eye aspect ratio
   drops (Soukupová and Čech 2016) or the upper eyelids move ``lid_ratio`` times more
   than the brows (a brow lowerer moves the brows more than the lids).
4. **Peaks and intervals**: frames above a threshold relative to the video's own noise,
   ``median + mad_k x MAD`` of the quiet frames (iterated 3-MAD clipping: a robust noise
   level even when expressions fill a third of the video; a video without expressions
   yields nothing) or Moilanen's ``mean + p x (max - mean)`` (MEGC baselines; always
   finds something);
   runs closer than ``merge_s`` are joined; the apex is the highest frame of a run, the
   onset/offset the last frames around it above ``edge`` x the peak height; intervals
   shorter than ``min_s`` are noise, those up to ``micro_max_s`` (0.5 s, the MEGC and
   CAS(ME)^2/SAMM-LV definition) are micro, longer ones macro (up to ``max_s``). Micro
   intervals come from the short-window score, macro ones from the long-window score; a
   micro interval inside a macro one is dropped, and so is an interval that runs into the
   first or last frame (the detrending baseline is one-sided there).

Defaults were chosen on synthetic videos (``tests/long_clips.py`` and ``synth --long``
seed 0) and are reported on other seeds in ``bench/long_video_spotting.py``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import pandas as pd

from apexmer.data.frames import FrameSource, check_fps, valid_fps
from apexmer.data.long_videos import Kind
from apexmer.errors import ConfigError, DataError, NoFaceError
from apexmer.face.landmarks import LandmarkDetector, get_detector
from apexmer.spotting.motion import EYE_ADJACENT, MotionConfig, VideoMotion, video_motion


@dataclass(frozen=True)
class IntervalConfig:
    """Options of ``spot_intervals``; the module doc gives each one's source."""

    lag_s: float = 0.25  # reference distance k = round(lag_s * fps) frames (<= 0.5 s)
    micro_baseline_s: float = 3.0  # detrend window of the micro-expression score
    baseline_s: float = 10.0  # detrend window of the macro score (> 2 x the longest macro)
    smooth_s: float = 0.1  # moving average of the displacement
    top_rois: int = 2  # ROIs averaged into the score (the most moving ones per frame)
    threshold: Literal["mad", "moilanen"] = "mad"
    mad_k: float = 7.0  # "mad": median + mad_k x MAD of the quiet frames (normal sigma)
    moilanen_p: float = 0.5  # "moilanen": mean + p x (max - mean)
    edge: float = 0.2  # onset/offset where the score falls below edge x peak
    merge_s: float = 0.1  # join above-threshold runs closer than this
    min_s: float = 0.1  # shorter intervals are dropped (noise)
    micro_max_s: float = 0.5  # micro-expression: onset to offset at most this long
    max_s: float = 4.0  # longer intervals are dropped (not an expression)
    blink_drop: float = 0.6  # blink: eye aspect ratio under this share of the median
    lid_ratio: float = 1.5  # ...or the upper lids moving this many times more than the brows
    motion: MotionConfig = field(default_factory=MotionConfig)

    def __post_init__(self) -> None:
        if not 0 < self.lag_s <= 0.5:
            raise ConfigError(
                f"interval spotting lag_s {self.lag_s} is out of range. Fix: use 0 < lag_s <= 0.5 s"
            )
        if self.threshold not in ("mad", "moilanen"):
            raise ConfigError(
                f"interval spotting threshold {self.threshold!r} (--threshold) is not "
                "known. Fix: use mad or moilanen"
            )
        if not (isinstance(self.top_rois, int) and 1 <= self.top_rois <= 10):
            raise ConfigError(
                f"interval spotting top_rois {self.top_rois!r} is out of range. Fix: use 1..10"
            )
        if not 0 < self.edge < 1 or not 0 < self.moilanen_p < 1:
            raise ConfigError(
                f"interval spotting edge {self.edge}, moilanen_p {self.moilanen_p}: "
                "Fix: use fractions in (0, 1)"
            )
        if not 0 < self.min_s <= self.micro_max_s < self.max_s:
            raise ConfigError(
                f"interval spotting durations need 0 < min_s <= micro_max_s < max_s, got "
                f"{self.min_s}, {self.micro_max_s}, {self.max_s}"
            )
        if not self.baseline_s >= self.micro_baseline_s > 2 * self.lag_s:
            raise ConfigError(
                f"interval spotting needs baseline_s >= micro_baseline_s > 2 x lag_s, got "
                f"{self.baseline_s}, {self.micro_baseline_s}, {self.lag_s}"
            )

    def lag(self, fps: float) -> int:
        """The reference distance k in frames at ``fps``."""
        return max(1, round(self.lag_s * fps))

    def min_frames(self, fps: float) -> int:
        """The fewest frames in which an interval can be spotted at ``fps``: the lag k
        (a frame's motion is against the frame k earlier; within the first k frames every
        lag chain has one element and no displacement), the shortest interval kept
        (``min_s``) and one frame either side (an interval that runs into the first or
        last frame is dropped). 13 frames at 30 fps."""
        return self.lag(fps) + max(1, math.ceil(self.min_s * fps)) + 2

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SpottedInterval:
    """One spotted expression; frames are frame numbers of the source."""

    onset: int
    apex: int
    offset: int
    kind: Kind
    score: float  # the score at the apex (px of displacement at eye distance work_iod)

    def seconds(self, fps: float, first: int = 0) -> tuple[float, float, float]:
        """Onset, apex, offset in seconds from frame number ``first``."""
        return tuple((n - first) / fps for n in (self.onset, self.apex, self.offset))


@dataclass(frozen=True, eq=False)
class IntervalSpotResult:
    """Spotted intervals of one video, with the per-frame score they come from."""

    intervals: list[SpottedInterval]
    curve: np.ndarray  # (T,) float64 micro score of frame numbers[i]; NaN where no face
    numbers: list[int]
    fps: float
    threshold: float  # of curve
    lag: int
    motion: VideoMotion
    macro_curve: np.ndarray  # (T,) the score with the long (macro) baseline
    macro_threshold: float

    def table(self) -> pd.DataFrame:
        """One row per interval: frames, seconds (from the first frame), type, peak score."""
        first = self.numbers[0] if self.numbers else 0
        rows = []
        for i in self.intervals:
            on, ap, off = i.seconds(self.fps, first)
            rows.append(
                {
                    "onset": i.onset,
                    "apex": i.apex,
                    "offset": i.offset,
                    "onset_s": round(on, 3),
                    "apex_s": round(ap, 3),
                    "offset_s": round(off, 3),
                    "duration_s": round((i.offset - i.onset + 1) / self.fps, 3),
                    "type": i.kind,
                    "score": round(i.score, 4),
                }
            )
        columns = [
            "onset",
            "apex",
            "offset",
            "onset_s",
            "apex_s",
            "offset_s",
            "duration_s",
            "type",
            "score",
        ]
        return pd.DataFrame(rows, columns=columns)


def source_fps(source: FrameSource, fps: float | None = None) -> float:
    """The frame rate: ``fps`` when given (ConfigError when it is not a valid frame rate,
    ``data.frames.check_fps``), else the source's, else a video file's header (a header
    rate that is not valid counts as none)."""
    if fps is not None:
        return float(check_fps(fps))
    fps = getattr(source, "fps", None)
    path = Path(source.path)
    if not valid_fps(fps) and path.is_file():
        cap = cv2.VideoCapture(str(path))
        try:
            fps = cap.get(cv2.CAP_PROP_FPS) or None
        finally:
            cap.release()
    if not valid_fps(fps):
        raise DataError(
            "the frame rate is unknown (a frame folder has none)",
            file=path,
            fix="pass --fps (CAS(ME)^2: 30, SAMM Long Videos: 200)",
        )
    return float(fps)


def _rolling(values: np.ndarray, window: int, how: str) -> np.ndarray:
    """Centred running median/mean along axis 0 of ``(N, ...)`` (edges: shorter windows)."""
    flat = pd.DataFrame(values.reshape(len(values), -1))
    rolled = flat.rolling(window, center=True, min_periods=1)
    out = rolled.median() if how == "median" else rolled.mean()
    return out.to_numpy().reshape(values.shape)


def _baseline(chain: np.ndarray, window: int) -> np.ndarray:
    """Centred running median of ``(N, ...)`` along axis 0. The ends are point-reflected
    first (about the median of the first/last third of a half window), so a linear drift
    leaves no offset at the video's ends while an expression there does not move the pivot."""
    pad = min(window // 2, len(chain) - 1)
    if pad > 0:
        q = max(1, pad // 3)
        head = 2 * np.median(chain[:q], axis=0) - chain[pad:0:-1]
        tail = 2 * np.median(chain[-q:], axis=0) - chain[-2 : -pad - 2 : -1]
        chain = np.concatenate([head, chain, tail])
    return _rolling(chain, window, "median")[pad : len(chain) - pad]


def displacement(vectors: np.ndarray, lag: int, baseline: int) -> np.ndarray:
    """ROI displacement ``(N, R, 2)`` from flows against ``t - lag`` ``(N, R, 2)`` of one
    tracking run: summed along each lag chain, each chain detrended by a running median
    of ``baseline`` frames."""
    d = np.empty_like(vectors, dtype=np.float64)
    window = max(3, round(baseline / lag))
    for c in range(min(lag, len(vectors))):
        chain = np.cumsum(vectors[c::lag].astype(np.float64), axis=0)
        d[c::lag] = chain - _baseline(chain, window)
    return d


def blink_frames(
    ear: np.ndarray, lids: np.ndarray, brows: np.ndarray, config: IntervalConfig, pad: int
) -> np.ndarray:
    """``(T,)`` bool: a blink where the eye aspect ratio drops under ``blink_drop`` x its
    median, or the upper eyelids move more than ``lid_ratio`` x the most moving brow ROI
    (``lids`` ``(T, 2)``, ``brows`` ``(T, B)`` displacement magnitudes); grown by ``pad``."""
    ear = np.asarray(ear, dtype=np.float64)
    shut = np.zeros(len(ear), bool)
    if not np.all(np.isnan(ear)):
        shut |= np.nan_to_num(ear, nan=np.inf) < config.blink_drop * np.nanmedian(ear)
    with np.errstate(invalid="ignore"):
        shut |= np.nan_to_num(lids.max(1) > config.lid_ratio * brows.max(1), nan=False)
    if pad > 0 and shut.any():
        shut = np.convolve(shut, np.ones(2 * pad + 1), mode="same") > 0
    return shut


def score_curve(
    motion: VideoMotion, fps: float, config: IntervalConfig, baseline_s: float | None = None
) -> np.ndarray:
    """Per-frame spotting score ``(T,)`` (NaN without a face) from a video's ROI motion,
    detrended over ``baseline_s`` (default ``config.baseline_s``)."""
    baseline_s = config.baseline_s if baseline_s is None else baseline_s
    rois = motion.vectors.shape[1]
    vectors = np.concatenate([motion.vectors, motion.lids], axis=1)  # (T, R + 2, 2)
    magnitude = np.full(vectors.shape[:2], np.nan)
    smooth = max(1, round(config.smooth_s * fps))
    for run in np.unique(motion.segment[motion.segment >= 0]):
        idx = np.flatnonzero(motion.segment == run)
        d = displacement(vectors[idx], motion.lag, round(baseline_s * fps))
        d = _rolling(d, smooth, "mean")
        magnitude[idx] = np.linalg.norm(d, axis=2)
    brows = magnitude[:, list(EYE_ADJACENT)]
    blinks = blink_frames(motion.ear, magnitude[:, rois:], brows, config, round(0.05 * fps))
    magnitude = magnitude[:, :rois]
    magnitude[np.ix_(blinks, list(EYE_ADJACENT))] = 0.0
    top = np.sort(np.nan_to_num(magnitude, nan=-np.inf), axis=1)[:, -config.top_rois :]
    score = top.mean(1)
    score[~np.isfinite(score)] = np.nan
    return score


def threshold_of(curve: np.ndarray, config: IntervalConfig) -> float:
    """The detection threshold of a score curve, from its own noise (see the module doc)."""
    values = curve[np.isfinite(curve)]
    if values.size == 0:
        return float("inf")
    if config.threshold == "moilanen":
        mean = float(values.mean())
        return mean + config.moilanen_p * (float(values.max()) - mean)
    # Median and MAD of the quiet frames: clipped at 3 MAD and recomputed until stable, so
    # a video that is a third expressions still gets its noise level, not theirs.
    for _ in range(10):
        median = float(np.median(values))
        mad = max(1.4826 * float(np.median(np.abs(values - median))), 1e-6)
        quiet = values[values <= median + 3 * mad]
        if quiet.size == values.size:
            break
        values = quiet
    return median + config.mad_k * mad


def find_intervals(
    curve: np.ndarray,
    numbers: list[int],
    fps: float,
    config: IntervalConfig,
    threshold: float | None = None,
) -> list[SpottedInterval]:
    """Intervals of a score curve (``curve[i]`` is frame ``numbers[i]``; NaN never counts)."""
    curve = np.asarray(curve, dtype=np.float64)
    threshold = threshold_of(curve, config) if threshold is None else threshold
    values = np.nan_to_num(curve, nan=-np.inf)
    above = np.flatnonzero(values > threshold)
    if above.size == 0:
        return []
    gap = max(1, round(config.merge_s * fps))
    breaks = np.flatnonzero(np.diff(above) > gap)
    runs = np.split(above, breaks + 1)
    base = float(np.nanmedian(curve))
    found: list[tuple[int, int, int]] = []
    for run in runs:
        apex = int(run[0] + np.argmax(values[run[0] : run[-1] + 1]))
        level = base + config.edge * (values[apex] - base)
        onset = apex
        while onset > 0 and values[onset - 1] > level:
            onset -= 1
        offset = apex
        while offset < len(values) - 1 and values[offset + 1] > level:
            offset += 1
        if found and onset <= found[-1][2]:  # the edges ran into the previous interval
            prev = found.pop()
            onset = prev[0]
            apex = apex if values[apex] > values[prev[1]] else prev[1]
            offset = max(offset, prev[2])
        found.append((onset, apex, offset))
    out = []
    for onset, apex, offset in found:
        if onset == 0 or offset == len(values) - 1:
            continue  # runs into the video's edge, where the detrending is one-sided
        seconds = (numbers[offset] - numbers[onset] + 1) / fps
        if seconds < config.min_s or seconds > config.max_s:
            continue
        out.append(
            SpottedInterval(
                onset=numbers[onset],
                apex=numbers[apex],
                offset=numbers[offset],
                kind="micro" if seconds <= config.micro_max_s else "macro",
                score=float(values[apex]),
            )
        )
    return out


@dataclass(frozen=True, eq=False)
class TwoScaleIntervals:
    """What ``intervals_from_motion`` finds, with the two scores it found it in."""

    intervals: list[SpottedInterval]
    micro_curve: np.ndarray
    micro_threshold: float
    macro_curve: np.ndarray
    macro_threshold: float


def intervals_from_curves(
    micro_curve: np.ndarray,
    macro_curve: np.ndarray,
    numbers: list[int],
    fps: float,
    config: IntervalConfig,
) -> TwoScaleIntervals:
    """Micro intervals from the short-baseline score, macro ones from the long-baseline
    score, micro ones inside a macro one dropped; sorted by onset. Pure: re-thresholding
    (another ``mad_k``) needs only the two curves."""
    micro_thr, macro_thr = threshold_of(micro_curve, config), threshold_of(macro_curve, config)
    micro = [
        i for i in find_intervals(micro_curve, numbers, fps, config, micro_thr) if i.kind == "micro"
    ]
    macro = [
        i for i in find_intervals(macro_curve, numbers, fps, config, macro_thr) if i.kind == "macro"
    ]
    micro = [
        i for i in micro if not any(i.onset <= m.offset and m.onset <= i.offset for m in macro)
    ]
    return TwoScaleIntervals(
        intervals=sorted(micro + macro, key=lambda i: i.onset),
        micro_curve=micro_curve,
        micro_threshold=micro_thr,
        macro_curve=macro_curve,
        macro_threshold=macro_thr,
    )


def intervals_from_motion(
    motion: VideoMotion, fps: float, config: IntervalConfig
) -> TwoScaleIntervals:
    """Both scores of a video's ROI motion, then ``intervals_from_curves``."""
    return intervals_from_curves(
        score_curve(motion, fps, config, config.micro_baseline_s),
        score_curve(motion, fps, config, config.baseline_s),
        motion.numbers,
        fps,
        config,
    )


def spot_intervals(
    source: FrameSource,
    fps: float | None = None,
    detector: LandmarkDetector | None = None,
    config: IntervalConfig | None = None,
    numbers: list[int] | None = None,
) -> IntervalSpotResult:
    """Spot the micro- and macro-expression intervals of a long video (module doc).

    ``source`` is read once, in order (``numbers``: all its frames by default); ``fps``
    defaults to the source's. Raises DataError without a frame rate or for a video too short
    to spot (fewer than ``config.min_frames(fps)`` frames) and NoFaceError when no frame
    shows a face.
    """
    config = config or IntervalConfig()
    fps = source_fps(source, fps)
    numbers = list(source.numbers if numbers is None else numbers)
    need = config.min_frames(fps)
    if len(numbers) < need:  # else: "0 intervals", as if the video had none
        raise DataError(
            f"too short to spot: {len(numbers)} frame(s), {len(numbers) / fps:.2f} s at "
            f"{fps:g} fps; spotting intervals needs at least {need} frames "
            f"({need / fps:.2f} s)",
            file=source.path,
            fix="give a longer video (or check the frame rate)",
        )
    lag = config.lag(fps)
    motion = video_motion(source, numbers, detector or get_detector(), lag, fps, config.motion)
    if not motion.tracked.any():
        raise NoFaceError(
            f"{source.path}: no face found in any of its {len(numbers)} frames. Fix: check "
            "that the video shows a frontal face of at least ~80 px"
        )
    found = intervals_from_motion(motion, fps, config)
    return IntervalSpotResult(
        intervals=found.intervals,
        curve=found.micro_curve,
        numbers=numbers,
        fps=fps,
        threshold=found.micro_threshold,
        lag=lag,
        motion=motion,
        macro_curve=found.macro_curve,
        macro_threshold=found.macro_threshold,
    )
