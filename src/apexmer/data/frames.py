"""Frame sources: a folder of images or a video file, addressed by absolute frame number.

In a folder the frame number is the last integer in the file name (``img46.jpg``,
``reg_img46.jpg``, ``006_05562.jpg``, ``3659.png``), sorted numerically. In a video the
frame number is the 0-based frame index. Frames come back as 8-bit BGR ``(H, W, 3)``
arrays whatever the file held (grayscale and 16-bit images are converted).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from apexmer.errors import FrameError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm", ".mpg", ".mpeg"}
_LAST_INT = re.compile(r"(\d+)(?!.*\d)")


def frame_number(name: str) -> int | None:
    """The last integer in a file name's stem, or None when it has none."""
    m = _LAST_INT.search(Path(name).stem)
    return int(m.group(1)) if m else None


def list_frames(folder: str | Path) -> list[tuple[int, Path]]:
    """``(number, path)`` of every image in ``folder``, sorted by frame number.

    Raises FrameError for a missing or empty folder, or two files with one number.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FrameError(
            "frame folder not found", file=folder, fix="check --root and the clip's folder name"
        )
    frames: dict[int, Path] = {}
    for path in folder.iterdir():
        if path.suffix.lower() not in IMAGE_SUFFIXES or path.name.startswith("."):
            continue
        number = frame_number(path.name)
        if number is None:
            continue
        if number in frames:
            raise FrameError(
                f"two frames share number {number}: {frames[number].name}, {path.name}",
                file=folder,
                fix="keep one image per frame number in the folder",
            )
        frames[number] = path
    if not frames:
        raise FrameError(
            "no numbered images in the frame folder",
            file=folder,
            fix="the folder should hold one image per frame, e.g. img46.jpg",
        )
    return sorted(frames.items())


def clip_location(folder: str | Path) -> Path:
    """Where a clip named by a coding sheet lives: the frame folder ``folder`` if it
    exists, else a video ``folder.<ext>`` beside it (``EP02_01f.mp4``), else ``folder``
    (whose absence is then reported by the frame checks)."""
    folder = Path(folder)
    if folder.is_dir():
        return folder
    for suffix in sorted(VIDEO_SUFFIXES):
        video = folder.with_name(folder.name + suffix)
        if video.is_file():
            return video
    return folder


def to_bgr8(image: np.ndarray, source: str | Path = "<array>") -> np.ndarray:
    """Convert gray, BGRA and 16-bit images to 8-bit BGR ``(H, W, 3)``."""
    if image is None or image.size == 0:
        raise FrameError("empty image", file=source, fix="replace the corrupt frame")
    if image.dtype == np.uint16:
        image = (image.astype(np.float32) / 257.0).round().astype(np.uint8)
    elif image.dtype in (np.float32, np.float64):
        peak = 1.0 if float(np.nanmax(image)) <= 1.0 else 255.0
        image = np.clip(image * (255.0 / peak), 0, 255).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise FrameError(
            f"unsupported pixel type {image.dtype}",
            file=source,
            fix="save frames as 8- or 16-bit images",
        )
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.ndim == 3 and image.shape[2] == 1:
        return cv2.cvtColor(image[:, :, 0], cv2.COLOR_GRAY2BGR)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if image.ndim == 3 and image.shape[2] == 3:
        return np.ascontiguousarray(image)
    raise FrameError(
        f"unsupported image shape {image.shape}", file=source, fix="use gray, BGR or BGRA images"
    )


def read_image(path: str | Path) -> np.ndarray:
    """Read one image file as 8-bit BGR; a missing or corrupt file raises FrameError."""
    path = Path(path)
    if not path.is_file():
        raise FrameError("image file not found", file=path, fix="check the path")
    data = np.fromfile(str(path), dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None:
        raise FrameError(
            "image cannot be decoded (corrupt, truncated or not an image)",
            file=path,
            fix="re-extract or replace this frame",
        )
    return to_bgr8(image, path)


class FrameSource(Protocol):
    """Frames of one clip, addressed by frame number."""

    path: Path
    numbers: list[int]

    def read(self, number: int) -> np.ndarray: ...


class FolderFrames:
    """Frames in a folder, one image per frame."""

    def __init__(self, folder: str | Path) -> None:
        self.path = Path(folder)
        self._files = dict(list_frames(self.path))
        self.numbers = sorted(self._files)

    def file(self, number: int) -> Path:
        try:
            return self._files[number]
        except KeyError:
            raise FrameError(
                f"frame {number} not in folder (it holds {self.numbers[0]}..{self.numbers[-1]})",
                file=self.path,
                fix="check onset/apex/offset against the frame file names",
            ) from None

    def read(self, number: int) -> np.ndarray:
        return read_image(self.file(number))


class VideoFrames:
    """Frames of a video file; numbers are 0-based indices. The clip is decoded once,
    sequentially, into memory (seeking is unreliable across codecs; micro-expression clips
    are short, and ``max_frames`` caps what is kept)."""

    def __init__(self, path: str | Path, max_frames: int | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FrameError("video file not found", file=self.path, fix="check the path")
        self._frames = _decode_video(self.path, max_frames)
        self.numbers = list(range(len(self._frames)))

    def read(self, number: int) -> np.ndarray:
        if not 0 <= number < len(self._frames):
            raise FrameError(
                f"frame {number} outside the video's 0..{len(self._frames) - 1}",
                file=self.path,
                fix="use a frame index inside the video",
            )
        return self._frames[number]


def _decode_video(path: Path, max_frames: int | None) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise FrameError(
                "video cannot be opened (unknown codec or not a video)",
                file=path,
                fix="convert it to mp4 (H.264) or a frame folder",
            )
        frames: list[np.ndarray] = []
        while max_frames is None or len(frames) < max_frames:
            ok, frame = cap.read()
            if not ok:
                break
            frames.append(to_bgr8(frame, path))
    finally:
        cap.release()
    if not frames:
        raise FrameError(
            "video has no decodable frames",
            file=path,
            fix="check that the file is a complete video",
        )
    return frames


class ArrayFrames:
    """Frames already in memory (a list of arrays); numbers are 0-based indices."""

    def __init__(self, frames: Sequence[np.ndarray], name: str = "<frames>") -> None:
        if len(frames) == 0:
            raise FrameError("no frames given", file=name, fix="pass at least one frame")
        self.path = Path(name)
        self._frames = [to_bgr8(np.asarray(f), name) for f in frames]
        self.numbers = list(range(len(self._frames)))

    def read(self, number: int) -> np.ndarray:
        if not 0 <= number < len(self._frames):
            raise FrameError(
                f"frame {number} outside 0..{len(self._frames) - 1}",
                file=self.path,
                fix="use an index inside the list",
            )
        return self._frames[number]


def open_frames(
    source: str | Path | Sequence[np.ndarray], max_frames: int | None = None
) -> FrameSource:
    """A FrameSource for a frame folder, a video file, or a list of arrays."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        if path.is_dir():
            return FolderFrames(path)
        if path.suffix.lower() in VIDEO_SUFFIXES or path.is_file():
            return VideoFrames(path, max_frames=max_frames)
        raise FrameError(
            "no such frame folder or video",
            file=path,
            fix="pass a folder of frames or a video file (mp4/avi)",
        )
    return ArrayFrames(list(source))


def iter_frames(src: FrameSource, numbers: Sequence[int]) -> Iterator[tuple[int, np.ndarray]]:
    for n in numbers:
        yield n, src.read(n)
