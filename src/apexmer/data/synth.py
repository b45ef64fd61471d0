"""A synthetic corpus in the real CASME II layout, for tests, benchmarks and the demo.

The real corpora are licensed, so the project ships none. This module writes one that a
reader of the real files cannot tell apart by layout: the 2019 coding sheet with its quirks
(integer ``Subject``, two empty unnamed columns, mixed ``Action Units``, one ``/`` apex),
frames ``CASME2_RAW_selected/subXX/<clip>/img<N>.jpg`` numbered with absolute frame
numbers, plus ``ground_truth.csv`` holding what the sheet hides (the ``/`` apex, the
motion amplitude).

Faces start from a real photograph that ships inside matplotlib (``grace_hopper.jpg``).
Each subject is that face under its own geometric and photometric transform; each clip is
a neutral face whose action-unit-like local deformation rises along a raised cosine to the
apex frame and falls back by the offset, with sensor noise and a sub-pixel drift on top.
Everything is drawn from seeded numpy Generators and JPEGs use a fixed quality, so one
seed gives byte-identical files.
"""

from __future__ import annotations

import functools
import io
import re
import shutil
import time
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist
from typing import NamedTuple

import cv2
import numpy as np
import pandas as pd

from apexmer.data.labels import label_map
from apexmer.dlib_models import dlib_model_path
from apexmer.errors import ConfigError, DataError, NoFaceError
from apexmer.fileio import atomic_path

DEFAULT_SIZE = (640, 480)  # (width, height) of CASME II raw frames
CODING_NAME = "CASME2-coding-20190701.xlsx"
FRAMES_DIR = "CASME2_RAW_selected"
GROUND_TRUTH_NAME = "ground_truth.csv"
JPEG_QUALITY = 90
CLIP_FRAMES = (20, 40)  # onset..offset inclusive, frames
APEX_RANGE = (0.3, 0.7)  # apex position as a share of onset..offset
AMPLITUDE_PX = (3.0, 6.0)  # peak displacement at 640 px width
FACE_WIDTH_PX = (200.0, 250.0)  # jaw-to-jaw landmark width at 640 px width
NOISE_SIGMA = 2.0  # grey levels
# Largest global drift, px at 640 px width. Kept small on purpose: a drift of 0.1 px
# already moves the mean whole-face difference more than a 4 px mouth-corner AU does, so
# larger values (the `jitter` argument) make a stress test for spotting, not a default.
JITTER_PX = 0.05

# CASME II, 2019 sheet (METHOD.md section 7): 255 samples.
CASME2_COUNTS = {
    "others": 99,
    "disgust": 63,
    "happiness": 32,
    "surprise": 28,
    "repression": 27,
    "sadness": 4,
    "fear": 2,
}
FIVE_CLASSES = ("others", "disgust", "happiness", "surprise", "repression")

# Action-unit codes per emotion, as the sheet writes them (a bare AU is an integer).
AU_CODES: dict[str, tuple[int | str, ...]] = {
    "happiness": (12, "6+12", "R12", "L12"),
    "surprise": ("1+2", "R1+R2", "1+2+5"),
    "disgust": (9, 10, "4+9", "9+10", "L10"),
    "repression": (14, 17, 24, "14+17", "R14", "17+24"),
    "others": (4, 7, "4+7", "L4", "R7"),
    "sadness": (15, "1+15"),
    "fear": ("1+2+4+20", "4+20"),
}

