"""The experiment commands end to end: loso, ablation (Table 4) and the demo."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from apexmer.cli.main import app
from manifests import write_tiny_manifest

FAST = [
    "--set",
    "data.input=diff",  # tiny manifests of crops: the demo preset's earlier input and net
    "--set",
    "model.name=seresnext_tiny",
    "--set",
    "data.input_size=32",
    "--set",
    "train.epochs=1",
    "--set",
    "train.threads=1",
    "--set",
    "train.batch_size=4",
    "--executor",
    "local",  # the default, auto, gives the same numbers (test_executors) in more processes
]


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_manifest(tmp_path_factory.mktemp("tiny"), subjects=3, per_subject=4)


def test_loso_cli_prints_headline_and_json(manifest: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    args = [
        "loso",
        "--data",
        str(manifest),
        "--config",
        "demo",
        "--out",
        str(tmp_path),
        *FAST,
        "--set",
        "data.input=frame",
    ]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    last = res.output.strip().splitlines()[-1]  # the headline, each figure with its interval
    ci = r"\d\.\d{3} \[\d\.\d{2}, \d\.\d{2}\]"
    assert re.fullmatch(rf"accuracy {ci}  UF1 {ci}  UAR {ci}  \(12 samples, 3 folds, loso\)", last)
    res = runner.invoke(app, [*args, "--json"])  # resumes: every fold is already done
    summary = json.loads(res.output[res.output.index("{") :])
    assert summary["n_folds"] == 3 and summary["config"]["data"]["input"] == "frame"


def test_ablation_writes_table4_from_our_runs(manifest: Path, tmp_path: Path) -> None:
    res = CliRunner().invoke(
        app,
        [
            "ablation",
            "--data",
            str(manifest),
            "--out",
            str(tmp_path),
            "--config",
            "demo",
            "--models",
            "seresnext_tiny",
            *FAST,
        ],
    )
    assert res.exit_code == 0, res.output
    rows = json.loads((tmp_path / "ablation.json").read_text())
    assert [(r["model"], r["frame"]) for r in rows] == [
        ("seresnext_tiny", "apex"),
        ("seresnext_tiny", "mid"),
    ]
    assert {r["setting"]["frame"] for r in rows} == {"apex", "mid"}
    table = (tmp_path / "ablation.md").read_text()
    assert "n/c" in table and "0.5926" not in table  # synthetic runs: no paper cells
    for r in rows:
        assert (Path(r["run"]) / "summary.json").exists()


def test_ablation_refuses_unknown_network(manifest: Path, tmp_path: Path) -> None:
    res = CliRunner().invoke(
        app, ["ablation", "--data", str(manifest), "--out", str(tmp_path), "--models", "resnet18"]
    )
    assert res.exit_code != 0 and "resnet18" in str(res.exception or res.output)
    assert not any(tmp_path.iterdir())


@pytest.mark.slow
def test_ablation_with_the_papers_three_networks(manifest: Path, tmp_path: Path) -> None:
    res = CliRunner().invoke(
        app,
        [
            "ablation",
            "--data",
            str(manifest),
            "--out",
            str(tmp_path),
            "--config",
            "demo",
            *FAST,
            "--set",
            "data.input=frame",
        ],
    )
    assert res.exit_code == 0, res.output
    rows = json.loads((tmp_path / "ablation.json").read_text())
    assert len(rows) == 6


def _demo(out: Path, *extra: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("apexmer")
    return subprocess.run(
        [str(exe), "demo", "--out", str(out), *extra],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
        cwd=cwd,
    )


def test_demo_runs_end_to_end_small(tmp_path: Path) -> None:
    # As the Makefile runs it: `--out demo`, relative to the working directory, so that the
    # output folder and the preset share a name (and the demo is run twice: it resumes).
    small = [
        "--subjects",
        "3",
        "--clips-per-subject",
        "4",
        "--workers",
        "1",
        "--set",
        "train.epochs=2",
    ]
    for _ in range(2):
        res = _demo(Path("demo"), *small, cwd=tmp_path)
        assert res.returncode == 0, res.stderr[-2000:]
    assert "report:" in res.stdout and (tmp_path / "demo" / "run" / "report.md").exists()
    assert "[3/3]" in res.stderr and "reusing the synthetic corpus" in res.stderr
    assert "ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_CBWR=AVX2" in res.stderr


@pytest.mark.slow
def test_default_demo_is_clearly_above_chance(tmp_path: Path) -> None:
    res = _demo(tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    # 5 classes: uniform guessing gives UF1 ~0.2, always "others" ~0.11
    assert summary["uf1"] > 0.5 and summary["accuracy"] > 0.6


@pytest.mark.slow
def test_paper_preset_runs_one_epoch(manifest: Path, tmp_path: Path) -> None:
    res = CliRunner().invoke(
        app,
        [
            "loso",
            "--data",
            str(manifest),
            "--config",
            "paper",
            "--out",
            str(tmp_path),
            "--set",
            "train.epochs=1",
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output[res.output.index("{") :])
    assert summary["config"]["model"]["name"] == "seresnext50_32x4d"
    assert summary["config"]["data"]["input_size"] == 224
    assert summary["setting"]["input"] == "frame" and summary["n_samples"] == 12


def test_ablation_refuses_one_weights_file_for_three_networks(
    manifest: Path, tmp_path: Path
) -> None:
    res = CliRunner().invoke(
        app,
        [
            "ablation",
            "--data",
            str(manifest),
            "--out",
            str(tmp_path),
            "--set",
            "model.weights=/tmp/w.pth",
        ],
    )
    assert res.exit_code != 0 and "cannot fit 3 different networks" in str(res.exception)
