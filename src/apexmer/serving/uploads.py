"""Upload checks of the web app: what a request may cost (ServeLimits), the file type by
content, zip extraction without zip-slip or zip bombs, and videos opened as streams within
a memory budget. Every refusal is an UploadError with its HTTP status.
"""

from __future__ import annotations

import contextlib
import struct
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import cv2

from apexmer.data.frames import VIDEO_CACHE_FRAMES, FolderFrames, FrameSource, VideoFrames
from apexmer.errors import FrameError
from apexmer.preprocess.spotting import CURVE_BLOCK_BYTES, ROIS

VIDEO_SUFFIX = {"mp4": ".mp4", "avi": ".avi", "mkv": ".mkv"}
ACCEPTED = (
    "an MP4/MOV, AVI or MKV/WebM video, or a ZIP of JPEG/PNG frames "
    "(checked by content, not by file name)"
)


@dataclass(frozen=True)
class ServeLimits:
    """What one request may cost. Defaults suit short micro-expression clips."""

    max_upload_bytes: int = 50 * 2**20
    max_frames: int = 600
    max_duration_s: float = 30.0  # videos only
    max_unzipped_bytes: int = 300 * 2**20  # zip bombs
    max_frame_pixels: int = 1920 * 1088  # per frame (decoded size is what costs memory)
    # Memory one video request may hold (request_memory: streamed frames, ROI crops of
    # every frame, the curve's blocks). Zip frames are read one at a time from disk.
    max_decoded_bytes: int = 2**30
    workers: int = 2  # clips processed at once
    max_pending: int = 16  # uploads received and queued or running; beyond: 503
    max_receiving: int = 64  # bodies being received at once; beyond: 503 (disk, sockets)
    # A body that sends nothing for body_idle_timeout_s, or is not complete after
    # body_timeout_s (50 MiB at >= 170 KiB/s), is answered 408 and its connection closed.
    body_idle_timeout_s: float = 30.0
    body_timeout_s: float = 300.0
    preview_width: int = 480  # apex frame image in the response


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


def request_memory(frames: int, width: int, height: int) -> int:
    """Upper bound in bytes of what predicting one streamed video holds: decoded frames
    (the stream's cache and HELD_FRAMES), the uint8 ROI crops of every frame (10 squares of
    half the eye distance, assumed at most half the frame width: (width / 4)^2 each) and the
    curve's float32 blocks (a few CURVE_BLOCK_BYTES)."""
    frame = width * height * 3
    crops = frames * len(ROIS) * (width // 4) ** 2
    return (VIDEO_CACHE_FRAMES + HELD_FRAMES) * frame + crops + 5 * CURVE_BLOCK_BYTES


def open_video(path: Path, limits: ServeLimits) -> FrameSource:
    """Open a video as a stream after checking its frame size, frame count, duration and
    the memory predicting it needs (frames counted by demuxing, not from the header)."""
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
    need = request_memory(count, width, height)
    if need > limits.max_decoded_bytes:
        raise UploadError(
            422,
            f"predicting the video would need more than "
            f"{limits.max_decoded_bytes // 2**20} MiB ({count} frames of {width}x{height}). "
            "Fix: cut or downscale the clip",
        )
    return source


def open_upload(path: Path, workdir: Path, limits: ServeLimits) -> tuple[str, FrameSource]:
    """Check an uploaded file by content and open it as a FrameSource."""
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
    return kind, open_video(video, limits)


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
def work_slot(state: dict[str, int], limits: ServeLimits) -> Iterator[None]:
    """One of ``max_pending`` slots for a received upload, queued or running; 503 beyond."""
    if state["pending"] >= limits.max_pending:
        raise UploadError(503, "the server is busy; try again in a moment")
    state["pending"] += 1
    try:
        yield
    finally:
        state["pending"] -= 1
