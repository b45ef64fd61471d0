"""ROI motion: the signal both spotters read (the apex inside a clip, intervals in a video).

The method is the training-free "skip-k-frame ROI optical flow" family of the MEGC
spotting literature (He, Wang et al., "Spotting macro- and micro-expression intervals in
long video sequences", FG 2020, the MEGC 2020 baseline; the optical-flow spotters of MEGC
2021-2022 built on dlib landmarks): dense optical flow (Farnebäck) between a frame and a
reference frame, averaged inside the 10 landmark ROIs of the apex spotter
(``face.rois.ROIS``), minus the flow of the nose region (the nose bridge does not
move with expressions, so its flow is the head's; the same subtraction as those papers).
What comes out per frame is one displacement vector per ROI, ``(R, 2)``, in pixels of a
face normalised to an eye distance of ``MotionConfig.work_iod``.

- Within a known clip the reference is the onset frame (``clip_motion``).
- In a long video the reference is the frame ``lag`` frames earlier (``video_motion``):
  the "skip-k-frame" strategy that keeps the flow's small-motion assumption even when the
  head drifts. Frames are read once, sequentially; only ``lag + 1`` downscaled gray frames
  are kept, so memory does not grow with the video.

Landmarks are tracked cheaply (``LandmarkTracker``): the face detector runs once, then the
68-point model is fitted in the previous frame's box, and the detector runs again when the
face is lost (the fitted points leave their box) and every ``redetect_s`` seconds.
Eye blinks are reported through the eye aspect ratio (Soukupová and Čech, CVWW 2016) of
the tracked landmarks; the interval spotter ignores the ROIs next to the eyes while it drops.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from apexmer.data.frames import FrameSource, iter_frames
from apexmer.errors import ConfigError
from apexmer.face.landmarks import (
    NOSE_BRIDGE_LOWER,
    FaceLandmarks,
    LandmarkDetector,
    eye_distance,
)
from apexmer.face.rois import ROIS, roi_boxes, square_boxes

# The head's motion, subtracted from every ROI, is the flow at the lower nose bridge
# (NOSE_BRIDGE_LOWER, 29-30): 27 and 28 sit between the eyes, where a blink drags the skin
# (measured: with them, the whole face then seemed to move).
# ROIs whose skin moves when the eyelids close (the brows sit right above the lids).
EYE_ADJACENT = tuple(i for i, (name, _) in enumerate(ROIS) if name.startswith(("brow", "glab")))
# The upper eyelids (centre of points 37-38 and 43-44): measured only to recognise blinks,
# which move the lids far more than the brows (a brow lowerer, AU4, the other way round).
LIDS = ((37, 38), (43, 44))
# Farnebäck settings: 2 pyramid levels suffice for the few pixels of an expression at
# the working scale; a 9 px window keeps neighbouring ROIs apart.
_FARNEBACK = {
    "pyr_scale": 0.5,
    "levels": 2,
    "winsize": 9,
    "iterations": 2,
    "poly_n": 5,
    "poly_sigma": 1.1,
    "flags": 0,
}


@dataclass(frozen=True)
class MotionConfig:
    """How ROI motion is measured (shared by the ``motion`` apex spotter and intervals)."""

    work_iod: float = 64.0  # frames are downscaled (never up) to this eye distance, px
    roi_size: float = 0.5  # ROI side, fraction of the eye distance (as SpotConfig)
    margin: float = 0.3  # face crop for the flow: landmark box + margin x eye distance
    redetect_s: float = 2.0  # re-run the face detector this often while tracking

    def __post_init__(self) -> None:
        if not self.work_iod >= 16:
            raise ConfigError(
                f"motion work_iod {self.work_iod} is out of range. Fix: use >= 16 px (default 64)"
            )
        if not self.roi_size > 0:
            raise ConfigError(
                f"motion roi_size {self.roi_size} is out of range. Fix: use a positive "
                "fraction of the eye distance"
            )
        if not self.margin >= 0:
            raise ConfigError(f"motion margin {self.margin} is out of range. Fix: use >= 0")
        if not self.redetect_s > 0:
            raise ConfigError(
                f"motion redetect_s {self.redetect_s} is out of range. Fix: use > 0 seconds"
            )


def eye_aspect_ratio(points: np.ndarray) -> float:
    """Mean eye aspect ratio of both eyes (Soukupová and Čech 2016): ~0.3 open, ~0.1 shut.

    EAR = (|p2 - p6| + |p3 - p5|) / (2 |p1 - p4|) per eye, points 36-41 and 42-47.
    """
    pts = np.asarray(points, dtype=np.float64)
    ears = []
    for start in (36, 42):
        p = pts[start : start + 6]
        vertical = np.linalg.norm(p[1] - p[5]) + np.linalg.norm(p[2] - p[4])
        ears.append(vertical / max(2.0 * np.linalg.norm(p[0] - p[3]), 1e-6))
    return float(np.mean(ears))


def work_scale(points: np.ndarray, config: MotionConfig) -> float:
    """Downscale factor that brings the eye distance of ``points`` to ``work_iod`` (<= 1)."""
    return min(1.0, config.work_iod / max(eye_distance(points), 1.0))


def _face_crop(points: np.ndarray, shape: tuple[int, ...], margin: float) -> tuple[int, ...]:
    """x0, y0, x1, y1 of the landmark box grown by ``margin`` x eye distance, in the image."""
    pad = margin * eye_distance(points)
    x0, y0 = np.floor(points.min(0) - pad).astype(int)
    x1, y1 = np.ceil(points.max(0) + pad).astype(int)
    return max(x0, 0), max(y0, 0), min(x1, shape[1]), min(y1, shape[0])


def roi_flow(
    reference: np.ndarray, gray: np.ndarray, points: np.ndarray, config: MotionConfig
) -> np.ndarray:
    """Head-compensated displacement of ``gray`` against ``reference`` -> ``(R + 2, 2)``:
    the R ROIS, then the two upper eyelids (``LIDS``).

    Both are gray uint8 images at the working scale; ``points`` (68, 2) are the landmarks
    at that scale. Each region's mean flow minus the nose bridge's mean flow, scaled to an
    eye distance of ``config.work_iod``.
    """
    points = np.asarray(points, dtype=np.float64)
    x0, y0, x1, y1 = _face_crop(points, gray.shape, config.margin)
    flow = cv2.calcOpticalFlowFarneback(
        reference[y0:y1, x0:x1], gray[y0:y1, x0:x1], None, **_FARNEBACK
    )  # (h, w, 2): where each reference pixel moved
    local = points - (x0, y0)
    side = round(config.roi_size * eye_distance(points))
    lids = np.stack([local[list(idx)].mean(0) for idx in LIDS])
    boxes = np.concatenate(
        [roi_boxes(local, flow.shape, config.roi_size), square_boxes(lids, side, flow.shape)]
    )
    vectors = np.stack([flow[y : y + s, x : x + s].mean((0, 1)) for x, y, s, _ in boxes])
    nose = local[NOSE_BRIDGE_LOWER].mean(0, keepdims=True)
    x, y, s, _ = square_boxes(nose, side, flow.shape)[0]
    head = flow[y : y + s, x : x + s].mean((0, 1))
    return ((vectors - head) * (config.work_iod / eye_distance(points))).astype(np.float32)


def _downscale(gray: np.ndarray, scale: float) -> np.ndarray:
    if scale >= 1.0:
        return gray
    return cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)


def _gray(frame: np.ndarray) -> np.ndarray:
    return frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)


def clip_motion(
    source: FrameSource,
    numbers: Sequence[int],
    face: FaceLandmarks,
    config: MotionConfig | None = None,
) -> np.ndarray:
    """ROI displacement of every frame of a clip against its first frame -> ``(T, R, 2)``
    (the ROIS only, not the eyelids).

    ``face`` holds the landmarks of the first frame; a clip is short enough that the ROIs
    stay put and the head's drift is removed by the nose subtraction.
    """
    config = config or MotionConfig()
    scale = work_scale(face.points, config)
    points = face.points.astype(np.float64) * scale
    reference: np.ndarray | None = None
    out = []
    for _, frame in iter_frames(source, numbers):
        small = _downscale(_gray(frame), scale)
        if reference is None:
            reference = small
        out.append(roi_flow(reference, small, points, config)[: len(ROIS)])
    return np.stack(out)


def _patch(gray: np.ndarray, box: tuple[int, ...], size: int = 24) -> np.ndarray | None:
    """The face box of a gray image as a zero-mean, unit-norm ``(size, size)`` patch."""
    x, y, w, h = box
    crop = gray[max(y, 0) : max(y + h, 0), max(x, 0) : max(x + w, 0)]
    if crop.shape[0] < 4 or crop.shape[1] < 4:
        return None
    patch = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32)
    patch -= patch.mean()
    norm = float(np.linalg.norm(patch))
    return patch / norm if norm > 0 else None


class LandmarkTracker:
    """Landmarks per frame at the cost of a shape fit: detect once, then fit the 68 points
    in the previous frame's box. The detector runs again every ``redetect_every`` frames
    and when the face is lost: the fit leaves its box, or the box no longer looks like the
    detected face (correlation of a 24 px patch under ``min_similarity``; a shape model
    fitted to an empty box still returns a face-shaped set of points)."""

    def __init__(
        self, detector: LandmarkDetector, redetect_every: int = 60, min_similarity: float = 0.5
    ) -> None:
        self.detector = detector
        self.redetect_every = max(1, int(redetect_every))
        self.min_similarity = min_similarity
        self.face: FaceLandmarks | None = None
        self._template: np.ndarray | None = None
        self._since = 0
        self.detections = 0  # how often the (expensive) detector ran

    def _detect(self, gray: np.ndarray) -> FaceLandmarks | None:
        self.detections += 1
        self._since = 0
        self.face = self.detector.detect(gray)
        self._template = None if self.face is None else _patch(gray, self.face.box)
        return self.face

    def update(self, image: np.ndarray) -> FaceLandmarks | None:
        """Landmarks on ``image`` (gray or BGR), or None when no face is found."""
        gray = _gray(image)
        self._since += 1
        if self.face is None or self._template is None or self._since >= self.redetect_every:
            return self._detect(gray)
        x, y, w, h = self.face.box
        fitted = self.detector.fit(gray, self.face.box)
        centre = fitted.points.mean(0)
        shift = centre - self.face.points.mean(0)
        box = (round(x + shift[0]), round(y + shift[1]), w, h)
        inside = x <= centre[0] <= x + w and y <= centre[1] <= y + h
        spread = np.ptp(fitted.points[:, 0])
        patch = _patch(gray, box)
        similar = patch is not None and float((patch * self._template).sum()) >= (
            self.min_similarity
        )
        if not (inside and 0.4 * w <= spread <= 1.6 * w and similar):
            return self._detect(gray)
        # Keep the detector's box size (the model was trained on such boxes), follow the face.
        self.face = FaceLandmarks(box=box, points=fitted.points)
        return self.face


@dataclass(frozen=True, eq=False)
class VideoMotion:
    """ROI motion of every frame of a video against the frame ``lag`` frames earlier.

    ``vectors[i]`` belongs to frame ``numbers[i]``; the first ``lag`` frames after a (re)start
    of tracking compare with that start frame. Where no face was found, ``tracked`` is False
    and the vectors are NaN.
    """

    numbers: list[int]
    vectors: np.ndarray  # (T, R, 2) float32, px at eye distance work_iod, head motion removed
    lids: np.ndarray  # (T, 2, 2) float32, the same for the upper eyelids (blinks)
    ear: np.ndarray  # (T,) float32 eye aspect ratio, NaN where untracked
    tracked: np.ndarray  # (T,) bool
    segment: np.ndarray  # (T,) int: index of the tracking run the frame belongs to (-1: none)
    boxes: np.ndarray  # (T, 4) int32 face box x, y, w, h in frame pixels (0 where untracked)
    lag: int
    detections: int  # face detector runs (the rest were cheap fits)


def video_motion(
    source: FrameSource,
    numbers: Sequence[int],
    detector: LandmarkDetector,
    lag: int,
    fps: float,
    config: MotionConfig | None = None,
) -> VideoMotion:
    """Stream ``numbers`` of ``source`` once and measure each frame's ROI motion against the
    frame ``lag`` frames earlier (see the module doc)."""
    config = config or MotionConfig()
    if not (isinstance(lag, int) and lag >= 1):
        raise ConfigError(f"motion lag {lag!r} is out of range. Fix: use an integer >= 1 frames")
    n = len(numbers)
    vectors = np.full((n, len(ROIS) + len(LIDS), 2), np.nan, np.float32)
    ear = np.full(n, np.nan, np.float32)
    segment = np.full(n, -1, np.int32)
    boxes = np.zeros((n, 4), np.int32)
    tracker = LandmarkTracker(detector, redetect_every=round(config.redetect_s * fps))
    for i, step in enumerate(_stream(source, numbers, tracker, lag, config)):
        if step is None:
            continue
        vectors[i], ear[i], segment[i], boxes[i] = step
    return VideoMotion(
        numbers=list(numbers),
        vectors=vectors[:, : len(ROIS)],
        lids=vectors[:, len(ROIS) :],
        ear=ear,
        tracked=segment >= 0,
        segment=segment,
        boxes=boxes,
        lag=lag,
        detections=tracker.detections,
    )


def _stream(
    source: FrameSource,
    numbers: Sequence[int],
    tracker: LandmarkTracker,
    lag: int,
    config: MotionConfig,
) -> Iterator[tuple[np.ndarray, float, int, tuple[int, ...]] | None]:
    """Per frame: (ROI vectors, EAR, tracking run, face box), or None without a face."""
    ring: deque[np.ndarray] = deque(maxlen=lag + 1)  # downscaled gray frames t-lag..t
    scale, run = None, -1
    for _, frame in iter_frames(source, numbers):
        gray = _gray(frame)
        face = tracker.update(gray)
        if face is None:
            ring.clear()  # the next face starts a new run with its own reference
            yield None
            continue
        if not ring:
            run += 1
            scale = work_scale(face.points, config)  # fixed per run: ring frames must match
        small = _downscale(gray, scale)
        ring.append(small)
        points = face.points.astype(np.float64) * scale
        yield (
            roi_flow(ring[0], small, points, config),
            eye_aspect_ratio(face.points),
            run,
            face.box,
        )
