"""Requests per second of the web service under a bounded local load.

Starts the app in-process with uvicorn on 127.0.0.1 (a free port, tiny untrained model),
then ``--clients`` threads each POST the same clip (a zip of 30 JPEG frames, 320x240) until
``--requests`` have been sent in all or ``--time-limit`` seconds pass. Prints req/s and
latency percentiles; exits 1 if any request failed.

    .venv/bin/python bench/serve_load.py [--clients 4] [--requests 24] [--workers 2]
"""

from __future__ import annotations

import argparse
import io
import os
import socket
import sys
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor

import cv2
import httpx
import numpy as np
import torch
import uvicorn

from apexmer.data.synth import make_identity, render_clip
from apexmer.face.align import AlignConfig
from apexmer.inference import Predictor
from apexmer.models.registry import create_model
from apexmer.preprocess.pipeline import PreprocessConfig
from apexmer.serving.app import ServeLimits, create_app

CLASSES = ["disgust", "happiness", "others", "repression", "surprise"]


def clip_zip(n_frames: int = 30) -> bytes:
    identity = make_identity(3, (320, 240))
    frames = render_clip(
        identity.image,
        identity.landmarks,
        "surprise",
        n_frames,
        n_frames // 2,
        5.0,
        np.random.default_rng(3),
    )
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i, frame in enumerate(frames):
            zf.writestr(f"img{i}.jpg", cv2.imencode(".jpg", frame)[1].tobytes())
    return buf.getvalue()


def tiny_predictor() -> Predictor:
    torch.manual_seed(0)
    meta = {
        "architecture": "seresnext_tiny",
        "classes": CLASSES,
        "num_classes": 5,
        "input_size": 64,
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "frame": "apex",
        "preprocess": PreprocessConfig(align=AlignConfig(size=128)).to_dict(),
    }
    return Predictor(create_model("seresnext_tiny", num_classes=5), meta)


def start_server(app) -> tuple[uvicorn.Server, threading.Thread, int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    return server, thread, port


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--requests", type=int, default=24, help="total, all clients")
    parser.add_argument("--time-limit", type=float, default=180.0)
    parser.add_argument("--workers", type=int, default=2, help="server predict threads")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = clip_zip()
    app = create_app(
        tiny_predictor(), ServeLimits(workers=args.workers, max_pending=4 * args.clients)
    )
    server, thread, port = start_server(app)
    url = f"http://127.0.0.1:{port}/api/predict"
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    issued = 0
    deadline = time.monotonic() + args.time_limit

    def client() -> None:
        nonlocal issued
        with httpx.Client(timeout=120) as http:
            while time.monotonic() < deadline:
                with lock:
                    if issued >= args.requests:
                        return
                    issued += 1
                start = time.perf_counter()
                try:
                    resp = http.post(url, files={"file": ("clip.zip", data, "application/zip")})
                    ok = resp.status_code == 200
                    detail = f"{resp.status_code} {resp.text[:120]}"
                except httpx.HTTPError as exc:
                    ok, detail = False, repr(exc)
                with lock:
                    (latencies if ok else errors).append(
                        time.perf_counter() - start if ok else detail
                    )

    # Warm-up: each server worker thread loads its own dlib models on first use.
    with httpx.Client(timeout=120) as http:
        for _ in range(args.workers):
            http.post(url, files={"file": ("clip.zip", data, "application/zip")})
    start = time.perf_counter()
    with ThreadPoolExecutor(args.clients) as pool:
        for future in [pool.submit(client) for _ in range(args.clients)]:
            future.result()
    wall = time.perf_counter() - start
    server.should_exit = True
    thread.join(timeout=10)

    done = len(latencies)
    print(
        f"{args.clients} clients, {args.workers} server workers, torch threads "
        f"{args.threads}, clip 30 frames 320x240 zip ({len(data) / 1024:.0f} KiB), "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print(f"{done} ok, {len(errors)} errors in {wall:.1f} s: {done / wall:.2f} req/s")
    print(
        f"latency s: p50 {percentile(latencies, 50):.2f}  p90 {percentile(latencies, 90):.2f}"
        f"  p99 {percentile(latencies, 99):.2f}  max {max(latencies, default=float('nan')):.2f}"
    )
    for detail in errors[:5]:
        print(f"error: {detail}", file=sys.stderr)
    return 1 if errors or done < args.requests else 0


if __name__ == "__main__":
    sys.exit(main())
