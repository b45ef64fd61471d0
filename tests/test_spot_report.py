"""``apexmer spot-eval`` on long-video corpora: scores, report, timelines, resume."""

from __future__ import annotations

import json
from contextlib import nullcontext
from dataclasses import replace

import cv2
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from apexmer.cli.main import app
from apexmer.data.long_corpora import read_long_videos
from apexmer.data.long_videos import Interval, LongVideo, LongVideoSet
from apexmer.data.synth_long import LONG_CODING_NAME, LONG_TRUTH_NAME, write_long_corpus
from apexmer.errors import ConfigError, DataError
from apexmer.evaluation import long_video_eval
from apexmer.evaluation.long_video_eval import (
    VideoSpotting,
    evaluate_long_videos,
    read_spotted_csv,
    spot_videos,
    tune_loso,
)
from apexmer.spotting.intervals import IntervalConfig, IntervalSpotResult, intervals_from_curves
from corpus_files import (
    write_casme2_lv_frames,
    write_casme2_lv_workbook,
    write_samm_lv_sheet,
)

FOLDERS = [
    ("s15", "15_0101disgustingteeth", 250),
    ("s15", "15_0401girlcrashing", 200),
    ("s16", "16_0502x", 200),
    ("s19", "19_0505y", 100),
    ("s16", "16_0508uncoded", 60),
]
# CASME2_LV_ROWS with smaller frame numbers (fewer frame files to write)
ROWS = (
    (1, "disgust1_1", 57, 72, 108, "4+10+14", "negative", "macro-expression", "disgust"),
    (1, "disgust1_2", 210, 216, 222, 4, "negative", "micro-expression", "disgust"),
    (1, "anger1_1", 120, 131, 0, "4+7", "negative", "macro-expression", "anger"),
    (2, "happy1_1", 30, 50, 90, 12, "positive", "macro-expression", "happy"),
    (2, "happy1_2", 150, 155, 162, "R12", "positive", "micro-expression", "happy"),
    (3, "disgust2_1", 40, 52, 0, "9", "negative", "macro-expression", "disgust"),
    (3, "happy3_1", 77, 80, 89, "6+12", "others", "micro-expression", "others"),
)


def _casme(tmp_path):
    coding = write_casme2_lv_workbook(tmp_path / "c.xlsx", rows=ROWS)
    write_casme2_lv_frames(tmp_path / "rawpic", FOLDERS)  # 19_0102 has no frames
    return coding


def _write_spotted(path, rows):
    pd.DataFrame(rows, columns=["video", "onset", "offset", "type"]).to_csv(path, index=False)
    return path


def test_spot_eval_scores_intervals_from_a_csv(tmp_path):
    coding = _casme(tmp_path)
    spotted = _write_spotted(
        tmp_path / "spotted.csv",
        [
            ("15_0101", 60, 108, "macro"),  # disgust1_1 57..108: IoU 49/52
            ("15_0101", 210, 222, "micro"),  # disgust1_2 exactly
            ("15_0401", 120, 142, "macro"),  # anger1_1, offset 0 -> 120..142 (mirrored)
            ("casme2-lv/s16/16_0502", 150, 180, "micro"),  # happy1_2 150..162: IoU 13/31
            ("16_0508", 10, 20, "micro"),  # an uncoded video: false positive
        ],
    )
    out = tmp_path / "report"
    args = ["spot-eval", "--corpus", "casme2-lv", "--coding", str(coding)]
    args += ["--root", str(tmp_path / "rawpic"), "--spotted", str(spotted), "--out", str(out)]
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    pooled = json.loads(result.stdout.strip().splitlines()[-1])["pooled"]
    # micro: coded 3 (disgust1_2, happy1_2, happy3_1), spotted 3, one TP
    assert {k: pooled["micro"][k] for k in ("tp", "fp", "fn")} == {"tp": 1, "fp": 2, "fn": 2}
    # macro: coded 4 (one in 19_0102 whose frames are missing: still coded), 2 TP
    assert {k: pooled["macro"][k] for k in ("tp", "fp", "fn")} == {"tp": 2, "fp": 0, "fn": 2}
    assert pooled["overall"]["f1"] == pytest.approx(2 * 3 / (2 * 3 + 2 + 4))
    saved = json.loads((out / "spot_eval.json").read_text())
    assert saved["pooled"] == pooled and len(saved["videos"]) == 6
    report = (out / "spot_report.md").read_text()
    assert "| micro | 3 | 3 | 1 | 2 | 2 |" in report
    assert "16_0502" in report and "Data problems (1)" in report
    table = pd.read_csv(out / "spotted_intervals.csv")
    assert len(table) == 5
    assert table.set_index("onset").loc[210, "match"] == "disgust1_2"
    for video in saved["videos"]:
        png = out / "timelines" / (video["key"].replace("/", "_") + ".png")
        assert cv2.imread(str(png)) is not None, png
    # the same scores from the library
    videos = read_long_videos("casme2-lv", coding, root=tmp_path / "rawpic")
    scores = evaluate_long_videos(videos, read_spotted_csv(spotted, videos)).scores
    assert scores.pooled["overall"].as_dict() == pooled["overall"]


