"""The web app: upload a clip, get the spotted apex, the aligned crop, the curve and the
class probabilities. ``create_app(predictor_or_checkpoint, limits) -> FastAPI``.

Routes: ``GET /`` (the page), ``POST /api/predict`` (multipart field ``file``: a video or a
zip of JPEG/PNG frames), ``POST /api/spot`` (a long video: its expression intervals, see
``long_video``), ``GET /api/health``, ``GET /api/model``. Uploads are checked by content
(magic bytes), never by name or client content type; the body is counted while it streams
in and refused with 413 past ``max_upload_bytes`` (``limits.long``'s for ``/api/spot``); zip
entries are extracted flat into a per-request temporary folder (absolute paths and ``..``
are refused, total size and image dimensions are capped; see ``uploads``). A body that
stalls is answered 408 after ``body_idle_timeout_s`` without a byte (or ``body_timeout_s``
in all) and its connection closed; a request takes one of ``max_pending`` slots only once
its body is in, so stalled uploads never make a complete one wait or fail. Videos are
streamed, never decoded whole. The predictor runs in a small thread pool (one landmark
detector per thread: dlib's are not thread-safe), so the event loop stays responsive; long
videos run in a pool of their own (one worker), so a 10-minute recording never holds up
clips. Leaving the last slot hands freed heap back to the system (``release_heap``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.requests import ClientDisconnect

from apexmer import __version__
from apexmer.inference.predictor import ClipPrediction, Predictor, describe_input
from apexmer.preprocess.flow import flow_to_color, strain_to_image
from apexmer.serving.long_video import SPOT_PATH, add_long_video_routes
from apexmer.serving.uploads import (
    LongVideoLimits,
    ServeLimits,
    UploadError,
    image_dims,
    png_data_url,
    receive_form,
    release_heap,
    saved_upload,
    sniff_type,
    work_slot,
)
from apexmer.training.checkpoint import REQUIRED_KEYS

__all__ = [
    "LongVideoLimits",
    "ServeLimits",
    "UploadError",
    "create_app",
    "image_dims",
    "sniff_type",
]

STATIC = Path(__file__).parent / "static"
SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data:; "
        b"object-src 'none'; frame-ancestors 'none'; base-uri 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]


class _TooLarge(Exception):
    pass


class _BodyTimeout(Exception):
    pass


# ---------------------------------------------------------------- response


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
        "spotter": r.spotter,
        "flow_style": r.flow_style,
        "probabilities": [
            {"class": c, "p": float(p)} for c, p in zip(classes, r.probs, strict=True)
        ],
        "images": {
            "apex_frame": png_data_url(frame, limits.preview_width),
            "crop": png_data_url(r.crop),
            **flow_images(r.flow),
        },
        "timings": {k: round(v, 4) for k, v in r.timings.items()},
    }


FLOW_PREVIEW = 112  # px at least: a small flow is enlarged in whole blocks (nearest neighbour)


def flow_images(flow: np.ndarray | None) -> dict[str, str]:
    """``flow_png`` (colour wheel), ``strain_png`` and ``flow_wheel_png`` (the wheel's key)
    of a flow model's clip, ``ClipPrediction.flow`` ``(S, S, 4)`` u, v, strain, magnitude;
    nothing for other models."""
    if flow is None:
        return {}
    scale = max(1, -(-FLOW_PREVIEW // flow.shape[1]))  # ceil: 28 px -> 4x, 64 px -> 2x

    def enlarge(image: np.ndarray) -> np.ndarray:
        return cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)

    return {
        "flow_png": png_data_url(enlarge(flow_to_color(flow[..., :2]))),
        "strain_png": png_data_url(enlarge(strain_to_image(flow[..., 2]))),
        "flow_wheel_png": _wheel_url(),
    }


@functools.cache
def _wheel_url(size: int = 64) -> str:
    """The colour wheel itself: the colour of a unit motion towards each point (white
    outside the disk), so the page can say which colour is which direction."""
    axis = np.linspace(-1.0, 1.0, size, dtype=np.float32)
    u, v = np.meshgrid(axis, axis)  # v grows downwards, as in images
    wheel = flow_to_color(np.stack([u, v], axis=-1), max_magnitude=1.0)
    wheel[np.hypot(u, v) > 1.0] = 255
    return png_data_url(wheel)


# What GET /api/model shows: what inference needs, plus versions and date (an allow-list).
PUBLIC_MODEL_KEYS = (
    *REQUIRED_KEYS,
    "spotter",
    "coding_version",
    "package_version",
    "created",
)


def model_payload(meta: dict[str, Any]) -> dict[str, Any]:
    """``GET /api/model``: the checkpoint's metadata, training history summarised."""
    history = meta.get("history") or []
    # An allow-list: the checkpoint also holds the training manifest's path, the subject
    # ids and file-level problems, which a server must not hand out.
    out = {k: meta[k] for k in PUBLIC_MODEL_KEYS if k in meta}
    training = meta.get("training_data") or {}
    out["training_data"] = {k: training[k] for k in ("n_samples", "class_counts") if k in training}
    first = [h for h in history if h.get("member", 0) == 0]  # an ensemble: member 0's
    out["epochs_trained"] = len(first)
    out["final_epoch"] = first[-1] if first else None
    # Members averaged and the test-time flip (training/checkpoint.py; older: 1, none).
    out["ensemble"] = meta.get("ensemble", 1)
    out["tta"] = meta.get("tta", "none")
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
    """Guard request bodies and add security headers to every response.

    A body over ``max_upload_bytes`` is refused with 413, by Content-Length up front or by
    counting while it streams in. A body with no data for ``body_idle_timeout_s``, or not
    complete ``body_timeout_s`` after the request began, is answered 408 and the connection
    closed (a stalled upload would otherwise hold its socket and temporary file forever).
    ``/api/spot`` has the long-video caps (``ServeLimits.for_long_videos``).
    """

    def __init__(self, app: Any, limits: ServeLimits) -> None:
        self.app = app
        self.limits, self.long_limits = limits, limits.for_long_videos()

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limits = self.long_limits if scope.get("path") == SPOT_PATH else self.limits
        detail = f"upload larger than {limits.max_upload_bytes / 2**20:g} MiB; refused"
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limits.max_upload_bytes:
            await _send_json(send, 413, detail)
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limits.body_timeout_s
        received, started, complete = 0, False, False

        async def guarded_receive() -> dict:
            nonlocal received, complete
            if complete:  # after the body: disconnect notices, no timeout
                return await receive()
            wait = min(limits.body_idle_timeout_s, deadline - loop.time())
            if wait <= 0:
                raise _BodyTimeout
            try:
                message = await asyncio.wait_for(receive(), wait)
            except TimeoutError:
                raise _BodyTimeout from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limits.max_upload_bytes:
                    raise _TooLarge
                complete = not message.get("more_body", False)
            return message

        async def send_with_headers(message: dict) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message = {**message, "headers": [*message.get("headers", []), *SECURITY_HEADERS]}
            await send(message)

        try:
            await self.app(scope, guarded_receive, send_with_headers)
        except _TooLarge:
            if started:
                raise
            await _send_json(send, 413, detail)
        except ClientDisconnect:
            return  # the client left mid-body: nobody to answer
        except _BodyTimeout:
            if started:
                raise
            await _send_json(
                send,
                408,
                f"the upload stalled: no complete body within {limits.body_idle_timeout_s:g} s "
                f"of silence or {limits.body_timeout_s:g} s in all. Fix: send the file again",
            )


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
    # Long videos take minutes: their own worker, so clips never wait behind them.
    long_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="apexmer-spot")
    state = {"pending": 0, "receiving": 0}

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        pool.shutdown(wait=False, cancel_futures=True)
        long_pool.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(
        title="apexmer",
        version=__version__,
        lifespan=lifespan,
        docs_url="/api/docs",
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    app.state.predictor, app.state.limits = predictor, limits
    app.add_middleware(BodyGuard, limits=limits)
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
            "receiving": state["receiving"],
            "workers": limits.workers,
        }

    @app.get("/api/model")
    async def model() -> dict[str, Any]:
        return model_payload(predictor.metadata)

    @app.post("/api/predict")
    async def predict(request: Request) -> JSONResponse:
        """Multipart field ``file``: a video or a zip of frames."""
        form = await receive_form(request, state, limits)
        try:
            upload = form.get("file")
            if upload is None or isinstance(upload, str):
                raise UploadError(400, "no file: send the clip as multipart/form-data field 'file'")
            loop = asyncio.get_running_loop()
            # Leaving the last slot hands freed heap back, in the pool after this answer.
            with work_slot(state, limits, lambda: loop.run_in_executor(pool, release_heap)):
                name = Path(upload.filename or "upload").name
                payload = await loop.run_in_executor(
                    pool, _predict_upload, predictor, upload.file, name, limits
                )
            return JSONResponse(payload)
        finally:
            await form.close()

    add_long_video_routes(app, long_pool, state)
    return app


def _predict_upload(
    predictor: Predictor, fileobj: Any, name: str, limits: ServeLimits
) -> dict[str, Any]:
    """Worker thread: save, check, open and predict one upload in a temporary folder."""
    with saved_upload(fileobj, name, limits) as upload:
        result = predictor.predict_clips(upload.source, on_error="raise")[0]
    result.input = name
    return result_payload(result, predictor.classes, upload.kind, limits)
