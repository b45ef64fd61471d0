"""Preprocessing pipeline on a real synthetic corpus: crops, manifest, problems, resume, CLI."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from apexmer.cli.main import app
from apexmer.data.casme2 import read_casme2
from apexmer.data.manifest import read_manifest
from apexmer.data.synth import write_synthetic_corpus
from apexmer.face.align import AlignConfig
from apexmer.fileio import write_json
from apexmer.preprocess import pipeline
from apexmer.preprocess.flow import FLOW_CHANNELS, FlowConfig, compute_flow
from apexmer.preprocess.pipeline import PreprocessConfig, mid_frame, preprocess_corpus

CONFIG = PreprocessConfig(align=AlignConfig(size=64))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("corpus")
    return write_synthetic_corpus(out, subjects=2, clips_per_subject=3, seed=3, size=(320, 240))


@pytest.fixture(scope="module")
def done(corpus, tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache = tmp_path_factory.mktemp("cache")
    samples = read_casme2(corpus.coding, root=corpus.frames_root, classes="all")
    preprocess_corpus(samples, cache, CONFIG, workers=1)
    return cache


def digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_mid_frame_is_midway_between_onset_and_apex() -> None:
    assert mid_frame(list(range(10, 31)), 10, 20) == 15
    assert mid_frame([10, 12, 14, 18, 20], 10, 20) == 14  # nearest existing, lower on ties
    assert mid_frame(list(range(5, 9)), 5, 5) == 5


def test_manifest_crops_and_apexes(done: Path, corpus) -> None:
    manifest = read_manifest(done / "manifest.csv")
    truth = corpus.ground_truth.set_index("clip")
    assert len(manifest) == len(truth) == 6
    assert manifest.coding_version == "casme2-2019"
    table = pd.read_csv(done / "manifest.csv")
    assert {"apex_labelled", "apex_spotted", "mid", "onset_path", "mid_path"} <= set(table)
    close = 0
    for s in manifest:
        for path in (s.apex_path, s.mid_path, s.onset_path):
            assert cv2.imread(str(path)).shape == (64, 64, 3)
        row = truth.loc[s.clip]
        assert s.onset == row["onset"] and s.offset == row["offset"]
        close += abs(s.apex_spotted - row["apex"]) <= 1
        assert (
            s.onset
            <= int(table.set_index("clip").loc[s.clip, "mid"])
            <= s.extra.get("apex_used", s.apex)
        )
    assert close >= 4  # small 320x240 frames; the 90% target is bench/spotting_bench.py
    assert pd.read_csv(done / "problems.csv").empty
    settings = json.loads((done / "preprocess.json").read_text())
    assert settings["preprocess"]["detector"] == "dlib"
    assert settings["preprocess"]["spot"]["offset_term"] is True


def test_killed_run_resumes_to_identical_files(
    corpus, done: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    samples = read_casme2(corpus.coding, root=corpus.frames_root, classes="all")
    real = pipeline.process_sample
    calls = {"n": 0}

    def dies(*args, **kwargs):
        if calls["n"] == 3:
            raise KeyboardInterrupt
        calls["n"] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline, "process_sample", dies)
    with pytest.raises(KeyboardInterrupt):
        preprocess_corpus(samples, tmp_path, CONFIG, workers=1)
    assert not (tmp_path / "manifest.csv").exists()
    assert len(list((tmp_path / "records").rglob("*.json"))) == 3
    monkeypatch.setattr(pipeline, "process_sample", real)
    preprocess_corpus(samples, tmp_path, CONFIG, workers=1)
    assert digest(tmp_path) == digest(done)


def test_other_settings_cannot_reuse_a_cache(corpus, done: Path) -> None:
    samples = read_casme2(corpus.coding, root=corpus.frames_root, classes="all")
    other = PreprocessConfig(apex="spotted", align=AlignConfig(size=64))
    with pytest.raises(Exception, match="other preprocessing settings"):
        preprocess_corpus(samples, done, other)


def test_parallel_workers_give_the_same_files(corpus, done: Path, tmp_path: Path) -> None:
    samples = read_casme2(corpus.coding, root=corpus.frames_root, classes="all")
    preprocess_corpus(samples, tmp_path, CONFIG, workers=2)
    assert digest(tmp_path) == digest(done)


def test_bad_clips_go_to_problems_and_the_rest_is_processed(corpus, tmp_path: Path) -> None:
    root = tmp_path / "frames"
    shutil.copytree(corpus.frames_root, root)
    samples = read_casme2(corpus.coding, root=root, classes="all").samples
    blank, corrupt, gray, deep, short, outside = samples[:6]
    for f in blank.frames.iterdir():  # no face anywhere
        cv2.imwrite(str(f), np.full((240, 320, 3), 90, np.uint8))
    onset_file = sorted(corrupt.frames.iterdir(), key=lambda p: int(p.stem[3:]))[0]
    onset_file.write_bytes(onset_file.read_bytes()[:200])  # truncated JPEG
    for f in gray.frames.iterdir():  # grayscale frames
        cv2.imwrite(str(f), cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2GRAY))
    for f in list(deep.frames.iterdir()):  # 16-bit PNG frames
        img = cv2.imread(str(f)).astype(np.uint16) * 257
        cv2.imwrite(str(f.with_suffix(".png")), img)
        f.unlink()
    samples[4] = short.with_(offset=short.onset + 2, apex=short.onset + 1)  # < lag + 1
    samples[5] = outside.with_(onset=outside.onset - 50)  # onset before the first frame
    from apexmer.data.sample import SampleSet

    sample_set = SampleSet(
        samples=samples, classes=("x",), coding_version="casme2-2019", source="test"
    )
    result = preprocess_corpus(sample_set, tmp_path / "cache", CONFIG, workers=1)
    problems = pd.read_csv(result.problems_csv)
    reasons = dict(zip(problems["sample"], problems["message"], strict=True))
    assert set(reasons) == {blank.key, corrupt.key, short.key, outside.key}
    assert "no face" in reasons[blank.key].lower()
    assert "decode" in reasons[corrupt.key] or "corrupt" in reasons[corrupt.key]
    assert "lag" in reasons[short.key]
    assert str(outside.onset - 50) in reasons[outside.key]
    assert result.n_ok == 2  # gray and 16-bit clips processed
    ok = {s.key for s in read_manifest(result.manifest)}
    assert ok == {gray.key, deep.key}


def test_cli_spot_spot_eval_and_preprocess(corpus, tmp_path: Path) -> None:
    runner = CliRunner()
    row = corpus.ground_truth.iloc[0]
    folder = corpus.frames_root / row["folder"] / row["clip"]
    res = runner.invoke(
        app,
        [
            "spot",
            "--frames",
            str(folder),
            "--onset",
            str(row["onset"]),
            "--offset",
            str(row["offset"]),
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    spot = json.loads(res.output)
    assert set(spot) == {"apex", "curve", "onset", "offset"}
    assert spot["onset"] == row["onset"] and spot["offset"] == row["offset"]
    assert len(spot["curve"]) == row["offset"] - row["onset"] + 1
    assert abs(spot["apex"] - row["apex"]) <= 1

    res = runner.invoke(
        app,
        [
            "spot-eval",
            "--corpus",
            "casme2",
            "--coding",
            str(corpus.coding),
            "--root",
            str(corpus.frames_root),
            "--json",
            "--out",
            str(tmp_path / "se"),
        ],
    )
    assert res.exit_code == 0, res.output
    scores = json.loads(res.output)
    assert set(scores) == {"n", "mae", "median", "within_1", "within_5", "within_10"}
    assert scores["n"] == 5  # the "/" apex row has no label
    assert 0 <= scores["within_1"] <= scores["within_5"] <= scores["within_10"] <= 1
    assert (tmp_path / "se" / "spotting_errors.png").stat().st_size > 0

    res = runner.invoke(
        app,
        [
            "preprocess",
            "--corpus",
            "casme2",
            "--coding",
            str(corpus.coding),
            "--root",
            str(corpus.frames_root),
            "--out",
            str(tmp_path / "c"),
            "--size",
            "48",
            "--classes",
            "all",
        ],
    )
    assert res.exit_code == 0, res.output
    assert len(read_manifest(tmp_path / "c" / "manifest.csv")) == 6


def test_face_lost_on_the_mid_frame_fails_the_sample(corpus, tmp_path: Path) -> None:
    root = tmp_path / "frames"
    shutil.copytree(corpus.frames_root, root)
    samples = read_casme2(corpus.coding, root=root, classes="all").samples
    sample = samples[0]
    mid = mid_frame(
        sorted(int(p.stem[3:]) for p in sample.frames.iterdir()), sample.onset, sample.apex
    )
    cv2.imwrite(str(sample.frames / f"img{mid}.jpg"), np.zeros((240, 320, 3), np.uint8))
    from apexmer.data.sample import SampleSet

    one = SampleSet(samples=[sample], classes=("x",), coding_version="v", source="t")
    result = preprocess_corpus(one, tmp_path / "cache", CONFIG, workers=1)
    assert result.n_ok == 0
    assert "no face" in pd.read_csv(result.problems_csv)["message"][0].lower()


def test_resume_redoes_changed_and_failed_samples(corpus, tmp_path: Path) -> None:
    samples = read_casme2(corpus.coding, root=corpus.frames_root, classes="all")
    first = samples.samples[0]
    samples.samples = [first]
    cache = tmp_path / "cache"
    preprocess_corpus(samples, cache, CONFIG)
    record = json.loads(pipeline.record_path(cache, first).read_text())
    # another offset in the sheet: the record no longer matches and is redone
    samples.samples = [first.with_(offset=first.offset - 1)]
    preprocess_corpus(samples, cache, CONFIG)
    redone = json.loads(pipeline.record_path(cache, first).read_text())
    assert redone["offset"] == first.offset - 1 != record["offset"]
    # a failed sample is retried once its frames are fixed
    broken = first.with_(frames=tmp_path / "nowhere")
    samples.samples = [broken]
    assert preprocess_corpus(samples, cache, CONFIG).n_ok == 0
    samples.samples = [first]
    assert preprocess_corpus(samples, cache, CONFIG).n_ok == 1


def test_bad_settings_are_refused_before_a_cache_exists(tmp_path: Path) -> None:
    from apexmer.errors import ConfigError

    for bad in ({"apex": "labeled"}, {"align_per": "clips"}, {"detector": "nope"}):
        with pytest.raises(ConfigError):
            PreprocessConfig(**bad)
    for option, value in (("--apex", "labeled"), ("--flow", "raft"), ("--flow-global", "nose")):
        res = CliRunner().invoke(
            app,
            [
                "preprocess",
                "--corpus",
                "casme2",
                "--root",
                str(tmp_path),
                "--out",
                str(tmp_path / "c"),
                option,
                value,
            ],
        )
        assert res.exit_code != 0 and not (tmp_path / "c").exists()
        assert value in str(res.exception)


def test_spotting_scores_without_clips_are_json_null() -> None:
    from apexmer.spotting.apex_eval import spotting_scores

    scores = spotting_scores([None, float("nan")])
    assert scores["n"] == 0 and json.loads(json.dumps(scores))["mae"] is None


# ---------------------------------------------------------------- optical flow


def test_flows_are_written_beside_the_crops_and_in_the_manifest(done: Path) -> None:
    manifest = read_manifest(done / "manifest.csv")
    table = pd.read_csv(done / "manifest.csv")
    assert {"flow_path", "flow_mid_path", "flow"} <= set(table)
    assert set(table["flow"]) == {"tvl1"}
    settings = json.loads((done / "preprocess.json").read_text())["preprocess"]
    assert settings["flow"] == FlowConfig().to_dict()
    assert settings["flow"]["params"]["scales"] == 3
    for s in manifest:
        assert s.flow_path.name == "flow_apex.npy" and s.flow_mid_path.name == "flow_mid.npy"
        apex = np.load(s.flow_path)
        assert apex.shape == (64, 64, len(FLOW_CHANNELS)) and apex.dtype == np.float16
        assert np.load(s.flow_mid_path).shape == apex.shape
        picture = cv2.imread(str(s.flow_path.with_suffix(".png")))
        assert picture.shape == (64, 64, 3)
        # the stored field is the flow of the stored crops, less one global (nose) vector
        onset, crop = cv2.imread(str(s.onset_path)), cv2.imread(str(s.apex_path))
        again = compute_flow(onset, crop, CONFIG.flow)
        offset = apex[..., :2].astype(np.float32) - again
        assert np.abs(offset - np.median(offset, axis=(0, 1))).max() < 2e-3
        features = apex.astype(np.float32)
        np.testing.assert_allclose(
            features[..., 3], np.hypot(features[..., 0], features[..., 1]), atol=2e-3
        )
        assert (features[..., 2] >= 0).all()


def test_flow_files_missing_are_redone_to_identical_files(
    corpus, done: Path, tmp_path: Path
) -> None:
    cache = tmp_path  # as deep as ``done``: the manifest's relative frame paths match
    shutil.copytree(done, cache, dirs_exist_ok=True)
    samples = read_casme2(corpus.coding, root=corpus.frames_root, classes="all")
    first = samples.samples[0]
    flow_file = cache / "images" / first.dataset / first.subject / first.clip / "flow_mid.npy"
    flow_file.unlink()
    assert not pipeline.is_done(cache, first)
    preprocess_corpus(samples, cache, CONFIG, workers=1)
    assert digest(cache) == digest(done)


def test_flow_uses_the_apex_transform_for_both_frames_whatever_align_per(corpus) -> None:
    from apexmer.data.frames import open_frames
    from apexmer.face.landmarks import get_detector

    samples = read_casme2(corpus.coding, root=corpus.frames_root, classes="all")
    sample = samples.samples[1]
    detector = get_detector("dlib")
    results = {
        per: pipeline.process_clip(
            open_frames(sample.frames),
            sample.onset,
            sample.offset,
            detector=detector,
            config=PreprocessConfig(align=AlignConfig(size=64), align_per=per),
            apex_label=sample.apex,
        )
        for per in ("clip", "frame")
    }
    assert set(results["clip"].flows) == {"apex", "mid"}
    for role in ("apex", "mid"):
        np.testing.assert_array_equal(results["clip"].flows[role], results["frame"].flows[role])
        assert results["clip"].flows[role].shape == (64, 64, 4)
    # the expression moves the face: the apex flow is larger than the noise floor
    assert float(np.percentile(results["clip"].flows["apex"][..., 3], 95)) > 0.1


def test_flow_none_writes_no_flow_and_old_configs_mean_none(corpus, tmp_path: Path) -> None:
    res = CliRunner().invoke(
        app,
        [
            "preprocess",
            "--corpus",
            "casme2",
            "--coding",
            str(corpus.coding),
            "--root",
            str(corpus.frames_root),
            "--out",
            str(tmp_path / "c"),
            "--size",
            "48",
            "--classes",
            "all",
            "--flow",
            "none",
        ],
    )
    assert res.exit_code == 0, res.output
    assert not list((tmp_path / "c").rglob("flow_*"))
    table = pd.read_csv(tmp_path / "c" / "manifest.csv", keep_default_na=False)
    assert "flow" not in table and set(table["flow_path"]) == {""}
    settings = json.loads((tmp_path / "c" / "preprocess.json").read_text())
    assert settings["preprocess"]["flow"] is None
    # a dict from before flow existed reads as "no flow", and such a cache is reused by it
    old = {k: v for k, v in settings["preprocess"].items() if k != "flow"}
    assert PreprocessConfig.from_dict(old).flow is None
    assert PreprocessConfig.from_dict(old).to_dict() == settings["preprocess"]
    write_json(tmp_path / "c" / "preprocess.json", {**settings, "preprocess": old})
    samples = read_casme2(corpus.coding, root=corpus.frames_root, classes="all")
    none = PreprocessConfig.from_dict(settings["preprocess"])
    assert preprocess_corpus(samples, tmp_path / "c", none).n_ok == 6
    with pytest.raises(Exception, match="other preprocessing settings"):
        preprocess_corpus(samples, tmp_path / "c", PreprocessConfig(align=AlignConfig(size=48)))
