"""The apex spotter each command uses unless told (issue 19 item 9): motion for spot,
preprocess (flow preset, the default), predict and serve; the paper's for --config paper.
The choice is recorded in preprocess.json and in checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from apexmer.cli.main import app
from apexmer.config import list_presets, load_config, spot_method_of
from apexmer.data.frames import open_frames
from apexmer.data.synth import write_synthetic_corpus
from apexmer.face import get_detector
from apexmer.spotting.apex import SpotConfig, default_spot_method, spot_clip


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("spotter_corpus")
    return write_synthetic_corpus(out, subjects=1, clips_per_subject=1, seed=11, size=(320, 240))


def test_one_place_decides_motion_except_the_papers_preset() -> None:
    assert default_spot_method() == default_spot_method(None) == "motion"
    assert default_spot_method("paper") == "paper"
    assert default_spot_method("flow") == "motion"
    methods = {name: spot_method_of(load_config(name)) for name in list_presets()}
    assert methods.pop("paper") == "paper"
    assert set(methods.values()) == {"motion"}
    # a preset's YAML may say it explicitly
    assert spot_method_of(load_config("flow", ["preprocess.spot_method=paper"])) == "paper"
    assert spot_method_of(load_config("paper", ["name=mine"])) == "paper"  # written in paper
    assert spot_method_of(load_config("demo", ["name=paper"])) == "paper"


def test_spot_cli_uses_motion_by_default(corpus) -> None:
    row = corpus.ground_truth.iloc[0]
    folder = corpus.frames_root / str(row["folder"]) / str(row["clip"])
    result = CliRunner().invoke(app, ["spot", "--frames", str(folder), "--json"])
    assert result.exit_code == 0, result.output
    got = json.loads(result.stdout)
    detector = get_detector("dlib")
    with open_frames(folder) as source:
        motion = spot_clip(source, None, None, detector, SpotConfig(method="motion"))
        paper = spot_clip(source, None, None, detector, SpotConfig(method="paper"))
    assert got["apex"] == motion.apex
    want = [None if np.isnan(v) else v for v in motion.curve]
    assert got["curve"] == pytest.approx(want, nan_ok=True)
    assert not np.array_equal(motion.curve, paper.curve, equal_nan=True)
    result = CliRunner().invoke(
        app, ["spot", "--frames", str(folder), "--json", "--spot-method", "paper"]
    )
    assert json.loads(result.stdout)["apex"] == paper.apex


def _preprocess(corpus, out: Path, *extra: str) -> dict:
    args = ["preprocess", "--corpus", "casme2", "--coding", str(corpus.coding)]
    args += ["--root", str(corpus.frames_root), "--out", str(out), "--classes", "all"]
    args += ["--size", "48", "--flow", "farneback", *extra]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return json.loads((out / "preprocess.json").read_text())["preprocess"]


def test_preprocess_records_the_spotter_its_preset_chooses(corpus, tmp_path: Path) -> None:
    default = _preprocess(corpus, tmp_path / "default")
    assert default["spot"]["method"] == "motion" and default["flow"]["style"] == "apexmer"
    paper = _preprocess(corpus, tmp_path / "paper", "--config", "paper")
    assert paper["spot"]["method"] == "paper"
    explicit = _preprocess(
        corpus, tmp_path / "explicit", "--config", "paper", "--spot-method", "motion"
    )
    assert explicit["spot"]["method"] == "motion"
    style = _preprocess(corpus, tmp_path / "style", "--flow-style", "ststnet")
    assert style["flow"]["style"] == "ststnet"
    # the style also comes from a config (a YAML's preprocess section)
    yaml = tmp_path / "mine.yaml"
    yaml.write_text("name: mine\npreprocess:\n  flow_style: ststnet\n")
    mine = _preprocess(corpus, tmp_path / "yaml", "--config", str(yaml))
    assert mine["flow"]["style"] == "ststnet"


def test_help_says_which_spotter_is_the_default() -> None:
    for command in ("spot", "preprocess", "predict", "serve"):
        result = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0
        text = " ".join(result.stdout.split())
        assert "motion" in text and "paper" in text, command