# Displacement of landmarks per AU: (index, ux, uy) in the face frame (x from the
# image-left eye to the image-right eye, y down), relative weights; index as in iBUG-68.
AU_MOTION: dict[int, tuple[tuple[int, float, float], ...]] = {
    1: ((20, 0, -0.6), (21, 0, -1), (22, 0, -1), (23, 0, -0.6)),
    2: ((17, 0, -0.8), (18, 0, -1), (19, 0, -0.6), (24, 0, -0.6), (25, 0, -1), (26, 0, -0.8)),
    4: ((20, 0.3, 0.6), (21, 0.6, 0.8), (22, -0.6, 0.8), (23, -0.3, 0.6)),
    5: ((37, 0, -0.7), (38, 0, -0.7), (43, 0, -0.7), (44, 0, -0.7)),
    6: ((40, 0, -0.5), (41, 0, -0.5), (46, 0, -0.5), (47, 0, -0.5)),
    7: ((40, 0, -0.8), (41, 0, -0.8), (46, 0, -0.8), (47, 0, -0.8), (36, 0.3, 0), (45, -0.3, 0)),
    9: (
        (31, 0, -1),
        (35, 0, -1),
        (32, 0, -0.7),
        (34, 0, -0.7),
        (28, 0, -0.4),
        (21, 0, 0.4),
        (22, 0, 0.4),
    ),
    10: ((49, 0, -0.8), (50, 0, -1), (51, 0, -1), (52, 0, -1), (53, 0, -0.8)),
    12: ((48, -0.6, -0.8), (54, 0.6, -0.8)),
    14: ((48, 0.8, -0.2), (54, -0.8, -0.2)),
    15: ((48, -0.2, 1.0), (54, 0.2, 1.0)),
    17: ((7, 0, -0.6), (8, 0, -1), (9, 0, -0.6), (56, 0, -0.6), (57, 0, -0.8), (58, 0, -0.6)),
    20: ((48, -1, 0.2), (54, 1, 0.2), (59, -0.5, 0), (55, 0.5, 0)),
    24: ((50, 0, 0.6), (51, 0, 0.7), (52, 0, 0.6), (56, 0, -0.6), (57, 0, -0.7), (58, 0, -0.6)),
    # AU26 jaw drop: the chin and the lower lip come down (surprise's open mouth).
    26: (
        (6, 0, 0.5),
        (7, 0, 0.8),
        (8, 0, 1),
        (9, 0, 0.8),
        (10, 0, 0.5),
        (56, 0, 0.7),
        (57, 0, 0.8),
        (58, 0, 0.7),
    ),
    # AU45 blink: the upper lids come down (used by synth_long's eye blinks, no emotion).
    45: ((37, 0, 1), (38, 0, 1), (43, 0, 1), (44, 0, 1)),
}

# 2019 "Objective Classes" (Davison et al. 2018): I happiness AUs, II surprise, III
# AU4/AU7 (anger-like), IV AU9/AU10, V AU15, VI fear, VII the rest.
OBJECTIVE_CLASS = {
    "happiness": 1,
    "surprise": 2,
    "disgust": 4,
    "sadness": 5,
    "fear": 6,
    "repression": 7,
    "others": 3,
}

# iBUG-68 index of each point's mirror image (jaw, brows, nose, eyes, mouth).
MIRROR_68 = np.array(
    [
        *range(16, -1, -1),
        *range(26, 16, -1),
        27,
        28,
        29,
        30,
        *range(35, 30, -1),
        45,
        44,
        43,
        42,
        47,
        46,
        39,
        38,
        37,
        36,
        41,
        40,
        54,
        53,
        52,
        51,
        50,
        49,
        48,
        59,
        58,
        57,
        56,
        55,
        64,
        63,
        62,
        61,
        60,
        67,
        66,
        65,
    ]
)

_AU_TOKEN = re.compile(r"^([RLB]?)(\d+)$")


class Identity(NamedTuple):
    """A neutral face: image ``(H, W, 3)`` uint8 BGR and its 68 landmarks ``(68, 2)`` float32."""

    image: np.ndarray
    landmarks: np.ndarray


@dataclass(frozen=True)
class SynthInfo:
    """What ``write_synthetic_corpus`` wrote."""

    root: Path
    coding: Path  # the coding sheet
    frames_root: Path  # CASME2_RAW_selected
    n_clips: int
    ground_truth: pd.DataFrame  # one row per clip, as in ground_truth.csv
    seconds: float = 0.0


# ---------------------------------------------------------------- the base photograph


def base_photo_path() -> Path:
    """Path of matplotlib's ``grace_hopper.jpg``; DataError when it is missing."""
    import matplotlib

    path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    if not path.is_file():
        raise DataError(
            "matplotlib's sample photograph is missing",
            file=path,
            fix="reinstall matplotlib (pip install --force-reinstall matplotlib); "
            "the synthetic faces start from this photo",
        )
    return path


