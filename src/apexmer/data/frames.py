"""Frame sources: a folder of images or a video file, addressed by absolute frame number.

In a folder the frame number is the last integer in the file name (``img46.jpg``,
``reg_img46.jpg``, ``006_05562.jpg``, ``3659.png``), sorted numerically. In a video the
frame number is the 0-based frame index. Frames come back as 8-bit BGR ``(H, W, 3)``
arrays whatever the file held (grayscale and 16-bit images are converted).
"""

from __future__ import annotations

import os
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO, NoReturn, Protocol

import cv2
import numpy as np

from apexmer.data.arrays import non_finite
from apexmer.errors import ConfigError, FrameError

# The highest frame rate taken (frames per second): far above any camera used for
# micro-expressions (SAMM: 200, CASME II: 200) and low enough that frame counts and lags
# computed from it stay ordinary integers (``--fps 1e308`` would overflow them).
MAX_FPS = 10_000.0

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm", ".mpg", ".mpeg"}
_LAST_INT = re.compile(r"(\d+)(?!.*\d)")


def quiet_decoders() -> None:
    """Keep FFmpeg's and OpenCV's own log lines (``moov atom not found``, ``[WARN:0] ...``)
    off the terminal: apexmer reports an unreadable video in one line of its own. FFmpeg
    reads its level once, at the first capture opened, so call this before any (the CLI
    does, unless ``apexmer --verbose``); worker processes inherit it."""
    os.environ["OPENCV_FFMPEG_LOGLEVEL"] = "-8"  # AV_LOG_QUIET
    logging = getattr(getattr(cv2, "utils", None), "logging", None)
    if logging is not None:
        logging.setLogLevel(logging.LOG_LEVEL_SILENT)


def valid_fps(fps: object) -> bool:
    """Whether ``fps`` is a usable frame rate: a finite number in (0, MAX_FPS]."""
    try:
        value = float(fps)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return bool(np.isfinite(value)) and 0 < value <= MAX_FPS


def check_fps(fps: float | None, name: str = "fps") -> float | None:
    """``fps`` as a float, None when not given; ConfigError "not a valid frame rate"
    (naming the option or field ``name``) for 0, a negative, NaN, inf or > MAX_FPS.
    Different from a frame rate that is unknown (none given, none in the video)."""
    if fps is None:
        return None
    if not valid_fps(fps):
        example = f"{name} 30" if name.startswith("-") else f"{name}=30"
        raise ConfigError(
            f"{name} {fps!r} is not a valid frame rate. Fix: give the frames per second "
            f"as a number in (0, {MAX_FPS:g}], e.g. {example}"
        )
    return float(fps)


def _size(shape: tuple[int, ...]) -> str:
    """``WIDTHxHEIGHT`` of an image shape ``(H, W, ...)``."""
    return f"{shape[1]}x{shape[0]}"


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
        bad = non_finite(image)
        if bad is not None:  # NaN would become an arbitrary pixel value in the cast below
            raise FrameError(f"image has {bad}", file=source, fix="save the frame again")
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


_JPEG_START, _JPEG_SCAN, _JPEG_END = b"\xff\xd8", b"\xff\xda", b"\xff\xd9"
_PNG_START, _PNG_END = b"\x89PNG\r\n\x1a\n", b"IEND"
_TAIL = 64  # bytes: where a complete file's end marker lies (after any zero padding)


def cut_short(head: bytes, tail: bytes, whole: Callable[[], bytes]) -> str | None:
    """Why an image file looks cut short (an interrupted copy), or None.

    A JPEG must hold its end-of-image marker FFD9 after its last start-of-scan FFDA (some
    libjpeg builds decode a cut JPEG, grey-filled, without an error); a PNG its IEND chunk.
    ``head``/``tail`` are the file's first and last bytes; ``whole`` gives all of them and
    is called only when the tail alone does not show a proper end (trailing data).
    """
    if head.startswith(_JPEG_START):
        if tail.rstrip(b"\x00\r\n\t ").endswith(_JPEG_END):
            return None
        data = whole()
        if data.rfind(_JPEG_END) > data.rfind(_JPEG_SCAN) >= 0:
            return None
        return "JPEG is cut short or corrupt (no end-of-image marker FFD9 after its last scan)"
    if head.startswith(_PNG_START) and _PNG_END not in tail and _PNG_END not in whole():
        return "PNG is cut short or corrupt (no IEND chunk)"
    return None


