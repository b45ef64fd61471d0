"""Predictor: synthetic clips in, one row per clip out, apex spotted within one frame."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from apexmer.cli.main import app
from apexmer.config import DataConfig
from apexmer.data.frames import open_frames
from apexmer.data.synth import make_identity, render_clip
from apexmer.errors import ApexmerError, DataError, FrameError
from apexmer.face.align import AlignConfig
from apexmer.inference import Predictor, find_clips
from apexmer.models.registry import create_model
from apexmer.preprocess.flow import FlowConfig
from apexmer.preprocess.pipeline import PreprocessConfig
from apexmer.spotting.apex import spot_clip
from apexmer.training.checkpoint import save_checkpoint
from apexmer.training.inputs import input_metadata, model_kwargs

CLASSES = ["disgust", "happiness", "others", "repression", "surprise"]
N_FRAMES, APEX = 20, 9  # the synthetic motion peaks at frame index 9
# The paper's spotter (eq. 5) divides by the difference to frame i-3, which is smallest
# just after a symmetric peak: it is late by about lag/2 frames (see spotting.py). On these
# clips it spots 1-2 frames late; the tests allow that bias, no more, and check that the
# Predictor's apex is exactly the one preprocessing spots.
LATE = (0, 2)


def near_apex(spotted: int, truth: int) -> bool:
    return LATE[0] <= spotted - truth <= LATE[1]


FIRST = 100  # number of the first frame file in folder clips


def make_checkpoint(out: Path, classes: list[str] = CLASSES, detector: str = "dlib") -> Path:
    """An untrained tiny model with full metadata (32 px input, 64 px crops)."""
    torch.manual_seed(0)
    model = create_model("seresnext_tiny", num_classes=len(classes))
    meta = {
        "architecture": "seresnext_tiny",
        "classes": classes,
        "num_classes": len(classes),
        "input_size": 32,
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "frame": "apex",
        "input": input_metadata(DataConfig()),
        "config": {"train": {"threads": 1, "eval_batch_size": 8}},
        "preprocess": {
            **PreprocessConfig(align=AlignConfig(size=64)).to_dict(),
            "detector": detector,
        },
        "package_version": "test",
    }
    return save_checkpoint(model, meta, out)


def synthetic_clip(seed: int = 1, emotion: str = "happiness") -> list[np.ndarray]:
    identity = make_identity(seed, (320, 240))
    return render_clip(
        identity.image,
        identity.landmarks,
        emotion,
        N_FRAMES,
        APEX,
        5.0,
        np.random.default_rng(seed),
    )


def write_folder(frames: list[np.ndarray], folder: Path) -> Path:
    folder.mkdir(parents=True)
    for i, frame in enumerate(frames):
        cv2.imwrite(str(folder / f"img{FIRST + i}.png"), frame)
    return folder


def write_mp4(frames: list[np.ndarray], path: Path) -> Path:
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30, (width, height))
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("predictor")


@pytest.fixture(scope="module")
def checkpoint(workdir: Path) -> Path:
    return make_checkpoint(workdir / "model")


@pytest.fixture(scope="module")
def predictor(checkpoint: Path) -> Predictor:
    torch.set_num_threads(1)  # shared 2-core machines: avoid thread oversubscription
    return Predictor.from_checkpoint(checkpoint)


@pytest.fixture(scope="module")
def clip() -> list[np.ndarray]:
    return synthetic_clip()


@pytest.fixture(scope="module")
def folder(clip: list[np.ndarray], workdir: Path) -> Path:
    return write_folder(clip, workdir / "clips" / "clip_a")


def test_predict_columns_and_spotted_apex(predictor: Predictor, clip: list[np.ndarray]) -> None:
    table = predictor.predict(clip)
    expected = [
        "input",
        "onset",
        "apex",
        "apex_index",
        "offset",
        "FaceRectX",
        "FaceRectY",
        "FaceRectWidth",
        "FaceRectHeight",
        "pred_label",
        "confidence",
        *[f"prob_{c}" for c in CLASSES],
        "frame",
        "spotter",
        "flow_style",
        "error",
    ]
    assert list(table.columns) == expected
    assert len(table) == 1
    row = table.iloc[0]
    assert (row.onset, row.offset) == (0, N_FRAMES - 1)
    assert near_apex(row.apex, APEX) and row.apex_index == row.apex
    assert row.pred_label in CLASSES and pd.isna(row.error)
    probs = table[[f"prob_{c}" for c in CLASSES]].to_numpy()
    assert np.isclose(probs.sum(), 1.0) and np.isclose(probs.max(), row.confidence)
    assert row.FaceRectWidth > 50 and row.FaceRectHeight > 50


def test_rich_results_keep_curve_crop_and_timings(predictor: Predictor, clip) -> None:
    r = predictor.predict_clips(clip)[0]
    spot = spot_clip(open_frames(clip), None, None, predictor.detector(), predictor.preprocess.spot)
    assert r.apex == spot.apex and np.array_equal(r.curve, spot.curve, equal_nan=True)
    assert r.curve.shape == (N_FRAMES,) and r.numbers == list(range(N_FRAMES))
    assert r.crop.shape == (64, 64, 3) and r.apex_frame.shape == (240, 320, 3)
    assert set(r.timings) == {"decode", "landmarks", "spot_align", "network", "total"}


def test_folder_video_and_batch(predictor: Predictor, clip, folder: Path, workdir: Path) -> None:
    video = write_mp4(clip, workdir / "clip_b.mp4")
    table = predictor.predict([folder, str(video), clip, workdir / "missing.mp4"])
    assert len(table) == 4
    ok, bad = table.iloc[:3], table.iloc[3]
    assert ok["error"].isna().all()
    assert near_apex(ok.iloc[0].apex, FIRST + APEX) and ok.iloc[0].onset == FIRST
    assert near_apex(ok.iloc[1].apex, APEX) and ok.iloc[2].onset == 0
    assert "missing.mp4" in bad.error and np.isnan(bad.confidence) and pd.isna(bad.pred_label)
    # Batched network output equals the one-clip path (same crops, same model).
    single = predictor.predict(folder)
    cols = [f"prob_{c}" for c in CLASSES]
    assert np.allclose(single[cols].to_numpy(), ok.iloc[[0]][cols].to_numpy(), atol=1e-6)


def test_onset_offset_window(predictor: Predictor, clip) -> None:
    row = predictor.predict(clip, onset=3, offset=16).iloc[0]
    assert (row.onset, row.offset) == (3, 16)
    assert near_apex(row.apex, APEX) and row.apex_index == row.apex - 3


def test_one_failing_clip_raises_several_record(predictor: Predictor, clip) -> None:
    with pytest.raises(FrameError, match="not found"):
        predictor.predict("/nonexistent/clip.mp4")
    table = predictor.predict([clip[:1], clip])  # 1 frame cannot be spotted
    assert table.error.notna().tolist() == [True, False]


def test_find_clips(folder: Path, workdir: Path) -> None:
    assert find_clips(folder) == [folder]
    parent = folder.parent
    write_mp4(synthetic_clip()[:4], parent / "b.mp4")
    assert find_clips(parent) == [parent / "b.mp4", folder]


def test_missing_backend_is_a_clear_error(workdir: Path) -> None:
    # The checkpoint's metadata check refuses it on save already; either way, one line.
    with pytest.raises(ApexmerError, match=r"'mediapipe'.*Fix"):
        Predictor.from_checkpoint(make_checkpoint(workdir / "odd", detector="mediapipe"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA error")
def test_cuda_without_gpu_is_a_clear_error(checkpoint: Path) -> None:
    with pytest.raises(ApexmerError, match="CUDA is not available"):
        Predictor.from_checkpoint(checkpoint, device="cuda")


def test_cli_predict_several_inputs_after_one_flag(
    checkpoint: Path, folder: Path, clip, workdir: Path
) -> None:
    video = write_mp4(clip, workdir / "cli.mp4")
    out, crops = workdir / "out.csv", workdir / "aligned"
    args = [
        "predict",
        "--checkpoint",
        str(checkpoint.parent),
        "--input_path",
        str(folder),
        str(video),
        "--output_path",
        str(out),
        "--save_aligned",
        str(crops),
        "--json",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [Path(r["input"]).name for r in rows] == ["clip_a", "cli.mp4"]
    assert all(near_apex(r["apex_index"], APEX) for r in rows)
    assert out.read_text().startswith("input,onset,apex,apex_index,offset,FaceRectX")
    assert len(list(crops.glob("*.png"))) == 2
    # Repeating the flag works too; a missing input gives exit 1 and an error row.
    args = [
        "predict",
        "--checkpoint",
        str(checkpoint),
        "--input_path",
        str(folder),
        "--input_path",
        str(workdir / "nope.mp4"),
        "--json",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1
    assert "nope.mp4" in result.output
    # An empty folder is one failed input too; the other clip is still predicted.
    (workdir / "empty").mkdir(exist_ok=True)
    args = [
        "predict",
        "--checkpoint",
        str(checkpoint),
        "--input_path",
        str(workdir / "empty"),
        str(folder),
        "--json",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1
    rows = json.loads(result.stdout)
    assert rows[0]["error"] and "empty" in rows[0]["input"]
    assert rows[1]["pred_label"] in CLASSES and not rows[1]["error"]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu(checkpoint: Path, clip) -> None:
    cpu = Predictor.from_checkpoint(checkpoint).predict(clip)
    gpu = Predictor.from_checkpoint(checkpoint, device="cuda").predict(clip)
    cols = [f"prob_{c}" for c in CLASSES]
    assert np.allclose(cpu[cols].to_numpy(), gpu[cols].to_numpy(), atol=1e-4)


def make_flow_checkpoint(out: Path, flow: dict | None, model: str = "ststnet") -> Path:
    """An untrained flow network (``model``) on onset->apex (u, v, strain) flow at 28 px,
    64 px crops; ``flow``: the preprocessing flow settings it records (None: none)."""
    torch.manual_seed(0)
    data = DataConfig(input="flow", input_size=28)
    meta = {
        "architecture": model,
        "classes": CLASSES,
        "num_classes": len(CLASSES),
        "input_size": 28,
        "mean": list(data.mean),
        "std": list(data.std),
        "frame": "apex",
        "input": input_metadata(data),
        "config": {"data": {"input": "flow"}, "train": {"threads": 1}},
        "preprocess": {**PreprocessConfig(align=AlignConfig(size=64)).to_dict(), "flow": flow},
        "package_version": "test",
    }
    net = create_model(model, num_classes=len(CLASSES), **model_kwargs(model, 3, 28))
    return save_checkpoint(net, meta, out)


def test_flow_model_on_a_new_clip(workdir: Path, clip) -> None:
    dis = FlowConfig(algorithm="dis").to_dict()
    predictor = Predictor.from_checkpoint(make_flow_checkpoint(workdir / "flow", dis))
    assert predictor.preprocess.flow == FlowConfig(algorithm="dis")
    assert "inference_flow" not in predictor.metadata
    r = predictor.predict_clips(clip)[0]
    assert r.ok and r.network_input == "onset->apex optical flow (u, v, strain)"
    assert r.flow.shape == (64, 64, 4) and r.flow.dtype == np.float32
    assert np.abs(r.flow[..., :2]).max() > 0.1  # the synthetic expression moves
    assert r.stored_input.shape == (3, 28, 28) and r.stored_input.dtype == np.float16
    # The network saw exactly this clip's apex flow, built as training builds it.
    assert np.array_equal(predictor.predict_flows([r.flow]), r.probs[None])
    row = predictor.to_frame([r]).iloc[0]
    assert row.pred_label in CLASSES and np.isclose(row.confidence, r.probs.max())


def test_flow_model_without_flow_settings_uses_the_defaults(workdir: Path) -> None:
    predictor = Predictor.from_checkpoint(make_flow_checkpoint(workdir / "noflow", None))
    assert predictor.preprocess.flow == FlowConfig()
    assert "default" in predictor.metadata["inference_flow"]["source"]
    assert predictor.metadata["inference_flow"]["settings"] == FlowConfig().to_dict()


def test_frame_models_compute_no_flow(predictor: Predictor, clip) -> None:
    assert predictor.preprocess.flow is None and predictor.flow_roles == ()
    assert predictor.predict_clips(clip)[0].flow is None


def test_a_non_finite_network_output_fails_the_clip_never_a_nan_confidence(
    checkpoint: Path, clip
) -> None:
    predictor = Predictor.from_checkpoint(checkpoint)
    with torch.no_grad():  # weights damaged in memory (on disk they are refused on load)
        next(predictor.model.parameters()).fill_(float("nan"))
    results = predictor.predict_clips([clip, clip])
    assert [r.ok for r in results] == [False, False]
    assert all("not finite" in r.error and r.confidence is None for r in results)
    table = predictor.predict(clip, on_error="record")
    assert "not finite" in table.iloc[0].error and np.isnan(table.iloc[0].confidence)
    with pytest.raises(DataError, match="not finite"):  # one clip: raised, as other errors
        predictor.predict(clip)
