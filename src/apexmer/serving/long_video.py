"""The web app's long-video route: upload a recording, get its expression intervals.

``POST /api/spot`` (multipart field ``file``, optional field ``fps``, needed for a zip of
frames) spots the intervals (``inference.long_video.recognise_intervals``), classifies each
micro-expression and answers the spotting curve, one entry per interval (frames, seconds,
type, score, class, probabilities, the aligned crop) for the page's timeline
(``static/timeline.js``). Uploads go through the checks, body timeouts and slots of
``/api/predict`` (``uploads``), with the caps of ``ServeLimits.long``
(``LongVideoLimits``: duration, frames, body and unzipped size). The memory check counts
the ROI crops of at most the longest interval the spotter keeps (``IntervalConfig.max_s``;
the apex spotter streams a smaller window of them), not of every frame: the interval
spotter holds a few frames and ~100 B of motion per frame.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from apexmer.data.frames import check_fps, valid_fps
from apexmer.errors import ConfigError
from apexmer.inference.long_video import LongVideoResult, recognise_intervals
from apexmer.inference.predictor import Predictor
from apexmer.serving.uploads import (
    LongVideoLimits,
    ServeLimits,
    UploadError,
    png_data_url,
    receive_form,
    release_heap,
    saved_upload,
    work_slot,
)
from apexmer.spotting.intervals import IntervalConfig

__all__ = ["SPOT_PATH", "LongVideoLimits", "add_long_video_routes", "long_video_payload"]

SPOT_PATH = "/api/spot"
NO_FPS = (
    "the frame rate is unknown (a zip of frames has none, nor does this video's header). "
    "Fix: send the form field "
    "fps with the upload, e.g. fps=30 (CAS(ME)^2: 30, SAMM Long Videos: 200)"
)


def _as_float(value: Any) -> float | None:
    """The form field ``fps``: None when absent, else a valid frame rate (400 otherwise,
    ``data.frames.check_fps``: the same rule as ``--fps``)."""
    if value is None or value == "":
        return None
    try:
        fps = float(value)
    except (TypeError, ValueError):
        raise UploadError(400, f"fps {value!r} is not a number. Fix: e.g. fps=30") from None
    try:
        return check_fps(fps, "fps")
    except ConfigError as exc:
        raise UploadError(400, str(exc)) from None


def long_video_payload(
    result: LongVideoResult, name: str, scrub: Callable[[str], str] = str
) -> dict[str, Any]:
    """The JSON answer of ``POST /api/spot``; ``scrub(text)`` cleans each interval's error
    (``Upload.scrub``: no temporary paths)."""
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
                "crop": png_data_url(pred.crop) if ok else None,
                "error": None if pred is None or pred.error is None else scrub(pred.error),
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
    predictor: Predictor, fileobj: Any, name: str, fps: float | None, limits: ServeLimits
) -> dict[str, Any]:
    """Worker thread: save, check, open, spot and classify one upload."""
    config = IntervalConfig()
    # The classifier holds ROI crops of one interval at a time, at most max_s long.
    with saved_upload(fileobj, name, limits, crop_s=config.max_s, fps=fps) as upload:
        if fps is None and not valid_fps(getattr(upload.source, "fps", None)):
            raise UploadError(422, NO_FPS)
        result = recognise_intervals(predictor, upload.source, fps, config)
        return long_video_payload(result, name, upload.scrub)


def add_long_video_routes(app: FastAPI, pool: ThreadPoolExecutor, state: dict[str, int]) -> None:
    """Add ``POST /api/spot`` to the app of ``serving.app.create_app``: its predictor and
    limits (``app.state``), the long videos' worker pool and the app's request counters."""
    predictor: Predictor = app.state.predictor
    limits: ServeLimits = app.state.limits.for_long_videos()

    @app.post(SPOT_PATH)
    async def spot(request: Request) -> JSONResponse:
        """Multipart field ``file`` (a long video, or a zip of frames with field ``fps``)."""
        form = await receive_form(request, state, limits)
        try:
            upload = form.get("file")
            if upload is None or isinstance(upload, str):
                raise UploadError(
                    400, "no file: send the video as multipart/form-data field 'file'"
                )
            fps = _as_float(form.get("fps"))
            name = Path(upload.filename or "upload").name
            loop = asyncio.get_running_loop()
            with work_slot(state, limits, lambda: loop.run_in_executor(pool, release_heap)):
                payload = await loop.run_in_executor(
                    pool, _spot_upload, predictor, upload.file, name, fps, limits
                )
            return JSONResponse(payload)
        finally:
            await form.close()