# Magic bytes of the image formats OpenCV reads (IMAGE_SUFFIXES).
_MAGIC = (
    (_JPEG_START + b"\xff", "JPEG"),
    (_PNG_START, "PNG"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"RIFF", "WebP"),
    (b"P2", "PGM"),
    (b"P5", "PGM"),
    (b"P3", "PPM"),
    (b"P6", "PPM"),
)
# JPEG start-of-frame markers (SOF0..SOF15 but DHT C4, JPG C8, DAC CC): they hold the size.
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def image_header_issue(fh: BinaryIO, head: bytes) -> str | None:
    """Why an open file is not an image, from its magic bytes and header, or None.

    ``head`` is the file's first 32 bytes. An empty file, or one that starts like no image
    format (an HTML error page saved as ``img226.jpg``), is not an image; a JPEG's markers
    are walked (seeking, not reading, over their segments) up to its start-of-frame, a
    PNG's IHDR read, and a size of 0 reported. Other formats are judged by magic alone.
    """
    if not head:
        return "empty file (0 bytes), not an image"
    kind = next((k for magic, k in _MAGIC if head.startswith(magic)), None)
    if kind is None or (kind == "WebP" and head[8:12] != b"WEBP"):
        shown = head[:16].decode("ascii", "replace").replace("\ufffd", "?")
        return f"not an image file (it starts with {shown!r})"
    if kind == "PNG":
        if head[12:16] != b"IHDR" or len(head) < 24:
            return "PNG header is corrupt (no IHDR chunk first)"
        width, height = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
        return None if width and height else f"PNG header gives a size of {width}x{height}"
    if kind == "JPEG":
        return _jpeg_header_issue(fh)
    return None


def _jpeg_header_issue(fh: BinaryIO) -> str | None:
    fh.seek(2)
    while True:
        marker = fh.read(4)
        if len(marker) < 4 or marker[0] != 0xFF:
            return "JPEG header is corrupt (no start-of-frame marker before the data)"
        if marker[1] == 0xFF:  # fill byte before a marker
            fh.seek(-3, 1)
            continue
        length = int.from_bytes(marker[2:4], "big")
        if marker[1] in _SOF:
            size = fh.read(5)
            height, width = int.from_bytes(size[1:3], "big"), int.from_bytes(size[3:5], "big")
            if len(size) < 5 or not width or not height:
                return f"JPEG header gives a size of {width}x{height}"
            return None
        if marker[1] == 0xDA or length < 2:  # scan data before any frame header
            return "JPEG header is corrupt (no start-of-frame marker before the data)"
        fh.seek(length - 2, 1)


def image_file_issue(path: str | Path) -> FrameError | None:
    """FrameError when the file at ``path`` is not an image (magic bytes, header) or is cut
    short (its end); reads only its first bytes, the headers and its last bytes when it is
    fine, so it is cheap enough for every frame of a corpus (``bench/frame_check_cost.py``).
    """
    path = Path(path)
    with open(path, "rb") as fh:
        head = fh.read(32)
        why = image_header_issue(fh, head)
        if why is not None:
            fix = "replace it with the frame's image (download, copy or extract it again)"
            return FrameError(why, file=path, fix=fix)
        size = fh.seek(0, 2)
        fh.seek(max(0, size - _TAIL))
        why = cut_short(head[:8], fh.read(), path.read_bytes)
    if why is None:
        return None
    return FrameError(why, file=path, fix="copy or extract this frame again")


def read_image(path: str | Path) -> np.ndarray:
    """Read one image file as 8-bit BGR; a missing, cut short or corrupt file raises
    FrameError."""
    return to_bgr8(decode_image(path), path)


def decode_image(path: str | Path) -> np.ndarray:
    """One image file as stored (any channel count and bit depth, channels in OpenCV's
    B, G, R(, A) order); a missing, empty, cut short or corrupt file raises FrameError."""
    path = Path(path)
    if not path.is_file():
        raise FrameError("image file not found", file=path, fix="check the path")
    data = np.fromfile(str(path), dtype=np.uint8)
    if data.size == 0:
        raise FrameError("the file is empty (0 bytes)", file=path, fix="copy this file again")
    why = cut_short(data[:8].tobytes(), data[-_TAIL:].tobytes(), data.tobytes)
    if why is not None:
        raise FrameError(why, file=path, fix="copy or extract this frame again")
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None:
        raise FrameError(
            "image cannot be decoded (corrupt, truncated or not an image)",
            file=path,
            fix="re-extract or replace this frame",
        )
    return image


class FrameSource(Protocol):
    """Frames of one clip, addressed by frame number.

    ``numbers`` lists the frame numbers in order; ``read(number)`` returns one 8-bit BGR
    ``(H, W, 3)`` frame (FrameError for a number outside ``numbers``); ``fps`` is the frame
    rate when known (a video's header, or given), else None. ``iter_frames`` walks any
    source in one forward pass. ``close()`` releases what the source holds (a video's
    decoder; a no-op for folders and arrays), and every source is a context manager, so
    whoever opens one writes ``with open_frames(...) as src:``.
    """

    path: Path
    numbers: list[int]
    fps: float | None

    def read(self, number: int) -> np.ndarray: ...

    def close(self) -> None: ...

    def __enter__(self) -> FrameSource: ...

    def __exit__(self, *exc: object) -> None: ...


