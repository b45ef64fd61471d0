"""Apex frame spotting after Quang, Chun and Tokuyama (FG 2019), as used by Ren et al. 2024.

For each frame i of a clip onset..offset, over the pixels p of 10 facial regions (ROIs):

    f(i, j) = mean_p (|F_i - F_j| + 1) / (|F_i - F_{i-lag}| + 1)          (eq. 5, lag 3)
    M_i     = f(i, onset) + f(i, offset)                                   (eq. 6)
    apex    = argmax_i M_i

F are grayscale frames on the 0..255 scale (the "+1" assumes that scale). The paper sums
both terms (``offset_term=True``, the default); the authors' public code drops the offset
term and detects landmarks on every frame (``offset_term=False, landmarks="per_frame"``).

Frames i < lag have no frame i-lag. ``first_frames="skip"`` (default) leaves them out:
their score is NaN and they cannot be the apex, which is sane because an apex within
``lag`` frames of the labelled onset is not a micro-expression. ``"clamp"`` compares them
with the onset frame instead, which makes f(i, onset) exactly 1 there and leaves the offset
term un-normalised (the onset frame then scores high whenever onset and offset differ).

The backward difference makes the method late by about lag/2 frames on a symmetric rise
and fall (the denominator is smallest where F_i equals F_{i-lag}, just after the peak).
``denominator="symmetric"`` (an apexmer option, not the paper's) normalises by the mean of
|F_i - F_{i-lag}| and |F_i - F_{i+lag}| instead: the same noise scale, no phase shift
(the last ``lag`` frames have no F_{i+lag}: with ``first_frames="skip"`` they are skipped
like the first ones, with ``"clamp"`` the backward difference is used alone). On
the 63 labelled clips of the default synthetic corpus, the paper's backward form spots 52%
within 1 frame (all 63 errors are +1 or +2 frames; MAE 1.48); the symmetric form spots
92% within 1 frame (MAE 0.81, all within 5): ``apexmer spot-eval --corpus casme2
--coding CORPUS/CASME2-coding-20190701.xlsx --root CORPUS/CASME2_RAW_selected --json
[--denominator symmetric]`` on ``apexmer synth CORPUS``. The paper's form stays the
default; the Predictor and ``apexmer preprocess`` take either.

Memory is independent of the clip's length: ``spot_clip`` reads onset..offset forward
(twice with the offset term, the offset frame's crops first) and ``stream_curve`` holds the
uint8 ROI crops of a window of frames (``stream_frames``); its curve equals the reference
``curve_from_crops`` over every frame's crops bit for bit (one ``_block_scores``, the same
blocks).

``method="motion"`` (an apexmer option built on the long-video motion signal,
``spotting.motion``) replaces eq. 5-6 by the optical flow of each ROI against the onset
frame, the nose bridge's flow subtracted (head motion), in the ``motion_rois`` ROIs that
move most over the clip, smoothed over ``motion_smooth`` frames; the apex is its maximum.
It uses no lag, no offset term and no per-frame landmarks (those options are ignored).
Measured against the coded apex in ``bench/apex_methods.py`` (figures in bench/README.md).

Which spotter a command uses unless told: ``default_spot_method``, the one place that
decides. The paper's (eq. 5-6) stays what the paper's preset and its experiment use;
``motion`` is the default everywhere else (``predict``, ``serve``, ``spot``, ``spot-eval``,
``preprocess`` for any other preset). Why: on 5 real sequences whose apex is known (2 SAMM
coded, 3 SMIC with the CapsuleNet authors' own estimate) motion was off by -2, +3, +3, -5
and 0 frames, the paper's by -17, -1, -8, +13 and 0 (issue 19); on the synthetic corpus
motion spots 1.00 of the apexes within one frame, the paper's 0.35.

Measured with ``bench/spotting_bench.py`` (synthetic brow raise on a real photo, 66 frames):
``blur`` (Gaussian sigma before differencing) changed nothing at sensor noise sigma 2 and
cut the mean error from 1.25 to 1.08 frames at sigma 6, so it stays off by default, as in the
paper. ``landmarks="per_frame"`` was ~40x slower and spotted frame 54 instead of 30: the
ROIs follow the moving brow and the landmark jitter of 1 px on textured skin dominates the
differences. It exists to reproduce the authors' code, not as an improvement.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import cv2
import numpy as np

from apexmer.data.frames import FrameSource, iter_frames
from apexmer.errors import ConfigError, DataError, NoFaceError
from apexmer.face.landmarks import FaceLandmarks, LandmarkDetector, get_detector
from apexmer.face.rois import ROIS, crop_rois, roi_boxes
from apexmer.spotting.motion import MotionConfig, clip_motion

SpotMethod = Literal["paper", "motion"]
SPOT_METHODS: tuple[str, ...] = ("paper", "motion")
PAPER_PRESET = "paper"  # the config preset that reproduces the paper, its spotter included


def default_spot_method(preset: str | None = None) -> SpotMethod:
    """The apex spotter used when none is asked for (module doc): the paper's for the
    ``paper`` preset, ``motion`` for every other preset and for a new clip (None)."""
    return "paper" if preset == PAPER_PRESET else "motion"


@dataclass(frozen=True)
class SpotConfig:
    """Options of the apex spotter; defaults follow the paper (section 2 of METHOD.md).
    Commands choose ``method`` with ``default_spot_method``."""

    offset_term: bool = True  # paper: True; authors' code: False
    landmarks: Literal["onset", "per_frame"] = "onset"  # per_frame: detect on every frame
    lag: int = 3  # frames back in the denominator
    first_frames: Literal["skip", "clamp"] = "skip"  # frames i < lag: see module doc
    roi_size: float = 0.5  # ROI side, fraction of eye distance
    blur: float = 0.0  # Gaussian sigma in px before differencing
    denominator: Literal["backward", "symmetric"] = "backward"  # paper: backward (eq. 5)
    method: SpotMethod = "paper"  # motion: ROI flow vs onset (module doc)
    motion_rois: int = 2  # method="motion": ROIs averaged (the most moving over the clip)
    motion_smooth: int = 3  # method="motion": centred moving average, frames

    @property
    def min_frames(self) -> int:
        """Shortest clip with at least one scored frame."""
        if self.method == "motion":
            return 2
        skip_end = self.denominator == "symmetric" and self.first_frames == "skip"
        return 2 * self.lag + 1 if skip_end else self.lag + 1

    def __post_init__(self) -> None:
        if self.landmarks not in ("onset", "per_frame"):
            raise ConfigError(
                f"apex spotting landmarks {self.landmarks!r} (--landmarks) is not known. "
                "Fix: use onset or per_frame"
            )
        if self.first_frames not in ("skip", "clamp"):
            raise ConfigError(
                f"apex spotting first_frames {self.first_frames!r} is not known. "
                "Fix: use skip or clamp"
            )
        if not (isinstance(self.lag, int) and self.lag >= 1):
            raise ConfigError(
                f"apex spotting lag {self.lag!r} (--lag) is out of range. "
                "Fix: use an integer >= 1 frames (the paper uses 3)"
            )
        if not self.roi_size > 0:
            raise ConfigError(
                f"apex spotting roi_size {self.roi_size} is out of range. Fix: use a "
                "positive fraction of the eye distance (default 0.5)"
            )
        if self.denominator not in ("backward", "symmetric"):
            raise ConfigError(
                f"apex spotting denominator {self.denominator!r} (--denominator) is not "
                "known. Fix: use backward (the paper) or symmetric"
            )
        if self.method not in SPOT_METHODS:
            raise ConfigError(
                f"apex spotting method {self.method!r} (--spot-method) is not known. Fix: "
                "use paper (eq. 5-6, the default) or motion (ROI optical flow against the "
                "onset)"
            )
        if not (isinstance(self.motion_rois, int) and 1 <= self.motion_rois <= len(ROIS)):
            raise ConfigError(
                f"apex spotting motion_rois {self.motion_rois!r} is out of range. "
                f"Fix: use 1..{len(ROIS)}"
            )
        if not (isinstance(self.motion_smooth, int) and self.motion_smooth >= 1):
            raise ConfigError(
                f"apex spotting motion_smooth {self.motion_smooth!r} is out of range. "
                "Fix: use an integer >= 1 frames"
            )
        if not self.blur >= 0:
            raise ConfigError(
                f"apex spotting blur {self.blur} is out of range. Fix: use a sigma >= 0 (0 = off)"
            )


@dataclass(frozen=True, eq=False)
class SpotResult:
    """The spotted apex of one clip. ``curve[k]`` is the score of frame ``numbers[k]``."""

    apex: int  # frame number
    apex_index: int  # index into numbers / curve
    curve: np.ndarray  # (T,) float64, NaN where a frame was skipped
    onset: int
    offset: int
    numbers: list[int]  # frame numbers onset..offset that exist in the source
    face: FaceLandmarks  # landmarks of the onset frame

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly record (NaN scores become None)."""
        return {
            "apex": self.apex,
            "apex_index": self.apex_index,
            "onset": self.onset,
            "offset": self.offset,
            "numbers": list(self.numbers),
            "curve": [None if np.isnan(v) else float(v) for v in self.curve],
        }


