"""The long-video section of the web page in a real browser: headless Debian chromium
uploads an 8 s synthetic recording, sees the timeline of spotted intervals, clicks one and
sees its crop, curve and class. Saves ``docs/timeline.png`` (the README's) when
APEXMER_SCREENSHOT=1."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
import torch

from long_clips import Event, write_long_video
from procs import free_port
from test_browser import ARGS, CHROMIUM
from test_predictor import CLASSES, make_checkpoint

README_SCREENSHOT = Path(__file__).resolve().parents[1] / "docs" / "timeline.png"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="Debian chromium is not installed at /usr/bin/chromium "
        "(apt-get install chromium; `make test` does it when root)",
    ),
]

EVENTS = [
    Event(45, 55, "micro", 12, 4.0),
    Event(95, 101, "blink", 5, -6.0),
    Event(140, 151, "micro", "1+2", 4.0),
    Event(190, 225, "macro", 9, 7.0),
]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    """(url, an mp4 long video) with the web app on a free localhost port."""
    pytest.importorskip("playwright.sync_api", reason="playwright (python) is not installed")
    uvicorn = pytest.importorskip("uvicorn", reason="the serve extra is not installed")
    from apexmer.inference import Predictor
    from apexmer.serving.app import create_app

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("browser_long")
    video = write_long_video(root / "interview.mp4", EVENTS, 270, size=(320, 240), seed=3)
    predictor = Predictor.from_checkpoint(make_checkpoint(root / "model"))
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(predictor), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("uvicorn did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/", video
    server.should_exit = True
    thread.join(timeout=10)


def test_upload_long_video_shows_timeline_and_interval_details(served, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    url, video = served
    pw = sync_playwright().start()
    try:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        page = browser.new_page(viewport={"width": 1180, "height": 900}, device_scale_factor=1)
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(url)
        page.set_input_files("#long-file", str(video))
        page.click("#long-submit")
        page.wait_for_selector("#long-result:not([hidden])", timeout=180_000)

        buttons = page.locator("#interval-list button")
        kinds = [b.get_attribute("class") for b in buttons.all()]
        assert kinds.count("micro") == 2 and kinds.count("macro") == 1, kinds
        assert "270 frames" in page.text_content("#long-status")
        painted = page.evaluate("""() => { const c = document.getElementById('timeline');
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let n = 0; for (let i = 3; i < d.length; i += 4) n += d[i] > 0; return n; }""")
        assert painted > 2000

        page.locator("#interval-list button.micro").first.click()
        page.wait_for_selector("#interval-detail:not([hidden])")
        assert page.text_content("#interval-label") in CLASSES
        assert page.locator("#interval-bars .bar-row").count() == len(CLASSES)
        width = page.evaluate("document.getElementById('interval-crop').naturalWidth")
        assert width > 0
        caption = page.text_content("#interval-caption")
        onset = int(caption.split("frames ")[1].split("–")[0])
        assert abs(onset - EVENTS[0].onset) <= 4  # mp4 frame 0 is event frame 0
        # clicking the macro band on the timeline selects it (not classified)
        page.locator("#interval-list button.macro").click()
        assert page.text_content("#interval-label") == "macro"
        page.locator("#interval-list button.micro").first.click()
        assert not errors, errors
        shot = README_SCREENSHOT if os.environ.get("APEXMER_SCREENSHOT") else tmp_path / "t.png"
        page.locator("section.long").screenshot(path=str(shot))
        assert shot.stat().st_size > 10_000
        browser.close()
    finally:
        pw.stop()