class FolderFrames:
    """Frames in a folder, one image per frame, read from disk on every ``read``. A frame
    whose size differs from the first one read raises FrameError naming both files (the
    spotter and the aligner compare frames pixel by pixel)."""

    def __init__(self, folder: str | Path, fps: float | None = None) -> None:
        self.path = Path(folder)
        self._files = dict(list_frames(self.path))
        self.numbers = sorted(self._files)
        self.fps = fps
        self._first: tuple[str, tuple[int, ...]] | None = None  # (file name, shape)

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
        path = self.file(number)
        image = read_image(path)
        if self._first is None:
            self._first = (path.name, image.shape)
        elif image.shape != self._first[1]:
            raise FrameError(
                f"frames differ in size: {path.name} is {_size(image.shape)}, "
                f"{self._first[0]} is {_size(self._first[1])}",
                file=self.path,
                fix="give every frame of a clip the same size (extract them again, or "
                "resize them all alike)",
            )
        return image

    def close(self) -> None:
        """Nothing to release: every ``read`` opens and closes its file."""

    def __enter__(self) -> FolderFrames:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# Frames a VideoFrames keeps decoded (the last ones read): enough for process_clip, which
# reads onset, mid and apex after its spotting pass, and for ``read`` of one frame twice.
VIDEO_CACHE_FRAMES = 4


class VideoFrames:
    """Frames of a video file, streamed; numbers are 0-based indices.

    Nothing but a few frames is ever held: ``read(n)`` decodes forward from the last frame
    read (so reading in increasing order, as ``iter_frames`` does, is one decoding pass),
    and a backward jump re-opens the file and skips forward with ``grab`` (exact on every
    codec, unlike seeking by CAP_PROP_POS_FRAMES). The last ``cache_frames`` decoded frames
    are kept, plus any frames ``pin``-ned. Memory is therefore independent of the video's
    length: about ``(cache_frames + pinned + 1) x H x W x 3`` bytes plus the decoder's own
    buffers.

    ``numbers`` comes from a demux-only pass at open (packets counted, nothing decoded:
    ~0.01 ms per 640x480 frame, about 1/100 of decoding): the header's frame count is not
    used because it is wrong for truncated AVI/MKV files (600 claimed, 301 decodable). A
    frame that was counted but cannot be decoded raises FrameError when read.
    ``max_frames`` keeps only the first ``max_frames`` frames. ``fps`` overrides the
    header's frame rate (None when the header has none).
    """

    def __init__(
        self,
        path: str | Path,
        max_frames: int | None = None,
        fps: float | None = None,
        cache_frames: int = VIDEO_CACHE_FRAMES,
    ) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FrameError("video file not found", file=self.path, fix="check the path")
        count, header_fps = _probe_video(self.path, max_frames)
        self.numbers = list(range(count))
        self.fps = fps if fps is not None else header_fps
        self.cache_frames = max(1, int(cache_frames))
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._pinned: dict[int, np.ndarray] = {}
        self._cap: cv2.VideoCapture | None = None
        self._next = 0  # index of the frame the open capture decodes next
        self._lock = threading.Lock()

    def read(self, number: int) -> np.ndarray:
        if not 0 <= number < len(self.numbers):
            raise FrameError(
                f"frame {number} outside the video's 0..{len(self.numbers) - 1}",
                file=self.path,
                fix="use a frame index inside the video",
            )
        with self._lock:
            if number in self._pinned:
                return self._pinned[number]
            if number in self._cache:
                self._cache.move_to_end(number)
                return self._cache[number]
            frame = self._decode(number)
            self._cache[number] = frame
            while len(self._cache) > self.cache_frames:
                self._cache.popitem(last=False)
            return frame

    def pin(self, numbers: Sequence[int]) -> None:
        """Keep these frames decoded until ``unpin`` (on top of the small cache)."""
        for n in sorted(set(numbers)):
            frame = self.read(n)
            with self._lock:
                self._pinned[n] = frame

    def unpin(self) -> None:
        with self._lock:
            self._pinned.clear()

    def close(self) -> None:
        """Release the decoder and every kept frame (reading again re-opens the file)."""
        with self._lock:
            if self._cap is not None:
                self._cap.release()
            self._cap, self._next = None, 0
            self._cache.clear()
            self._pinned.clear()

    def __enter__(self) -> VideoFrames:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def cached(self) -> list[int]:
        """Frame numbers held in memory now (cache and pinned), for tests and debugging."""
        with self._lock:
            return sorted({*self._cache, *self._pinned})

    def _decode(self, number: int) -> np.ndarray:
        if self._cap is None or number < self._next:
            if self._cap is not None:
                self._cap.release()
            self._cap, self._next = _open_capture(self.path), 0
        while self._next < number:  # skip forward without colour conversion
            if not self._cap.grab():
                self._damaged(self._next)
            self._next += 1
        ok, frame = self._cap.read()
        if not ok:
            self._damaged(number)
        self._next += 1
        return to_bgr8(frame, self.path)

    def _damaged(self, number: int) -> NoReturn:
        self._cap.release()
        self._cap, self._next = None, 0
        raise FrameError(
            f"frame {number} of {len(self.numbers)} cannot be decoded (damaged video)",
            file=self.path,
            fix="re-encode the video (e.g. ffmpeg -i in.mp4 out.mp4) or cut it before this frame",
        )


