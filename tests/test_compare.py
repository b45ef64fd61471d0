"""`apexmer loso --protocol lodo` and `apexmer compare` end to end, from the command line."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from apexmer.errors import DataError
from apexmer.evaluation import metrics as M
from apexmer.evaluation.compare import compare_runs
from manifests import TINY_RUN, write_tiny_manifest

SETS = [x for s in [*TINY_RUN, "train.epochs=1"] for x in ("--set", s)]
CI = r"\d\.\d{3} \[\d\.\d{2}, \d\.\d{2}\]"


def _cli(args: list[str]):
    from apexmer.cli.main import app

    return CliRunner().invoke(app, args)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cmp")
    manifest = write_tiny_manifest(
        root / "m", subjects=6, per_subject=3, datasets=("casme2", "samm", "smic")
    )
    out = {"manifest": manifest}
    for name, extra in (
        ("a", ["--protocol", "lodo", "--bootstrap", "300"]),
        ("b", ["--protocol", "lodo", "--set", "train.seed=1"]),
        ("samm", ["--datasets", "samm"]),
    ):
        where = ["--data", str(manifest), "--config", "demo", "--out", str(root / name)]
        res = _cli(["loso", *where, *SETS, *extra])
        assert res.exit_code == 0, res.output
        out[name] = root / name
        out[f"{name}_output"] = res.output
    return out


def test_lodo_cli_prints_per_dataset_scores_with_intervals(runs: dict) -> None:
    lines = runs["a_output"].strip().splitlines()
    assert re.fullmatch(
        rf"accuracy {CI}  UF1 {CI}  UAR {CI}  \(18 samples, 3 folds, lodo\)", lines[-1]
    )
    for name in ("casme2", "samm", "smic"):
        pattern = rf"{name}\s+accuracy {CI}  UF1 {CI}  UAR {CI}  \(6 samples, 2 subjects\)"
        # (tqdm's progress on stderr shares the runner's output, without a newline)
        assert re.search(rf"{pattern}$", runs["a_output"], re.MULTILINE), runs["a_output"]
    summary = json.loads((runs["a"] / "summary.json").read_text())
    assert summary["bootstrap"]["n_resamples"] == 300


def test_compare_cli_writes_the_table_the_paired_difference_and_a_plot(
    runs: dict, tmp_path: Path
) -> None:
    res = _cli(["compare", str(runs["a"]), str(runs["b"]), "--out", str(tmp_path), "--json"])
    assert res.exit_code == 0, res.output
    result = json.loads(res.output[res.output.index("{") : res.output.rindex("}") + 1])
    assert json.loads((tmp_path / "compare.json").read_text()) == result
    assert [r["name"] for r in result["runs"]] == ["a", "b"]
    pa = pd.read_csv(runs["a"] / "predictions.csv").sort_values("key")
    pb = pd.read_csv(runs["b"] / "predictions.csv").sort_values("key")
    y = pa["y_true"].to_numpy()
    assert result["runs"][0]["uf1"] == pytest.approx(M.uf1(y, pa["y_pred"].to_numpy(), 3))
    pair = result["pairs"][0]
    acc_diff = np.mean(pa["y_pred"].to_numpy() == y) - np.mean(pb["y_pred"].to_numpy() == y)
    assert pair["accuracy"]["difference"] == pytest.approx(acc_diff)
    lo, hi = pair["uf1"]["ci"]
    assert lo <= hi and 0 <= pair["uf1"]["a_better"] <= 1
    text = (tmp_path / "compare.md").read_text()
    assert "Paired differences (A - B)" in text and f"{pair['uf1']['difference']:+.4f}" in text
    assert (tmp_path / "compare.png").stat().st_size > 1000
    res = _cli(["compare", str(runs["a"]), str(runs["b"]), "--out", str(tmp_path / "md")])
    assert res.exit_code == 0 and "| a | lodo |" in res.output


def test_compare_refuses_runs_on_other_samples(runs: dict, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not run on the same samples") as err:
        compare_runs([runs["a"], runs["samm"]])
    assert "\n" not in str(err.value)
    res = _cli(["compare", str(runs["a"]), str(runs["samm"]), "--out", str(tmp_path)])
    assert res.exit_code != 0 and isinstance(res.exception, DataError)
    with pytest.raises(DataError, match="not a finished run folder"):
        compare_runs([runs["a"], tmp_path])


def test_loso_without_out_writes_runs_config_protocol(
    runs: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    cross = ["--protocol", "cross", "--train-datasets", "casme2,samm", "--test-datasets", "smic"]
    res = _cli(["loso", "--data", str(runs["manifest"]), "--config", "demo", *SETS, *cross])
    assert res.exit_code == 0, res.output
    summary = json.loads((tmp_path / "runs" / "demo-cross" / "summary.json").read_text())
    assert summary["folds"][0]["train_datasets"] == ["casme2", "samm"]
    assert res.output.strip().splitlines()[-1].endswith("(6 samples, 1 fold, cross)")
