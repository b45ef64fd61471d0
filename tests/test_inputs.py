"""The input registry: kinds and channels, flow files (.npy and 8-bit images), flow
augmentation against hand-computed fields, one array per clip whether built from a
ClipResult or loaded from the files preprocessing wrote, LOSO and fold packing on flow
manifests, and a flow checkpoint round trip."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from apexmer.cli.main import app
from apexmer.config import DataConfig, load_config
from apexmer.data.casme2 import read_casme2
from apexmer.data.frames import open_frames
from apexmer.data.manifest import read_manifest, write_manifest
from apexmer.data.sample import Sample, SampleSet
from apexmer.data.synth import CODING_NAME, FRAMES_DIR, write_synthetic_corpus
from apexmer.errors import ConfigError, DataError
from apexmer.evaluation.folds import train_fold, train_fold_group
from apexmer.evaluation.protocol import run_loso
from apexmer.evaluation.splits import loso_folds
from apexmer.face.align import AlignConfig
from apexmer.face.landmarks import get_detector
from apexmer.inference import Predictor
from apexmer.preprocess.flow import FlowConfig, flow_features
from apexmer.preprocess.pipeline import (
    ClipResult,
    PreprocessConfig,
    preprocess_corpus,
    process_clip,
)
from apexmer.training.augment import AugmentConfig, augment_batch, rotate_batch, rotate_vectors
from apexmer.training.checkpoint import load_checkpoint, read_metadata
from apexmer.training.dataset import load_manifest_data
from apexmer.training.deploy import train_deployable
from apexmer.training.engine import predict_proba
from apexmer.training.inputs import (
    IMAGE_CHANNELS,
    augment_config,
    check_model_input,
    get_input,
    input_channels,
    list_inputs,
    load_flow,
    prepare_batch,
)

CLASSES = ("negative", "positive", "surprise")
FLOW = [
    "model.name=ststnet",
    "data.input=flow",
    "data.input_size=28",
    "train.epochs=2",
    "train.batch_size=8",
    "train.threads=1",
    "optim.lr=0.003",
    "augment.rotation_deg=10",
]


# ---------------------------------------------------------------- tiny flow corpora


def motion(label: int, rng: np.random.Generator, size: int) -> np.ndarray:
    """(size, size, 2) flow in pixels: the class moves one patch (brows up, mouth corners
    out, or nothing), plus noise."""
    flow = rng.normal(0, 0.05, (size, size, 2)).astype(np.float32)
    y, x = np.mgrid[0:size, 0:size]
    if label == 0:  # brows raised: v < 0 on a band in the upper third
        flow[(y > size * 0.2) & (y < size * 0.35), 1] -= 1.0
    elif label == 1:  # mouth corners pulled out: u < 0 on the left, u > 0 on the right
        band = (y > size * 0.65) & (y < size * 0.8)
        flow[band & (x < size * 0.4), 0] -= 1.0
        flow[band & (x > size * 0.6), 0] += 1.0
    return flow


def to_flow_image(features: np.ndarray) -> np.ndarray:
    """(u, v, strain) min-max scaled to 0..255 as STSTNet/HTNet ship them, as the BGR array
    cv2.imwrite expects (so the file's R, G, B are u, v, strain)."""
    rgb = np.empty((*features.shape[:2], 3), np.uint8)
    for c in range(3):
        ch = features[:, :, c]
        rgb[:, :, c] = np.rint(255 * (ch - ch.min()) / (ch.max() - ch.min()))
    return rgb[:, :, ::-1].copy()


def write_flow_manifest(
    folder: Path, kind: str, subjects: int = 4, per_subject: int = 6, size: int = 28
) -> Path:
    """``folder/manifest.csv`` with only flow_path: ``.npy`` features (S, S, 4) float16 as
    preprocessing writes them, or 8-bit (u, v, strain) images named '<subject>_<clip> .png'."""
    rng = np.random.default_rng(0)
    samples = []
    for s in range(1, subjects + 1):
        for c in range(per_subject):
            label = c % len(CLASSES)
            features = flow_features(motion(label, rng, size))
            if kind == "npy":
                path = folder / "flows" / f"sub{s:02d}" / f"EP{c:02d}" / "flow_apex.npy"
                path.parent.mkdir(parents=True, exist_ok=True)
                np.save(path, features.astype(np.float16))
            else:
                path = folder / "flows" / f"sub{s:02d}_EP{c:02d} .png"
                path.parent.mkdir(parents=True, exist_ok=True)
                assert cv2.imwrite(str(path), to_flow_image(features))
            samples.append(
                Sample(
                    dataset="megc",
                    subject=f"sub{s:02d}",
                    clip=f"EP{c:02d}",
                    label=CLASSES[label],
                    flow_path=path,
                )
            )
    manifest = folder / "manifest.csv"
    write_manifest(SampleSet(samples, CLASSES, "composite", "tiny flows"), manifest)
    return manifest


@pytest.fixture(scope="module")
def npy_manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_flow_manifest(tmp_path_factory.mktemp("npy"), "npy")


@pytest.fixture(scope="module")
def png_manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_flow_manifest(tmp_path_factory.mktemp("png"), "png")


# ---------------------------------------------------------------- registry


def test_registry_lists_kinds_with_channels_and_dtypes() -> None:
    assert list_inputs() == ["frame", "diff", "flow"]
    assert input_channels(DataConfig()) == IMAGE_CHANNELS
    assert input_channels(DataConfig(input="diff")) == IMAGE_CHANNELS
    assert input_channels(DataConfig(input="flow")) == ("u", "v", "strain")
    data = DataConfig(input="flow", flow_channels=("v", "magnitude"))
    assert input_channels(data) == ("v", "magnitude")
    assert get_input("frame").dtype == get_input("diff").dtype == torch.uint8
    assert get_input("flow").dtype == torch.float16
    assert get_input("flow").describe(DataConfig(input="flow")) == (
        "onset->apex optical flow (u, v, strain)"
    )
    with pytest.raises(ConfigError, match="unknown input kind"):
        get_input("depth")


def test_bad_flow_settings_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="repeats"):
        load_config("demo", ["data.flow_channels=[u, u]"])
    with pytest.raises(ConfigError, match=r"data\.flow_channels"):
        load_config("demo", ["data.flow_channels=[u, w]"])
    with pytest.raises(ConfigError, match="onset"):
        load_config("demo", ["data.input=flow", "data.frame=onset"])
    one = load_config("demo", [*FLOW, "data.flow_channels=[u, strain]"])
    with pytest.raises(ConfigError, match="both u and v"):
        augment_config(one)
    with pytest.raises(ConfigError, match="both u and v"):
        check_model_input(one)  # what LOSO and `apexmer train` run before loading data
    # No rotation: u alone is fine (a flip only needs u).
    aug = augment_config(
        load_config("demo", [*FLOW, "data.flow_channels=[u]", "augment.rotation_deg=0"])
    )
    assert aug.u_channel == 0 and aug.v_channel is None


