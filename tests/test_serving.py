"""The JSON API: uploads checked by content and size, zip-slip refused, predictions returned."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import socket
import tempfile
import threading
import time
import warnings
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
import torch

pytest.importorskip("fastapi", reason="the serve extra (fastapi) is not installed")
with warnings.catch_warnings():  # starlette's notice about its httpx backend
    warnings.filterwarnings("ignore", message="Using `httpx` with")
    from fastapi.testclient import TestClient

from apexmer.inference import Predictor
from apexmer.preprocess.flow import FlowConfig
from apexmer.serving.app import ServeLimits, create_app, image_dims, sniff_type
from test_predictor import (
    APEX,
    CLASSES,
    make_checkpoint,
    make_flow_checkpoint,
    near_apex,
    synthetic_clip,
)

LIMITS = ServeLimits(
    max_upload_bytes=3 * 2**20,
    max_frames=60,
    max_duration_s=5.0,
    max_unzipped_bytes=8 * 2**20,
    workers=2,
)


def zip_bytes(frames: list[np.ndarray], names: list[str] | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i, frame in enumerate(frames):
            _, data = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 95])
            zf.writestr(names[i] if names else f"clip/img{200 + i}.jpg", data.tobytes())
    return buf.getvalue()


def mp4_bytes(frames: list[np.ndarray], tmp: Path) -> bytes:
    path = tmp / "clip.mp4"
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30, (width, height))
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path.read_bytes()


@pytest.fixture(scope="module")
def clip() -> list[np.ndarray]:
    return synthetic_clip(seed=2)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    torch.set_num_threads(1)
    checkpoint = make_checkpoint(tmp_path_factory.mktemp("serve") / "model")
    with TestClient(create_app(Predictor.from_checkpoint(checkpoint), LIMITS)) as c:
        yield c


def post(client: TestClient, data: bytes, name: str = "clip.mp4", content_type: str = "video/mp4"):
    return client.post("/api/predict", files={"file": (name, data, content_type)})


def test_health_model_and_page(client: TestClient) -> None:
    health = client.get("/api/health").json()
    assert health["status"] == "ok" and health["architecture"] == "seresnext_tiny"
    model = client.get("/api/model").json()
    assert model["classes"] == CLASSES and model["input_size"] == 32
    assert model["preprocess"]["detector"] == "dlib" and "package_version" in model
    assert "subjects" not in str(model) and "manifest" not in str(model)  # no server paths
    page = client.get("/")
    assert page.status_code == 200 and "<canvas" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert client.get("/static/app.js").status_code == 200


def test_zip_of_frames_is_predicted(client: TestClient, clip) -> None:
    resp = post(client, zip_bytes(clip), "frames.zip", "application/zip")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["kind"] == "zip" and body["input"] == "frames.zip"
    assert body["onset"] == 200 and near_apex(body["apex"], 200 + APEX)
    assert body["label"] in CLASSES
    assert [p["class"] for p in body["probabilities"]] == CLASSES
    assert np.isclose(sum(p["p"] for p in body["probabilities"]), 1.0)
    assert len(body["curve"]) == len(body["numbers"]) == len(clip)
    assert body["images"]["apex_frame"].startswith("data:image/png;base64,")
    assert body["images"]["crop"].startswith("data:image/png;base64,")


def test_mp4_is_predicted(client: TestClient, clip, tmp_path: Path) -> None:
    resp = post(client, mp4_bytes(clip, tmp_path), "whatever.bin", "application/octet-stream")
    assert resp.status_code == 200, resp.text
    assert resp.json()["kind"] == "video" and near_apex(resp.json()["apex_index"], APEX)


def test_video_over_the_decoded_memory_budget_is_422(
    client: TestClient, clip, tmp_path: Path
) -> None:
    h, w = clip[0].shape[:2]
    small = dataclasses.replace(LIMITS, max_decoded_bytes=10 * h * w * 3)  # 10 frames' worth
    app = create_app(client.app.state.predictor, small)
    with TestClient(app) as tight:
        resp = post(tight, mp4_bytes(clip, tmp_path))
    assert resp.status_code == 422 and "would need more than" in resp.json()["detail"]


def test_oversized_upload_is_413(client: TestClient) -> None:
    resp = post(client, b"\0" * (LIMITS.max_upload_bytes + 1))
    assert resp.status_code == 413 and "larger than" in resp.json()["detail"]


def test_oversized_streamed_body_is_413(client: TestClient) -> None:
    # No Content-Length (chunked): the guard counts bytes as they arrive.
    def chunks():
        for _ in range(8):
            yield b"\0" * 2**19

    resp = client.post(
        "/api/predict",
        content=chunks(),
        headers={"content-type": "multipart/form-data; boundary=x"},
    )
    assert resp.status_code == 413


@pytest.mark.parametrize(
    "data,name",
    [
        (cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1].tobytes(), "image.mp4"),
        (b"just some text, renamed to look like a video", "notes.mp4"),
    ],
)
def test_wrong_type_is_415(client: TestClient, data: bytes, name: str) -> None:
    resp = post(client, data, name, "video/mp4")
    assert resp.status_code == 415 and "checked by content" in resp.json()["detail"]


def test_zip_slip_is_refused(client: TestClient, clip) -> None:
    data = zip_bytes(clip[:2], ["img1.jpg", "../evil.jpg"])
    resp = post(client, data, "frames.zip", "application/zip")
    assert resp.status_code == 400 and "outside the archive" in resp.json()["detail"]
    assert not (Path(tempfile.gettempdir()) / "evil.jpg").exists()


@pytest.mark.parametrize("name", ["", "."])
def test_zip_entry_without_a_file_name_is_400(client: TestClient, clip, name: str) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("img1.jpg", cv2.imencode(".jpg", clip[0])[1].tobytes())
        zf.writestr(zipfile.ZipInfo(name), b"x")
    resp = post(client, buf.getvalue(), "f.zip", "application/zip")
    assert resp.status_code == 400 and "no file name" in resp.json()["detail"]


def test_zip_of_a_folder_is_accepted(client: TestClient, clip) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(zipfile.ZipInfo("clip/"), b"")
        zf.writestr(zipfile.ZipInfo("./"), b"")
        for i, frame in enumerate(clip, start=1):
            zf.writestr(f"clip/img{i}.jpg", cv2.imencode(".jpg", frame)[1].tobytes())
    resp = post(client, buf.getvalue(), "clip.zip", "application/zip")
    assert resp.status_code == 200, resp.text


def test_zip_with_non_image_is_refused(client: TestClient, clip) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("img1.jpg", cv2.imencode(".jpg", clip[0])[1].tobytes())
        zf.writestr("run.sh", b"#!/bin/sh\n")
    assert post(client, buf.getvalue(), "f.zip", "application/zip").status_code == 415


def test_zip_bomb_is_refused(client: TestClient) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("img1.png", b"\0" * (LIMITS.max_unzipped_bytes + 1))
    assert len(buf.getvalue()) < LIMITS.max_upload_bytes
    resp = post(client, buf.getvalue(), "bomb.zip", "application/zip")
    assert resp.status_code == 413 and "unpacks to more than" in resp.json()["detail"]


def test_too_many_frames_is_422(client: TestClient, clip) -> None:
    frames = [clip[0]] * (LIMITS.max_frames + 1)
    resp = post(client, zip_bytes(frames), "long.zip", "application/zip")
    assert resp.status_code == 422 and "at most" in resp.json()["detail"]


def test_empty_and_missing_uploads_are_400(client: TestClient) -> None:
    resp = post(client, b"", "empty.mp4")
    assert resp.status_code == 400 and "empty" in resp.json()["detail"]
    resp = client.post("/api/predict", data={"other": "x"})
    assert resp.status_code == 400 and "'file'" in resp.json()["detail"]


def test_no_face_is_422_naming_the_upload(client: TestClient) -> None:
    blank = [np.full((240, 320, 3), 128, np.uint8)] * 6
    resp = post(client, zip_bytes(blank), "blank.zip", "application/zip")
    assert resp.status_code == 422 and "no face" in resp.json()["detail"]
    assert "apexmer-upload" not in resp.json()["detail"]


def test_concurrent_requests(client: TestClient, clip) -> None:
    data = zip_bytes(clip)
    with ThreadPoolExecutor(3) as pool:
        codes = list(pool.map(lambda _: post(client, data, "c.zip", "application/zip"), range(3)))
    assert [r.status_code for r in codes] == [200, 200, 200]
    assert len({r.json()["apex"] for r in codes}) == 1


def test_magic_bytes() -> None:
    assert sniff_type(b"PK\x03\x04rest") == "zip"
    assert sniff_type(b"\0\0\0\x18ftypmp42") == "mp4"
    assert sniff_type(b"RIFF\0\0\0\0AVI LIST") == "avi"
    assert sniff_type(b"\x1a\x45\xdf\xa3\x01") == "mkv"
    assert sniff_type(b"\x89PNG\r\n\x1a\n") is None
    jpg = cv2.imencode(".jpg", np.zeros((30, 40, 3), np.uint8))[1].tobytes()
    png = cv2.imencode(".png", np.zeros((30, 40, 3), np.uint8))[1].tobytes()
    assert image_dims(jpg) == ("jpeg", 40, 30) and image_dims(png) == ("png", 40, 30)


# ---------------------------------------------------------------- a real server, real sockets

SOCKET_LIMITS = dataclasses.replace(
    LIMITS, max_pending=16, body_idle_timeout_s=0.6, body_timeout_s=2.0
)


@contextlib.contextmanager
def live_server(app) -> Iterator[int]:
    """uvicorn serving ``app`` on 127.0.0.1 in a thread; yields its port."""
    import uvicorn

    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_level="error", timeout_graceful_shutdown=2
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):  # <= 10 s
        if server.started:
            break
        time.sleep(0.05)
    assert server.started
    try:
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def stalled_upload(port: int, first: bytes = b"--x\r\n") -> socket.socket:
    """Headers announcing a 100 kB multipart body, then 4-5 bytes of it, then nothing."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(
        b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: multipart/form-data; boundary=x\r\n"
        b"Content-Length: 100000\r\n\r\n" + first
    )
    return sock