def test_spot_eval_iou_option_and_samm(tmp_path):
    rows = [("006", "006_1_2", 120, 130, 150, "Micro - 1/2", "4")]
    coding = write_samm_lv_sheet(tmp_path / "s.xlsx", rows=rows)
    spotted = _write_spotted(tmp_path / "p.csv", [("006_1", 120, 140, "micro")])
    args = ["spot-eval", "--corpus", "samm-lv", "--coding", str(coding), "--spotted"]
    args += [str(spotted), "--out", str(tmp_path / "r"), "--json"]
    # no --root: scored from the CSV alone; 120..140 against 120..150: IoU 21/31 = 0.68
    strict = CliRunner().invoke(app, [*args, "--iou", "0.7"])
    loose = CliRunner().invoke(app, args)
    assert strict.exit_code == loose.exit_code == 0, strict.output + loose.output
    last = [json.loads(r.stdout.strip().splitlines()[-1]) for r in (strict, loose)]
    assert [payload["pooled"]["micro"]["tp"] for payload in last] == [0, 1]


def test_spotted_csv_errors_are_one_line(tmp_path):
    coding = _casme(tmp_path)
    videos = read_long_videos("casme2-lv", coding)
    bad = _write_spotted(tmp_path / "b.csv", [("99_0101", 1, 5, "micro")])
    with pytest.raises(DataError, match=r"row 2.*Fix"):
        read_spotted_csv(bad, videos)
    (tmp_path / "c.csv").write_text("video,onset\n15_0101,3\n")
    with pytest.raises(DataError, match="missing column"):
        read_spotted_csv(tmp_path / "c.csv", videos)
    run = CliRunner().invoke(
        app, ["spot-eval", "--corpus", "casme2-lv", "--coding", str(coding), "--json"]
    )
    assert run.exit_code != 0 and "--out" in str(run.exception)


@pytest.mark.slow
def test_spot_eval_runs_the_spotter_and_resumes(tmp_path):
    info = write_long_corpus(
        tmp_path / "lv", 1, 1, seed=2, seconds=8, micro=2, macro=1, size=(480, 360)
    )
    out = tmp_path / "report"
    args = ["spot-eval", "--corpus", "casme2-lv", "--coding", str(info.root / LONG_CODING_NAME)]
    args += ["--root", str(info.frames_root), "--out", str(out), "--json"]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    pooled = json.loads(first.stdout.strip().splitlines()[-1])["pooled"]
    truth = pd.read_csv(info.root / LONG_TRUTH_NAME)
    assert pooled["micro"]["coded"] == 2 and pooled["macro"]["coded"] == 1
    assert pooled["overall"]["spotted"] == len(pd.read_csv(out / "spotted_intervals.csv"))
    spotted_csv = (out / "spotted_intervals.csv").read_text()
    cached = list((out / "spotted").glob("*.json"))
    saved = json.loads(cached[0].read_text())
    assert len(cached) == 1 and len(saved["curve"]) == len(saved["macro_curve"]) == 240
    assert len(truth[truth["in_sheet"]]) == 3
    stamp = cached[0].stat().st_mtime_ns
    again = CliRunner().invoke(app, args)  # resumes from the cache: same scores
    assert json.loads(again.stdout.strip().splitlines()[-1])["pooled"] == pooled
    assert cached[0].stat().st_mtime_ns == stamp
    tuned = CliRunner().invoke(app, [*args, "--loso-tune"])  # one subject: default kept
    assert tuned.exit_code == 0, tuned.output
    chosen = json.loads((out / "spot_eval.json").read_text())["loso_chosen"]
    assert chosen == {"s15": IntervalConfig().mad_k}
    # re-thresholded from the cached curves with the spotter's own mad_k: what it spotted
    assert (out / "spotted_intervals.csv").read_text() == spotted_csv


