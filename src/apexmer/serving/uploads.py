"""Upload checks of the web app: what a request may cost (ServeLimits, LongVideoLimits),
the file type by content, zip extraction without zip-slip or zip bombs, videos opened as
streams within a memory budget, and the worker step both routes share (``saved_upload``:
save, check, open, close, errors as 422 without temporary paths). Every refusal is an
UploadError with its HTTP status.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import ctypes.util
import dataclasses
import math
import shutil
import struct
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import cv2
import numpy as np

from apexmer.data.frames import VIDEO_CACHE_FRAMES, FolderFrames, FrameSource, VideoFrames
from apexmer.errors import ApexmerError, FrameError
from apexmer.face.rois import ROIS
from apexmer.inference.predictor import INPUT_ERRORS
from apexmer.spotting.apex import CURVE_BLOCK_BYTES, stream_frames

VIDEO_SUFFIX = {"mp4": ".mp4", "avi": ".avi", "mkv": ".mkv"}
ACCEPTED = (
    "an MP4/MOV, AVI or MKV/WebM video, or a ZIP of JPEG/PNG frames "
    "(checked by content, not by file name)"
)


@dataclass(frozen=True)
class LongVideoLimits:
    """What one ``POST /api/spot`` request may cost, where it differs from a clip's. The
    memory budget (``max_decoded_bytes``) and the slots are the clips' (``ServeLimits``):
    the interval spotter keeps a few frames and ~100 B of motion per frame, and holds ROI
    crops only for the interval it classifies."""

    max_duration_s: float = 600.0  # a 10-minute interview
    max_frames: int = 18_000  # 10 minutes at 30 fps
    max_upload_bytes: int = 1 * 2**30  # a 10-minute 640x480 H.264 is ~50-200 MB
    max_unzipped_bytes: int = 2 * 2**30  # 18,000 JPEG frames of ~100 kB
    body_timeout_s: float = 1800.0  # 1 GiB at >= 600 KiB/s


@dataclass(frozen=True)
class ServeLimits:
    """What one request may cost. Defaults suit short micro-expression clips."""

    max_upload_bytes: int = 50 * 2**20
    max_frames: int = 600
    max_duration_s: float = 30.0  # videos only
    max_unzipped_bytes: int = 300 * 2**20  # zip bombs
    max_frame_pixels: int = 1920 * 1088  # per frame (decoded size is what costs memory)
    # Memory one video request may hold (request_memory: streamed frames, the spotter's
    # window of ROI crops, the curve's blocks). Zip frames are read one at a time from disk.
    max_decoded_bytes: int = 2**30
    workers: int = 2  # clips processed at once
    max_pending: int = 16  # uploads received and queued or running; beyond: 503
    max_receiving: int = 64  # bodies being received at once; beyond: 503 (disk, sockets)
    # A body that sends nothing for body_idle_timeout_s, or is not complete after
    # body_timeout_s (50 MiB at >= 170 KiB/s), is answered 408 and its connection closed.
    body_idle_timeout_s: float = 30.0
    body_timeout_s: float = 300.0
    preview_width: int = 480  # apex frame image in the response
    long: LongVideoLimits = field(default_factory=LongVideoLimits)  # POST /api/spot

    def for_long_videos(self) -> ServeLimits:
        """These limits with the long-video caps of ``long`` in place of the clip caps."""
        return dataclasses.replace(
            self,
            max_duration_s=self.long.max_duration_s,
            max_frames=self.long.max_frames,
            max_upload_bytes=self.long.max_upload_bytes,
            max_unzipped_bytes=self.long.max_unzipped_bytes,
            body_timeout_s=self.long.body_timeout_s,
        )


class UploadError(Exception):
    """A request problem answered with ``status`` and ``{"detail": detail}``."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail


# ---------------------------------------------------------------- checking uploads


def sniff_type(head: bytes) -> str | None:
    """``zip``, ``mp4`` (also MOV/M4V), ``avi``, ``mkv`` (also WebM) or None, from the
    first bytes of a file."""
    if head[:4] == b"PK\x03\x04":
        return "zip"
    if head[4:8] == b"ftyp":
        return "mp4"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "avi"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "mkv"
    return None