def test_model_that_does_not_take_the_input_is_refused_early(npy_manifest, tmp_path) -> None:
    config = load_config("demo", [*FLOW, "model.name=off_apexnet"])  # needs exactly (u, v)
    with pytest.raises(ConfigError, match=r"off_apexnet does not take flow input \(u, v, strain\)"):
        run_loso(npy_manifest, config, tmp_path / "run")
    assert not (tmp_path / "run").exists()
    ok = load_config("demo", [*FLOW, "model.name=off_apexnet", "data.flow_channels=[u, v]"])
    data = load_manifest_data(npy_manifest, ok.data)
    assert data.inputs.shape == (24, 2, 28, 28) and data.inputs.dtype == torch.float16


def test_frame_and_diff_policies_unchanged() -> None:
    demo = load_config("demo", ["data.input=frame", "augment.grayscale_p=0.2"])
    frame = augment_config(demo)
    assert (frame.fill, frame.grayscale_p, frame.u_channel) == (0.0, 0.2, None)
    diff = augment_config(load_config("demo", ["data.input=diff"]))
    assert diff.fill == pytest.approx(128 / 255) and diff.u_channel is None
    x = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    mean = torch.tensor(demo.data.mean).view(1, 3, 1, 1)
    std = torch.tensor(demo.data.std).view(1, 3, 1, 1)
    torch.testing.assert_close(prepare_batch(x, demo), (x.float() / 255 - mean) / std)
    flow = augment_config(load_config("demo", FLOW))
    assert (flow.grayscale_p, flow.fill, flow.u_channel, flow.v_channel) == (0.0, 0.0, 0, 1)


