"""The ``ststnet`` flow style: the face box crop (no mask, fills the square), its flows in
the pipeline, recorded in preprocess.json and checkpoints, followed by the Predictor."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from apexmer.cli.main import app
from apexmer.data.frames import open_frames
from apexmer.data.synth import write_synthetic_corpus
from apexmer.errors import ConfigError
from apexmer.evaluation.flow_style import as_image_input, channel_correlations
from apexmer.face import AlignConfig, align_face, get_detector, transform_points
from apexmer.face.align import face_box, face_box_crop
from apexmer.inference import Predictor
from apexmer.inference.predictor import inference_spotter
from apexmer.preprocess.flow import FLOW_CHANNELS, FlowConfig, pair_features
from apexmer.preprocess.pipeline import PreprocessConfig, process_clip
from corpus_files import MEGC_ROWS, write_megc_csv
from faces import grace_with_landmarks

SIZE = 96


@pytest.fixture(scope="module")
def detector():
    return get_detector("dlib")


@pytest.fixture(scope="module")
def photo(detector) -> tuple[np.ndarray, np.ndarray]:
    return grace_with_landmarks(detector)


def test_face_box_crop_fills_the_square(photo) -> None:
    image, points = photo
    crop, matrix = face_box_crop(image, points, SIZE)
    assert crop.shape == (SIZE, SIZE, 3) and crop.dtype == np.uint8
    moved = transform_points(points, matrix)
    # cheek to cheek and brows to chin reach the four sides of the square
    np.testing.assert_allclose(moved[0:17, 0].min(), 0.0, atol=1e-9)
    np.testing.assert_allclose(moved[0:17, 0].max(), SIZE, atol=1e-9)
    np.testing.assert_allclose(moved[17:27, 1].min(), 0.0, atol=1e-9)
    np.testing.assert_allclose(moved[0:17, 1].max(), SIZE, atol=1e-9)
    x0, y0, x1, y1 = face_box(points)
    assert x1 - x0 > 50 and y1 - y0 > 50


def test_face_box_crop_has_no_mask_where_apexmer_has_one(photo) -> None:
    image, points = photo
    crop, _ = face_box_crop(image, points, SIZE)
    masked, _ = align_face(image, points, AlignConfig(size=SIZE))
    corner = (slice(0, 8), slice(0, 8))
    # apexmer's crop: the masked background is the constant fill in the corners
    assert (masked[corner] == 0).all()
    # the face box crop: image content everywhere, no constant border row or column
    assert crop[corner].std() > 1.0
    for edge in (crop[0], crop[-1], crop[:, 0], crop[:, -1]):
        assert edge.std() > 1.0
    assert (crop == 0).all(axis=2).mean() < 0.01


def test_flow_config_style_round_trip_and_legacy() -> None:
    config = FlowConfig(style="ststnet")
    assert config.to_dict()["style"] == "ststnet"
    assert FlowConfig.from_dict(config.to_dict()) == config
    old = {k: v for k, v in FlowConfig().to_dict().items() if k != "style"}
    assert FlowConfig.from_dict(old).style == "apexmer"  # written before the field
    with pytest.raises(ConfigError, match="flow style"):
        FlowConfig(style="matlab")


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("style_corpus")
    corpus = write_synthetic_corpus(out, subjects=1, clips_per_subject=1, seed=5, size=(320, 240))
    row = corpus.ground_truth.iloc[0]
    folder = corpus.frames_root / str(row["folder"]) / str(row["clip"])
    return folder, int(row["onset"]), int(row["offset"]), int(row["apex"])


def test_pipeline_computes_the_ststnet_flow_on_face_box_crops(clip, detector) -> None:
    folder, onset, offset, _ = clip
    style = FlowConfig(algorithm="farneback", style="ststnet")
    config = PreprocessConfig(align=AlignConfig(size=64), flow=style)
    with open_frames(folder) as source:
        res = process_clip(source, onset, offset, detector=detector, config=config)
        apex_points = res.landmarks["apex"].points
        first, apex_frame = source.read(res.onset), source.read(res.apex)
    a, matrix = face_box_crop(first, apex_points, 64)
    b, _ = face_box_crop(apex_frame, apex_points, 64)
    expected = pair_features(a, b, style, transform_points(apex_points, matrix))
    np.testing.assert_array_equal(res.flows["apex"], expected)
    # the other style reads the masked aligned crops: a different field
    other = PreprocessConfig(align=AlignConfig(size=64), flow=FlowConfig(algorithm="farneback"))
    with open_frames(folder) as source:
        res2 = process_clip(source, onset, offset, detector=detector, config=other)
    assert not np.allclose(res2.flows["apex"], res.flows["apex"])
    assert json.loads(json.dumps(config.to_dict()))["flow"]["style"] == "ststnet"


# ---------------------------------------------------------------- recorded and followed


def _megc_flow_manifest(tmp_path: Path) -> Path:
    """Synthetic stand-ins for the public flow images (28 x 28 (u, v, strain) PNGs named
    as distributed, with the space before .png) and their labels; the manifest CLI."""
    folder = tmp_path / "flows"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for _, subject, clip, _ in MEGC_ROWS:
        subject = {"6": "006", "7": "007"}.get(subject, subject)
        rgb = rng.integers(0, 256, (28, 28, 3), dtype=np.uint8)
        rgb[0, 0], rgb[0, 1] = 0, 255
        assert cv2.imwrite(str(folder / f"{subject}_{clip} .png"), rgb)
    labels = write_megc_csv(tmp_path / "combined_3class_gt.csv")
    manifest = tmp_path / "manifest.csv"
    args = ["data", "manifest", "--corpus", "megc-flow", "--coding", str(labels)]
    result = CliRunner().invoke(app, [*args, "--root", str(folder), "--out", str(manifest)])
    assert result.exit_code == 0, result.output
    return manifest


def test_a_megc_flow_model_records_ststnet_and_predict_follows_it(tmp_path, clip) -> None:
    manifest = _megc_flow_manifest(tmp_path)
    model = tmp_path / "model"
    args = ["train", "--data", str(manifest), "--config", "flow", "--out", str(model)]
    result = CliRunner().invoke(app, [*args, "--set", "train.epochs=1"])
    assert result.exit_code == 0, result.output
    meta = json.loads((model / "model.json").read_text())
    assert meta["preprocess"]["flow"]["style"] == "ststnet"
    assert meta["spotter"] == "motion" and meta["preprocess"]["spot"]["method"] == "motion"

    folder = clip[0]
    out = tmp_path / "predictions.csv"
    args = ["predict", "--checkpoint", str(model), "--input-path", str(folder)]
    result = CliRunner().invoke(app, [*args, "--output-path", str(out)])
    assert result.exit_code == 0, result.output
    assert "apex spotter motion, flow style ststnet" in result.stdout
    row = pd.read_csv(out).iloc[0]
    assert (row["spotter"], row["flow_style"]) == ("motion", "ststnet")

    # the flow the network saw is the face box flow of the onset and the spotted apex
    predictor = Predictor.from_checkpoint(model)
    assert predictor.preprocess.flow.style == "ststnet"
    r = predictor.predict_clips(folder)[0]
    with open_frames(folder) as source:
        first, apex = source.read(r.onset), source.read(r.apex)
    size = predictor.preprocess.align.size
    a, matrix = face_box_crop(first, r.landmarks.points, size)
    b, _ = face_box_crop(apex, r.landmarks.points, size)
    nose = transform_points(r.landmarks.points, matrix)
    expected = pair_features(a, b, predictor.preprocess.flow, nose)
    np.testing.assert_array_equal(r.flow, expected)


def test_checkpoints_without_the_fields_keep_apexmer_and_get_motion() -> None:
    legacy = {
        "config": {"name": "flow"},
        "preprocess": {"flow": {"algorithm": "tvl1"}},
    }
    assert PreprocessConfig.from_dict(legacy["preprocess"]).flow.style == "apexmer"
    assert inference_spotter(legacy) == "motion"
    assert inference_spotter({"config": {"name": "paper"}}) == "paper"
    assert inference_spotter({"spotter": "paper", "config": {"name": "flow"}}) == "paper"


# ---------------------------------------------------------------- self-check


def test_identical_inputs_correlate_exactly_one() -> None:
    rng = np.random.default_rng(3)
    features = rng.normal(size=(64, 64, 4)).astype(np.float32)
    x = as_image_input(features, FLOW_CHANNELS)
    assert x.shape == (3, 28, 28) and x.min() == 0 and x.max() == 1
    assert channel_correlations(x, x) == {"u": 1.0, "v": 1.0, "strain": 1.0}
    other = as_image_input(rng.normal(size=(64, 64, 4)).astype(np.float32), FLOW_CHANNELS)
    assert all(abs(r) < 0.3 for r in channel_correlations(x, other).values())


def test_check_flow_style_cli_reports_one_on_the_same_flow(clip, detector, tmp_path) -> None:
    """A distributed-layout PNG made from apexmer's own ststnet flow of a clip: the check
    recomputes that flow from the frames and finds the image again (8-bit rounding only)."""
    folder, _, _, apex = clip
    style = FlowConfig(algorithm="farneback", style="ststnet")
    config = PreprocessConfig(flow=style)
    with open_frames(folder) as source:
        res = process_clip(source, None, None, detector=detector, config=config, apex_label=apex)
    image = np.round(as_image_input(res.flows["apex"], FLOW_CHANNELS) * 255).astype(np.uint8)
    flows = tmp_path / "flows"
    flows.mkdir()
    subject, name = folder.parent.name, folder.name
    assert cv2.imwrite(str(flows / f"{subject}_{name} .png"), image.transpose(1, 2, 0)[:, :, ::-1])
    labels = tmp_path / "labels.csv"
    labels.write_text(
        "dataset,sub,filename_o,label,apex,imagename,sub_filename\n"
        f"casme2,{subject},{name},0,{apex},{subject}_{name} .png,{subject}_{name}\n"
    )
    manifest = tmp_path / "manifest.csv"
    args = ["data", "manifest", "--corpus", "megc-flow", "--coding", str(labels)]
    result = CliRunner().invoke(app, [*args, "--root", str(flows), "--out", str(manifest)])
    assert result.exit_code == 0, result.output
    args = ["data", "check-flow-style", "--manifest", str(manifest), "--frames"]
    args += [str(folder.parent.parent), "--flow", "farneback", "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    row = report["rows"][0]
    assert (row["onset"], row["apex"], row["apex_source"]) == (res.onset, apex, "labelled")
    for channel in ("u", "v", "strain"):
        assert report["mean"][channel] > 0.999
    # the other style is a different flow: it does not match the image as well
    args[-3:] = ["--style", "apexmer", "--flow", "farneback", "--json"]
    other = json.loads(CliRunner().invoke(app, args).stdout)["mean"]
    assert min(other["u"], other["v"]) < 0.99
