"""The web app's long-video route: upload a recording, get its expression intervals.

``POST /api/spot`` (multipart field ``file``, optional field ``fps`` for a zip of frames)
spots the intervals (``inference.long_video.recognise_intervals``), classifies each
micro-expression and answers the spotting curve, one entry per interval (frames, seconds,
type, score, class, probabilities, the aligned crop) for the page's timeline
(``static/timeline.js``). Uploads go through the same checks as ``/api/predict``, with
the duration and frame caps of ``LongVideoLimits``: ``create_app`` hands its upload opener
and PNG encoder to ``add_long_video_routes`` (this module is imported by the app module,
so it cannot import them from there).
"""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse

from apexmer.inference.long_video import LongVideoResult, recognise_intervals
from apexmer.inference.predictor import INPUT_ERRORS, Predictor
from apexmer.serving.uploads import open_upload, receive_form, work_slot

# (upload path, work folder, limits) -> (kind, frames), raising the app's UploadError
EncodePng = Callable[[np.ndarray], str]  # BGR image -> data: URL


@dataclass(frozen=True)
class LongVideoLimits:
    """What one long-video request may cost beyond the clip limits (``ServeLimits``)."""

    max_duration_s: float = 600.0  # a 10-minute interview
    max_frames: int = 18_000  # 10 minutes at 30 fps


def _as_float(value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        fps = float(value)
    except (TypeError, ValueError):
        raise HTTPException(400, f"fps {value!r} is not a number. Fix: e.g. fps=30") from None
    if not fps > 0:
        raise HTTPException(400, f"fps {value!r} must be positive. Fix: e.g. fps=30")
    return fps


def long_video_payload(result: LongVideoResult, name: str, encode_png: EncodePng) -> dict[str, Any]:
    """The JSON answer of ``POST /api/spot``."""
    spot = result.spot
    table = result.table()
    intervals = []
    for row, pred in zip(table.to_dict(orient="records"), result.predictions, strict=True):
        ok = pred is not None and pred.ok
        intervals.append(
            {
                "index": int(row["interval"]),
                "type": row["type"],
                **{k: int(row[k]) for k in ("onset", "apex", "offset")},
                **{k: float(row[k]) for k in ("onset_s", "apex_s", "offset_s", "duration_s")},
                "score": float(row["score"]),
                "label": pred.label if ok else None,
                "confidence": pred.confidence if ok else None,
                "probabilities": [
                    {"class": c, "p": float(p)}
                    for c, p in zip(result.classes, pred.probs, strict=True)
                ]
                if ok
                else [],
                "crop": encode_png(pred.crop) if ok else None,
                "error": None if pred is None else pred.error,
            }
        )
    return {
        "input": name,
        "fps": spot.fps,
        "frames": len(spot.numbers),
        "duration_s": round(len(spot.numbers) / spot.fps, 3),
        "lag": spot.lag,
        "threshold": round(float(spot.threshold), 6),
        "numbers": spot.numbers,
        "curve": [None if np.isnan(v) else round(float(v), 5) for v in spot.curve],
        "intervals": intervals,
    }


def _spot_upload(
    predictor: Predictor,
    fileobj: Any,
    name: str,
    fps: float | None,
    limits: Any,
    encode_png: EncodePng,
) -> dict[str, Any]:
    """Worker thread: save, check, open, spot and classify one upload."""
    with tempfile.TemporaryDirectory(prefix="apexmer-long-") as tmp:
        workdir = Path(tmp)
        path = workdir / "upload.bin"
        fileobj.seek(0)
        with open(path, "wb") as out:
            shutil.copyfileobj(fileobj, out)
        _, source = open_upload(path, workdir, limits)  # refusals answer with their status
        try:
            result = recognise_intervals(predictor, source, fps)
        except INPUT_ERRORS as exc:
            # Name the upload, not the temporary folder, in the message.
            detail = str(exc)
            for inner in ("frames", "clip.mp4", "clip.avi", "clip.mkv"):
                detail = detail.replace(str(workdir / inner), name)
            raise HTTPException(422, detail.replace(tmp, "")) from None
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()
        return long_video_payload(result, name, encode_png)


def add_long_video_routes(
    app: FastAPI,
    pool: ThreadPoolExecutor,
    state: dict[str, int],
    encode_png: EncodePng,
    long_limits: LongVideoLimits | None = None,
) -> None:
    """Add ``POST /api/spot`` to the app of ``serving.app.create_app``: its predictor and
    limits (``app.state``), worker pool, request counters and PNG encoder. Uploads go
    through the same checks, body timeouts and slots as ``/api/predict``."""
    long_limits = long_limits or LongVideoLimits()
    predictor: Predictor = app.state.predictor
    limits = dataclasses.replace(
        app.state.limits,
        max_duration_s=long_limits.max_duration_s,
        max_frames=long_limits.max_frames,
    )

    @app.post("/api/spot")
    async def spot(request: Request) -> JSONResponse:
        """Multipart field ``file`` (a long video, or a zip of frames with field ``fps``)."""
        form = await receive_form(request, state, limits)
        try:
            upload = form.get("file")
            if upload is None or isinstance(upload, str):
                raise HTTPException(
                    400, "no file: send the video as multipart/form-data field 'file'"
                )
            fps = _as_float(form.get("fps"))
            name = Path(upload.filename or "upload").name
            with work_slot(state, limits):
                payload = await asyncio.get_running_loop().run_in_executor(
                    pool, _spot_upload, predictor, upload.file, name, fps, limits, encode_png
                )
            return JSONResponse(payload)
        finally:
            await form.close()