# ---------------------------------------------------------------- flow augmentation


def hand_field() -> torch.Tensor:
    """(1, 3, 32, 32): u, v and a scalar (strain-like) channel, all different."""
    g = torch.Generator().manual_seed(0)
    return torch.randn(1, 3, 32, 32, generator=g)


def test_flip_mirrors_the_field_and_negates_u() -> None:
    x = hand_field()
    cfg = AugmentConfig(grayscale_p=0, hflip_p=1.0, rotation_deg=0, u_channel=0, v_channel=1)
    out = augment_batch(x, cfg, torch.Generator().manual_seed(1))
    w = x.shape[-1]
    for col in range(w):  # u'(x, y) = -u(W-1-x, y); v' and scalars only move
        assert torch.equal(out[0, 0, :, col], -x[0, 0, :, w - 1 - col])
        assert torch.equal(out[0, 1, :, col], x[0, 1, :, w - 1 - col])
        assert torch.equal(out[0, 2, :, col], x[0, 2, :, w - 1 - col])
    # Flipping twice is the identity; images are flipped without negation.
    assert torch.equal(augment_batch(out, cfg, torch.Generator().manual_seed(1)), x)
    image = AugmentConfig(grayscale_p=0, hflip_p=1.0, rotation_deg=0)
    assert torch.equal(augment_batch(x, image), x.flip(-1))


def test_rotation_turns_a_uniform_field_with_the_grid() -> None:
    """Image coordinates, y DOWN; a positive angle turns counter-clockwise on the screen.
    Uniform (u, v) = (1, 0), pointing right: +90 degrees gives (0, -1), pointing up on the
    screen; -90 degrees gives (0, +1), pointing down."""
    x = torch.zeros(2, 3, 32, 32)
    x[:, 0] = 1.0
    x[:, 2] = 0.5  # a scalar channel: unchanged by the vector rotation
    angles = torch.tensor([math.pi / 2, -math.pi / 2])
    out = rotate_vectors(rotate_batch(x, angles), angles, 0, 1)
    inner = (slice(None), slice(8, 24), slice(8, 24))  # away from the uncovered corners
    torch.testing.assert_close(out[0, 0][inner[1:]], torch.zeros(16, 16), atol=1e-5, rtol=0)
    torch.testing.assert_close(out[0, 1][inner[1:]], -torch.ones(16, 16), atol=1e-5, rtol=0)
    torch.testing.assert_close(out[1, 1][inner[1:]], torch.ones(16, 16), atol=1e-5, rtol=0)
    torch.testing.assert_close(out[:, 2][inner], torch.full((2, 16, 16), 0.5), atol=1e-5, rtol=0)


