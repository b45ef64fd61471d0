"""Bad input through the web API (issue 20): the ``/api/spot`` frame rate is checked as
``--fps`` is (400, never 500), a video too short to spot says so, frames of two sizes are
one clean message naming the upload, and no bad upload of a fuzzed set gets a 500 or
leaks numpy's text or the server's temporary paths (what the page shows is ``detail``)."""

from __future__ import annotations

import io
import tempfile
import warnings
import zipfile

import cv2
import numpy as np
import pytest
import torch

pytest.importorskip("fastapi", reason="the serve extra (fastapi) is not installed")
with warnings.catch_warnings():  # starlette's notice about its httpx backend
    warnings.filterwarnings("ignore", message="Using `httpx` with")
    from fastapi.testclient import TestClient

from apexmer.inference import Predictor
from apexmer.serving.app import create_app
from test_predictor import make_checkpoint, synthetic_clip
from test_serving import LIMITS, mp4_bytes, zip_bytes


@pytest.fixture(scope="module")
def clip() -> list[np.ndarray]:
    return synthetic_clip(seed=2)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    torch.set_num_threads(1)
    checkpoint = make_checkpoint(tmp_path_factory.mktemp("serve") / "model")
    with TestClient(create_app(Predictor.from_checkpoint(checkpoint), LIMITS)) as c:
        yield c


def post(client: TestClient, route: str, data: bytes, name: str, fps: str | None = None):
    kind = "application/zip" if name.endswith(".zip") else "video/mp4"
    form = {} if fps is None else {"fps": fps}
    return client.post(route, files={"file": (name, data, kind)}, data=form)


def png_zip(frames: list[np.ndarray], damage=None) -> bytes:
    """A zip of PNG frames ``img<N>.png``; ``damage(index, data)`` may alter one's bytes."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i, frame in enumerate(frames):
            data = cv2.imencode(".png", frame)[1].tobytes()
            zf.writestr(f"img{i + 1}.png", damage(i, data) if damage else data)
    return buf.getvalue()


def two_sizes(clip: list[np.ndarray]) -> list[np.ndarray]:
    frames = list(clip)
    frames[5] = cv2.resize(frames[5], (160, 100))
    return frames


@pytest.mark.parametrize("fps", ["inf", "1e308", "-inf", "0", "-5", "nan", "20000"])
def test_spot_fps_outside_the_range_is_400_as_on_the_command_line(
    client: TestClient, clip, fps: str
) -> None:
    resp = post(client, "/api/spot", zip_bytes(clip), "frames.zip", fps)
    assert resp.status_code == 400, resp.text
    detail = resp.json()["detail"]
    assert "not a valid frame rate" in detail and "fps=30" in detail, detail


@pytest.mark.parametrize("frames", [1, 3, 12])
def test_spot_a_video_too_short_says_so(client: TestClient, clip, tmp_path, frames: int) -> None:
    short = clip[:frames]
    for data, name in ((zip_bytes(short), "short.zip"), (mp4_bytes(short, tmp_path), "short.mp4")):
        resp = post(client, "/api/spot", data, name, "30")
        assert resp.status_code == 422, resp.text
        detail = resp.json()["detail"]
        assert detail.startswith(f"{name}: too short to spot: {frames} frame(s)"), detail
        assert tempfile.gettempdir() not in detail


@pytest.mark.parametrize("route", ["/api/predict", "/api/spot"])
def test_frames_of_two_sizes_are_one_clean_message(client: TestClient, clip, route: str) -> None:
    resp = post(client, route, zip_bytes(two_sizes(clip)), "mixed.zip", "30")
    assert resp.status_code == 422, resp.text
    detail = resp.json()["detail"]
    assert detail.startswith("mixed.zip") and "frames differ in size" in detail, detail
    assert "all input arrays" not in detail and "apexmer-upload" not in detail


def _cut(index: int, data: bytes) -> bytes:
    return data[: len(data) // 3] if index == 4 else data


def _empty(index: int, data: bytes) -> bytes:
    return b"" if index == 4 else data


def _text(index: int, data: bytes) -> bytes:
    return b"not a png at all" if index == 4 else data


@pytest.fixture(scope="module")
def uploads(clip, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[bytes, str]]:
    tmp = tmp_path_factory.mktemp("uploads")
    mp4 = mp4_bytes(clip, tmp)
    return {
        "empty file": (b"", "empty.mp4"),
        "truncated mp4": (mp4[:3000], "cut.mp4"),
        "mp4 cut in the middle": (mp4[: len(mp4) // 2], "half.mp4"),
        "text": (b"hello, not a video", "notes.mp4"),
        "random bytes": (np.random.default_rng(1).bytes(4000), "noise.avi"),
        "mp4 header then noise": (mp4[:64] + np.random.default_rng(2).bytes(4000), "odd.mp4"),
        "zip of two sizes": (zip_bytes(two_sizes(clip)), "mixed.zip"),
        "zip with a cut png": (png_zip(clip, _cut), "cut.zip"),
        "zip with a 0-byte png": (png_zip(clip, _empty), "zero.zip"),
        "zip with text as png": (png_zip(clip, _text), "text.zip"),
        "zip of one frame": (zip_bytes(clip[:1]), "one.zip"),
        "zip of blank frames": (zip_bytes([np.full_like(clip[0], 128)] * 20), "blank.zip"),
        "broken zip": (zip_bytes(clip)[:500], "broken.zip"),
    }


KINDS = [
    "empty file",
    "truncated mp4",
    "mp4 cut in the middle",
    "text",
    "random bytes",
    "mp4 header then noise",
    "zip of two sizes",
    "zip with a cut png",
    "zip with a 0-byte png",
    "zip with text as png",
    "zip of one frame",
    "zip of blank frames",
    "broken zip",
]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("route", ["/api/predict", "/api/spot"])
def test_no_bad_upload_gets_a_500_or_leaks_internals(
    client: TestClient, uploads, route: str, kind: str
) -> None:
    data, name = uploads[kind]
    resp = post(client, route, data, name, "30" if route == "/api/spot" else None)
    assert 400 <= resp.status_code < 500, (resp.status_code, resp.text)
    detail = resp.json()["detail"]
    assert isinstance(detail, str) and detail and "\n" not in detail
    assert detail.count("Fix:") <= 1, detail
    for leak in ("Traceback", "ValueError", "all input arrays", "apexmer-upload", "upload.bin"):
        assert leak not in detail, detail
    assert tempfile.gettempdir() not in detail, detail
