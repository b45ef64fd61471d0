"""Every array that enters training is checked once where it is loaded: a damaged or
non-finite flow file, or a flow image of the wrong mode, is refused with the file named
(a reported problem in a manifest), never silently used."""

from __future__ import annotations

import csv
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from apexmer.cli.main import app
from apexmer.config import load_config
from apexmer.data.flow_images import LABEL_COLUMNS, read_flow_images
from apexmer.data.frames import read_image
from apexmer.data.manifest import write_manifest
from apexmer.data.sample import Sample, SampleSet
from apexmer.errors import DataError, FrameError
from apexmer.training.dataset import load_manifest_data
from apexmer.training.inputs import get_input, load_flow
from manifests import megc_flow_manifest_cli

CHANNELS = ("u", "v", "strain")
FLOW = ["data.input=flow", "data.flow_channels=[u,v,strain]", "data.input_size=28"]


# ---------------------------------------------------------------- .npy flows


@settings(max_examples=60, deadline=None)
@given(
    h=st.integers(1, 9),
    w=st.integers(1, 9),
    c=st.integers(3, 4),
    dtype=st.sampled_from(["float16", "float32", "float64"]),
    bad=st.sampled_from([np.nan, np.inf, -np.inf]),
    where=st.tuples(st.floats(0, 0.999), st.floats(0, 0.999), st.floats(0, 0.999)),
)
def test_any_non_finite_value_anywhere_in_a_flow_file_is_refused_naming_it(
    h: int, w: int, c: int, dtype: str, bad: float, where: tuple[float, float, float]
) -> None:
    flow = np.random.default_rng(h * w * c).normal(0, 1, (h, w, c)).astype(dtype)
    at = (int(where[0] * h), int(where[1] * w), int(where[2] * c))
    flow[at] = bad
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "flow_apex.npy"
        np.save(path, flow)
        with pytest.raises(FrameError) as err:
            load_flow(path, CHANNELS, 28)
    text = str(err.value)
    assert str(path) in text and "non-finite" in text and f"index {at}" in text
    assert "Fix:" in text and "\n" not in text


@pytest.mark.parametrize(
    ("flow", "why"),
    [
        (np.full((28, 28, 4), 1e39, np.float64), "non-finite"),  # inf once float32
        (np.full((28, 28, 4), 1e5, np.float32), "float16"),  # inf once stored
    ],
    ids=["float64-beyond-float32", "beyond-float16"],
)
def test_finite_values_that_overflow_the_dtype_they_are_used_in_are_refused(
    tmp_path: Path, flow: np.ndarray, why: str
) -> None:
    path = tmp_path / "flow_apex.npy"
    np.save(path, flow)
    with pytest.raises(FrameError, match=why) as err:
        load_flow(path, CHANNELS, 28)
    assert str(path) in str(err.value)


