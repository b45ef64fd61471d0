"""Checkpoints: `apexmer train` end to end on a tiny cache, round trip, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

from apexmer.cli.main import app
from apexmer.config import DataConfig, load_config
from apexmer.data.casme2 import read_casme2
from apexmer.data.crops import load_crop
from apexmer.data.manifest import read_manifest
from apexmer.data.synth import CODING_NAME, FRAMES_DIR, write_synthetic_corpus
from apexmer.errors import DataError, WeightsError
from apexmer.face.align import AlignConfig
from apexmer.inference import Predictor, crop_to_input
from apexmer.models.registry import create_model
from apexmer.preprocess.pipeline import PreprocessConfig, preprocess_corpus
from apexmer.training.checkpoint import (
    FORMAT_VERSION,
    METADATA_KEY,
    load_checkpoint,
    read_metadata,
    save_checkpoint,
)
from apexmer.training.deploy import train_deployable
from apexmer.training.engine import predict_proba
from apexmer.training.inputs import input_metadata
from procs import cli_command

TINY = [
    "data.input=diff",  # the demo preset's earlier input: these checkpoints are of images
    "model.name=seresnext_tiny",
    "data.input_size=32",
    "train.epochs=2",
    "train.batch_size=4",
    "train.threads=1",
]


def build_tiny_cache(root: Path, align: int = 64) -> Path:
    """2 subjects x 3 synthetic clips at 320x240, preprocessed to ``align`` px crops; the
    manifest."""
    corpus = root / "corpus"
    write_synthetic_corpus(corpus, subjects=2, clips_per_subject=3, size=(320, 240))
    samples = read_casme2(corpus / CODING_NAME, root=corpus / FRAMES_DIR, classes="5class")
    result = preprocess_corpus(
        samples, root / "cache", PreprocessConfig(align=AlignConfig(size=align)), workers=1
    )
    assert result.n_ok >= 4, result.problems
    return result.manifest


def tiny_metadata(classes: list[str], input_size: int = 32, align: int = 64) -> dict:
    return {
        "architecture": "seresnext_tiny",
        "classes": classes,
        "num_classes": len(classes),
        "input_size": input_size,
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "frame": "apex",
        "input": input_metadata(DataConfig()),
        "preprocess": PreprocessConfig(align=AlignConfig(size=align)).to_dict(),
    }


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_cache(tmp_path_factory.mktemp("tinycache"))


@pytest.fixture(scope="module")
def trained(manifest: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("model")
    args = ["train", "--data", str(manifest), "--config", "demo", "--out", str(out)]
    for item in TINY:
        args += ["--set", item]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "checkpoint:" in result.output
    return out


def test_train_writes_self_describing_checkpoint(trained: Path, manifest: Path) -> None:
    assert (trained / "model.safetensors").is_file()
    meta = read_metadata(trained)
    on_disk = json.loads((trained / "model.json").read_text())
    assert on_disk == meta
    sample_set = read_manifest(manifest)
    assert meta["format_version"] == FORMAT_VERSION
    assert meta["architecture"] == "seresnext_tiny"
    assert meta["classes"] == list(sample_set.classes)
    assert meta["num_classes"] == len(sample_set.classes)
    assert meta["input_size"] == 32 and meta["frame"] == "apex"
    assert len(meta["mean"]) == 3 and len(meta["std"]) == 3
    settings = json.loads((manifest.parent / "preprocess.json").read_text())
    assert meta["preprocess"] == settings["preprocess"]
    assert meta["preprocess"]["align"]["size"] == 64
    assert meta["config"]["train"]["epochs"] == 2
    assert meta["coding_version"] == sample_set.coding_version
    assert meta["package_version"] and meta["created"]
    assert [row["epoch"] for row in meta["history"]] == [1, 2]
    assert meta["training_data"]["n_samples"] == len(sample_set.samples)


def test_trained_checkpoint_loads_from_folder_or_file(trained: Path) -> None:
    model_a, meta_a = load_checkpoint(trained)
    model_b, meta_b = load_checkpoint(trained / "model.safetensors")
    assert meta_a == meta_b
    x = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    cfg = load_config("demo", TINY)
    assert np.array_equal(predict_proba(model_a, x, cfg), predict_proba(model_b, x, cfg))


def test_round_trip_gives_identical_probabilities(manifest: Path, tmp_path: Path) -> None:
    sample_set = read_manifest(manifest)
    crops = torch.from_numpy(np.stack([load_crop(s.apex_path, 32) for s in sample_set]))
    torch.manual_seed(3)
    model = create_model("seresnext_tiny", num_classes=len(sample_set.classes)).eval()
    # Non-trivial BatchNorm statistics, so the buffers must round-trip too.
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    cfg = load_config("demo", TINY)
    before = predict_proba(model, crops, cfg)
    save_checkpoint(model, tiny_metadata(list(sample_set.classes)), tmp_path / "ck")
    loaded, _ = load_checkpoint(tmp_path / "ck")
    assert np.array_equal(before, predict_proba(loaded, crops, cfg))
    # The Predictor's own path (crop -> resize -> RGB -> normalise) gives the same numbers.
    predictor = Predictor.from_checkpoint(tmp_path / "ck")
    bgr = [load_crop(s.apex_path, 64).transpose(1, 2, 0)[:, :, ::-1] for s in sample_set]
    assert np.array_equal(before, predictor.predict_crops(bgr))


def test_crop_to_input_matches_training_loader(manifest: Path) -> None:
    import cv2

    path = read_manifest(manifest).samples[0].apex_path
    bgr = cv2.imread(str(path))
    for size in (32, 64, 96):
        assert np.array_equal(crop_to_input(bgr, size), load_crop(path, size))


def test_missing_corrupt_and_unknown_version_are_clear(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "nowhere")
    bad = tmp_path / "bad" / "model.safetensors"
    bad.parent.mkdir()
    bad.write_bytes(b"\x00garbage, not safetensors")
    with pytest.raises(WeightsError, match="corrupt"):
        load_checkpoint(bad.parent)
    model = create_model("seresnext_tiny", num_classes=2)
    plain = tmp_path / "plain.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(plain))
    with pytest.raises(WeightsError, match="without apexmer metadata"):
        load_checkpoint(plain)
    future = tmp_path / "future.safetensors"
    meta = {**tiny_metadata(["a", "b"]), "format_version": 99}
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()},
        str(future),
        metadata={METADATA_KEY: json.dumps(meta)},
    )
    with pytest.raises(WeightsError, match="format version 99"):
        load_checkpoint(future)


def test_weights_of_another_shape_are_refused(tmp_path: Path) -> None:
    model = create_model("seresnext_tiny", num_classes=3)
    path = save_checkpoint(model, tiny_metadata(["a", "b", "c"]), tmp_path)
    meta = {**read_metadata(path), "num_classes": 2, "classes": ["a", "b"]}
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()},
        str(path),
        metadata={METADATA_KEY: json.dumps(meta)},
    )
    with pytest.raises(WeightsError, match="do not fit"):
        load_checkpoint(path)


def test_train_needs_preprocess_settings(manifest: Path, tmp_path: Path) -> None:
    lone = tmp_path / "manifest.csv"
    lone.write_text(manifest.read_text().replace("images/", str(manifest.parent) + "/images/"))
    with pytest.raises(DataError, match=r"preprocess\.json"):
        train_deployable(lone, load_config("demo", TINY), tmp_path / "out")


def _write_with_metadata(path: Path, document: str) -> Path:
    """A checkpoint whose weights are fine and whose metadata is ``document`` verbatim."""
    model = create_model("seresnext_tiny", num_classes=2)
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()},
        str(path),
        metadata={METADATA_KEY: document},
    )
    return path


def _meta_with(**changes: object) -> dict:
    meta = {**tiny_metadata(["a", "b"]), "format_version": FORMAT_VERSION}
    for key, value in changes.items():
        if value is _DROP:
            del meta[key]
        else:
            meta[key] = value
    return meta


_DROP = object()
MALFORMED = {
    "classes-string": (_meta_with(classes="ab"), "classes"),
    "classes-numbers": (_meta_with(classes=[1, 2]), "classes"),
    "num-classes-mismatch": (_meta_with(num_classes=3), "num_classes"),
    "num-classes-string": (_meta_with(num_classes="2"), "num_classes"),
    "input-size-string": (_meta_with(input_size="32"), "input_size"),
    "input-size-zero": (_meta_with(input_size=0), "input_size"),
    "mean-short": (_meta_with(mean=[0.5, 0.5]), "mean"),
    "mean-text": (_meta_with(mean=["a", "b", "c"]), "mean"),
    "std-zero": (_meta_with(std=[0, 0, 0]), "std"),
    "std-one-zero": (_meta_with(std=[0.2, 0.0, 0.2]), "std"),
    "std-null": (_meta_with(std=None), "std"),
    "preprocess-string": (_meta_with(preprocess="dlib"), "preprocess"),
    "preprocess-bad-spot": (_meta_with(preprocess={"spot": [1, 2]}), "preprocess"),
    "preprocess-lag-zero": (_meta_with(preprocess={"spot": {"lag": 0}}), "preprocess"),
    "preprocess-no-backend": (_meta_with(preprocess={"detector": "nope"}), "--detector dlib"),
    "frame-unknown": (_meta_with(frame="peak"), "frame"),
    "architecture-list": (_meta_with(architecture=["seresnext_tiny"]), "architecture"),
    "missing-std": (_meta_with(std=_DROP), "std"),
    "config-list": (_meta_with(config=[1]), "config"),
    "config-data-string": (_meta_with(config={"data": "diff"}), "config"),
    "history-object": (_meta_with(history={"epoch": 1}), "history"),
    "training-data-list": (_meta_with(training_data=[1, 2]), "training_data"),
}


@pytest.mark.parametrize("case", [*list(MALFORMED), "a-list", "a-number"])
def test_malformed_metadata_is_one_clear_error(tmp_path: Path, case: str) -> None:
    if case == "a-list":
        document, word = json.dumps([1, 2, 3]), "JSON object"
    elif case == "a-number":
        document, word = "3", "JSON object"
    else:
        meta, word = MALFORMED[case]
        document = json.dumps(meta)
    path = _write_with_metadata(tmp_path / "model.safetensors", document)
    with pytest.raises(WeightsError) as info:
        load_checkpoint(path)
    text = str(info.value)
    assert "\n" not in text
    assert str(path) in text and word in text and "Fix:" in text


def test_valid_metadata_still_loads(tmp_path: Path) -> None:
    path = _write_with_metadata(tmp_path / "model.safetensors", json.dumps(_meta_with()))
    _, meta = load_checkpoint(path)
    assert meta["std"] == [0.229, 0.224, 0.225]


def test_cli_predict_with_zero_std_exits_2_with_one_line(tmp_path: Path) -> None:
    import subprocess

    folder = tmp_path / "model"
    folder.mkdir()
    _write_with_metadata(folder / "model.safetensors", json.dumps(_meta_with(std=[0, 0, 0])))
    clip = tmp_path / "clip"
    clip.mkdir()
    proc = subprocess.run(
        cli_command(
            "predict",
            "--checkpoint",
            str(folder),
            "--input-path",
            str(clip),
        ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert "model.safetensors" in lines[0] and "std" in lines[0] and "Fix:" in lines[0]


def test_checkpoint_files_get_the_umask_mode(tmp_path: Path) -> None:
    import os

    old = os.umask(0o022)
    try:
        model = create_model("seresnext_tiny", num_classes=2)
        path = save_checkpoint(model, tiny_metadata(["a", "b"]), tmp_path / "ck")
    finally:
        os.umask(old)
    assert (path.stat().st_mode & 0o777) == 0o644
    assert (path.with_name("model.json").stat().st_mode & 0o777) == 0o644


def test_input_is_required_for_new_checkpoints_and_filled_in_for_old(tmp_path: Path) -> None:
    model = create_model("seresnext_tiny", num_classes=2)
    legacy = {k: v for k, v in tiny_metadata(["a", "b"]).items() if k != "input"}
    with pytest.raises(WeightsError, match="lacks input"):
        save_checkpoint(model, legacy, tmp_path / "new")
    # A checkpoint written before the input registry: no input key; diff in its config.
    old = tmp_path / "old.safetensors"
    meta = {**legacy, "format_version": FORMAT_VERSION, "config": {"data": {"input": "diff"}}}
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()},
        str(old),
        metadata={METADATA_KEY: json.dumps(meta)},
    )
    _, loaded = load_checkpoint(old)
    assert loaded["input"]["kind"] == "diff"
    assert loaded["input"]["channels"] == ["red", "green", "blue"]
    assert Predictor.from_checkpoint(old).input_kind == "diff"
    meta.pop("config")
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()},
        str(old),
        metadata={METADATA_KEY: json.dumps(meta)},
    )
    assert read_metadata(old)["input"]["kind"] == "frame"