def _bump_video(subject: str, rng, true_height: float, spurious_height: float | None):
    """A 600-frame score curve: bounded noise (uniform in [-1, 1]), coded 9-frame bumps of
    ``true_height``, uncoded bumps of ``spurious_height`` between them."""
    curve = rng.uniform(-1, 1, 600)
    bump = np.sin(np.linspace(0, np.pi, 9))
    intervals = []
    for k, start in enumerate(range(40, 560, 100)):
        curve[start : start + 9] += true_height * bump
        intervals.append(Interval(start + 1, start + 5, start + 9, "micro", row=k))
        if spurious_height is not None:
            curve[start + 50 : start + 59] += spurious_height * bump
    video = LongVideo("casme2-lv", subject, f"{subject}_0101", None, 30.0, tuple(intervals))
    macro = np.random.default_rng(1).uniform(-1, 1, 600)  # the macro score: noise only
    spotting = VideoSpotting(video.key, (), curve, tuple(range(1, 601)), macro_curve=macro)
    return video, spotting


def test_loso_tuning_never_uses_the_held_out_subject():
    rng = np.random.default_rng(0)
    # subject a: weak true bumps only (found with a low mad_k);
    # subject b: strong true bumps and weaker uncoded ones (only a high mad_k is right).
    a, spot_a = _bump_video("a", rng, 4.5, None)
    b, spot_b = _bump_video("b", rng, 9.5, 5.0)
    videos = LongVideoSet([a, b], "casme2-lv", "test")
    spottings = {a.key: spot_a, b.key: spot_b}
    tuned, tuning = tune_loso(videos, spottings)

    def f1_at(value: float) -> dict[str, float]:
        """Each video's overall F1 with every video thresholded at ``value``."""
        at, _ = tune_loso(videos, spottings, replace(IntervalConfig(), mad_k=value), (value,))
        return {
            v.key: v.counts["overall"].f1 or 0.0
            for v in evaluate_long_videos(videos, at).scores.videos
        }

    grid = tuning.grid
    assert IntervalConfig().mad_k in grid  # the config's own value is always searched
    table = {value: f1_at(value) for value in grid}
    best = {  # best value on each video alone (ties: the larger)
        key: max(sorted(grid, reverse=True), key=lambda v, key=key: table[v][key])
        for key in (a.key, b.key)
    }
    # each subject gets the best value on the OTHER subject, never its own
    assert tuning.chosen == {"a": best[b.key], "b": best[a.key]}
    assert table[tuning.chosen["a"]][a.key] < table[best[a.key]][a.key]
    assert table[tuning.chosen["b"]][b.key] < table[best[b.key]][b.key]
    scores = {
        v.key: v.counts["overall"].f1 for v in evaluate_long_videos(videos, tuned).scores.videos
    }
    assert scores == {
        a.key: table[tuning.chosen["a"]][a.key],
        b.key: table[tuning.chosen["b"]][b.key],
    }
    assert f"per held-out subject: a: {tuning.chosen['a']:g}" in tuning.describe()
    # one subject alone: nothing to tune on, the config's value stays
    _, only = tune_loso(LongVideoSet([a], "casme2-lv", "t"), {a.key: spot_a})
    assert only.chosen == {"a": IntervalConfig().mad_k}


