"""Synthetic long videos with known intervals, in the CAS(ME)^2 layout (METHOD.md 12).

What ``write_long_corpus(out, ...)`` writes (read it back with
``read_long_videos("casme2-lv", out / "CAS(ME)^2code_final.xlsx", root=out / "rawpic")``):

- ``rawpic/s15/15_0101disgustingteeth/img1.jpg .. img<N>.jpg``: frames numbered from 1,
  ``<folder number>_<video code><description>`` as published; subjects s15, s16, ...
- ``CAS(ME)^2code_final.xlsx``: ``CASFEcode_final`` (no header, a first row of ``###``
  placeholders, trailing rows holding only the duration formula), ``naming rule1``,
  ``naming rule2`` (the published video codes: 0101 disgust1 ... 0508 happy5).
- ``ground_truth.csv``: one row per event, micro- and macro-expressions AND eye blinks
  (blinks are not in the coding sheet, as in the real one). Columns: subject_index,
  subject, video, name, folder (relative to ``out``), fps, n_frames, event (``disgust1_1``
  or ``blink_1``), kind (micro | macro | blink), onset, apex, offset (frame numbers of the
  ``img<N>.jpg`` files, inclusive; the face is neutral at onset and offset and peaks at
  apex), action_units, amplitude (px at the frame's width; for a blink the share of the
  eye opening the lids close), in_sheet (False for blinks), head_px, head_deg.
- with ``mp4=True`` also ``videos/s15/15_0101disgustingteeth.mp4`` (frame index 0 is
  ``img1.jpg``); ``root=out / "videos"`` reads those instead of the folders.

Each frame is the subject's neutral face (``synth.subject_identity``) under
- expressions: ``synth.expression_field`` of the event's action units, scaled by
  ``synth.motion_profile`` (raised cosine onset -> apex -> offset); micro-expressions last
  0.2-0.5 s with 3-6 px (at 640 px width) and use no eyelid AU, macro-expressions 0.7-3.5 s
  with 7-12 px; expressions never overlap and are at least 1 s apart;
- blinks (AU45, 0.1-0.3 s, the upper lids come down 80% of the eye opening), at least
  0.4 s from any expression;
- slow head motion: a translation of up to ``head_px`` px and a rotation of up to
  ``head_deg`` degrees about the face centre, each a sum of two sines of 8-30 s periods;
- sensor noise (``synth.add_sensor_noise``, sigma 2 grey levels).
Frames are rendered and written one at a time (memory stays bounded for any duration);
each video is written into a hidden folder and renamed when complete, so a killed run
resumes by skipping finished videos (a folder stamped with other settings is refused
unless ``overwrite``). One seed gives the same pixels.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from apexmer.data.synth import (
    DEFAULT_SIZE,
    JPEG_QUALITY,
    NOISE_SIGMA,
    Identity,
    add_sensor_noise,
    expression_field,
    motion_profile,
    subject_identity,
)
from apexmer.errors import ConfigError, DataError
from apexmer.fileio import atomic_path

LONG_CODING_NAME = "CAS(ME)^2code_final.xlsx"
LONG_FRAMES_DIR = "rawpic"
LONG_VIDEOS_DIR = "videos"
LONG_TRUTH_NAME = "ground_truth.csv"
STAMP_NAME = ".synth_long.json"  # in each frame folder: the plan; frame readers skip dot files
FPS = 30.0
MICRO_SECONDS = (0.2, 0.5)
MACRO_SECONDS = (0.7, 3.5)
MICRO_PX = (3.0, 6.0)  # peak displacement at 640 px width
MACRO_PX = (7.0, 12.0)
BLINK_SECONDS = (0.1, 0.3)
GAP_SECONDS = 1.0  # between expressions, and before the first one
BLINK_CLEARANCE_SECONDS = 0.4
HEAD_PX = 4.0
HEAD_DEG = 1.0

# The published "naming rule2" (video code, name) and a description for each folder name.
VIDEO_CODES = (
    ("0101", "disgust1", "disgustingteeth"),
    ("0102", "disgust2", "disgustingfood"),
    ("0401", "anger1", "angrywords"),
    ("0402", "anger2", "angrycrowd"),
    ("0502", "happy1", "funnydog"),
    ("0503", "happy2", "funnybaby"),
    ("0505", "happy3", "funnyclip"),
    ("0507", "happy4", "funnycat"),
    ("0508", "happy5", "funnytalk"),
)
# Per elicited emotion: objective class, emotion word, micro AUs (no eyelid motion, so a
# blink is never mistaken for one), macro AUs.
EMOTIONS = {
    "disgust": ("negative", "disgust", ("9", "10", "4+10", "L10"), ("9+10", "4+9", "4+10+14")),
    "anger": ("negative", "anger", ("4", "24", "4+24"), ("4+7", "4+7+24", "4+17")),
    "happy": ("positive", "happy", ("12", "R12", "L12", "14"), ("6+12", "12", "1+2+12")),
}


@dataclass(frozen=True)
class LongEvent:
    """One event of a synthetic long video; frame numbers from 1, inclusive."""

    kind: str  # "micro" | "macro" | "blink"
    onset: int
    apex: int
    offset: int
    action_units: str
    amplitude: float  # px at the frame's width; for a blink, the share of the eye opening
    name: str  # "disgust1_1" (in the coding sheet) or "blink_1"


@dataclass(frozen=True)
class LongVideoPlan:
    """Everything needed to render one video (nothing is rendered)."""

    subject_index: int  # 1-based, CASFEcode_final column 1
    folder_number: int  # 15 for s15
    code: str  # "0101"
    name: str  # "disgust1"
    description: str  # "disgustingteeth"
    n_frames: int
    fps: float
    size: tuple[int, int]  # (width, height)
    events: tuple[LongEvent, ...]
    head_px: float
    head_deg: float
    seed: int

    @property
    def subject(self) -> str:
        return f"s{self.folder_number}"

    @property
    def video(self) -> str:
        return f"{self.folder_number}_{self.code}"

    @property
    def folder(self) -> str:
        return f"{self.video}{self.description}"


@dataclass(frozen=True)
class LongSynthInfo:
    """What ``write_long_corpus`` wrote."""

    root: Path
    coding: Path
    frames_root: Path
    ground_truth: pd.DataFrame
    plans: tuple[LongVideoPlan, ...]
    seconds: float
    videos_root: Path | None = None  # mp4 files, when asked for


# ---------------------------------------------------------------- planning


def _place(
    rng: np.random.Generator, lengths: list[int], start: int, end: int, gap: int
) -> list[int] | None:
    """Onsets (0-based) for intervals of ``lengths`` in order inside ``[start, end)`` with at
    least ``gap`` frames between them; the slack is spread at random. None if they cannot fit."""
    slack = end - start - sum(lengths) - gap * (len(lengths) - 1)
    if slack < 0:
        return None
    cuts = np.sort(rng.integers(0, slack + 1, size=len(lengths)))
    onsets, pos, used = [], start, 0
    for length, cut in zip(lengths, cuts, strict=True):
        pos += int(cut) - used
        used = int(cut)
        onsets.append(pos)
        pos += length + gap
    return onsets


def plan_long_video(
    seed: int,
    subject_index: int,
    video_index: int,
    *,
    seconds: float = 30.0,
    fps: float = FPS,
    micro: int = 4,
    macro: int = 2,
    blinks_per_minute: float = 12.0,
    head_px: float = HEAD_PX,
    head_deg: float = HEAD_DEG,
    size: tuple[int, int] = DEFAULT_SIZE,
) -> LongVideoPlan:
    """The events of one video: ``micro`` + ``macro`` expressions in random order, blinks."""
    if not 0 <= video_index < len(VIDEO_CODES):
        raise ConfigError(f"at most {len(VIDEO_CODES)} videos per subject (the published codes)")
    if micro < 0 or macro < 0 or seconds <= 0 or fps <= 0:
        raise ConfigError("micro, macro must be >= 0 and seconds, fps > 0")
    rng = np.random.default_rng([505, seed, subject_index, video_index])
    code, name, description = VIDEO_CODES[video_index]
    _, _, micro_aus, macro_aus = EMOTIONS[name.rstrip("0123456789")]
    n_frames = round(seconds * fps)
    scale = size[0] / 640
    kinds = ["micro"] * micro + ["macro"] * macro
    kinds = [kinds[i] for i in rng.permutation(len(kinds))]
    span = {"micro": MICRO_SECONDS, "macro": MACRO_SECONDS}
    lengths = [
        # both ends counted: a micro-expression lasts at most 0.5 s = 15 frames at 30 fps
        int(rng.integers(round(span[k][0] * fps), int(span[k][1] * fps) + 1))
        for k in kinds
    ]
    gap = round(GAP_SECONDS * fps)
    onsets = _place(rng, lengths, gap, n_frames - round(0.5 * fps), gap)
    if onsets is None:
        raise ConfigError(
            f"{micro} micro- and {macro} macro-expressions do not fit in {seconds:g} s with "
            f"{GAP_SECONDS:g} s between them; use fewer or a longer --seconds"
        )
    events: list[LongEvent] = []
    for k, (kind, length, onset) in enumerate(zip(kinds, lengths, onsets, strict=True)):
        apex_index = min(max(round(rng.uniform(0.3, 0.6) * (length - 1)), 1), length - 2)
        pool = micro_aus if kind == "micro" else macro_aus
        px = MICRO_PX if kind == "micro" else MACRO_PX
        events.append(
            LongEvent(
                kind,
                onset + 1,
                onset + 1 + apex_index,
                onset + length,
                pool[int(rng.integers(len(pool)))],
                round(float(rng.uniform(*px)) * scale, 3),
                f"{name}_{k + 1}",
            )
        )
    events += _plan_blinks(rng, events, n_frames, fps, blinks_per_minute)
    return LongVideoPlan(
        subject_index,
        14 + subject_index,
        code,
        name,
        description,
        n_frames,
        float(fps),
        (int(size[0]), int(size[1])),
        tuple(sorted(events, key=lambda e: e.onset)),
        float(head_px) * scale,
        float(head_deg),
        int(seed),
    )


def _plan_blinks(
    rng: np.random.Generator,
    expressions: list[LongEvent],
    n_frames: int,
    fps: float,
    per_minute: float,
) -> list[LongEvent]:
    wanted = round(per_minute * n_frames / fps / 60)
    clear = round(BLINK_CLEARANCE_SECONDS * fps)
    busy = [(e.onset - clear, e.offset + clear) for e in expressions]
    blinks: list[LongEvent] = []
    for _ in range(50 * wanted):
        if len(blinks) == wanted:
            break
        length = int(
            rng.integers(max(3, round(BLINK_SECONDS[0] * fps)), round(BLINK_SECONDS[1] * fps) + 1)
        )
        onset = int(rng.integers(round(0.5 * fps), n_frames - length)) + 1
        offset = onset + length - 1
        if any(onset <= b and offset >= a for a, b in busy):
            continue
        busy.append((onset - clear, offset + clear))
        blinks.append(
            LongEvent(
                "blink",
                onset,
                onset + (length - 1) // 2,
                offset,
                "45",
                0.8,
                "blink",
            )
        )
    blinks.sort(key=lambda b: b.onset)
    return [replace(b, name=f"blink_{k}") for k, b in enumerate(blinks, start=1)]


def plan_long_corpus(
    subjects: int = 2, videos_per_subject: int = 2, seed: int = 0, **video: object
) -> list[LongVideoPlan]:
    """Plans of every video (``video`` holds ``plan_long_video``'s keyword options)."""
    if subjects < 1 or videos_per_subject < 1:
        raise ConfigError("need at least one subject and one video per subject")
    return [
        plan_long_video(seed, s, v, **video)  # type: ignore[arg-type]
        for s in range(1, subjects + 1)
        for v in range(videos_per_subject)
    ]


# ---------------------------------------------------------------- rendering


def _head_path(plan: LongVideoPlan) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame translation ``(n, 2)`` px and rotation ``(n,)`` degrees: sums of two sines
    with 8-30 s periods and random phases, peaking near ``head_px`` / ``head_deg``."""
    rng = np.random.default_rng([606, plan.seed, plan.subject_index, int(plan.code)])
    t = np.arange(plan.n_frames) / plan.fps

    def wave(peak: float) -> np.ndarray:
        periods = rng.uniform(8.0, 30.0, size=2)
        phases = rng.uniform(0, 2 * np.pi, size=2)
        waves = zip(periods, phases, strict=True)
        w = sum(np.sin(2 * np.pi * t / p + f) - np.sin(f) for p, f in waves)
        return peak * w / max(float(np.abs(w).max()), 1e-9)  # 0 at frame 1, peak |w| = peak

    shift = np.stack([wave(plan.head_px), wave(plan.head_px * 0.6)], axis=1)
    return shift, wave(plan.head_deg)


def render_long_video(plan: LongVideoPlan, identity: Identity) -> Iterator[np.ndarray]:
    """The frames of ``plan`` one at a time, uint8 BGR ``(H, W, 3)`` (frame number k + 1).

    Backward map: frame pixel x shows the neutral face at ``y - sum_e p_e(t) f_e(y)`` with
    ``y = H_t^-1(x)``, the head transform undone; ``f_e`` is each event's displacement field
    (evaluated at y by remapping it with the same head map), ``p_e`` its profile.
    """
    width, height = plan.size
    image = identity.image
    if image.shape[:2] != (height, width):
        raise ConfigError(
            f"identity is {image.shape[1]}x{image.shape[0]}, plan is {width}x{height}"
        )
    landmarks = identity.landmarks.astype(np.float64)
    centre = landmarks.mean(axis=0)
    eyes = np.linalg.norm(landmarks[[37, 38, 43, 44]] - landmarks[[41, 40, 47, 46]], axis=1)
    lid_px = float(eyes.mean())
    shift, angle = _head_path(plan)
    noise_rng = np.random.default_rng([707, plan.seed, plan.subject_index, int(plan.code)])
    gx, gy = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    profiles = {
        e.name: motion_profile(e.offset - e.onset + 1, e.apex - e.onset) for e in plan.events
    }
    fields: dict[str, np.ndarray] = {}
    for k in range(plan.n_frames):
        number = k + 1
        theta = np.deg2rad(angle[k])
        cos, sin = np.cos(theta), np.sin(theta)
        # inverse head transform: y = R^-1 (x - c - t) + c
        dx, dy = gx - np.float32(centre[0] + shift[k, 0]), gy - np.float32(centre[1] + shift[k, 1])
        map_x = np.float32(cos) * dx + np.float32(sin) * dy + np.float32(centre[0])
        map_y = np.float32(-sin) * dx + np.float32(cos) * dy + np.float32(centre[1])
        active = [e for e in plan.events if e.onset < number < e.offset]
        for e in plan.events:  # fields live only while their event does
            if e.name in fields and number >= e.offset:
                del fields[e.name]
        if active:
            total = np.zeros((height, width, 2), dtype=np.float32)
            for e in active:
                if e.name not in fields:
                    if e.kind == "blink":
                        fields[e.name] = expression_field(
                            landmarks, "45", (height, width), e.amplitude * lid_px, sigma_iod=0.07
                        )
                    else:
                        fields[e.name] = expression_field(
                            landmarks, e.action_units, (height, width), e.amplitude
                        )
                total += np.float32(profiles[e.name][number - e.onset]) * fields[e.name]
            at_y = cv2.remap(total, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
            map_x = map_x - at_y[:, :, 0]
            map_y = map_y - at_y[:, :, 1]
        frame = cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
        yield add_sensor_noise(frame, NOISE_SIGMA, noise_rng)


# ---------------------------------------------------------------- writing


def write_long_corpus(
    out: str | Path,
    subjects: int = 2,
    videos_per_subject: int = 2,
    seed: int = 0,
    *,
    mp4: bool = False,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
    **video: object,
) -> LongSynthInfo:
    """Write a synthetic long-video corpus under ``out`` (layout in the module doc).

    ``video``: ``plan_long_video`` options (seconds, fps, micro, macro, blinks_per_minute,
    head_px, head_deg, size). A finished video folder is kept (a rerun resumes); with
    ``overwrite`` the frame folders are written again. ``progress``: called with
    ``(video_done, videos_total)`` after each video.
    """
    start = time.perf_counter()
    out = Path(out)
    plans = plan_long_corpus(subjects, videos_per_subject, seed, **video)
    frames_root = out / LONG_FRAMES_DIR
    if overwrite and frames_root.exists():
        shutil.rmtree(frames_root)
    identities: dict[int, Identity] = {}
    for done, plan in enumerate(plans, start=1):
        if plan.subject_index not in identities:
            identities[plan.subject_index] = subject_identity(seed, plan.subject_index, plan.size)
        folder = frames_root / plan.subject / plan.folder
        movie = out / LONG_VIDEOS_DIR / plan.subject / f"{plan.folder}.mp4" if mp4 else None
        if folder.is_dir() and _stamp(folder) != _plan_json(plan):
            raise DataError(
                "frames left by a run with other settings",
                file=folder,
                fix="choose an empty OUT folder or pass --overwrite",
            )
        if not folder.is_dir() or (movie is not None and not movie.is_file()):
            _write_video(plan, identities[plan.subject_index], folder, movie)
        if progress is not None:
            progress(done, len(plans))
    truth = ground_truth_table(plans)
    with atomic_path(out / LONG_TRUTH_NAME) as tmp:
        truth.to_csv(tmp, index=False)
    coding = write_long_coding_workbook(plans, out / LONG_CODING_NAME)
    return LongSynthInfo(
        out,
        coding,
        frames_root,
        truth,
        tuple(plans),
        time.perf_counter() - start,
        out / LONG_VIDEOS_DIR if mp4 else None,
    )


def _write_video(plan: LongVideoPlan, identity: Identity, folder: Path, movie: Path | None) -> None:
    partial = folder.with_name(f".{folder.name}.partial")
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    writer = None
    if movie is not None:
        movie.parent.mkdir(parents=True, exist_ok=True)
        tmp_movie = movie.with_name(f".{movie.stem}.partial.mp4")
        writer = cv2.VideoWriter(
            str(tmp_movie), cv2.VideoWriter_fourcc(*"mp4v"), plan.fps, plan.size
        )
        if not writer.isOpened():
            raise DataError(
                "cannot write mp4 video (no mp4v encoder)", file=movie, fix="drop --mp4"
            )
    try:
        for number, frame in enumerate(render_long_video(plan, identity), start=1):
            ok, data = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
            if not ok:
                raise DataError("JPEG encoding failed", file=partial / f"img{number}.jpg")
            (partial / f"img{number}.jpg").write_bytes(data.tobytes())
            if writer is not None:
                writer.write(frame)
    finally:
        if writer is not None:
            writer.release()
    if writer is not None:
        tmp_movie.replace(movie)
    (partial / STAMP_NAME).write_text(_plan_json(plan))
    if folder.exists():
        shutil.rmtree(folder)
    partial.rename(folder)


def _plan_json(plan: LongVideoPlan) -> str:
    return json.dumps(asdict(plan), sort_keys=True)


def _stamp(folder: Path) -> str | None:
    try:
        return (folder / STAMP_NAME).read_text()
    except OSError:
        return None


def ground_truth_table(plans: list[LongVideoPlan]) -> pd.DataFrame:
    """One row per event of every video (columns in the module doc)."""
    rows = []
    for plan in plans:
        for e in plan.events:
            rows.append(
                {
                    "subject_index": plan.subject_index,
                    "subject": plan.subject,
                    "video": plan.video,
                    "name": plan.name,
                    "folder": f"{LONG_FRAMES_DIR}/{plan.subject}/{plan.folder}",
                    "fps": plan.fps,
                    "n_frames": plan.n_frames,
                    "event": e.name,
                    "kind": e.kind,
                    "onset": e.onset,
                    "apex": e.apex,
                    "offset": e.offset,
                    "action_units": e.action_units,
                    "amplitude": e.amplitude,
                    "in_sheet": e.kind != "blink",
                    "head_px": round(plan.head_px, 3),
                    "head_deg": plan.head_deg,
                }
            )
    return pd.DataFrame(rows)


def write_long_coding_workbook(plans: list[LongVideoPlan], path: str | Path) -> Path:
    """The three-sheet CAS(ME)^2 workbook of ``plans`` (blinks are not coded)."""
    from openpyxl import Workbook

    book = Workbook()
    code = book.active
    code.title = "CASFEcode_final"
    code.append(["###"] * 9)  # no real header: a row of placeholders
    n = 1
    for plan in plans:
        objective, word, _, _ = EMOTIONS[plan.name.rstrip("0123456789")]
        for e in plan.events:
            if e.kind == "blink":
                continue
            n += 1
            au: int | str = int(e.action_units) if e.action_units.isdigit() else e.action_units
            code.append(
                [
                    plan.subject_index,
                    e.name,
                    e.onset,
                    e.apex,
                    e.offset,
                    au,
                    objective,
                    f"{e.kind}-expression",
                    word,
                    f"=(E{n}-C{n})/{plan.fps:g}",
                ]
            )
    for k in (n + 1, n + 2):  # trailing rows with only the dragged-down formula
        code.append([None] * 9 + [f"=(E{k}-C{k})/30"])
    rule1 = book.create_sheet("naming rule1")
    for plan in plans:
        for e in plan.events:
            if e.kind != "blink":
                rule1.append([plan.folder_number, plan.subject, plan.subject_index])
    rule2 = book.create_sheet("naming rule2")
    for video_code, name, _ in VIDEO_CODES:
        rule2.append([video_code, name])
    path = Path(path)
    with atomic_path(path) as tmp:
        book.save(tmp)
    return path
