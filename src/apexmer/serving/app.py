"""The web app: upload a clip, get the spotted apex, the aligned crop, the curve and the
class probabilities. ``create_app(predictor_or_checkpoint, limits) -> FastAPI``.

Routes: ``GET /`` (the page), ``POST /api/predict`` (multipart field ``file``: a video or a
zip of JPEG/PNG frames), ``GET /api/health``, ``GET /api/model``. Uploads are checked by
content (magic bytes), never by name or client content type; the body is counted while it
streams in and refused with 413 past ``max_upload_bytes``; zip entries are extracted flat
into a per-request temporary folder (absolute paths and ``..`` are refused, total size and
image dimensions are capped). The predictor runs in a small thread pool (one landmark
detector per thread: dlib's are not thread-safe), so the event loop stays responsive.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import shutil
import struct
import tempfile
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import cv2
import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from apexmer import __version__
from apexmer.data.frames import FolderFrames, FrameSource, VideoFrames
from apexmer.errors import ApexmerError
from apexmer.inference.predictor import (
    INPUT_ERRORS,
    ClipPrediction,
    Predictor,
    describe_input,
)
from apexmer.serving.long_video import add_long_video_routes
from apexmer.training.checkpoint import REQUIRED_KEYS

STATIC = Path(__file__).parent / "static"
VIDEO_SUFFIX = {"mp4": ".mp4", "avi": ".avi", "mkv": ".mkv"}
ACCEPTED = (
    "an MP4/MOV, AVI or MKV/WebM video, or a ZIP of JPEG/PNG frames "
    "(checked by content, not by file name)"
)
SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data:; "
        b"object-src 'none'; frame-ancestors 'none'; base-uri 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]


@dataclass(frozen=True)
class ServeLimits:
    """What one request may cost. Defaults suit short micro-expression clips."""

    max_upload_bytes: int = 50 * 2**20
    max_frames: int = 600
    max_duration_s: float = 30.0  # videos only
    max_unzipped_bytes: int = 300 * 2**20  # zip bombs
    max_frame_pixels: int = 1920 * 1088  # per frame (decoded size is what costs memory)
    # A video is decoded into memory (frames x pixels x 3 bytes): its budget per request.
    # Zip frames are read one at a time from disk and are bounded by max_unzipped_bytes.
    max_decoded_bytes: int = 2**30
    workers: int = 2  # clips processed at once
    max_pending: int = 16  # queued + running; beyond: 503
    preview_width: int = 480  # apex frame image in the response


class UploadError(Exception):
    """A request problem answered with ``status`` and ``{"detail": detail}``."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail


class _TooLarge(Exception):
    pass


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