def read_response(sock: socket.socket, limit_s: float) -> tuple[bytes, bool]:
    """Everything the server sends within ``limit_s``, and whether it closed the socket."""
    sock.settimeout(0.2)
    data, end = b"", time.monotonic() + limit_s
    while time.monotonic() < end:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        if not chunk:
            return data, True
        data += chunk
    return data, False


@pytest.fixture(scope="module")
def server_port(client: TestClient) -> Iterator[int]:
    with live_server(create_app(client.app.state.predictor, SOCKET_LIMITS)) as port:
        yield port


def test_stalled_body_is_answered_408_and_closed(server_port: int) -> None:
    start = time.monotonic()
    sock = stalled_upload(server_port)
    try:
        data, closed = read_response(sock, limit_s=5.0)
    finally:
        sock.close()
    waited = time.monotonic() - start
    assert data.startswith(b"HTTP/1.1 408"), data[:200]
    assert b"stalled" in data and closed
    assert SOCKET_LIMITS.body_idle_timeout_s <= waited < 4.0


def test_trickled_body_hits_the_total_time_cap(server_port: int) -> None:
    """One byte every 0.2 s never trips the idle timeout; the total cap ends it."""
    start = time.monotonic()
    sock = stalled_upload(server_port)
    try:
        data, closed = b"", False
        for _ in range(40):  # <= 8 s
            try:
                sock.sendall(b"a")
            except OSError:
                break
            more, closed = read_response(sock, limit_s=0.2)
            data += more
            if data or closed:
                break
        if not closed:
            more, closed = read_response(sock, limit_s=2.0)
            data += more
    finally:
        sock.close()
    assert data.startswith(b"HTTP/1.1 408"), data[:200]
    assert SOCKET_LIMITS.body_timeout_s <= time.monotonic() - start < 5.0