def test_rotation_moves_a_patch_and_its_vectors_by_hand() -> None:
    """A patch right of the centre moving right (u = 1), turned +90 degrees: the patch is
    above the centre and moves up (v = -1). Pixel (row, col) at offset (dx, dy) = (col -
    15.5, row - 15.5) goes to (dy, -dx)."""
    x = torch.zeros(1, 2, 32, 32)
    x[0, 0, 14:18, 22:26] = 1.0  # dx 6.5..9.5, dy -1.5..1.5
    cfg = AugmentConfig(
        grayscale_p=0, hflip_p=0, rotation_deg=90, rotation_p=1, u_channel=0, v_channel=1
    )
    angle = torch.tensor([math.pi / 2])
    out = rotate_vectors(rotate_batch(x, angle), angle, 0, 1)
    expected_v = torch.zeros(32, 32)
    expected_v[6:10, 14:18] = -1.0  # dx -1.5..1.5, dy -9.5..-6.5
    torch.testing.assert_close(out[0, 1], expected_v, atol=1e-4, rtol=0)
    torch.testing.assert_close(out[0, 0], torch.zeros(32, 32), atol=1e-4, rtol=0)
    # Through augment_batch with its own draw: the result is that rotation of the field.
    gen = torch.Generator().manual_seed(5)
    draws = torch.rand(4, 1, generator=torch.Generator().manual_seed(5))
    theta = (2 * draws[3] - 1) * math.pi / 2
    want = rotate_vectors(rotate_batch(x, theta), theta, 0, 1)
    torch.testing.assert_close(augment_batch(x, cfg, gen), want)


def test_a_radial_field_is_unchanged_by_any_rotation() -> None:
    """(u, v) = p - centre is rotation-equivariant: grid and vectors turned together give
    the same field (bilinear sampling of a linear field is exact)."""
    y, x = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    field = torch.stack([x - 15.5, y - 15.5]).unsqueeze(0).repeat(3, 1, 1, 1)  # (3, 2, H, W)
    angles = torch.tensor([0.3, -0.7, 1.2])
    out = rotate_vectors(rotate_batch(field, angles), angles, 0, 1)
    disc = ((x - 15.5) ** 2 + (y - 15.5) ** 2) < 13**2
    for i in range(3):
        torch.testing.assert_close(out[i][:, disc], field[i][:, disc], atol=1e-3, rtol=0)
    # Turning the grid alone would not do: the vectors must turn too.
    grid_only = rotate_batch(field, angles)
    assert (grid_only[0][:, disc] - field[0][:, disc]).abs().max() > 1.0


# ---------------------------------------------------------------- flow files