def _damage(path: Path, how: str) -> str:
    """Damage one float16 (28, 28, 4) flow file; returns a word its problem must hold."""
    good = path.read_bytes()
    if how == "empty":
        path.write_bytes(b"")
        return "empty"
    if how == "truncated":
        path.write_bytes(good[: len(good) // 2])
        return "cannot be read"
    if how == "object":
        np.save(path, np.array([{"u": 1}], dtype=object), allow_pickle=True)
        return "cannot be read"
    if how == "2d":
        np.save(path, np.zeros((5, 5), np.float16))
        return "(5, 5)"
    if how == "no-pixels":
        np.save(path, np.zeros((0, 0, 4), np.float16))
        return "(0, 0, 4)"
    if how == "int":
        np.save(path, np.zeros((28, 28, 4), np.int16))
        return "int16"
    if how == "inf":
        flow = np.load(path)
        flow[3, 5, 1] = np.inf
        np.save(path, flow)
        return "non-finite"
    raise AssertionError(how)


DAMAGE = ["empty", "truncated", "object", "2d", "no-pixels", "int", "inf"]


def write_npy_manifest(folder: Path, n: int = 12) -> tuple[Path, list[Sample]]:
    rng = np.random.default_rng(0)
    samples = []
    for i in range(n):
        path = folder / f"s{i:02d}" / "flow_apex.npy"
        path.parent.mkdir(parents=True)
        np.save(path, rng.normal(0, 1, (28, 28, 4)).astype(np.float16))
        samples.append(
            Sample(
                dataset="megc",
                subject=f"sub{i % 4 + 1:02d}",
                clip=f"EP{i:02d}",
                label=("negative", "positive", "surprise")[i % 3],
                flow_path=path,
            )
        )
    manifest = folder / "manifest.csv"
    write_manifest(
        SampleSet(samples, ("negative", "positive", "surprise"), "composite", "t"), manifest
    )
    return manifest, samples


def test_every_damaged_flow_file_is_a_problem_naming_it_and_the_rest_load(tmp_path) -> None:
    manifest, samples = write_npy_manifest(tmp_path)
    words = {samples[i].key: _damage(samples[i].flow_path, how) for i, how in enumerate(DAMAGE)}
    data = load_manifest_data(manifest, load_config("demo", FLOW).data)
    assert [s.key for s in data.samples] == [s.key for s in samples[len(DAMAGE) :]]
    assert bool(data.inputs.isfinite().all())
    problems = {p.sample: p for p in data.problems}
    assert set(problems) == set(words)
    for sample in samples[: len(DAMAGE)]:
        problem = problems[sample.key]
        assert problem.file == str(sample.flow_path)
        assert words[sample.key] in problem.message and "Fix:" in problem.message


# ---------------------------------------------------------------- flow images


def write_png(path: Path, how: str = "good", seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 256, (28, 28, 3), dtype=np.uint8)
    if how == "gray":
        assert cv2.imwrite(str(path), rgb[:, :, 0])
    elif how == "rgba":
        assert cv2.imwrite(str(path), np.dstack([rgb, np.full((28, 28), 255, np.uint8)]))
    elif how == "16bit":
        assert cv2.imwrite(str(path), rgb.astype(np.uint16) * 257)
    else:
        assert cv2.imwrite(str(path), rgb)
        if how == "empty":
            path.write_bytes(b"")
        elif how == "cut":
            path.write_bytes(path.read_bytes()[:-40])


BAD_PNG = {
    "empty": "empty",
    "cut": "cut short",
    "gray": "grayscale",
    "rgba": "alpha",
    "16bit": "uint16",
}


def write_flow_folder(tmp_path: Path, kinds: list[str]) -> tuple[Path, Path]:
    folder = tmp_path / "flows"
    folder.mkdir()
    rows = []
    for i, how in enumerate(kinds):
        sub, clip = f"sub{i % 3 + 1:02d}", f"EP{i:02d}_01f"
        write_png(folder / f"{sub}_{clip} .png", how, seed=i)
        rows.append({"dataset": "casme2", "sub": sub, "filename_o": clip, "label": str(i % 3)})
    labels = tmp_path / "labels.csv"
    with open(labels, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=LABEL_COLUMNS, restval="")
        writer.writeheader()
        writer.writerows(rows)
    return labels, folder


@pytest.mark.parametrize("how", list(BAD_PNG))
def test_a_bad_flow_image_is_a_problem_of_the_summary_and_manifest(tmp_path, how) -> None:
    labels, folder = write_flow_folder(tmp_path, ["good", how, "good", "good"])
    bad = folder / "sub02_EP01_01f .png"
    samples = read_flow_images(labels, folder)
    assert [s.clip for s in samples] == ["EP00_01f", "EP02_01f", "EP03_01f"]
    assert len(samples.problems) == 1
    problem = samples.problems[0]
    assert problem.file == str(bad) and BAD_PNG[how] in problem.message
    assert "Fix:" in problem.message
    runner = CliRunner()
    summary = runner.invoke(
        app,
        [
            "data",
            "summary",
            "--corpus",
            "megc-flow",
            "--coding",
            str(labels),
            "--root",
            str(folder),
        ],
    )
    assert summary.exit_code == 0, summary.output
    assert "problems        1" in summary.output and str(bad) in summary.output
    out = tmp_path / "m.csv"
    made = megc_flow_manifest_cli(runner, labels, folder, out)
    assert made.exit_code == 0, made.output
    assert "3 samples" in made.output and str(bad) in made.output
    assert bad.name not in out.read_text()


@pytest.mark.parametrize("how", ["gray", "rgba", "16bit"])
def test_loading_a_flow_image_of_the_wrong_mode_is_refused(tmp_path, how) -> None:
    path = tmp_path / "x .png"
    write_png(path, how)
    with pytest.raises(FrameError, match=BAD_PNG[how]) as err:
        load_flow(path, CHANNELS, 28)
    assert str(path) in str(err.value)


# ---------------------------------------------------------------- label CSVs


def test_a_header_only_label_csv_is_an_error(tmp_path) -> None:
    labels, folder = write_flow_folder(tmp_path, ["good"])
    labels.write_text(",".join(LABEL_COLUMNS) + "\n")
    with pytest.raises(DataError, match="header but no rows") as err:
        read_flow_images(labels, folder)
    assert str(labels) in str(err.value)


def test_a_semicolon_separated_label_csv_is_an_error(tmp_path) -> None:
    labels, folder = write_flow_folder(tmp_path, ["good", "good"])
    labels.write_text(labels.read_text().replace(",", ";"))
    with pytest.raises(DataError, match="separated by ';'"):
        read_flow_images(labels, folder)
    result = megc_flow_manifest_cli(CliRunner(), labels, folder, tmp_path / "m.csv")
    assert result.exit_code != 0 and not (tmp_path / "m.csv").exists()


@pytest.mark.parametrize("header", [True, False], ids=["distributed-csv", "combined-gt"])
def test_a_row_rejected_for_its_label_is_reported_once(tmp_path, header) -> None:
    labels, folder = write_flow_folder(tmp_path, ["good", "good", "good"])
    if header:
        labels.write_text(labels.read_text().replace("EP01_01f,1", "EP01_01f,7"))
    else:
        rows = ["casme2,sub01,EP00_01f,0", "casme2,sub02,EP01_01f,7", "casme2,3,EP02_01f,2"]
        labels.write_text("\n".join(rows) + "\n")
    samples = read_flow_images(labels, folder)
    assert len(samples) == 2
    assert len(samples.problems) == 1, [str(p) for p in samples.problems]
    assert "'7'" in samples.problems[0].message


@pytest.mark.parametrize("bad", [np.nan, np.inf, 1e6], ids=["nan", "inf", "beyond-float16"])
def test_a_clip_flow_with_a_non_finite_value_is_refused(bad: float) -> None:
    """The Predictor's path (a flow computed on a new clip) gets the files' check."""
    features = np.zeros((28, 28, 4), np.float32)
    features[7, 9, 1] = bad
    data = load_config("demo", FLOW).data
    with pytest.raises(DataError, match="non-finite") as err:
        get_input("flow").from_features(features, data)
    assert "flow" in str(err.value) and "Fix:" in str(err.value)


def test_data_summary_of_a_manifest_reports_every_damaged_file(tmp_path) -> None:
    """The "check first" step reads each file as training will and lists the bad ones."""
    manifest, samples = write_npy_manifest(tmp_path)
    for sample, how in zip(samples, DAMAGE, strict=False):
        _damage(sample.flow_path, how)
    result = CliRunner().invoke(
        app, ["data", "summary", "--corpus", "manifest", "--coding", str(manifest)]
    )
    assert result.exit_code == 0, result.output
    assert f"samples         {len(samples) - len(DAMAGE)}" in result.output
    assert f"problems        {len(DAMAGE)}" in result.output
    for sample in samples[: len(DAMAGE)]:
        assert str(sample.flow_path) in result.output


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_a_float_frame_with_a_non_finite_pixel_is_refused(tmp_path, bad) -> None:
    """Float TIFF frames and crops: NaN would otherwise become an arbitrary 8-bit value."""
    path = tmp_path / "img001.tiff"
    image = np.full((20, 20, 3), 0.5, np.float32)
    image[4, 6, 2] = bad
    assert cv2.imwrite(str(path), image)
    with pytest.raises(FrameError, match="non-finite") as err:
        read_image(path)
    assert str(path) in str(err.value)
