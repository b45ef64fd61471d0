"""Interval spotting in long videos (spotting/intervals.py): pure steps on made-up signals,
then synthetic long videos (a real face photo with expressions, blinks and head drift)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from apexmer.cli.main import app
from apexmer.data.frames import FolderFrames, open_frames
from apexmer.errors import ConfigError, DataError
from apexmer.evaluation.intervals import Span, score_video
from apexmer.spotting import IntervalConfig, spot_intervals
from apexmer.spotting.intervals import (
    blink_frames,
    displacement,
    find_intervals,
    source_fps,
    threshold_of,
)
from long_clips import Event, plan_events, write_long_video

FPS = 30.0


def lagged(d: np.ndarray, lag: int) -> np.ndarray:
    """What the flow against ``t - lag`` measures: ``d(t) - d(max(t - lag, 0))``."""
    ref = np.concatenate([np.repeat(d[:1], lag, 0), d[:-lag]])[: len(d)]
    return d - ref


@settings(max_examples=40, deadline=None)
@given(
    lag=st.integers(1, 12),
    start=st.integers(30, 150),  # from 1 s on: the baseline's ends are pivoted there
    length=st.integers(3, 40),
    amplitude=st.floats(0.2, 8.0),
)
def test_lag_chains_give_the_displacement_back(lag, start, length, amplitude) -> None:
    """A bump shorter than half the baseline comes back exactly from its lagged flows."""
    n = 240
    d = np.zeros((n, 3, 2))
    t = np.arange(length)
    d[start : start + length, 1, 0] = amplitude * np.sin(np.pi * (t + 0.5) / length)
    d[start : start + length, 2, 1] = -0.5 * amplitude
    back = displacement(lagged(d, lag), lag, baseline=180)
    np.testing.assert_allclose(back, d, atol=1e-9)


def test_slow_drift_is_detrended_away() -> None:
    n, lag = 600, 8
    d = np.zeros((n, 1, 2))
    d[:, 0, 0] = np.linspace(0, 20, n)  # a slow 20 px head turn not removed by the nose
    d[300:310, 0, 1] = 3.0  # a 1/3 s expression
    back = displacement(lagged(d, lag), lag, baseline=180)
    assert np.abs(back[:, 0, 0]).max() < 0.6
    assert back[300:310, 0, 1].min() > 2.5


def bumps(n: int, spans: list[tuple[int, int, float]], noise: float = 0.02, seed: int = 0):
    rng = np.random.default_rng(seed)
    curve = np.abs(rng.normal(0.1, noise, n))
    for onset, offset, height in spans:
        t = np.arange(offset - onset + 1)
        curve[onset : offset + 1] += height * np.sin(np.pi * (t + 0.5) / len(t))
    return curve


def test_find_intervals_onset_apex_offset_and_type_by_duration() -> None:
    curve = bumps(900, [(100, 110, 1.0), (400, 459, 2.0), (700, 708, 0.6)])
    numbers = list(range(1000, 1900))  # frame numbers, not indices
    found = find_intervals(curve, numbers, FPS, IntervalConfig())
    assert [i.kind for i in found] == ["micro", "macro", "micro"]
    for interval, (onset, offset) in zip(found, [(100, 110), (400, 459), (700, 708)], strict=True):
        assert onset + 1000 <= interval.onset <= interval.apex <= interval.offset
        assert interval.offset <= offset + 1000
        coded = Span(onset + 1000, offset + 1000)
        spotted = Span(interval.onset, interval.offset)
        assert score_video("v", "s", [coded], [spotted]).counts["overall"].tp == 1
    peak = 100 + int(np.argmax(curve[100:111]))
    assert found[0].apex == 1000 + peak and found[0].score == pytest.approx(curve[peak])


def test_noise_alone_gives_nothing_with_mad_but_a_peak_with_moilanen() -> None:
    curve = bumps(900, [])
    assert find_intervals(curve, list(range(900)), FPS, IntervalConfig()) == []
    moilanen = IntervalConfig(threshold="moilanen", min_s=1 / FPS)
    assert threshold_of(curve, moilanen) < curve.max()
    assert find_intervals(curve, list(range(900)), FPS, moilanen)


def test_frames_without_a_face_never_count() -> None:
    curve = bumps(300, [(100, 110, 1.0)])
    curve[100:111] = np.nan
    assert find_intervals(curve, list(range(300)), FPS, IntervalConfig()) == []


def test_too_short_and_too_long_runs_are_dropped() -> None:
    curve = bumps(900, [(100, 101, 1.0), (300, 500, 1.0)])  # 2 frames; 6.7 s
    assert find_intervals(curve, list(range(900)), FPS, IntervalConfig()) == []


def test_blinks_from_eyelids_or_eye_aspect_ratio() -> None:
    n = 50
    ear = np.full(n, 0.3)
    ear[10:13] = 0.1  # shut
    lids = np.zeros((n, 2))
    brows = np.full((n, 4), 0.2)
    lids[30:33] = 2.0  # lids move 10x the brows
    brows[40:43] = 3.0  # a brow lowerer pulls the lids along, less than the brows
    lids[40:43] = 1.5
    blink = blink_frames(ear, lids, brows, IntervalConfig(), pad=1)
    assert np.flatnonzero(blink).tolist() == [9, 10, 11, 12, 13, 29, 30, 31, 32, 33]


@pytest.mark.parametrize(
    "options",
    [
        {"lag_s": 0.6},
        {"threshold": "otsu"},
        {"top_rois": 0},
        {"edge": 1.0},
        {"min_s": 0.6},
        {"baseline_s": 0.4},
        {"micro_baseline_s": 12.0},
    ],
)
def test_bad_interval_config_is_refused(options) -> None:
    with pytest.raises(ConfigError):
        IntervalConfig(**options)


def test_frame_rate_comes_from_the_video_or_must_be_given(tmp_path: Path) -> None:
    events = [Event(10, 19, "micro", 12, 4.0)]
    video = write_long_video(tmp_path / "v.mp4", events, 30, fps=25.0, size=(160, 120))
    assert source_fps(open_frames(video)) == 25.0
    folder = write_long_video(tmp_path / "frames", events, 30, size=(160, 120))
    assert source_fps(FolderFrames(folder), 200.0) == 200.0
    with pytest.raises(DataError, match="--fps"):
        source_fps(FolderFrames(folder))


def spans(events) -> list[Span]:
    return [Span(e.onset, e.offset, e.kind) for e in events if e.kind != "blink"]


@pytest.fixture(scope="module")
def short_long_video(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Span]]:
    """8 s at 320x240 (folder, frames from 1): two micro-expressions and a blink."""
    events = [
        Event(60, 70, "micro", 12, 4.0),
        Event(120, 126, "blink", 5, -6.0),
        Event(170, 181, "micro", "1+2", 4.0),
    ]
    root = tmp_path_factory.mktemp("longvideo")
    folder = write_long_video(root / "video", events, 240, size=(320, 240), seed=3)
    coded = [Span(e.onset + 1, e.offset + 1, e.kind) for e in events if e.kind != "blink"]
    return folder, coded


@pytest.mark.slow
def test_a_short_synthetic_long_video_is_spotted(short_long_video) -> None:
    """Two micro-expressions and a blink in 8 s at 320x240, frames 1-based in a folder."""
    folder, coded = short_long_video
    result = spot_intervals(FolderFrames(folder), fps=FPS)
    assert result.numbers == list(range(1, 241))
    assert result.lag == 8 and result.curve.shape == (240,)
    spotted = [Span(i.onset, i.offset, i.kind) for i in result.intervals]
    counts = score_video("video", "s1", coded, spotted).counts["micro"]
    assert (counts.tp, counts.fp, counts.fn) == (2, 0, 0), result.table()
    table = result.table()
    expected = [(i.onset - 1) / FPS for i in spotted]
    assert table["onset_s"].tolist() == pytest.approx(expected, abs=1e-3)


@pytest.mark.slow
def test_micro_and_macro_in_a_640x480_video_via_the_cli(tmp_path: Path) -> None:
    """20 s at 640x480 with 5 micro, 2 macro, 3 blinks and head drift; `apexmer
    spot-intervals --json` on the mp4."""
    events = plan_events(600, FPS, np.random.default_rng(0), micro=5, macro=2, blinks=3)
    video = write_long_video(tmp_path / "long.mp4", events, 600, seed=0)
    result = CliRunner().invoke(app, ["spot-intervals", "--frames", str(video), "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert payload["fps"] == 30.0 and payload["frames"] == 600 and len(payload["curve"]) == 600
    spotted = [Span(r["onset"], r["offset"], r["type"]) for r in payload["intervals"]]
    counts = score_video("long", "s1", spans(events), spotted).counts
    assert counts["micro"].f1 >= 0.8 and counts["macro"].f1 >= 0.5, payload["intervals"]


def test_cli_needs_a_frame_rate_for_a_folder(tmp_path: Path) -> None:
    folder = write_long_video(tmp_path / "f", [], 20, size=(160, 120))
    result = CliRunner().invoke(app, ["spot-intervals", "--frames", str(folder)])
    assert result.exit_code != 0
    assert "--fps" in str(result.exception)


@pytest.mark.slow
def test_predictor_spot_classifies_each_spotted_micro_expression(
    short_long_video, tmp_path: Path
) -> None:
    from apexmer.inference import Predictor
    from test_predictor import CLASSES, make_checkpoint

    folder, coded = short_long_video
    predictor = Predictor.from_checkpoint(make_checkpoint(tmp_path / "model"))
    table = predictor.spot(folder, fps=FPS)
    assert len(table) == 2 and table["type"].tolist() == ["micro", "micro"]
    spotted = [Span(r.onset, r.offset, r.type) for r in table.itertuples()]
    assert score_video("v", "s", coded, spotted).counts["micro"].tp == 2
    assert table["pred_label"].isin(CLASSES).all() and table["error"].isna().all()
    probs = table[[f"prob_{c}" for c in CLASSES]].to_numpy()
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    assert (table["confidence"] == probs.max(1)).all()
    assert (
        (table["onset"] <= table["apex_classified"]) & (table["apex_classified"] <= table["offset"])
    ).all()
    assert table["onset_s"].tolist() == pytest.approx(
        [(n - 1) / FPS for n in table["onset"]], abs=1e-3
    )

    # the CLI: same rows, with the input, as CSV and JSON
    out = tmp_path / "intervals.csv"
    args = [
        "predict",
        "--checkpoint",
        str(tmp_path / "model"),
        "--input_path",
        str(folder),
        "--long",
        "--fps",
        "30",
        "--output_path",
        str(out),
        "--json",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["onset"] for r in rows] == table["onset"].tolist()
    assert [r["pred_label"] for r in rows] == table["pred_label"].tolist()
    assert out.read_text().startswith("input,interval,onset,apex,offset,onset_s")


def test_a_run_into_the_video_edge_is_dropped() -> None:
    curve = bumps(300, [(100, 110, 1.0)])
    curve[290:] += 1.0  # rises to the last frame: the one-sided baseline, not an expression
    found = find_intervals(curve, list(range(300)), FPS, IntervalConfig())
    assert [(i.onset, i.offset) for i in found] == [(found[0].onset, found[0].offset)]
    assert 100 <= found[0].onset <= found[0].offset <= 110


def test_micro_from_the_short_scale_macro_from_the_long_one() -> None:
    from apexmer.spotting.intervals import intervals_from_curves

    micro_curve = bumps(900, [(100, 110, 1.0), (400, 410, 1.0)])
    macro_curve = bumps(900, [(380, 440, 2.0), (700, 759, 2.0)], seed=1)
    found = intervals_from_curves(
        micro_curve, macro_curve, list(range(900)), FPS, IntervalConfig()
    ).intervals
    # the micro at 400 lies inside the macro at 380-440 and goes; a short run in the macro
    # curve or a long one in the micro curve would be the other scale's business
    assert [(i.kind, i.onset // 100) for i in found] == [("micro", 1), ("macro", 3), ("macro", 7)]


def test_a_video_without_a_face_is_a_clear_error() -> None:
    from apexmer.data.frames import ArrayFrames
    from apexmer.errors import NoFaceError

    # 20 frames: 12 would now be too short to spot (IntervalConfig.min_frames: 13 at 30 fps)
    blank = ArrayFrames([np.full((120, 160, 3), 128, np.uint8)] * 20, name="empty.mp4")
    with pytest.raises(NoFaceError, match=r"empty\.mp4: no face found in any of its 20 frames"):
        spot_intervals(blank, fps=FPS)
