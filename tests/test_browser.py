"""End to end in a real browser: headless Debian chromium uploads a clip to the web app.

Trains a tiny model on a tiny synthetic cache (so the page shows a real, trained model),
serves it with uvicorn on a free localhost port, drives the page with Playwright and saves
a screenshot (``docs/screenshot.png``, the README's, when APEXMER_SCREENSHOT=1).
"""

from __future__ import annotations

import os
import threading
import time
import zipfile
from pathlib import Path

import pandas as pd
import pytest
import torch

from procs import free_port

CHROMIUM = Path("/usr/bin/chromium")
# The README's screenshot is refreshed only when asked (APEXMER_SCREENSHOT=1), so a test
# run never modifies the working tree.
README_SCREENSHOT = Path(__file__).resolve().parents[1] / "docs" / "screenshot.png"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="Debian chromium is not installed at /usr/bin/chromium "
        "(apt-get install chromium; `make test` does it when root)",
    ),
]


@pytest.fixture(scope="module")
def corpus_cache(tmp_path_factory: pytest.TempPathFactory):
    """(root, manifest, zip of one clip's frames, that clip's ground truth)."""
    pytest.importorskip("playwright.sync_api", reason="playwright (python) is not installed")
    from test_checkpoint import build_tiny_cache

    root = tmp_path_factory.mktemp("browser")
    manifest = build_tiny_cache(root, align=128)
    truth = pd.read_csv(root / "corpus" / "ground_truth.csv")
    row = truth[truth.emotion == "happiness"].iloc[0]
    frames = root / "corpus" / "CASME2_RAW_selected" / row["folder"] / row["clip"]
    archive = root / f"{row['clip']}.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(frames.glob("*.jpg")):
            zf.write(path, f"{row['clip']}/{path.name}")
    return root, manifest, archive, row


# A model of each kind the page draws differently: the demo's image input, and flow (the
# page then also shows the flow field and the strain map).
MODELS = {
    "seresnext_tiny": (
        "demo",
        [
            "data.input=diff",
            "model.name=seresnext_tiny",
            "data.input_size=32",
            "train.batch_size=2",
        ],
    ),
    "sssnet": ("flow", ["train.batch_size=2"]),
}


@pytest.fixture(scope="module", params=list(MODELS))
def served(request: pytest.FixtureRequest, corpus_cache):
    """(url, zip of one clip's frames, that clip's ground truth, architecture) with a
    trained tiny model."""
    uvicorn = pytest.importorskip("uvicorn", reason="the serve extra is not installed")
    from apexmer.config import load_config
    from apexmer.inference import Predictor
    from apexmer.serving.app import create_app
    from apexmer.training.deploy import train_deployable

    torch.set_num_threads(1)
    root, manifest, archive, row = corpus_cache
    preset, overrides = MODELS[request.param]
    config = load_config(
        preset, [*overrides, "train.epochs=30", "augment.rotation_deg=0", "train.threads=1"]
    )
    model_dir = root / f"model_{request.param}"
    train_deployable(manifest, config, model_dir)

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(Predictor.from_checkpoint(model_dir)),
            host="127.0.0.1",
            port=port,
            log_level="warning",
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("uvicorn did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/", archive, row, request.param
    server.should_exit = True
    thread.join(timeout=10)


def test_upload_shows_prediction_apex_and_curve(served, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    url, archive, truth, architecture = served
    pw = sync_playwright().start()
    try:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        page = browser.new_page(viewport={"width": 1180, "height": 900}, device_scale_factor=1)
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(url)
        page.wait_for_function(
            f"document.getElementById('model').textContent.includes('{architecture}')"
        )
        page.set_input_files("#file", str(archive))
        page.click("#submit")
        page.wait_for_selector("#result:not([hidden])", timeout=60_000)

        classes = ["disgust", "happiness", "others", "repression", "surprise"]
        label = page.text_content("#label")
        assert label in classes
        assert "confidence" in page.text_content("#confidence")
        assert page.locator(".bar-row").count() == len(classes)
        caption = page.text_content("#apex-caption")
        apex = int(caption.split("frame ")[1].split(" ")[0])
        assert 0 <= apex - int(truth["apex"]) <= 2  # the spotter's known lag/2 lateness
        flow_model = architecture == "sssnet"
        images = ["apex-img", "crop-img"]
        if flow_model:  # the flow field, its colour-wheel key and the strain map
            images += ["flow-img", "wheel-img", "strain-img"]
            assert "optical flow" in page.text_content("#facts")
        for image in images:
            width = page.evaluate(f"document.getElementById('{image}').naturalWidth")
            assert width > 0, f"{image} did not load"
        for figure in ("flow-fig", "strain-fig"):
            assert page.is_visible(f"#{figure}") == flow_model, figure
        if flow_model:  # crop, flow and strain side by side, in this order
            boxes = [
                page.locator(f"#{image}").bounding_box()
                for image in ("crop-img", "flow-img", "strain-img")
            ]
            assert all(b["width"] >= 150 for b in boxes)
            assert boxes[0]["x"] < boxes[1]["x"] < boxes[2]["x"]
            assert max(b["y"] for b in boxes) - min(b["y"] for b in boxes) < 5
        # The curve canvas has been drawn on (not blank).
        painted = page.evaluate("""() => { const c = document.getElementById('curve');
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let n = 0; for (let i = 3; i < d.length; i += 4) n += d[i] > 0; return n; }""")
        assert painted > 1000
        assert not errors, errors
        readme = os.environ.get("APEXMER_SCREENSHOT") and flow_model  # the page at its fullest
        shot = README_SCREENSHOT if readme else tmp_path / "s.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
        browser.close()
    finally:
        pw.stop()
