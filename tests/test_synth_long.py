"""Synthetic long videos: the plan's promises, the rendered pixels, the published layout."""

from __future__ import annotations

import itertools

import cv2
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from apexmer.cli.main import app
from apexmer.data.long_corpora import read_long_videos
from apexmer.data.synth import subject_identity
from apexmer.data.synth_long import (
    LONG_CODING_NAME,
    LONG_TRUTH_NAME,
    plan_long_corpus,
    plan_long_video,
    render_long_video,
)
from apexmer.errors import ConfigError

SMALL = (320, 240)


@pytest.mark.parametrize("seed", range(6))
def test_plan_keeps_its_promises(seed):
    plan = plan_long_video(seed, 1 + seed % 3, seed % 9, seconds=40, micro=5, macro=3)
    fps = plan.fps
    expressions = [e for e in plan.events if e.kind != "blink"]
    blinks = [e for e in plan.events if e.kind == "blink"]
    assert [e.kind for e in expressions].count("micro") == 5
    assert len(blinks) == 8  # 12 per minute over 40 s
    for e in plan.events:
        assert 1 <= e.onset < e.apex < e.offset <= plan.n_frames
        seconds = (e.offset - e.onset + 1) / fps
        if e.kind == "micro":
            assert 0.2 <= seconds <= 0.5 and "5" not in e.action_units.split("+")
        elif e.kind == "macro":
            assert 0.7 <= seconds <= 3.5
        else:
            assert seconds <= 0.3 + 1e-9
    # expressions 1 s apart, blinks 0.4 s clear of every expression
    for a, b in itertools.pairwise(expressions):
        assert b.onset - a.offset >= fps
    for blink, e in itertools.product(blinks, expressions):
        assert blink.offset + 0.4 * fps <= e.onset or e.offset + 0.4 * fps <= blink.onset
    assert [b.name for b in blinks] == [f"blink_{k}" for k in range(1, len(blinks) + 1)]


def test_plan_refuses_what_cannot_fit():
    with pytest.raises(ConfigError, match="do not fit"):
        plan_long_video(0, 1, 0, seconds=5, micro=6, macro=2)
    with pytest.raises(ConfigError, match="at most 9 videos"):
        plan_long_corpus(1, 10)


def _region_change(a: np.ndarray, b: np.ndarray, box: tuple[int, int, int, int]) -> float:
    x0, y0, x1, y1 = box
    return float(np.abs(a[y0:y1, x0:x1].astype(float) - b[y0:y1, x0:x1].astype(float)).mean())


def test_rendered_motion_is_where_and_when_the_plan_says():
    plan = plan_long_video(3, 1, 4, seconds=7, micro=1, macro=1, head_px=0, head_deg=0, size=SMALL)
    identity = subject_identity(plan.seed, plan.subject_index, plan.size)
    frames = list(render_long_video(plan, identity))
    assert len(frames) == plan.n_frames and frames[0].shape == (240, 320, 3)
    busy = {n for e in plan.events for n in range(e.onset, e.offset + 1)}
    quiet = next(n for n in range(10, plan.n_frames) if n not in busy)
    # no event, no head motion: the neutral face plus sensor noise (sigma 2)
    noise = np.abs(frames[quiet - 1].astype(float) - identity.image.astype(float)).mean()
    assert noise < 2.5
    lm = identity.landmarks
    face = (int(lm[:, 0].min()), int(lm[:, 1].min()), int(lm[:, 0].max()), int(lm[:, 1].max()))
    for e in plan.events:
        onset, apex = frames[e.onset - 1], frames[e.apex - 1]
        moved = _region_change(onset, apex, face)
        still = _region_change(frames[quiet - 1], frames[quiet], face)
        assert moved > 1.15 * still, (e, moved, still)
    micro = next(e for e in plan.events if e.kind == "micro")
    # an expression returns to neutral by its offset
    back = _region_change(frames[micro.onset - 1], frames[micro.offset - 1], face)
    assert back < 1.1 * _region_change(frames[quiet - 1], frames[quiet], face)


def test_render_is_deterministic():
    plan = plan_long_video(1, 2, 0, seconds=3, micro=1, macro=0, size=SMALL)
    identity = subject_identity(plan.seed, plan.subject_index, plan.size)
    a = list(itertools.islice(render_long_video(plan, identity), 40))
    b = list(itertools.islice(render_long_video(plan, identity), 40))
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_cli_writes_the_casme2_lv_layout_and_resumes(tmp_path):
    out = tmp_path / "long"
    args = ["synth", str(out), "--long", "--subjects", "1", "--videos-per-subject", "1"]
    args += ["--seconds", "9", "--micro", "2", "--macro", "1", "--size", "320x240", "--mp4"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    truth = pd.read_csv(out / LONG_TRUTH_NAME)
    coded = truth[truth["in_sheet"]]
    assert set(truth["kind"]) == {"micro", "macro", "blink"} and len(coded) == 3
    videos = read_long_videos("casme2-lv", out / LONG_CODING_NAME, root=out / "rawpic")
    assert videos.problems == []
    assert videos.summary()["micro"] == 2 and videos.summary()["macro"] == 1
    for video in videos:
        rows = coded[coded["video"] == video.video].sort_values("onset")
        assert [(i.onset, i.apex, i.offset, i.kind) for i in video.intervals] == list(
            rows[["onset", "apex", "offset", "kind"]].itertuples(index=False, name=None)
        )
        assert video.n_frames == 270 and video.subject == "s15"
        assert video.frames == out / rows["folder"].iloc[0]
        first = cv2.imread(str(video.frames / "img1.jpg"))
        assert first.shape == (240, 320, 3)
    # the mp4 release reads as the same videos
    movies = read_long_videos("casme2-lv", out / LONG_CODING_NAME, root=out / "videos")
    assert [v.frames.suffix for v in movies] == [".mp4"]
    cap = cv2.VideoCapture(str(movies.videos[0].frames))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 270
    cap.release()
    # a rerun resumes: finished videos are not rendered again
    stamp = (videos.videos[0].frames / "img1.jpg").stat().st_mtime_ns
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output
    assert (videos.videos[0].frames / "img1.jpg").stat().st_mtime_ns == stamp
    other = CliRunner().invoke(app, [*args, "--seed", "1"])  # other frames: refused
    assert other.exit_code != 0 and "other settings" in str(other.exception)
    bad = CliRunner().invoke(app, [*args, "--jitter", "1"])
    assert bad.exit_code != 0 and "do not apply to --long" in str(bad.exception)