def _two_scale_curves(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A micro score with two micro bumps (one inside the macro) and a long run that is
    the macro score's business, and a macro score with one macro bump and a short one."""
    rng = np.random.default_rng(seed)
    micro, macro = np.abs(rng.normal(0.1, 0.02, (2, 600)))

    def bump(curve: np.ndarray, onset: int, offset: int, height: float) -> None:
        t = np.arange(offset - onset + 1)
        curve[onset : offset + 1] += height * np.sin(np.pi * (t + 0.5) / len(t))

    bump(micro, 100, 110, 1.0)
    bump(micro, 330, 340, 1.0)  # inside the macro 300..359: dropped
    bump(micro, 450, 509, 1.0)  # 2 s: macro-long in the micro score, not taken
    bump(macro, 300, 359, 2.0)
    bump(macro, 200, 208, 2.0)  # micro-short in the macro score, not taken
    return micro, macro


def test_rethresholding_with_the_configs_mad_k_gives_the_spotters_intervals(tmp_path, monkeypatch):
    """spot_videos (through its cache) then tune_loso at the config's own mad_k: every
    interval, micro and macro, and both thresholds are the spotter's. An older cache file
    (no macro score) is spotted again, not misread."""
    config = IntervalConfig()
    numbers = list(range(1, 601))
    calls = []

    def fake_spotter(source, fps, detector, cfg):  # spot_intervals on fixed curves
        calls.append(source)
        micro, macro = _two_scale_curves(seed=len(calls))
        two = intervals_from_curves(micro, macro, numbers, fps, cfg)
        return IntervalSpotResult(
            intervals=two.intervals,
            curve=micro,
            numbers=numbers,
            fps=fps,
            threshold=two.micro_threshold,
            lag=cfg.lag(fps),
            motion=None,
            macro_curve=macro,
            macro_threshold=two.macro_threshold,
        )

    monkeypatch.setattr(long_video_eval, "spot_intervals", fake_spotter)
    # the fake spotter gets the path; a source is opened as a context manager
    monkeypatch.setattr(long_video_eval, "open_frames", lambda path: nullcontext(str(path)))
    videos = LongVideoSet(
        [
            LongVideo("casme2-lv", s, f"{s}_0101", tmp_path / s, 30.0, n_frames=600)
            for s in ("a", "b", "c")
        ],
        "casme2-lv",
        "test",
    )
    cache = tmp_path / "spotted"
    spotted = spot_videos(videos, None, config, cache=cache)
    assert len(calls) == 3
    for s in spotted.values():
        kinds = [i.kind for i in s.intervals]
        assert kinds.count("micro") == 1 and kinds.count("macro") == 1, s.intervals
    again = spot_videos(videos, None, config, cache=cache)  # read back from the cache
    assert len(calls) == 3
    for key, s in spotted.items():
        assert again[key].intervals == s.intervals
        assert np.array_equal(again[key].macro_curve, s.macro_curve)
        assert (again[key].threshold, again[key].macro_threshold) == (
            s.threshold,
            s.macro_threshold,
        )
    tuned, tuning = tune_loso(videos, again, config, grid=(config.mad_k,))
    assert set(tuning.chosen.values()) == {config.mad_k}
    for key, s in spotted.items():
        assert tuned[key].intervals == s.intervals
        assert (tuned[key].threshold, tuned[key].macro_threshold) == (
            s.threshold,
            s.macro_threshold,
        )
    # another mad_k moves both thresholds
    high, _ = tune_loso(videos, again, replace(config, mad_k=12.0), grid=(12.0,))
    for key, s in spotted.items():
        assert high[key].threshold > s.threshold and high[key].macro_threshold > s.macro_threshold
    # a cache file of the previous format (micro curve only) is spotted again
    path = cache / "a__a_0101.json"
    old = json.loads(path.read_text())
    del old["macro_curve"], old["macro_threshold"], old["format"]
    path.write_text(json.dumps(old))
    spot_videos(videos, None, config, cache=cache)
    assert len(calls) == 4 and json.loads(path.read_text())["format"] == 2
    # a curve without its macro score cannot be re-thresholded: said, not guessed
    key = videos.videos[0].key
    with pytest.raises(ConfigError, match="macro_curve"):
        tune_loso(videos, {**spotted, key: replace(spotted[key], macro_curve=None)}, config)
