"""Short synthetic long videos for the interval spotter's tests and benchmarks.

A subject's neutral face (``apexmer.data.synth``) with expressions (action-unit warps rising
and falling along ``motion_profile``), blinks (the upper lids pulled down), a slow head
drift and sensor noise, written as an mp4 or a frame folder. Returns the coded intervals.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from apexmer.data.synth import add_sensor_noise, expression_field, motion_profile, subject_identity


@dataclass(frozen=True)
class Event:
    onset: int
    offset: int  # inclusive
    kind: str  # micro | macro | blink
    action_units: int | str = 12
    amplitude: float = 4.0  # px at the peak (negative: the opposite direction)

    @property
    def apex(self) -> int:
        return (self.onset + self.offset) // 2


def plan_events(
    n_frames: int,
    fps: float,
    rng: np.random.Generator,
    micro: int = 4,
    macro: int = 1,
    blinks: int = 2,
) -> list[Event]:
    """Non-overlapping events with a neutral gap of >= 0.5 s between them."""
    aus = (12, "1+2", 4, 9, 14, 17, 15, 10)
    kinds = ["micro"] * micro + ["macro"] * macro + ["blink"] * blinks
    rng.shuffle(kinds)
    lengths = {
        "micro": lambda: int(rng.integers(round(0.25 * fps), round(0.45 * fps) + 1)),
        "macro": lambda: int(rng.integers(round(0.9 * fps), round(1.8 * fps) + 1)),
        "blink": lambda: int(rng.integers(round(0.15 * fps), round(0.25 * fps) + 1)),
    }
    spans = [lengths[k]() for k in kinds]
    gap_total = n_frames - sum(spans) - round(1.0 * fps)
    if gap_total < len(kinds) * round(0.5 * fps):
        raise ValueError("video too short for these events")
    gaps = rng.dirichlet(np.ones(len(kinds) + 1)) * (gap_total - len(kinds) * round(0.5 * fps))
    events, t = [], round(0.5 * fps)
    for kind, span, gap in zip(kinds, spans, gaps[:-1], strict=True):
        t += round(0.5 * fps) + int(gap)
        if kind == "blink":
            events.append(Event(t, t + span - 1, kind, 5, -6.0))
        else:
            amp = rng.uniform(3.0, 5.0) if kind == "micro" else rng.uniform(5.0, 8.0)
            events.append(Event(t, t + span - 1, kind, aus[int(rng.integers(len(aus)))], amp))
        t += span
    return events


def render_long(
    events: list[Event],
    n_frames: int,
    seed: int = 0,
    size: tuple[int, int] = (640, 480),
    drift_px: float = 3.0,
    noise: float = 2.0,
):
    """Yield the frames (uint8 BGR) of a video with ``events``; a slow head drift of up to
    ``drift_px`` px (a slow sinusoid) moves the whole face."""
    rng = np.random.default_rng(seed)
    face = subject_identity(seed, 1, size)
    height, width = face.image.shape[:2]
    fields = [
        expression_field(face.landmarks, e.action_units, (height, width), e.amplitude)
        for e in events
    ]
    profiles = [motion_profile(e.offset - e.onset + 1, (e.offset - e.onset) // 2) for e in events]
    gx, gy = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    period = rng.uniform(6.0, 10.0) * 30
    for t in range(n_frames):
        sx = drift_px * np.sin(2 * np.pi * t / period)
        sy = 0.5 * drift_px * np.sin(2 * np.pi * t / (1.3 * period))
        map_x, map_y = gx - np.float32(sx), gy - np.float32(sy)
        for e, f, p in zip(events, fields, profiles, strict=True):
            if e.onset <= t <= e.offset and p[t - e.onset] > 0:
                map_x -= np.float32(p[t - e.onset]) * f[:, :, 0]
                map_y -= np.float32(p[t - e.onset]) * f[:, :, 1]
        frame = cv2.remap(
            face.image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101
        )
        yield add_sensor_noise(frame, noise, rng)


def write_long_video(
    path: Path, events: list[Event], n_frames: int, fps: float = 30.0, **kwargs
) -> Path:
    """Write an mp4 (``path`` ends in .mp4) or a folder of ``img<N>.jpg`` (1-based)."""
    path = Path(path)
    frames = render_long(events, n_frames, **kwargs)
    if path.suffix == ".mp4":
        size = kwargs.get("size", (640, 480))
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
        for frame in frames:
            writer.write(frame)
        writer.release()
    else:
        path.mkdir(parents=True, exist_ok=True)
        for i, frame in enumerate(frames):
            cv2.imwrite(str(path / f"img{i + 1}.jpg"), frame, [cv2.IMWRITE_JPEG_QUALITY, 95])
    return path