@functools.lru_cache(maxsize=1)
def base_face() -> Identity:
    """The base photograph and its 68 dlib landmarks (computed once per process)."""
    import dlib

    path = base_photo_path()
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise DataError(
            "cannot decode the sample photograph", file=path, fix="reinstall matplotlib"
        )
    rgb = np.ascontiguousarray(image[:, :, ::-1])
    faces = dlib.get_frontal_face_detector()(rgb, 0)
    if len(faces) != 1:
        raise NoFaceError(f"{path}: expected one face in the sample photo, found {len(faces)}")
    shape = dlib.shape_predictor(str(dlib_model_path()))(rgb, faces[0])
    points = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float32)
    image.setflags(write=False)
    points.setflags(write=False)
    return Identity(image, points)


# ---------------------------------------------------------------- identities


def _as_rng(seed: int | np.random.Generator, stream: int) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng([stream, int(seed)])


def _smooth_warp(rng: np.random.Generator, size: tuple[int, int]):
    """A mild nonlinear displacement ``w(x, y) -> (dx, dy)``: two low-frequency waves per axis."""
    width, height = size
    amp = rng.uniform(1.0, 2.5, size=(2, 2)) * width / 640
    freq = rng.uniform(0.5, 1.5, size=(2, 2, 2)) * 2 * np.pi / np.array([width, height])
    phase = rng.uniform(0, 2 * np.pi, size=(2, 2))

    def warp(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = []
        for axis in range(2):
            d = sum(
                amp[axis, k] * np.sin(freq[axis, k, 0] * x + freq[axis, k, 1] * y + phase[axis, k])
                for k in range(2)
            )
            out.append(d)
        return out[0], out[1]

    return warp


def _photometric_luts(rng: np.random.Generator) -> np.ndarray:
    """Per-channel 256-entry lookup tables: tint, contrast, brightness, gamma. ``(256, 1, 3)``."""
    v = np.arange(256, dtype=np.float64) / 255
    tint = rng.uniform(0.9, 1.1, size=3)
    contrast = rng.uniform(0.8, 1.15)
    bright = rng.uniform(-0.06, 0.06)
    gamma = rng.uniform(0.8, 1.25)
    lut = np.clip((v[:, None] - 0.5) * contrast + 0.5 + bright, 0, 1) ** gamma * tint
    return np.clip(np.rint(lut * 255), 0, 255).astype(np.uint8)[:, None, :]


def make_identity(
    seed: int | np.random.Generator = 0, size: tuple[int, int] = DEFAULT_SIZE
) -> Identity:
    """A subject's neutral face, ``size=(width, height)``, and its 68 landmarks.

    The base photo goes through a similarity-plus-aspect transform (face 200-250 px wide at
    640 px, rotation within 6 degrees, horizontal flip for some), a mild smooth warp and a
    photometric change. Landmarks follow the same transform (mirror-reindexed on a flip, so
    index 36 stays the image-left eye corner), so no detection runs per identity.
    """
    width, height = _check_size(size)
    rng = _as_rng(seed, stream=101)
    base = base_face()
    lm0 = base.landmarks.astype(np.float64)
    c0 = lm0.mean(axis=0)
    scale = rng.uniform(*FACE_WIDTH_PX) * width / 640 / np.ptp(lm0[:17, 0])
    aspect = rng.uniform(0.94, 1.06)
    theta = np.deg2rad(rng.uniform(-6, 6))
    flip = rng.random() < 0.3
    centre = np.array(
        [width * (0.5 + rng.uniform(-0.05, 0.05)), height * (0.52 + rng.uniform(-0.04, 0.04))]
    )
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    lin = rot @ np.diag([scale * aspect * (-1 if flip else 1), scale / aspect])
    fwd = np.hstack([lin, (centre - lin @ c0)[:, None]])  # (2, 3) photo -> frame
    inv = cv2.invertAffineTransform(fwd)
    warp = _smooth_warp(rng, (width, height))
    luts = _photometric_luts(rng)

    # Backward map: frame pixel x samples the photo at inv(x + w(x)).
    gx, gy = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
    wx, wy = warp(gx, gy)
    qx, qy = gx + wx, gy + wy
    map_x = (inv[0, 0] * qx + inv[0, 1] * qy + inv[0, 2]).astype(np.float32)
    map_y = (inv[1, 0] * qx + inv[1, 1] * qy + inv[1, 2]).astype(np.float32)
    photo = base.image
    if scale * min(aspect, 1 / aspect) < 1:  # shrinking: blur first against aliasing
        photo = cv2.GaussianBlur(photo, (0, 0), 0.5 / (scale * min(aspect, 1 / aspect)))
    image = cv2.remap(photo, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    image = cv2.LUT(image, luts)

    # Landmarks: solve x + w(x) = fwd(p) by fixed-point iteration (w is small and smooth).
    target = lm0 @ fwd[:, :2].T + fwd[:, 2]
    pts = target.copy()
    for _ in range(20):
        dx, dy = warp(pts[:, 0], pts[:, 1])
        pts = target - np.stack([dx, dy], axis=1)
    if flip:
        pts = pts[MIRROR_68]
    return Identity(image, pts.astype(np.float32))


def subject_identity(seed: int, subject: int, size: tuple[int, int] = DEFAULT_SIZE) -> Identity:
    """The neutral face of ``subject`` (1-based) in the corpus written with ``seed``; a clip's
    landmarks are these plus its ``shift_x, shift_y`` from ground_truth.csv."""
    return make_identity(np.random.default_rng([303, int(seed), int(subject)]), size)


# ---------------------------------------------------------------- expressions


def parse_action_units(code: int | str) -> list[tuple[int, str | None]]:
    """``"R1+R2"`` -> ``[(1, "R"), (2, "R")]``; ``12`` -> ``[(12, None)]``. R/L is the
    subject's right/left (image left/right in a frontal, unmirrored frame)."""
    out: list[tuple[int, str | None]] = []
    for token in str(code).replace(" ", "").split("+"):
        m = _AU_TOKEN.match(token)
        if m is None:
            raise ConfigError(
                f"cannot parse action unit {token!r} in {code!r}; write e.g. 12, 4+7 or R12"
            )
        side = m.group(1) if m.group(1) in ("R", "L") else None
        out.append((int(m.group(2)), side))
    return out


def expression_field(
    landmarks: np.ndarray,
    action_units: int | str,
    shape: tuple[int, int],
    amplitude: float,
    sigma: float | None = None,
    sigma_iod: float = 0.12,
) -> np.ndarray:
    """Displacement field ``(H, W, 2)`` float32 of an expression at full intensity.

    A sum of Gaussian bumps centred on the moving landmarks, scaled so that its largest
    displacement is ``amplitude`` pixels. ``sigma`` (pixels) defaults to ``sigma_iod`` x
    the eye distance. Unknown AUs (no motion model) contribute nothing.
    """
    height, width = shape
    pts = np.asarray(landmarks, dtype=np.float64)
    if pts.shape != (68, 2):
        raise ConfigError(f"landmarks must have shape (68, 2), got {pts.shape}")
    left_eye, right_eye = pts[36:42].mean(axis=0), pts[42:48].mean(axis=0)
    ex = right_eye - left_eye
    iod = float(np.linalg.norm(ex))
    ex /= iod
    ey = np.array([-ex[1], ex[0]])
    sigma = sigma_iod * iod if sigma is None else sigma
    midline = pts[27]

    centres, vectors = [], []
    for au, side in parse_action_units(action_units):
        for index, ux, uy in AU_MOTION.get(au, ()):
            offset = float((pts[index] - midline) @ ex)
            point_side = "R" if offset < -0.05 * iod else "L" if offset > 0.05 * iod else None
            if side is not None and point_side not in (side, None):
                continue
            centres.append(pts[index])
            vectors.append(ux * ex + uy * ey)
    field = np.zeros((height, width, 2), dtype=np.float32)
    if not centres or amplitude == 0:
        return field
    c, v = np.array(centres), np.array(vectors)  # (K, 2), (K, 2)
    reach = 4 * sigma
    x0, y0 = (np.floor(c.min(axis=0) - reach)).astype(int).clip(0)
    x1 = int(min(width, np.ceil(c[:, 0].max() + reach)))
    y1 = int(min(height, np.ceil(c[:, 1].max() + reach)))
    if x0 >= x1 or y0 >= y1:
        return field
    xs, ys = np.arange(x0, x1, dtype=np.float64), np.arange(y0, y1, dtype=np.float64)
    # Separable Gaussians: (K, h, 1) * (K, 1, w) -> (K, h, w)
    gy = np.exp(-((ys[None, :] - c[:, 1:2]) ** 2) / (2 * sigma**2))[:, :, None]
    gx = np.exp(-((xs[None, :] - c[:, 0:1]) ** 2) / (2 * sigma**2))[:, None, :]
    weight = gy * gx
    local = np.einsum("khw,kd->hwd", weight, v)  # (h, w, 2)
    peak = float(np.sqrt((local**2).sum(axis=2)).max())
    if peak > 0:
        field[y0:y1, x0:x1] = local * (amplitude / peak)
    return field


def motion_profile(n_frames: int, apex_index: int) -> np.ndarray:
    """Expression intensity per frame: 0 at onset and offset, 1 exactly at ``apex_index``,
    raised-cosine rise and fall. ``(n_frames,)`` float64."""
    if n_frames < 3 or not 0 < apex_index < n_frames - 1:
        raise ConfigError(
            f"need n_frames >= 3 and 0 < apex_index < n_frames - 1, got "
            f"n_frames={n_frames}, apex_index={apex_index}"
        )
    i = np.arange(n_frames, dtype=np.float64)
    rise = 0.5 * (1 - np.cos(np.pi * i / apex_index))
    fall = 0.5 * (1 + np.cos(np.pi * (i - apex_index) / (n_frames - 1 - apex_index)))
    return np.where(i <= apex_index, rise, fall)


@functools.lru_cache(maxsize=4)
def _noise_tables(sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Rounded N(0, sigma) at the 256 quantiles ``(k + 0.5) / 256``, split into its positive
    and negative parts: two uint8 lookup tables for ``cv2.LUT``."""
    inv = NormalDist(0.0, sigma).inv_cdf
    values = np.array([round(inv((k + 0.5) / 256)) for k in range(256)], dtype=np.int16)
    return (np.clip(values, 0, 255).astype(np.uint8), np.clip(-values, 0, 255).astype(np.uint8))


def add_sensor_noise(frame: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """``frame`` (uint8) plus Gaussian noise of ``sigma`` grey levels, rounded and clipped.

    One random byte per pixel and channel picks one of 256 equally likely quantiles of the
    rounded Gaussian (tails cut at 2.9 sigma): a few times faster than ``rng.normal`` on a
    640x480 colour frame, and as deterministic. Adding the positive part then subtracting
    the negative part, each saturating, equals ``clip(frame + noise, 0, 255)``.
    """
    if sigma <= 0:
        return frame
    plus, minus = _noise_tables(float(sigma))
    draw = np.frombuffer(rng.bytes(frame.size), dtype=np.uint8).reshape(frame.shape)
    return cv2.subtract(cv2.add(frame, cv2.LUT(draw, plus)), cv2.LUT(draw, minus))


def _drift(n_frames: int, jitter: float, rng: np.random.Generator) -> np.ndarray:
    """Global translation per frame ``(n_frames, 2)``: a smooth random walk from 0 whose
    largest excursion is about ``jitter`` px, plus a little per-frame shake."""
    walk = np.cumsum(rng.normal(size=(n_frames, 2)), axis=0)
    walk -= walk[0]
    peak = float(np.abs(walk).max())
    if peak > 0:
        walk *= jitter * rng.uniform(0.5, 1.0) / peak
    return walk + rng.normal(scale=jitter / 8, size=(n_frames, 2))


def render_clip(
    identity_image: np.ndarray,
    landmarks: np.ndarray,
    emotion: str,
    n_frames: int,
    apex_index: int,
    amplitude: float,
    rng: np.random.Generator,
    *,
    action_units: int | str | None = None,
    noise_sigma: float = NOISE_SIGMA,
    jitter: float | None = None,
    shift: tuple[float, float] = (0.0, 0.0),
) -> list[np.ndarray]:
    """Frames of one clip in memory: uint8 BGR ``(H, W, 3)`` each.

    Frame 0 is neutral (onset), the expression of ``emotion`` (or the given
    ``action_units``) peaks at ``apex_index`` with ``amplitude`` px, and frame
    ``n_frames - 1`` is neutral again (offset). ``shift`` moves the whole face (the
    landmarks of the clip are ``landmarks + shift``); ``jitter`` is the largest global drift
    in px (default ``JITTER_PX`` scaled to the frame width).
    """
    image = np.asarray(identity_image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ConfigError(
            f"identity_image must be uint8 (H, W, 3), got {image.dtype} {image.shape}"
        )
    if action_units is None:
        if emotion not in AU_CODES:
            raise ConfigError(f"unknown emotion {emotion!r}; use one of {', '.join(AU_CODES)}")
        action_units = AU_CODES[emotion][0]
    height, width = image.shape[:2]
    profile = motion_profile(n_frames, apex_index)
    jitter = JITTER_PX * width / 640 if jitter is None else jitter
    moved = np.asarray(landmarks, dtype=np.float64) + np.asarray(shift, dtype=np.float64)
    field = expression_field(moved, action_units, (height, width), amplitude)
    drift = _drift(n_frames, jitter, rng) + np.asarray(shift, dtype=np.float64)
    gx, gy = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    frames = []
    for i in range(n_frames):
        # Backward map: the frame at x shows the neutral face at x - shift - drift - a*field(x).
        map_x = gx - np.float32(drift[i, 0])
        map_y = gy - np.float32(drift[i, 1])
        if profile[i] > 0:
            map_x -= np.float32(profile[i]) * field[:, :, 0]
            map_y -= np.float32(profile[i]) * field[:, :, 1]
        frame = cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
        frames.append(add_sensor_noise(frame, noise_sigma, rng))
    return frames


# ---------------------------------------------------------------- the corpus plan


def class_counts(n_clips: int) -> dict[str, int]:
    """Clips per emotion in CASME II proportions (largest remainder), with every 5-class
    emotion present from 5 clips on and sadness and fear from 30 clips on (taken from
    ``others``), so that the 5-class map has rows to drop."""
    if n_clips < 1:
        raise ConfigError(f"need at least one clip, got {n_clips}")
    total = sum(CASME2_COUNTS.values())
    exact = {e: n_clips * c / total for e, c in CASME2_COUNTS.items()}
    counts = {e: int(v) for e, v in exact.items()}
    by_remainder = sorted(exact, key=lambda e: (-(exact[e] - counts[e]), -CASME2_COUNTS[e]))
    for e in by_remainder[: n_clips - sum(counts.values())]:
        counts[e] += 1
    wanted = [*FIVE_CLASSES[1:]] if n_clips >= 5 else []
    wanted += ["sadness", "fear"] if n_clips >= 30 else []
    for e in wanted:
        if counts[e] == 0:
            donor = max(counts, key=lambda d: counts[d])
            counts[donor] -= 1
            counts[e] += 1
    return counts


MAX_CLIPS_PER_SUBJECT = 19 * 8  # EP01..EP19 x _01.._08


def _clip_names(rng: np.random.Generator, n: int) -> list[str]:
    """``n`` distinct CASME II-like clip names, ``EP02_01f`` style, some without the ``f``."""
    names: list[str] = []
    used: set[tuple[int, int]] = set()
    while len(names) < n:
        key = (int(rng.integers(1, 20)), int(rng.integers(1, 9)))
        if key in used:
            continue
        used.add(key)
        names.append(f"EP{key[0]:02d}_{key[1]:02d}" + ("f" if rng.random() < 0.4 else ""))
    return names


def plan_corpus(
    subjects: int = 8,
    clips_per_subject: int = 8,
    seed: int = 0,
    size: tuple[int, int] = DEFAULT_SIZE,
) -> pd.DataFrame:
    """The ground-truth table of a corpus, one row per clip (nothing is rendered)."""
    if subjects < 1 or clips_per_subject < 1:
        raise ConfigError(
            f"need subjects >= 1 and clips_per_subject >= 1, got {subjects} and {clips_per_subject}"
        )
    if clips_per_subject > MAX_CLIPS_PER_SUBJECT:
        raise ConfigError(
            f"at most {MAX_CLIPS_PER_SUBJECT} clips per subject (distinct EPxx_yy names), "
            f"got {clips_per_subject}"
        )
    width, _ = _check_size(size)
    rng = np.random.default_rng([202, seed])
    n = subjects * clips_per_subject
    emotions = np.array([e for e, c in class_counts(n).items() for _ in range(c)])
    emotions = emotions[rng.permutation(n)]
    lengths = rng.integers(CLIP_FRAMES[0], CLIP_FRAMES[1] + 1, size=n)
    onsets = rng.integers(1, 301, size=n)
    # One clip crosses img99 -> img100, so lexical sorting of frame files would break it.
    cross = int(rng.integers(n))
    onsets[cross] = rng.integers(max(1, 101 - lengths[cross]), 100)
    slash = int(rng.integers(n))
    five, three = label_map("casme2", "5class"), label_map("casme2", "3class")
    rows = []
    for k in range(n):
        subject, within = divmod(k, clips_per_subject)
        if within == 0:
            names = _clip_names(rng, clips_per_subject)
        emotion = str(emotions[k])
        length = int(lengths[k])
        apex_index = round(rng.uniform(*APEX_RANGE) * (length - 1))
        apex_index = min(max(apex_index, 1), length - 2)
        codes = AU_CODES[emotion]
        au = codes[int(rng.integers(len(codes)))]
        objective = OBJECTIVE_CLASS[emotion]
        if emotion == "others" and not {4, 7} & {a for a, _ in parse_action_units(au)}:
            objective = 7
        onset = int(onsets[k])
        rows.append(
            {
                "subject": subject + 1,
                "folder": f"sub{subject + 1:02d}",
                "clip": names[within],
                "onset": onset,
                "apex": onset + apex_index,
                "offset": onset + length - 1,
                "n_frames": length,
                "apex_index": apex_index,
                "emotion": emotion,
                "label_5class": five.get(emotion, ""),
                "label_3class": three.get(emotion, ""),
                "action_units": str(au),
                "objective_class": objective,
                "amplitude_px": round(float(rng.uniform(*AMPLITUDE_PX)) * width / 640, 3),
                "shift_x": round(float(rng.uniform(-4, 4)) * width / 640, 3),
                "shift_y": round(float(rng.uniform(-3, 3)) * width / 640, 3),
                "jitter_px": round(JITTER_PX * width / 640, 4),
                "apex_in_sheet": "/" if k == slash else str(onset + apex_index),
            }
        )
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- writing


def write_synthetic_corpus(
    out: str | Path,
    subjects: int = 8,
    clips_per_subject: int = 8,
    seed: int = 0,
    size: tuple[int, int] = DEFAULT_SIZE,
    jitter: float | None = None,
    overwrite: bool = False,
) -> SynthInfo:
    """Write a synthetic CASME II corpus under ``out`` and return what was written.

    ``out/CASME2-coding-20190701.xlsx`` (the 2019 sheet's columns and quirks),
    ``out/CASME2_RAW_selected/subXX/<clip>/img<N>.jpg`` (absolute frame numbers, onset..
    offset) and ``out/ground_truth.csv``. ``jitter`` is the largest global drift in px
    (default ``JITTER_PX`` scaled to the width). A frame folder left by an earlier run is
    an error unless ``overwrite`` (which replaces ``CASME2_RAW_selected`` only).
    """
    start = time.perf_counter()
    out = Path(out)
    truth = plan_corpus(subjects, clips_per_subject, seed, size)
    if jitter is not None:
        if jitter < 0:
            raise ConfigError(f"jitter must be >= 0 px, got {jitter}")
        truth["jitter_px"] = float(jitter)
    frames_root = out / FRAMES_DIR
    if frames_root.exists() and any(frames_root.iterdir()):
        if not overwrite:
            raise DataError(
                "a frame folder already exists",
                file=frames_root,
                fix="choose an empty OUT folder or pass --overwrite",
            )
        shutil.rmtree(frames_root)
    identities: dict[int, Identity] = {}
    for k, row in enumerate(truth.itertuples(index=False)):
        if row.subject not in identities:
            identities[row.subject] = subject_identity(seed, row.subject, size)
        identity = identities[row.subject]
        rng = np.random.default_rng([404, seed, k])
        frames = render_clip(
            identity.image,
            identity.landmarks,
            row.emotion,
            row.n_frames,
            row.apex_index,
            row.amplitude_px,
            rng,
            action_units=row.action_units,
            shift=(row.shift_x, row.shift_y),
            jitter=row.jitter_px,
        )
        folder = frames_root / row.folder / row.clip
        folder.mkdir(parents=True, exist_ok=True)
        for number, frame in enumerate(frames, start=row.onset):
            ok, data = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
            if not ok:
                raise DataError("JPEG encoding failed", file=folder / f"img{number}.jpg")
            (folder / f"img{number}.jpg").write_bytes(data.tobytes())
    with atomic_path(out / GROUND_TRUTH_NAME) as tmp:
        truth.to_csv(tmp, index=False)
    coding = out / CODING_NAME
    write_coding_sheet(truth, coding)
    return SynthInfo(
        out, coding, frames_root, len(truth), truth, seconds=time.perf_counter() - start
    )


SHEET_HEADER = (
    "Subject",
    "Filename",
    None,
    "OnsetFrame",
    "ApexFrame",
    "OffsetFrame",
    None,
    "Action Units",
    "Estimated Emotion",
    "Objective Classes",
)


def coding_rows(truth: pd.DataFrame) -> list[list[object]]:
    """Sheet rows (header excluded) as the 2019 sheet holds them: ints where the real one
    has numbers, ``/`` for the unknown apex, a bare AU as an int, others as text."""
    rows = []
    for r in truth.itertuples(index=False):
        apex: int | str = "/" if r.apex_in_sheet == "/" else int(r.apex)
        au: int | str = int(r.action_units) if str(r.action_units).isdigit() else r.action_units
        rows.append(
            [
                int(r.subject),
                r.clip,
                None,
                int(r.onset),
                apex,
                int(r.offset),
                None,
                au,
                r.emotion,
                int(r.objective_class),
            ]
        )
    return rows


_FIXED_TIME = (2019, 7, 1, 0, 0, 0)


def write_coding_sheet(truth: pd.DataFrame, path: str | Path) -> Path:
    """Write the coding sheet (first sheet, header in row 1) byte-identically per content."""
    import datetime

    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.title = "Sheet1"
    ws.append(list(SHEET_HEADER))
    for row in coding_rows(truth):
        ws.append(row)
    wb.properties.created = datetime.datetime(*_FIXED_TIME)
    wb.properties.creator = "apexmer synthetic corpus"
    buffer = io.BytesIO()
    wb.save(buffer)
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(_deterministic_zip(buffer.getvalue()))
    return path


def _deterministic_zip(data: bytes) -> bytes:
    """Repack an xlsx with fixed entry times and a fixed ``modified`` stamp (openpyxl writes
    the current time in both)."""
    stamp = re.compile(rb"(<dcterms:modified[^>]*>)[^<]*(</dcterms:modified>)")
    out = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(data)) as src,
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst,
    ):
        for name in src.namelist():
            content = src.read(name)
            if name == "docProps/core.xml":
                content = stamp.sub(rb"\g<1>2019-07-01T00:00:00Z\g<2>", content)
            dst.writestr(
                zipfile.ZipInfo(name, date_time=_FIXED_TIME),
                content,
                compress_type=zipfile.ZIP_DEFLATED,
            )
    return out.getvalue()


def _check_size(size: Sequence[int]) -> tuple[int, int]:
    width, height = (int(v) for v in size)
    if width < 160 or height < 120:
        raise ConfigError(
            f"frame size {width}x{height} is too small; use at least 160x120 "
            "(640x480 like CASME II raw frames)"
        )
    return width, height