def test_stalled_uploads_do_not_starve_a_real_one(server_port: int, clip) -> None:
    """16 uploads stuck after 4 bytes (as many as max_pending) hold no slot: a complete
    upload is still predicted (before: 503 for as long as they stayed open)."""
    stalled = [stalled_upload(server_port, b"--x\r") for _ in range(SOCKET_LIMITS.max_pending)]
    try:
        time.sleep(0.1)
        with httpx.Client(base_url=f"http://127.0.0.1:{server_port}", timeout=30) as http:
            health = http.get("/api/health").json()
            assert health["busy"] == 0 and health["receiving"] >= 1
            resp = http.post(
                "/api/predict",
                files={"file": ("c.zip", zip_bytes(clip), "application/zip")},
            )
        assert resp.status_code == 200, resp.text
        assert near_apex(resp.json()["apex"], 200 + APEX)
    finally:
        for sock in stalled:
            sock.close()


@pytest.mark.slow
def test_1080p_upload_stays_in_its_memory_budget(tmp_path: Path) -> None:
    """The issue's case: a 170-frame 1920x1080 upload peaked at 2.36 GB (1 GiB documented)
    and was held afterwards. Measured in a fresh process by bench/memory_vs_length.py."""
    import importlib.util
    import json
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("membench", root / "bench/memory_vs_length.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    video = bench.write_video(tmp_path / "hd.mp4", 170, (1920, 1080))
    checkpoint = make_checkpoint(tmp_path / "model")
    out = subprocess.run(
        [sys.executable, bench.__file__, "--child", "serve", str(video), str(checkpoint)],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(root / "src"), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"},
        timeout=600,
        check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["growth_mb"] < 1024, result
    assert result["after_mb"] - result["baseline_mb"] < 300, result  # not the whole video


# ---------------------------------------------------------------- flow models


def decode_data_url(url: str) -> np.ndarray:
    import base64

    assert url.startswith("data:image/png;base64,")
    raw = np.frombuffer(base64.b64decode(url.split(",", 1)[1]), np.uint8)
    return cv2.imdecode(raw, cv2.IMREAD_COLOR)


def test_flow_model_answer_shows_flow_and_strain(clip, tmp_path: Path) -> None:
    dis = FlowConfig("dis").to_dict()
    checkpoint = make_flow_checkpoint(tmp_path / "flow_model", dis, model="sssnet")
    predictor = Predictor.from_checkpoint(checkpoint)
    with TestClient(create_app(predictor, LIMITS)) as flow_client:
        model = flow_client.get("/api/model").json()
        assert model["architecture"] == "sssnet" and "optical flow" in model["network_input"]
        resp = post(flow_client, zip_bytes(clip), "clip.zip", "application/zip")
        assert resp.status_code == 200, resp.text
        d = resp.json()
    assert "optical flow" in d["network_input"]
    images = d["images"]
    flow, strain = decode_data_url(images["flow_png"]), decode_data_url(images["strain_png"])
    wheel = decode_data_url(images["flow_wheel_png"])
    # The clip's flow at the crop size (64 px), enlarged 2x in blocks.
    assert flow.shape == strain.shape == (128, 128, 3)
    assert np.array_equal(flow[::2, ::2], flow[1::2, 1::2])
    # The synthetic expression moves part of the face: the flow picture is not uniform
    # (white = no motion), the strain map has bright and dark places.
    assert flow.std() > 5 and (flow.min(axis=2) < 200).any()
    assert strain.max() > 200 and strain.min() < 60
    # The wheel's key: white outside the disk, rightward motion red, leftward cyan-blue.
    assert wheel.shape == (64, 64, 3) and (wheel[0, 0] == 255).all()
    b, g, r = (int(c) for c in wheel[32, 62])
    assert r > 200 and g < 80 and b < 80
    b, g, r = (int(c) for c in wheel[32, 1])
    assert r < 80 and b > 150


def test_frame_model_answer_has_no_flow_images(client: TestClient, clip) -> None:
    resp = post(client, zip_bytes(clip), "clip.zip", "application/zip")
    assert resp.status_code == 200, resp.text
    assert set(resp.json()["images"]) == {"apex_frame", "crop"}


# ---------------------------------------------------------------- POST /api/spot


def post_spot(client: TestClient, data: bytes, name: str, fps: str | None = None):
    content_type = "application/zip" if name.endswith(".zip") else "video/mp4"
    form = {} if fps is None else {"fps": fps}
    return client.post("/api/spot", files={"file": (name, data, content_type)}, data=form)


@pytest.mark.parametrize("fps", ["abc", "-1", "0", "nan"])
def test_spot_bad_fps_is_400(client: TestClient, clip, fps: str) -> None:
    resp = post_spot(client, zip_bytes(clip[:6]), "frames.zip", fps)
    assert resp.status_code == 400 and "fps" in resp.json()["detail"]


def test_spot_zip_without_fps_asks_for_the_form_field(client: TestClient, clip) -> None:
    resp = post_spot(client, zip_bytes(clip), "frames.zip")
    detail = resp.json()["detail"]
    assert resp.status_code == 422 and "frame rate is unknown" in detail
    assert "field fps" in detail and "--fps" not in detail  # web wording, not the CLI's


def test_spot_error_names_the_upload(client: TestClient) -> None:
    blank = [np.full((240, 320, 3), 128, np.uint8)] * 20  # 12 frames: too short to spot
    resp = post_spot(client, zip_bytes(blank), "blank.zip", "30")
    detail = resp.json()["detail"]
    assert resp.status_code == 422 and "face" in detail, detail
    assert "apexmer-upload" not in detail and tempfile.gettempdir() not in detail


def fake_recognise(wait: threading.Event | None = None):
    """A ``recognise_intervals`` stand-in: one micro interval whose classification failed
    with the server's path of the source in its message (as a real failure names it)."""
    from apexmer.inference.long_video import LongVideoResult
    from apexmer.inference.predictor import ClipPrediction
    from apexmer.spotting.intervals import IntervalSpotResult, SpottedInterval

    def recognise(predictor, source, fps=None, config=None):
        if wait is not None:
            assert wait.wait(30), "the test never released the long job"
        n = len(source.numbers)
        spot = IntervalSpotResult(
            intervals=[SpottedInterval(source.numbers[1], source.numbers[2], source.numbers[4],
                                       "micro", 1.0)],
            curve=np.zeros(n), numbers=list(source.numbers), fps=fps or source.fps,
            threshold=0.5, lag=3, motion=None, macro_curve=np.zeros(n), macro_threshold=0.5,
        )  # fmt: skip
        pred = ClipPrediction(input=str(source.path), error=f"{source.path}/img1.jpg: no face")
        return LongVideoResult(spot=spot, predictions=[pred], classes=tuple(CLASSES))

    return recognise


def test_spot_interval_errors_name_the_upload(
    client: TestClient, clip, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("apexmer.serving.long_video.recognise_intervals", fake_recognise())
    resp = post_spot(client, zip_bytes(clip), "frames.zip", "30")
    assert resp.status_code == 200, resp.text
    (interval,) = resp.json()["intervals"]
    assert interval["error"] == "frames.zip/img1.jpg: no face"
    assert interval["label"] is None and interval["crop"] is None


def test_spot_has_its_own_body_cap(client: TestClient) -> None:
    junk = b"\0" * (LIMITS.max_upload_bytes + 1)
    assert post(client, junk).status_code == 413  # the clip cap
    resp = post_spot(client, junk, "long.mp4")  # under the long-video cap: checked, refused
    assert resp.status_code == 415 and "unsupported file type" in resp.json()["detail"]


def test_long_video_memory_check_counts_one_interval_of_crops(tmp_path: Path) -> None:
    from apexmer.serving.uploads import (
        PER_FRAME_BYTES,
        UploadError,
        open_video,
        request_memory,
    )

    # Issue 12: a 10-minute 640x480 video at 30 fps fits the default 1 GiB for /api/spot.
    # Issue 11: a clip's apex spotter streams too (a window of 70 frames' crops at 640x480),
    # so only ~1 kB a frame grows with the length, not 10 x 160^2 bytes of crops.
    budget = ServeLimits().max_decoded_bytes
    assert request_memory(18_000, 640, 480, crop_frames=121) < budget
    assert request_memory(18_000, 640, 480) < budget
    longer = request_memory(36_000, 640, 480) - request_memory(18_000, 640, 480)
    assert longer == 18_000 * PER_FRAME_BYTES
    # A 100 s video (64x48 keeps it fast) under a budget between the two.
    frames, fps = 3000, 30
    path = tmp_path / "long.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (64, 48))
    frame = np.full((48, 64, 3), 100, np.uint8)
    for _ in range(frames):
        writer.write(frame)
    writer.release()
    one = request_memory(frames, 64, 48, crop_frames=4 * fps + 1)
    every = request_memory(frames, 64, 48)
    limits = dataclasses.replace(ServeLimits(), max_decoded_bytes=(one + every) // 2)
    long_limits = limits.for_long_videos()
    open_video(path, long_limits, crop_s=4.0).close()  # /api/spot: accepted
    with pytest.raises(UploadError) as refused:  # the 64x48 window, 881 frames: over
        open_video(path, long_limits)
    assert refused.value.status == 422 and "would need more than" in refused.value.detail
    with pytest.raises(UploadError) as clip_cap:  # /api/predict keeps its frame cap
        open_video(path, limits)
    assert "more than 600 frames" in clip_cap.value.detail


def test_work_slot_runs_on_idle_when_the_last_request_leaves() -> None:
    from apexmer.serving.uploads import work_slot

    state, calls = {"pending": 0}, []
    with work_slot(state, LIMITS, lambda: calls.append("idle")):
        with work_slot(state, LIMITS, lambda: calls.append("idle")):
            pass
        assert calls == []  # one request still in
    assert calls == ["idle"] and state["pending"] == 0


def test_a_long_job_does_not_hold_up_clips(
    client: TestClient, clip, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One clip worker: were long jobs in the clips' pool, the clip would wait for the long one.
    release = threading.Event()
    monkeypatch.setattr("apexmer.serving.long_video.recognise_intervals", fake_recognise(release))
    app = create_app(client.app.state.predictor, dataclasses.replace(LIMITS, workers=1))
    data = zip_bytes(clip)
    with TestClient(app) as one, ThreadPoolExecutor(2) as pool:
        long_job = pool.submit(post_spot, one, data, "long.zip", "30")
        try:
            deadline = time.monotonic() + 30
            while one.get("/api/health").json()["busy"] < 1:  # the long job holds its slot
                assert time.monotonic() < deadline and not long_job.done()
                time.sleep(0.05)
            clip_job = pool.submit(post, one, data, "c.zip", "application/zip")
            assert clip_job.result(timeout=60).status_code == 200
            assert not long_job.done()
        finally:
            release.set()
        assert long_job.result(timeout=60).status_code == 200
