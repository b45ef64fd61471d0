"""Exit codes mean something: a job that produced nothing exits 2 with one line; a command
given the wrong kind of input says which command to use."""

from __future__ import annotations

import subprocess
from pathlib import Path

import cv2
import numpy as np
from typer.testing import CliRunner

from apexmer.cli.main import app
from apexmer.data.flow_images import LABEL_COLUMNS
from apexmer.data.synth import write_synthetic_corpus
from apexmer.errors import ConfigError, DataError
from manifests import megc_flow_manifest_args
from procs import cli_command


def test_preprocess_that_produces_no_sample_exits_2(tmp_path: Path) -> None:
    corpus = write_synthetic_corpus(
        tmp_path / "c", subjects=1, clips_per_subject=2, seed=1, size=(160, 120)
    )
    for frame in corpus.frames_root.rglob("*.jpg"):  # readable frames without a face
        image = cv2.imread(str(frame))
        assert cv2.imwrite(str(frame), np.zeros_like(image))
    out = tmp_path / "cache"
    args = [
        "preprocess",
        "--corpus",
        "casme2",
        "--coding",
        str(corpus.coding),
        "--root",
        str(corpus.frames_root),
        "--out",
        str(out),
        "--flow",
        "none",
        "--size",
        "64",
    ]
    result = CliRunner().invoke(app, args)
    assert isinstance(result.exception, DataError), result.output
    assert "0 samples preprocessed, 2 problems" in result.output
    text = str(result.exception)
    assert str(out / "problems.csv") in text and "no sample was preprocessed" in text
    assert text.count("Fix:") == 1
    proc = subprocess.run(cli_command(*args), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.count("error:") == 1


def test_preprocess_of_flow_images_points_to_data_manifest(tmp_path: Path) -> None:
    args = [
        "preprocess",
        "--corpus",
        "megc-flow",
        "--coding",
        str(tmp_path / "l.csv"),
        "--root",
        str(tmp_path),
        "--out",
        str(tmp_path / "cache"),
    ]
    result = CliRunner().invoke(app, args)
    assert isinstance(result.exception, ConfigError), result.output
    assert "flow images need `apexmer data manifest --corpus megc-flow`, not preprocess" in str(
        result.exception
    )
    assert not (tmp_path / "cache").exists()


def test_data_manifest_of_a_header_only_label_csv_exits_2(tmp_path: Path) -> None:
    folder = tmp_path / "flows"
    folder.mkdir()
    assert cv2.imwrite(str(folder / "sub01_EP01 .png"), np.zeros((28, 28, 3), np.uint8))
    labels = tmp_path / "labels.csv"
    labels.write_text(",".join(LABEL_COLUMNS) + "\n")
    out = tmp_path / "m.csv"
    args = megc_flow_manifest_args(labels, folder, out)
    proc = subprocess.run(cli_command(*args), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert "header but no rows" in proc.stderr and str(labels) in proc.stderr
    assert not out.exists()
