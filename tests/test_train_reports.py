"""`apexmer train` reports the samples it leaves out as `loso` does (a count on the
terminal, problems.txt beside the checkpoint) and refuses to train a class with no sample
left unless asked to."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from apexmer.cli.main import app
from apexmer.errors import DataError
from test_bad_input import write_npy_manifest

FAST = [
    "model.name=ststnet",
    "data.input_size=28",
    "train.epochs=1",
    "train.batch_size=4",
    "train.threads=1",
]


def _train(manifest: Path, out: Path, *extra: str):
    args = ["train", "--data", str(manifest), "--config", "demo", "--out", str(out)]
    for item in FAST:
        args += ["--set", item]
    return CliRunner().invoke(app, [*args, *extra])


def test_left_out_samples_are_counted_and_listed_beside_the_checkpoint(tmp_path) -> None:
    manifest, samples = write_npy_manifest(tmp_path / "cache")
    samples[0].flow_path.write_bytes(b"")  # class negative
    np.save(samples[4].flow_path, np.zeros((5, 5), np.float16))  # class positive
    out = tmp_path / "model"
    result = _train(manifest, out)
    assert result.exit_code == 0, result.output
    listed = out / "problems.txt"
    assert "warning: 2 data problem(s), samples left out" in result.output
    assert str(listed) in result.output and "on 10 samples" in result.output
    lines = listed.read_text().splitlines()
    assert len(lines) == 2
    assert str(samples[0].flow_path) in lines[0] and str(samples[4].flow_path) in lines[1]
    # Repaired: the next run has nothing to list, and no stale list stays behind.
    np.save(samples[0].flow_path, np.zeros((28, 28, 4), np.float16))
    np.save(samples[4].flow_path, np.zeros((28, 28, 4), np.float16))
    result = _train(manifest, out)
    assert result.exit_code == 0, result.output
    assert "warning" not in result.output and not listed.exists()


def test_a_class_with_no_sample_left_is_refused_unless_allowed(tmp_path) -> None:
    manifest, samples = write_npy_manifest(tmp_path / "cache")
    surprise = [s for s in samples if s.label == "surprise"]
    for sample in surprise:
        sample.flow_path.write_bytes(sample.flow_path.read_bytes()[:100])  # cut short
    out = tmp_path / "model"
    result = _train(manifest, out)
    assert isinstance(result.exception, DataError), result.output
    text = str(result.exception)
    assert "no training sample left for class(es) surprise" in text
    assert "--allow-missing-classes" in text and str(out / "problems.txt") in text
    assert not (out / "model.safetensors").exists()
    assert len((out / "problems.txt").read_text().splitlines()) == len(surprise)
    result = _train(manifest, out, "--allow-missing-classes")
    assert result.exit_code == 0, result.output
    assert (out / "model.safetensors").exists()
    assert f"warning: {len(surprise)} data problem(s)" in result.output
    assert "no training sample for surprise" in result.output