def test_flow_image_channels_arrive_as_u_v_strain(tmp_path: Path) -> None:
    """OpenCV reads B, G, R: the file's R must come back as u, G as v, B as strain."""
    y, x = np.mgrid[0:28, 0:28]
    r, g = (x * 9).astype(np.uint8), (y * 9).astype(np.uint8)  # u grows along x, v along y
    b = np.where((x // 7 + y // 7) % 2 == 0, 40, 200).astype(np.uint8)
    path = tmp_path / "sub01_EP02_01f .png"
    assert cv2.imwrite(str(path), np.dstack([b, g, r]))  # cv2 writes BGR
    out = load_flow(path, ("u", "v", "strain"), 28).astype(np.float32)
    for ch, (values, centred) in enumerate(((r, True), (g, True), (b, False))):
        want = values / 255.0
        if centred:
            want = want - np.median(want)
        np.testing.assert_allclose(out[ch], want, atol=2e-3)
    with pytest.raises(ConfigError, match="magnitude cannot be derived"):
        load_flow(path, ("u", "v", "magnitude"), 28)


def test_npy_and_flow_images_normalise_to_the_same_input(npy_manifest, png_manifest) -> None:
    """The same flow as float .npy and as a min-max scaled 8-bit image gives the same
    network input (up to the image's 8-bit rounding): the normalisation makes them
    commensurable."""
    config = load_config("demo", FLOW)
    a = load_manifest_data(npy_manifest, config.data)
    b = load_manifest_data(png_manifest, config.data)
    assert a.inputs.dtype == b.inputs.dtype == torch.float16
    assert [s.key for s in a.samples] == [s.key for s in b.samples]
    xa, xb = prepare_batch(a.inputs, config), prepare_batch(b.inputs, config)
    assert xa.min() == 0 and xa.max() == 1
    assert (xa - xb).abs().max() < 3e-3  # 8-bit: 1/255 = 3.9e-3 per step, rounded to half


# ---------------------------------------------------------------- LOSO, packing


@pytest.mark.parametrize("kind", ["npy", "png"])
def test_loso_runs_on_flow_manifests(kind, npy_manifest, png_manifest, tmp_path) -> None:
    manifest = npy_manifest if kind == "npy" else png_manifest
    summary = run_loso(manifest, load_config("demo", FLOW), tmp_path / "run")
    assert summary["n_samples"] == 24 and summary["n_folds"] == 4
    preds = pd.read_csv(tmp_path / "run" / "predictions.csv")
    probs = preds[[c for c in preds if c.startswith("prob_")]].to_numpy()
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-4)
    assert (
        json.loads((tmp_path / "run" / "run.json").read_text())["config"]["data"]["input"] == "flow"
    )


def test_fold_packing_with_flow_inputs_matches_one_fold_at_a_time(npy_manifest):
    """seresnext_tiny takes in_chans from the flow channels; no dropout, so two folds packed
    agree with the same two folds trained one at a time, up to float rounding."""
    # lr 1e-4 as in test_packed: Adam turns rounding differences into ~lr steps.
    base = [*FLOW, "model.name=seresnext_tiny", "data.flow_channels=[u, v]", "optim.lr=1e-4"]
    config = load_config("demo", base)
    data = load_manifest_data(npy_manifest, config.data)
    folds = loso_folds(data.groups)[:2]
    packed = train_fold_group(data, folds, load_config("demo", [*base, "train.pack_folds=2"]))
    for fold, got in zip(folds, packed, strict=True):
        want = train_fold(data, fold, config)
        np.testing.assert_allclose(np.array(got["probs"]), np.array(want["probs"]), atol=2e-3)
        assert got["history"][-1]["loss"] == pytest.approx(want["history"][-1]["loss"], rel=1e-2)


# ---------------------------------------------------------------- checkpoint round trip


def test_flow_checkpoint_round_trip_gives_identical_probabilities(png_manifest, tmp_path):
    """train (external flow images, no preprocess.json) -> save -> Predictor -> the same
    probabilities as the trained model; the checkpoint records the input and where the
    flows came from."""
    config = load_config("demo", FLOW)
    meta = train_deployable(png_manifest, config, tmp_path / "model")
    saved = read_metadata(tmp_path / "model")
    assert saved["input"] == {
        "kind": "flow",
        "channels": ["u", "v", "strain"],
        "normalization": "per sample and channel, min-max to [0, 1]",
    }
    assert saved["flow_source"].startswith("external")
    # 8-bit flow images are the public images' style: new clips get their flow that way
    assert saved["preprocess"]["flow"] == FlowConfig(style="ststnet").to_dict()
    assert saved["spotter"] == "motion" and saved["preprocess"]["spot"]["method"] == "motion"
    data = load_manifest_data(png_manifest, config.data)
    predictor = Predictor.from_checkpoint(tmp_path / "model")
    assert predictor.input_kind == "flow"
    got = predictor.predict_inputs(list(data.inputs.numpy()))
    model, _ = load_checkpoint(meta["checkpoint"])
    want = predict_proba(model, data.inputs, config)
    assert np.array_equal(got, want)
    with pytest.raises(DataError, match="optical flow, not crops"):
        predictor.predict_crops([np.zeros((28, 28, 3), np.uint8)])


# ---------------------------------------------------------------- one array per clip


@pytest.fixture(scope="module")
def flow_cache(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, PreprocessConfig]:
    root = tmp_path_factory.mktemp("flowcache")
    write_synthetic_corpus(root / "corpus", subjects=1, clips_per_subject=2, size=(320, 240))
    samples = read_casme2(
        root / "corpus" / CODING_NAME, root=root / "corpus" / FRAMES_DIR, classes="5class"
    )
    config = PreprocessConfig(align=AlignConfig(size=64), flow=FlowConfig(algorithm="dis"))
    result = preprocess_corpus(samples, root / "cache", config, workers=1)
    assert result.n_ok == 2, result.problems
    return result.manifest, config


@pytest.fixture(scope="module")
def clip_and_sample(flow_cache) -> tuple[ClipResult, Sample]:
    """One clip preprocessed anew (a ClipResult) and its row in the cache's manifest."""
    manifest, pre = flow_cache
    sample = read_manifest(manifest).samples[0]
    corpus = manifest.parent.parent / "corpus"
    source = next(
        s
        for s in read_casme2(corpus / CODING_NAME, root=corpus / FRAMES_DIR, classes="5class")
        if s.key == sample.key
    )
    res = process_clip(
        open_frames(source.frames),
        source.onset,
        source.offset,
        detector=get_detector(pre.detector),
        config=pre,
        apex_label=source.apex,
    )
    return res, sample


@pytest.mark.parametrize("kind", ["frame", "diff", "flow"])
@pytest.mark.parametrize("frame", ["apex", "mid"])
def test_clip_result_and_written_files_give_the_same_input(kind, frame, clip_and_sample) -> None:
    res, sample = clip_and_sample
    data = DataConfig(input=kind, frame=frame, input_size=32)
    built = get_input(kind).from_clip(res, data)
    loaded = get_input(kind).from_sample(sample, data)
    assert built.dtype == loaded.dtype and built.shape == loaded.shape
    assert np.array_equal(built, loaded)
    if kind == "flow":  # and not trivially: the clip moves
        assert np.abs(built.astype(np.float32)).max() > 0.05


def test_cli_train_on_a_flow_cache_with_preprocess_json(npy_manifest, tmp_path) -> None:
    """`apexmer train` on flows from `apexmer preprocess` records its settings and source."""
    pre = PreprocessConfig(flow=FlowConfig(algorithm="farneback"))
    (npy_manifest.parent / "preprocess.json").write_text(
        json.dumps({"preprocess": pre.to_dict(), "version": "test"})
    )
    try:
        args = ["train", "--data", str(npy_manifest), "--config", "demo", "--out", str(tmp_path)]
        for item in FLOW:
            args += ["--set", item]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        meta = read_metadata(tmp_path)
        assert meta["flow_source"] == "apexmer preprocess"
        assert meta["preprocess"]["flow"]["algorithm"] == "farneback"
        assert meta["preprocess"]["flow"]["style"] == "apexmer"  # apexmer's own crops
        predictor = Predictor.from_checkpoint(tmp_path)
        assert predictor.preprocess.flow == FlowConfig(algorithm="farneback")
        assert predictor.flow_style == "apexmer" and predictor.spotter == "motion"
        bad = CliRunner().invoke(app, [*args, "--set", "model.name=off_apexnet"])
        assert isinstance(bad.exception, ConfigError)  # the CLI's main prints it as one line
        assert "off_apexnet does not take flow input" in str(bad.exception)
    finally:
        (npy_manifest.parent / "preprocess.json").unlink()


def test_bad_flow_files_are_reported_and_left_out(tmp_path: Path) -> None:
    manifest = write_flow_manifest(tmp_path, "npy", subjects=2, per_subject=3)
    samples = read_manifest(manifest).samples
    samples[0].flow_path.write_bytes(b"not an npy file")
    np.save(samples[1].flow_path, np.zeros((28, 28, 5), np.float16))  # 5 channels
    data = load_manifest_data(manifest, load_config("demo", FLOW).data)
    assert len(data.samples) == 4 and data.inputs.shape == (4, 3, 28, 28)
    bad = {p.sample: p.message for p in data.problems}
    assert set(bad) == {samples[0].key, samples[1].key}
    assert "cannot be read" in bad[samples[0].key] and "(28, 28, 5)" in bad[samples[1].key]


def test_resizing_a_flow_rescales_its_vectors() -> None:
    """A uniform shift of 2 px at 56 px is 1 px at 28 px; strain (a ratio) is unchanged."""
    features = np.zeros((56, 56, 4), np.float32)
    features[..., 0], features[..., 1], features[..., 2], features[..., 3] = 2.0, -4.0, 0.3, 1.0
    out = get_input("flow").from_features(features, DataConfig(input="flow", input_size=28))
    np.testing.assert_allclose(out[0], 1.0)
    np.testing.assert_allclose(out[1], -2.0)
    np.testing.assert_allclose(out[2], 0.3, atol=1e-3)
