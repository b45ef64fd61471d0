"""Flow images as STSTNet/HTNet distribute them: label CSV + '<subject>_<clip> .png' folder."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from apexmer.cli.main import app
from apexmer.data.flow_images import LABEL_COLUMNS, read_flow_images
from apexmer.data.manifest import read_manifest
from apexmer.data.readers import read_corpus
from apexmer.errors import DataError
from corpus_files import MEGC_ROWS, write_megc_csv
from manifests import megc_flow_manifest_cli

# The composite's shape: 68 subjects (CASME II 24, SAMM 28, SMIC-HS 16), 442 clips,
# negative 250, positive 109, surprise 83.
SUBJECTS = {"casme2": 24, "samm": 28, "smic": 16}
COUNTS = {"0": 250, "1": 109, "2": 83}


def composite_rows() -> list[dict[str, str]]:
    """442 rows in the distributed label CSV's columns, subject ids as that CSV writes them."""
    subjects = [(dataset, n) for dataset, count in SUBJECTS.items() for n in range(1, count + 1)]
    labels = [label for label, count in COUNTS.items() for _ in range(count)]
    rows = []
    for i, label in enumerate(labels):
        dataset, n = subjects[i % len(subjects)]
        k = i // len(subjects) + 1
        sub, clip = {
            "casme2": (f"sub{n:02d}", f"EP{k:02d}_01f"),
            "samm": (f"{n:03d}", f"{n:03d}_{k}_1"),
            "smic": (f"s{n:02d}", f"s{n:02d}_ne_{k:02d}"),
        }[dataset]
        rows.append(
            {
                "dataset": dataset,
                "sub": sub,
                "filename_o": clip,
                "label": label,
                "apex": str(40 + k),
                "imagename": f"{sub}_{clip} .png",
                "sub_filename": f"{sub}_{clip}",
            }
        )
    return rows


def write_labels(path: Path, rows: list[dict[str, str]]) -> Path:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=LABEL_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_flow_png(path: Path, seed: int) -> Path:
    """A 28 x 28 (u, v, strain) image, each channel min-max scaled to 0..255."""
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 256, (28, 28, 3), dtype=np.uint8)
    rgb[0, 0], rgb[0, 1] = 0, 255
    assert cv2.imwrite(str(path), rgb[:, :, ::-1])
    return path


@pytest.fixture
def composite(tmp_path: Path) -> tuple[Path, Path, list[dict[str, str]]]:
    rows = composite_rows()
    folder = tmp_path / "flows"
    folder.mkdir()
    for i, row in enumerate(rows):
        write_flow_png(folder / row["imagename"], i)
    return write_labels(tmp_path / "labels.csv", rows), folder, rows


def test_composite_sized_folder_reads_with_68_loso_groups(composite) -> None:
    labels, folder, _ = composite
    ss = read_flow_images(labels, folder)
    assert not ss.problems
    assert len(ss) == 442
    assert ss.classes == ("negative", "positive", "surprise")
    assert ss.class_counts() == {"negative": 250, "positive": 109, "surprise": 83}
    assert len({s.group for s in ss}) == 68
    assert ss.datasets == ["casme2", "samm", "smic"]
    first = ss.samples[0]
    assert first.key == "casme2/sub01/EP01_01f"
    assert first.flow_path == folder / "sub01_EP01_01f .png"  # the space kept
    assert first.apex_path is None and first.frames is None and first.apex == 41
    samm = next(s for s in ss if s.dataset == "samm")
    assert samm.subject == "001" and samm.flow_path.name == "001_001_1_1 .png"
    assert all(s.flow_path.is_file() for s in ss)


def test_missing_and_extra_images_are_problems_and_the_rest_is_kept(composite) -> None:
    labels, folder, _ = composite
    (folder / "sub01_EP01_01f .png").unlink()
    write_flow_png(folder / "sub99_EP01_01f .png", 0)  # no row names it
    (folder / "notes.txt").write_text("not an image")  # ignored: not an image
    ss = read_flow_images(labels, folder)
    assert len(ss) == 441
    messages = [str(p) for p in ss.problems]
    assert len(messages) == 2, messages
    missing = next(p for p in ss.problems if p.sample == "casme2/sub01/EP01_01f")
    assert missing.row == 2 and "'sub01_EP01_01f .png'" in missing.message
    assert any("'sub99_EP01_01f .png'" in m and "no row" in m for m in messages)


def test_names_with_and_without_space_and_the_published_pattern(tmp_path: Path) -> None:
    folder = tmp_path / "flows"
    folder.mkdir()
    rows = [
        # imagename names the file exactly
        dict(
            zip(
                LABEL_COLUMNS,
                ["casme2", "sub01", "EP02_01f", "1", "46", "sub01_EP02_01f .png", "sub01_EP02_01f"],
                strict=True,
            )
        ),
        # imagename is not a file of the folder: sub_filename, without the space
        dict(
            zip(
                LABEL_COLUMNS,
                ["samm", "6", "006_1_2", "0", "5", "img5.jpg", "006_006_1_2"],
                strict=True,
            )
        ),
        # no imagename, no sub_filename: <subject>_<clip> with subject normalised (s1 -> s01)
        dict(zip(LABEL_COLUMNS, ["SMIC", "s1", "s01_ne_01", "2.0", "", "", ""], strict=True)),
        # a bad label is a problem, not an exception
        dict(zip(LABEL_COLUMNS, ["casme2", "sub02", "EP09_01", "7", "", "", ""], strict=True)),
    ]
    write_flow_png(folder / "sub01_EP02_01f .png", 1)
    write_flow_png(folder / "006_006_1_2.png", 2)
    write_flow_png(folder / "s01_s01_ne_01 .png", 3)
    ss = read_flow_images(write_labels(tmp_path / "labels.csv", rows), folder)
    assert [s.key for s in ss] == [
        "casme2/sub01/EP02_01f",
        "samm/006/006_1_2",
        "smic/s01/s01_ne_01",
    ]
    assert [s.flow_path.name for s in ss] == [
        "sub01_EP02_01f .png",
        "006_006_1_2.png",
        "s01_s01_ne_01 .png",
    ]
    assert [s.label for s in ss] == ["positive", "negative", "surprise"]
    assert len(ss.problems) == 1 and ss.problems[0].row == 5
    assert "label '7'" in ss.problems[0].message