def image_dims(head: bytes) -> tuple[str, int, int] | None:
    """``(kind, width, height)`` of a PNG or JPEG from its first bytes, else None."""
    if head[:8] == b"\x89PNG\r\n\x1a\n" and len(head) >= 24:
        width, height = struct.unpack(">II", head[16:24])
        return "png", width, height
    if head[:2] != b"\xff\xd8":
        return None
    i = 2
    while i + 9 < len(head):  # walk JPEG markers to the frame header
        if head[i] != 0xFF:
            return None
        marker = head[i + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        length = struct.unpack(">H", head[i + 2 : i + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", head[i + 5 : i + 9])
            return "jpeg", width, height
        i += 2 + length
    return None


def _safe_member(name: str) -> str:
    """The file name to extract a zip entry to; UploadError for zip-slip names."""
    posix = name.replace("\\", "/")
    parts = PurePosixPath(posix).parts
    if posix.startswith("/") or (parts and parts[0].endswith(":")) or ".." in parts:
        raise UploadError(
            400,
            f"zip entry {name!r} points outside the archive (absolute path "
            "or '..'); refused. Fix: zip the frames with relative names",
        )
    if not parts or parts[-1] in ("", "."):
        raise UploadError(
            400,
            f"zip entry {name!r} has no file name; refused. Fix: zip the "
            "frame files themselves (e.g. img46.jpg)",
        )
    return parts[-1]


def extract_frames(archive: Path, dest: Path, limits: ServeLimits) -> Path:
    """Extract the JPEG/PNG frames of a zip flat into ``dest``; return ``dest``."""
    try:
        zf = zipfile.ZipFile(archive)
    except zipfile.BadZipFile as exc:
        raise UploadError(400, f"not a readable zip file ({exc})") from None
    with zf:
        members = []
        for info in zf.infolist():
            if info.filename.endswith("/"):  # folders are never written; files checked below
                continue
            name = _safe_member(info.filename)  # every file entry, frames or not
            if name.startswith(".") or "__MACOSX" in info.filename:
                continue
            members.append((info, name))
        if not members:
            raise UploadError(400, "the zip holds no files. Fix: zip the frame images")
        if len(members) > limits.max_frames:
            raise UploadError(
                422,
                f"the zip holds {len(members)} files; at most "
                f"{limits.max_frames} frames are accepted",
            )
        if sum(i.file_size for i, _ in members) > limits.max_unzipped_bytes:
            raise UploadError(
                413, f"the zip unpacks to more than {limits.max_unzipped_bytes // 2**20} MiB"
            )
        dest.mkdir(parents=True, exist_ok=True)
        total, seen = 0, set()
        for info, name in members:
            if name in seen:
                raise UploadError(
                    400,
                    f"two zip entries are named {name!r}. Fix: one folder of uniquely named frames",
                )
            seen.add(name)
            target = dest / name
            try:
                with zf.open(info) as src, open(target, "wb") as out:
                    # Count real bytes: a zip bomb can lie about file_size.
                    while chunk := src.read(2**20):
                        total += len(chunk)
                        if total > limits.max_unzipped_bytes:
                            raise UploadError(
                                413,
                                "the zip unpacks to more than "
                                f"{limits.max_unzipped_bytes // 2**20} MiB",
                            )
                        out.write(chunk)
            except (zipfile.BadZipFile, RuntimeError, NotImplementedError, EOFError) as exc:
                raise UploadError(
                    400, f"zip entry {info.filename!r} cannot be read ({exc})"
                ) from None
            with open(target, "rb") as fh:
                dims = image_dims(fh.read(65536))
            if dims is None:
                raise UploadError(
                    415,
                    f"zip entry {info.filename!r} is not a JPEG or PNG "
                    "image. Fix: the zip must hold only the frames",
                )
            if dims[1] * dims[2] > limits.max_frame_pixels:
                raise UploadError(
                    422,
                    f"zip entry {info.filename!r} is {dims[1]}x{dims[2]}; "
                    f"frames up to {limits.max_frame_pixels} pixels are "
                    "accepted",
                )
    return dest


# Decoded frames a video request holds at once besides the stream's cache: the onset frame
# kept by spotting, onset/mid/apex in process_clip, the annotated preview, a grey copy.
HELD_FRAMES = 6


# The largest spotting lag (SpotConfig.lag, paper: 3) the crop window is counted for.
SPOT_LAG_BOUND = 30


# Per-frame data kept for a whole video besides crops: the spotting curve, frame numbers,
# the interval spotter's ROI motion (~100 B); an upper bound.
PER_FRAME_BYTES = 1024


def request_memory(frames: int, width: int, height: int, crop_frames: int | None = None) -> int:
    """Upper bound in bytes of what predicting one streamed video of ``frames`` frames
    holds: decoded frames (the stream's cache and HELD_FRAMES), the uint8 ROI crops of the
    streaming apex spotter's window (``stream_frames`` at lag SPOT_LAG_BOUND, whatever the
    video's length) or of ``crop_frames`` frames when fewer (10 squares of half the eye
    distance, assumed at most half the frame width: (width / 4)^2 each), the curve's
    float32 blocks (a few CURVE_BLOCK_BYTES) and PER_FRAME_BYTES a frame."""
    frame = width * height * 3
    crop_pixels = len(ROIS) * max(1, width // 4) ** 2
    window = stream_frames(crop_pixels, SPOT_LAG_BOUND)
    held = min(frames, window, crop_frames or window)
    crops = held * crop_pixels
    fixed = (VIDEO_CACHE_FRAMES + HELD_FRAMES) * frame + 5 * CURVE_BLOCK_BYTES
    return fixed + crops + frames * PER_FRAME_BYTES


def open_video(
    path: Path, limits: ServeLimits, crop_s: float | None = None, fps: float | None = None
) -> FrameSource:
    """Open a video as a stream after checking its frame size, frame count, duration and
    the memory predicting it needs (frames counted by demuxing, not from the header).
    ``crop_s``: the longest stretch, in seconds, whose ROI crops the request holds at once
    (None: the whole video), at ``fps`` (default: the video's)."""
    cap = cv2.VideoCapture(str(path))
    try:
        opened = cap.isOpened()
        width = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    finally:
        cap.release()
    unreadable = UploadError(
        422,
        "the video cannot be opened (unknown codec or damaged "
        "file). Fix: convert it to MP4 (H.264) or zip the frames",
    )
    if not opened:
        raise unreadable
    if width * height > limits.max_frame_pixels:
        raise UploadError(
            422,
            f"video frames of {width * height} pixels; at most "
            f"{limits.max_frame_pixels} are accepted. Fix: downscale it",
        )
    try:
        source = VideoFrames(path, max_frames=limits.max_frames + 1)
    except FrameError:
        raise unreadable from None
    count = len(source.numbers)
    if count > limits.max_frames:
        raise UploadError(
            422,
            f"the video has more than {limits.max_frames} frames. Fix: cut the clip",
        )
    if source.fps and count / source.fps > limits.max_duration_s:
        raise UploadError(
            422,
            f"the video lasts {count / source.fps:.1f} s; at most "
            f"{limits.max_duration_s:g} s are accepted. Fix: cut the clip",
        )
    rate = fps or source.fps
    crop_frames = None if crop_s is None or not rate else math.ceil(crop_s * rate) + 1
    need = request_memory(count, width, height, crop_frames)
    if need > limits.max_decoded_bytes:
        raise UploadError(
            422,
            f"predicting the video would need more than "
            f"{limits.max_decoded_bytes // 2**20} MiB ({count} frames of {width}x{height}). "
            "Fix: cut or downscale the clip",
        )
    return source


def open_upload(
    path: Path,
    workdir: Path,
    limits: ServeLimits,
    crop_s: float | None = None,
    fps: float | None = None,
) -> tuple[str, FrameSource]:
    """Check an uploaded file by content and open it as a FrameSource (``crop_s``, ``fps``:
    see ``open_video``)."""
    with open(path, "rb") as fh:
        head = fh.read(16)
    if not head:
        raise UploadError(400, "the uploaded file is empty")
    kind = sniff_type(head)
    if kind is None:
        raise UploadError(415, f"unsupported file type; upload {ACCEPTED}")
    if kind == "zip":
        return kind, FolderFrames(extract_frames(path, workdir / "frames", limits))
    video = path.rename(workdir / f"clip{VIDEO_SUFFIX[kind]}")
    return kind, open_video(video, limits, crop_s, fps)


@dataclass(frozen=True)
class Upload:
    """An upload saved and opened in its temporary ``workdir``, under the client's ``name``."""

    kind: str  # zip, mp4, avi or mkv
    source: FrameSource
    workdir: Path
    name: str

    def scrub(self, text: str) -> str:
        """``text`` naming the upload instead of the server's temporary paths."""
        text = text.replace(str(self.source.path), self.name)
        return text.replace(str(self.workdir), self.name)


@contextlib.contextmanager
def saved_upload(
    fileobj: Any,
    name: str,
    limits: ServeLimits,
    crop_s: float | None = None,
    fps: float | None = None,
) -> Iterator[Upload]:
    """Worker step of both routes: save the received ``fileobj`` in a temporary folder,
    check and open it (``open_upload``), close the source and remove the folder on the way
    out. An input error raised inside (INPUT_ERRORS: no face, unreadable frame) becomes an
    UploadError 422 naming the upload, not the folder."""
    with tempfile.TemporaryDirectory(prefix="apexmer-upload-") as tmp:
        workdir = Path(tmp)
        path = workdir / "upload.bin"
        fileobj.seek(0)
        with open(path, "wb") as out:
            shutil.copyfileobj(fileobj, out)
        try:
            kind, source = open_upload(path, workdir, limits, crop_s, fps)
        except INPUT_ERRORS as exc:
            raise UploadError(422, str(exc).replace(tmp, name)) from None
        upload = Upload(kind, source, workdir, name)
        try:
            yield upload
        except INPUT_ERRORS as exc:
            raise UploadError(422, upload.scrub(str(exc))) from None
        finally:
            close = getattr(source, "close", None)  # the video's decoder and cached frames
            if close is not None:
                close()


def png_data_url(image_bgr: np.ndarray, max_width: int | None = None) -> str:
    """A ``data:image/png;base64,...`` URL of a BGR image, downscaled to ``max_width``."""
    if max_width and image_bgr.shape[1] > max_width:
        scale = max_width / image_bgr.shape[1]
        image_bgr = cv2.resize(image_bgr, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".png", image_bgr)
    if not ok:
        raise ApexmerError("PNG encoding failed")
    return "data:image/png;base64," + base64.b64encode(buf.tobytes()).decode("ascii")


async def receive_form(request: Any, state: dict[str, int], limits: ServeLimits) -> Any:
    """The multipart form of an upload request. While its body arrives the request counts
    as ``receiving`` (capped by ``max_receiving``), not as pending work: a stalled body
    times out (BodyGuard) without holding a slot that complete uploads need."""
    if state["receiving"] >= limits.max_receiving:
        raise UploadError(503, "too many uploads at once; try again in a moment")
    state["receiving"] += 1
    try:
        return await request.form(max_files=1, max_fields=4)
    finally:
        state["receiving"] -= 1


@contextlib.contextmanager
def work_slot(
    state: dict[str, int], limits: ServeLimits, on_idle: Callable[[], Any] | None = None
) -> Iterator[None]:
    """One of ``max_pending`` slots for a received upload, queued or running; 503 beyond.
    ``on_idle`` runs on leaving the last slot (no request left), e.g. to schedule
    ``release_heap``."""
    if state["pending"] >= limits.max_pending:
        raise UploadError(503, "the server is busy; try again in a moment")
    state["pending"] += 1
    try:
        yield
    finally:
        state["pending"] -= 1
        if state["pending"] == 0 and on_idle is not None:
            on_idle()


def _libc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to trim
        return None


_MALLOC_TRIM = _libc_trim()


def release_heap() -> None:
    """Give freed heap back to the system when no request is left (glibc only): glibc
    keeps freed frames and buffers mapped (measured: up to ~200 MB after a 1080p upload)."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)