def open_video(path: Path, limits: ServeLimits) -> FrameSource:
    """Decode a video after checking its duration and frame size from its header."""
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise UploadError(
                422,
                "the video cannot be opened (unknown codec or damaged "
                "file). Fix: convert it to MP4 (H.264) or zip the frames",
            )
        count = cap.get(cv2.CAP_PROP_FRAME_COUNT)
        fps = cap.get(cv2.CAP_PROP_FPS)
        pixels = cap.get(cv2.CAP_PROP_FRAME_WIDTH) * cap.get(cv2.CAP_PROP_FRAME_HEIGHT)
    finally:
        cap.release()
    if fps > 0 and count > 0 and count / fps > limits.max_duration_s:
        raise UploadError(
            422,
            f"the video lasts {count / fps:.1f} s; at most "
            f"{limits.max_duration_s:g} s are accepted. Fix: cut the clip",
        )
    if pixels > limits.max_frame_pixels:
        raise UploadError(
            422,
            f"video frames of {pixels:.0f} pixels; at most "
            f"{limits.max_frame_pixels} are accepted. Fix: downscale it",
        )
    budget = int(limits.max_decoded_bytes // max(3 * pixels, 1))
    if 0 < budget < limits.max_frames and count > budget:
        raise UploadError(
            422,
            f"the video would decode to more than {limits.max_decoded_bytes // 2**20} MiB "
            f"({count:.0f} frames of {pixels:.0f} pixels). Fix: cut or downscale the clip",
        )
    allowed = min(limits.max_frames, budget) if budget > 0 else limits.max_frames
    source = VideoFrames(path, max_frames=allowed + 1)  # the header's count can lie
    if len(source.numbers) > allowed:
        raise UploadError(
            422,
            f"the video has more than {allowed} frames (frame and memory caps). Fix: cut the clip",
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


# ---------------------------------------------------------------- response


def png_data_url(image_bgr: np.ndarray, max_width: int | None = None) -> str:
    """A ``data:image/png;base64,...`` URL of a BGR image, downscaled to ``max_width``."""
    if max_width and image_bgr.shape[1] > max_width:
        scale = max_width / image_bgr.shape[1]
        image_bgr = cv2.resize(image_bgr, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".png", image_bgr)
    if not ok:
        raise ApexmerError("PNG encoding failed")
    return "data:image/png;base64," + base64.b64encode(buf.tobytes()).decode("ascii")


def result_payload(
    r: ClipPrediction, classes: tuple[str, ...], kind: str, limits: ServeLimits
) -> dict[str, Any]:
    """The JSON answer of ``POST /api/predict``."""
    frame = r.apex_frame.copy()
    x, y, w, h = r.face_box
    thickness = max(1, frame.shape[1] // 240)
    cv2.rectangle(frame, (x, y), (x + w, y + h), (80, 200, 60), thickness)
    return {
        "input": r.input,
        "kind": "zip" if kind == "zip" else "video",
        "container": kind,
        "onset": r.onset,
        "apex": r.apex,
        "apex_index": r.apex_index,
        "offset": r.offset,
        "numbers": r.numbers,
        "curve": [None if np.isnan(v) else round(float(v), 6) for v in r.curve],
        "face_box": {"x": x, "y": y, "width": w, "height": h},
        "label": r.label,
        "confidence": r.confidence,
        "frame": r.frame,
        "network_input": r.network_input,
        "probabilities": [
            {"class": c, "p": float(p)} for c, p in zip(classes, r.probs, strict=True)
        ],
        "images": {
            "apex_frame": png_data_url(frame, limits.preview_width),
            "crop": png_data_url(r.crop),
        },
        "timings": {k: round(v, 4) for k, v in r.timings.items()},
    }


# What GET /api/model shows: what inference needs, plus versions and date (an allow-list).
PUBLIC_MODEL_KEYS = (*REQUIRED_KEYS, "coding_version", "package_version", "created")


def model_payload(meta: dict[str, Any]) -> dict[str, Any]:
    """``GET /api/model``: the checkpoint's metadata, training history summarised."""
    history = meta.get("history") or []
    # An allow-list: the checkpoint also holds the training manifest's path, the subject
    # ids and file-level problems, which a server must not hand out.
    out = {k: meta[k] for k in PUBLIC_MODEL_KEYS if k in meta}
    training = meta.get("training_data") or {}
    out["training_data"] = {k: training[k] for k in ("n_samples", "class_counts") if k in training}
    out["epochs_trained"] = len(history)
    out["final_epoch"] = history[-1] if history else None
    out["server_version"] = __version__
    out["network_input"] = describe_input(meta)
    return out


# ---------------------------------------------------------------- ASGI guard


async def _send_json(send: Callable[..., Awaitable[None]], status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
                *SECURITY_HEADERS,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodyGuard:
    """Refuse request bodies over ``max_bytes`` with 413, by Content-Length up front or by
    counting while they stream in; add security headers to every response."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        detail = f"upload larger than {self.max_bytes / 2**20:g} MiB; refused"
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await _send_json(send, 413, detail)
            return
        received, started = 0, False

        async def counted_receive() -> dict:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _TooLarge
            return message

        async def send_with_headers(message: dict) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message = {**message, "headers": [*message.get("headers", []), *SECURITY_HEADERS]}
            await send(message)

        try:
            await self.app(scope, counted_receive, send_with_headers)
        except _TooLarge:
            if started:
                raise
            await _send_json(send, 413, detail)


# ---------------------------------------------------------------- the app


def create_app(
    predictor_or_checkpoint: Predictor | str | Path, limits: ServeLimits | None = None
) -> FastAPI:
    """The FastAPI app around a Predictor (or a checkpoint path to load one from)."""
    limits = limits or ServeLimits()
    predictor = (
        predictor_or_checkpoint
        if isinstance(predictor_or_checkpoint, Predictor)
        else Predictor.from_checkpoint(predictor_or_checkpoint)
    )
    pool = ThreadPoolExecutor(max_workers=limits.workers, thread_name_prefix="apexmer-predict")
    state = {"pending": 0}

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        pool.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(
        title="apexmer",
        version=__version__,
        lifespan=lifespan,
        docs_url="/api/docs",
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    app.state.predictor, app.state.limits = predictor, limits
    app.add_middleware(BodyGuard, max_bytes=limits.max_upload_bytes)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.exception_handler(UploadError)
    async def _upload_error(_: Request, exc: UploadError) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status)

    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/api/health")
    async def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "version": __version__,
            "architecture": predictor.metadata["architecture"],
            "busy": state["pending"],
            "workers": limits.workers,
        }

    @app.get("/api/model")
    async def model() -> dict[str, Any]:
        return model_payload(predictor.metadata)

    @app.post("/api/predict")
    async def predict(request: Request) -> JSONResponse:
        """Multipart field ``file``: a video or a zip of frames."""
        if state["pending"] >= limits.max_pending:
            raise UploadError(503, "the server is busy; try again in a moment")
        state["pending"] += 1
        try:
            form = await request.form(max_files=1, max_fields=4)
            upload = form.get("file")
            if upload is None or isinstance(upload, str):
                raise UploadError(400, "no file: send the clip as multipart/form-data field 'file'")
            name = Path(upload.filename or "upload").name
            loop = asyncio.get_running_loop()
            payload = await loop.run_in_executor(
                pool, _predict_upload, predictor, upload.file, name, limits
            )
            return JSONResponse(payload)
        finally:
            state["pending"] -= 1

    add_long_video_routes(app, pool, state, open_upload, png_data_url)
    return app


def _predict_upload(
    predictor: Predictor, fileobj: Any, name: str, limits: ServeLimits
) -> dict[str, Any]:
    """Worker thread: save, check, open and predict one upload in a temporary folder."""
    with tempfile.TemporaryDirectory(prefix="apexmer-upload-") as tmp:
        workdir = Path(tmp)
        path = workdir / "upload.bin"
        fileobj.seek(0)
        with open(path, "wb") as out:
            shutil.copyfileobj(fileobj, out)
        try:
            kind, source = open_upload(path, workdir, limits)
            result = predictor.predict_clips(source, on_error="raise")[0]
        except UploadError:
            raise
        except INPUT_ERRORS as exc:
            # Name the upload, not the temporary folder, in the message.
            detail = str(exc)
            for inner in ("frames", "clip.mp4", "clip.avi", "clip.mkv"):
                detail = detail.replace(str(workdir / inner), name)
            raise UploadError(422, detail.replace(tmp, "")) from None
        result.input = name
        return result_payload(result, predictor.classes, kind, limits)