def _open_capture(path: Path) -> cv2.VideoCapture:
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        cap.release()
        raise FrameError(
            "video cannot be opened (unknown codec or not a video)",
            file=path,
            fix="convert it to mp4 (H.264) or a frame folder",
        )
    return cap


def _probe_video(path: Path, max_frames: int | None) -> tuple[int, float | None]:
    """``(frames, fps)``: frames counted by demuxing (no decoding), at most ``max_frames``;
    fps from the header (None when absent)."""
    cap = _open_capture(path)
    try:
        fps = cap.get(cv2.CAP_PROP_FPS)
        # CAP_PROP_FORMAT -1: grab() returns raw packets, undecoded (FFmpeg backend); where
        # a backend refuses it, grab() decodes: slower, same count.
        cap.set(cv2.CAP_PROP_FORMAT, -1)
        count = 0
        while (max_frames is None or count < max_frames) and cap.grab():
            count += 1
        if count:  # packets that demux but never decode (unsupported codec) count for nothing
            first = _open_capture(path)
            try:
                count = count if first.grab() else 0
            finally:
                first.release()
    finally:
        cap.release()
    if count == 0:
        raise FrameError(
            "video has no decodable frames",
            file=path,
            fix="check that the file is a complete video",
        )
    return count, (float(fps) if valid_fps(fps) else None)


class ArrayFrames:
    """Frames already in memory (a list of arrays); numbers are 0-based indices."""

    def __init__(
        self, frames: Sequence[np.ndarray], name: str = "<frames>", fps: float | None = None
    ) -> None:
        if len(frames) == 0:
            raise FrameError("no frames given", file=name, fix="pass at least one frame")
        self.path = Path(name)
        self._frames = [to_bgr8(np.asarray(f), name) for f in frames]
        for index, frame in enumerate(self._frames):
            if frame.shape != self._frames[0].shape:
                raise FrameError(
                    f"frames differ in size: frame {index} is {_size(frame.shape)}, frame 0 "
                    f"is {_size(self._frames[0].shape)}",
                    file=name,
                    fix="give every frame the same size",
                )
        self.numbers = list(range(len(self._frames)))
        self.fps = fps

    def read(self, number: int) -> np.ndarray:
        if not 0 <= number < len(self._frames):
            raise FrameError(
                f"frame {number} outside 0..{len(self._frames) - 1}",
                file=self.path,
                fix="use an index inside the list",
            )
        return self._frames[number]

    def close(self) -> None:
        """Nothing to release: the frames belong to the caller's list."""

    def __enter__(self) -> ArrayFrames:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_frames(
    source: str | Path | Sequence[np.ndarray],
    max_frames: int | None = None,
    fps: float | None = None,
) -> FrameSource:
    """A FrameSource for a frame folder, a video file (streamed), or a list of arrays.
    ``fps`` sets the frame rate (a video's header gives it otherwise); ``max_frames``
    keeps a video's first frames only."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        if path.is_dir():
            return FolderFrames(path, fps=fps)
        if path.suffix.lower() in VIDEO_SUFFIXES or path.is_file():
            return VideoFrames(path, max_frames=max_frames, fps=fps)
        raise FrameError(
            "no such frame folder or video",
            file=path,
            fix="pass a folder of frames or a video file (mp4/avi)",
        )
    return ArrayFrames(list(source), fps=fps)


def iter_frames(src: FrameSource, numbers: Sequence[int]) -> Iterator[tuple[int, np.ndarray]]:
    """``(number, frame)`` for ``numbers`` in the order given. On a VideoFrames, increasing
    numbers decode in one forward pass holding O(1) frames (its small cache), so a whole
    long video can be walked with ``iter_frames(src, src.numbers)`` in bounded memory."""
    for n in numbers:
        yield n, src.read(n)