# Float32 bytes of one block of frames in curve_from_crops and stream_curve; their
# temporaries are a few blocks (~40 MB), whatever the clip's length.
CURVE_BLOCK_BYTES = 8 * 2**20


def curve_block(crop_pixels: int) -> int:
    """Frames scored at once (one float32 block of CURVE_BLOCK_BYTES) for crops of
    ``crop_pixels`` pixels a frame (R x s x s)."""
    return max(1, CURVE_BLOCK_BYTES // (4 * crop_pixels))


def stream_frames(crop_pixels: int, lag: int) -> int:
    """Most frames whose uint8 crops stream_curve holds at once: one block, the ``lag``
    frames before it and after it, the onset and the offset frame."""
    return curve_block(crop_pixels) + 2 * lag + 2


def _rows(crops: np.ndarray, config: SpotConfig) -> np.ndarray:
    """Crops ``(k, R, s, s)`` (any dtype) -> float32 rows ``(k, R*s*s)``, blurred."""
    out = crops.reshape(len(crops), int(np.prod(crops.shape[1:]))).astype(np.float32)
    if config.blur > 0:
        side = crops.shape[-2:]
        out = np.stack(
            [cv2.GaussianBlur(c, (0, 0), config.blur).ravel() for c in out.reshape(-1, *side)]
        ).reshape(out.shape)
    return out


def _block_scores(
    c: np.ndarray,
    back: np.ndarray,
    ahead: np.ndarray | None,
    fwd: np.ndarray | None,
    first: np.ndarray,
    last: np.ndarray,
    config: SpotConfig,
) -> np.ndarray:
    """Eq. 5-6 for a block of float32 rows: ``c`` the frames, ``back`` F_{i-lag} (F_0 for
    i < lag), ``fwd`` F_{i+lag} of the rows where ``ahead`` (symmetric denominator only),
    ``first``/``last`` the onset and offset rows ``(1, P)`` -> float64 scores."""
    den = np.abs(c - back)
    if ahead is not None and ahead.any():
        den[ahead] = 0.5 * (den[ahead] + np.abs(c[ahead] - fwd))
    den += 1.0
    score = ((np.abs(c - first) + 1.0) / den).mean(1, dtype=np.float64)
    if config.offset_term:
        score += ((np.abs(c - last) + 1.0) / den).mean(1, dtype=np.float64)
    return score


def _skip_edges(score: np.ndarray, config: SpotConfig) -> np.ndarray:
    """NaN where ``first_frames="skip"`` leaves frames out (see the module doc)."""
    n = len(score)
    if config.first_frames == "skip":
        score[: config.lag] = np.nan
        if config.denominator == "symmetric":
            score[n - config.lag :] = np.nan
    return score


def _check_length(n: int, config: SpotConfig) -> None:
    if n < config.lag + 1:
        raise ValueError(f"{n} frames; lag {config.lag} needs at least {config.lag + 1}")


def curve_from_crops(
    crops: np.ndarray, config: SpotConfig | None = None, block: int | None = None
) -> np.ndarray:
    """Score M_i of every frame from ROI crops ``(T, R, s, s)`` (0..255 scale) -> ``(T,)``.

    Computed ``block`` frames at a time (default: CURVE_BLOCK_BYTES of float32), with the
    same numbers as all at once. The reference for ``stream_curve``, which gives the same
    curve bit for bit without holding every frame's crops.
    """
    config = config or SpotConfig()
    crops = np.asarray(crops)
    n = crops.shape[0]
    _check_length(n, config)
    block = block or curve_block(crops[0].size)
    first, last = _rows(crops[:1], config), _rows(crops[n - 1 :], config)
    score = np.empty(n, np.float64)
    for a in range(0, n, block):
        i = np.arange(a, min(a + block, n))
        ahead = fwd = None
        if config.denominator == "symmetric":
            ahead = i < n - config.lag  # |F_i - F_{i+lag}| exists
            fwd = _rows(crops[i[ahead] + config.lag], config) if ahead.any() else None
        back = _rows(crops[np.maximum(i - config.lag, 0)], config)
        score[i] = _block_scores(_rows(crops[i], config), back, ahead, fwd, first, last, config)
    return _skip_edges(score, config)


def stream_curve(
    crops: Iterable[np.ndarray],
    n: int,
    last: np.ndarray | None = None,
    config: SpotConfig | None = None,
    block: int | None = None,
) -> np.ndarray:
    """``curve_from_crops`` of ``n`` frames whose crops ``(R, s, s)`` come one at a time from
    ``crops``, in order, bit for bit: the same blocks through the same arithmetic. ``last``
    is the offset frame's crops (needed with ``offset_term``, unused otherwise). Holds the
    crops of at most ``stream_frames`` frames, whatever ``n``.
    """
    config = config or SpotConfig()
    _check_length(n, config)
    if last is None and config.offset_term:
        raise ValueError("stream_curve with offset_term needs the offset frame's crops (last)")
    lag = config.lag
    symmetric = config.denominator == "symmetric"
    score = np.empty(n, np.float64)
    held: dict[int, np.ndarray] = {}  # frame index -> uint8 crops: a window of the clip
    first = last_rows = None
    a = got = 0  # the next block to score starts at a; got: frames received

    def rows(index: np.ndarray) -> np.ndarray:
        return _rows(np.stack([held[j] for j in index]), config)

    for k, crop in enumerate(crops):
        if k >= n:
            raise ValueError(f"stream_curve was told {n} frames and got more")
        got = k + 1
        crop = np.asarray(crop)
        if k == 0:
            block = block or curve_block(crop.size)
            first = _rows(crop[None], config)
            last_rows = _rows((crop if last is None else np.asarray(last))[None], config)
        held[k] = crop
        while a < n:
            b = min(a + block, n)
            if k < (min(b - 1 + lag, n - 1) if symmetric else b - 1):
                break  # the block's frames (and their F_{i+lag}) are not all here yet
            i = np.arange(a, b)
            ahead = fwd = None
            if symmetric:
                ahead = i < n - lag  # |F_i - F_{i+lag}| exists
                fwd = rows(i[ahead] + lag) if ahead.any() else None
            back = rows(np.maximum(i - lag, 0))  # F_{i-lag}; F_0 for i < lag
            score[i] = _block_scores(rows(i), back, ahead, fwd, first, last_rows, config)
            a = b
            for j in [j for j in held if 0 < j < a - lag]:  # F_0 stays (clamp's F_{i-lag})
                del held[j]
    if got < n:
        raise ValueError(f"stream_curve was told {n} frames and got {got}")
    return _skip_edges(score, config)


def motion_curve(vectors: np.ndarray, config: SpotConfig | None = None) -> np.ndarray:
    """Score of every frame from ROI displacements against the onset ``(T, R, 2)`` -> ``(T,)``:
    the mean magnitude of the ``motion_rois`` ROIs that move most over the clip, smoothed."""
    config = config or SpotConfig(method="motion")
    magnitude = np.linalg.norm(np.asarray(vectors, dtype=np.float64), axis=2)  # (T, R)
    top = np.argsort(magnitude.max(0))[-config.motion_rois :]
    score = magnitude[:, top].mean(1)
    width = min(config.motion_smooth, len(score))
    if width > 1:  # centred moving average; the edges average what they have
        kernel = np.ones(width)
        score = np.convolve(score, kernel, "same") / np.convolve(
            np.ones(len(score)), kernel, "same"
        )
    return score


def intensity_curve(
    gray_frames: np.ndarray, rois: np.ndarray, config: SpotConfig | None = None
) -> np.ndarray:
    """Score M_i of gray frames ``(T, H, W)`` (0..255) -> ``(T,)``.

    ``rois`` is ``(R, 4)`` (x, y, w, h, one set for all frames) or ``(T, R, 4)`` (per frame,
    equal sizes; frame i is then compared at its own boxes, i.e. motion-compensated).
    """
    gray_frames = np.asarray(gray_frames)
    rois = np.asarray(rois)
    if rois.ndim == 2:
        crops = np.stack([crop_rois(g, rois) for g in gray_frames])
    else:
        crops = np.stack([crop_rois(g, b) for g, b in zip(gray_frames, rois, strict=True)])
    return curve_from_crops(crops, config)


def spot_apex(curve: np.ndarray) -> int:
    """Index of the highest score (NaN = skipped; the first index on ties)."""
    curve = np.asarray(curve, dtype=np.float64)
    if curve.size == 0 or np.all(np.isnan(curve)):
        raise ValueError("no scored frame in the curve")
    return int(np.nanargmax(curve))


def clip_numbers(
    source: FrameSource,
    onset: int | None,
    offset: int | None,
    lag: int = 3,
    min_frames: int | None = None,
) -> list[int]:
    """Frame numbers of ``source`` from onset to offset (None = first/last), validated."""
    available = list(source.numbers)
    need = min_frames or lag + 1
    if onset is None and offset is None and len(available) < need:
        # The whole clip was asked for (an upload, `apexmer predict`): no sheet to blame.
        count = f"{len(available)} frame" + ("" if len(available) == 1 else "s")
        raise DataError(
            f"the clip has {count}; spotting with lag {lag} needs at least {need} frames",
            file=source.path,
            fix=f"pass a longer clip (at least {need} frames)",
        )
    onset = available[0] if onset is None else int(onset)
    offset = available[-1] if offset is None else int(offset)
    span = f"the source holds frames {available[0]}..{available[-1]}"
    for what, n in (("onset", onset), ("offset", offset)):
        if n not in source.numbers:
            raise DataError(
                f"{what} frame {n} is not available ({span})",
                file=source.path,
                fix=f"give an {what} frame number that exists, or leave --{what} out "
                f"for the {'first' if what == 'onset' else 'last'} frame",
            )
    if onset >= offset:
        raise DataError(
            f"onset {onset} is not before offset {offset}",
            file=source.path,
            fix="give an onset frame number before the offset (in a coding sheet: check the "
            "onset/offset columns of this clip's row)",
        )
    numbers = [n for n in available if onset <= n <= offset]
    if len(numbers) < need:
        raise DataError(
            f"clip {onset}..{offset} has {len(numbers)} frames; spotting with "
            f"lag {lag} needs at least {need}",
            file=source.path,
            fix="use a longer onset..offset span, or a smaller --lag",
        )
    return numbers


def spot_clip(
    source: FrameSource,
    onset: int | None = None,
    offset: int | None = None,
    detector: LandmarkDetector | None = None,
    config: SpotConfig | None = None,
    face: FaceLandmarks | None = None,
) -> SpotResult:
    """Spot the apex between frame numbers ``onset`` and ``offset`` of ``source``.

    Landmarks come from ``face`` when given, else from ``detector`` on the onset frame
    (a new dlib detector when None). With ``config.landmarks="per_frame"`` the detector
    runs on every frame and the ROIs follow the face (box side fixed by the onset face).
    Raises DataError for bad onset/offset and NoFaceError when a needed face is missing.
    """
    config = config or SpotConfig()
    numbers = clip_numbers(source, onset, offset, config.lag, config.min_frames)
    first = source.read(numbers[0])
    if face is None or config.landmarks == "per_frame":
        detector = detector or get_detector()
    if face is None:
        face = detector.detect(first)
        if face is None:
            raise NoFaceError(
                f"{source.path}, frame {numbers[0]}: no face found on the onset "
                "frame. Fix: check the onset frame number and that the face is "
                "frontal, lit and at least ~80 px wide"
            )
    if config.method == "motion":
        vectors = clip_motion(source, numbers, face, MotionConfig(roi_size=config.roi_size))
        curve = motion_curve(vectors, config)
    else:
        curve = _paper_curve(source, numbers, first, face, detector, config)
    index = spot_apex(curve)
    return SpotResult(
        apex=numbers[index],
        apex_index=index,
        curve=curve,
        onset=numbers[0],
        offset=numbers[-1],
        numbers=numbers,
        face=face,
    )


def _paper_curve(
    source: FrameSource,
    numbers: list[int],
    first: np.ndarray,
    face: FaceLandmarks,
    detector: LandmarkDetector | None,
    config: SpotConfig,
) -> np.ndarray:
    """Eq. 5-6 over the clip's ROI crops (ROIs follow the face with per-frame landmarks),
    streamed: frames are read in increasing order, in two passes when the offset term needs
    the offset frame first, and only a window of frames' uint8 crops is ever held
    (``stream_frames``, ~2 MB plus the curve's fixed ~40 MB working set, whatever T)."""
    boxes = roi_boxes(face.points, first.shape, config.roi_size)
    side = int(boxes[0, 2])

    def crop(n: int, frame: np.ndarray) -> np.ndarray:  # uint8 (R, side, side)
        at = boxes
        if config.landmarks == "per_frame" and n != numbers[0]:
            found = detector.detect(frame)
            if found is None:
                raise NoFaceError(
                    f"{source.path}, frame {n}: face lost (no face found) while "
                    "spotting with per-frame landmarks. Fix: use "
                    "landmarks='onset', or check this frame"
                )
            at = roi_boxes(found.points, frame.shape, side=side)
        return crop_rois(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), at, np.uint8)

    last = None
    if config.offset_term:  # pass 1: the offset frame's crops
        try:
            ((n, frame),) = iter_frames(source, numbers[-1:])
            last = crop(n, frame)
        except NoFaceError:
            # name the first frame without a face, as a single pass would: pass 2 stops there
            for _ in _clip_crops(source, numbers, first, crop, None):
                pass
            raise
    return stream_curve(_clip_crops(source, numbers, first, crop, last), len(numbers), last, config)


def _clip_crops(
    source: FrameSource,
    numbers: list[int],
    first: np.ndarray,
    crop: Callable[[int, np.ndarray], np.ndarray],
    last: np.ndarray | None,
) -> Iterator[np.ndarray]:
    """Crops of every frame of the clip, in order, reading each frame once (the onset frame
    is ``first``, already read; the offset frame's crops are ``last`` when given)."""
    yield crop(numbers[0], first)
    for n, frame in iter_frames(source, numbers[1:]):
        yield last if last is not None and n == numbers[-1] else crop(n, frame)