def test_one_clip_twice_in_the_folder_is_a_problem(tmp_path: Path) -> None:
    folder = tmp_path / "flows"
    folder.mkdir()
    write_flow_png(folder / "sub01_EP02_01f .png", 1)
    write_flow_png(folder / "sub01_EP02_01f.png", 2)
    labels = write_labels(
        tmp_path / "labels.csv",
        [dict(zip(LABEL_COLUMNS, ["casme2", "sub01", "EP02_01f", "1", "", "", ""], strict=True))],
    )
    ss = read_flow_images(labels, folder)
    assert len(ss) == 0
    assert any("twice" in p.message for p in ss.problems)
    assert any(p.sample == "casme2/sub01/EP02_01f" for p in ss.problems)


def test_combined_3class_gt_with_a_flow_folder(tmp_path: Path) -> None:
    folder = tmp_path / "flows"
    folder.mkdir()
    stems = {"casme2": "{s}_{c}", "samm": "{s}_{c}", "smic": "{s}_{c}"}
    for i, (dataset, subject, clip, _) in enumerate(MEGC_ROWS):
        subject = {"6": "006", "7": "007"}.get(subject, subject)
        write_flow_png(folder / (stems[dataset].format(s=subject, c=clip) + " .png"), i)
    ss = read_corpus("megc-flow", coding=write_megc_csv(tmp_path / "gt.csv"), root=folder)
    assert not ss.problems and len(ss) == len(MEGC_ROWS)
    assert ss.samples[3].flow_path.name == "006_006_1_2 .png"
    assert len({s.group for s in ss}) == 6


def test_bad_inputs_name_the_file_and_the_fix(tmp_path: Path) -> None:
    folder = tmp_path / "flows"
    folder.mkdir()
    with pytest.raises(DataError, match="no flow folder given"):
        read_corpus("megc-flow", coding=tmp_path / "x.csv")
    with pytest.raises(DataError, match="label CSV not found"):
        read_flow_images(tmp_path / "x.csv", folder)
    bad = tmp_path / "bad.csv"
    bad.write_text("dataset,sub,filename_o,apex\ncasme2,sub01,EP02_01f,46\n")
    with pytest.raises(DataError, match=r"missing column.*label"):
        read_flow_images(bad, folder)


def test_cli_writes_a_manifest_that_reads_back_with_the_flows(composite, tmp_path: Path) -> None:
    labels, folder, _ = composite
    (folder / "s16_s16_ne_05 .png").unlink()
    out = tmp_path / "run" / "manifest.csv"
    out.parent.mkdir()
    result = megc_flow_manifest_cli(CliRunner(), labels, folder, out)
    assert result.exit_code == 0, result.output
    assert "441 samples, 68 subjects" in result.stdout
    assert "s16_s16_ne_05 .png" in result.stderr
    manifest = read_manifest(out)
    assert not manifest.problems and len(manifest) == 441
    assert manifest.classes == ("negative", "positive", "surprise")
    assert len({s.group for s in manifest}) == 68
    first = manifest.samples[0]
    assert first.group == "casme2/sub01" and first.flow_path == folder / "sub01_EP01_01f .png"
    assert "../flows/sub01_EP01_01f .png" in out.read_text()  # relative to the manifest


def test_loso_with_the_flow_preset_runs_on_distributed_flow_images(tmp_path: Path) -> None:
    """The README's path: label CSV + flow folder -> `data manifest` -> `loso --config flow`."""
    folder = tmp_path / "flows"
    folder.mkdir()
    rows = []
    for s, (dataset, sub, clip) in enumerate(
        [("casme2", "sub01", "EP02_01f"), ("samm", "006", "006_1_2"), ("smic", "s01", "s01_ne_01")]
    ):
        for k in range(4):
            name = f"{sub}_{clip}{k}"
            write_flow_png(folder / f"{name} .png", 10 * s + k)
            rows.append(
                dict(
                    zip(
                        LABEL_COLUMNS,
                        [dataset, sub, f"{clip}{k}", str(k % 3), "", f"{name} .png", name],
                        strict=True,
                    )
                )
            )
    labels = write_labels(tmp_path / "labels.csv", rows)
    manifest, run = tmp_path / "manifest.csv", tmp_path / "run"
    runner = CliRunner()
    res = megc_flow_manifest_cli(runner, labels, folder, manifest)
    assert res.exit_code == 0, res.output
    res = runner.invoke(
        app,
        [
            "loso",
            "--data",
            str(manifest),
            "--config",
            "flow",
            "--out",
            str(run),
            "--set",
            "train.epochs=2",
            "--executor",
            "local",
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output[res.output.index("{") :])
    assert summary["n_samples"] == 12 and summary["n_folds"] == 3
    assert summary["config"]["data"]["input"] == "flow"
    assert summary["config"]["model"]["name"] == "sssnet"
    assert 0.0 <= summary["uf1"] <= 1.0
