"""The synthetic proxy composite (bench/proxy_flow.py) and its ranking (bench/proxy_rank.py)."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from apexmer.cli.main import app
from apexmer.data.flow_images import read_flow_images
from apexmer.data.synth import base_face, expression_field

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

import proxy_flow  # noqa: E402
import proxy_rank  # noqa: E402

# MEGC 2019 composite (METHOD.md section 7): clips, subjects and classes per corpus.
COMPOSITE = {
    "casme2": (145, 24, (88, 32, 25)),
    "samm": (133, 28, (92, 26, 15)),
    "smic": (164, 16, (70, 51, 43)),
}


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("proxy")
    proxy_flow.write_proxy(out, seed=3)
    return out


def _files(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_same_seed_same_files_other_seed_other_images(proxy: Path, tmp_path: Path) -> None:
    again = proxy_flow.write_proxy(tmp_path / "again", seed=3).parent
    first, second = _files(proxy), _files(again)
    assert len(first) == 442 + 3  # the images, labels.csv, truth.csv, proxy.json
    assert first == second
    other = proxy_flow.generate(seed=4)
    same = proxy_flow.generate(seed=3)
    assert not all(np.array_equal(a["image"], b["image"]) for a, b in zip(other, same, strict=True))


def test_counts_are_the_composites(proxy: Path) -> None:
    samples = read_flow_images(proxy / "labels.csv", proxy / "flows")
    assert not samples.problems
    assert len(samples) == 442
    for corpus, (clips, subjects, counts) in COMPOSITE.items():
        part = [s for s in samples if s.dataset == corpus]
        assert len(part) == clips
        assert len({s.subject for s in part}) == subjects
        by_label = Counter(s.label for s in part)
        assert (by_label["negative"], by_label["positive"], by_label["surprise"]) == counts
    assert Counter(s.label for s in samples) == {"negative": 250, "positive": 109, "surprise": 83}


def test_images_are_min_max_scaled_uv_strain(proxy: Path) -> None:
    for path in sorted((proxy / "flows").glob("*.png"))[:20]:
        assert path.name.endswith(" .png")  # the distributed names' space
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        assert image.shape == (28, 28, 3) and image.dtype == np.uint8
        assert (image.min(axis=(0, 1)) == 0).all() and (image.max(axis=(0, 1)) == 255).all()


def test_label_noise_and_amplitudes_as_specified(proxy: Path) -> None:
    truth = (proxy / "truth.csv").read_text().splitlines()
    header = truth[0].split(",")
    rows = [dict(zip(header, line.split(","), strict=True)) for line in truth[1:]]
    amplitude = np.array([float(r["amplitude"]) for r in rows])
    assert amplitude.min() >= 0.2 * 0.4 and amplitude.max() <= 1.0
    flipped = [r for r in rows if r["flipped"] == "True"]
    assert 0 < len(flipped) < 0.15 * len(rows)
    assert all(r["label"] != r["true_label"] for r in flipped)
    assert all(r["label"] == r["true_label"] for r in rows if r["flipped"] == "False")


def test_manifest_cli_reads_the_proxy(proxy: Path, tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.csv"
    result = CliRunner().invoke(
        app,
        [
            "data",
            "manifest",
            "--corpus",
            "megc-flow",
            "--coding",
            str(proxy / "labels.csv"),
            "--root",
            str(proxy / "flows"),
            "--out",
            str(manifest),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "442 samples, 68 subjects (negative 250, positive 109, surprise 83), 0 problems" in (
        result.output
    )


def test_subset_keeps_whole_subjects_of_every_corpus() -> None:
    clips = proxy_flow.generate(seed=0)
    small = proxy_flow.subset_clips(clips, 0.25)
    subjects = {(c["dataset"], c["sub"]) for c in small}
    assert Counter(d for d, _ in subjects) == {"casme2": 6, "samm": 7, "smic": 4}
    assert all(c in small for c in clips if (c["dataset"], c["sub"]) in subjects)


def test_au26_drops_the_jaw() -> None:
    pts = base_face().landmarks
    field = expression_field(pts, 26, base_face().image.shape[:2], amplitude=1.0)
    x, y = np.rint(pts[8]).astype(int)  # the chin
    assert field[y, x, 1] > 0.5  # image y points down
    assert abs(field[y, x, 0]) < 0.1


def test_variants_parse_and_unknown_keys_stop_before_running() -> None:
    v = proxy_rank.parse_variant("mix(data.flow_channels=[u,v], train.epochs=3)")
    assert v == proxy_rank.Variant("mix", ("data.flow_channels=[u,v]", "train.epochs=3"))
    assert proxy_rank.parse_variant("baseline()").overrides == ()
    with pytest.raises(ValueError, match=r"name\(key=value"):
        proxy_rank.parse_variant("baseline")
    with pytest.raises(SystemExit, match=r"variant ens: .*train\.ensemble_size"):
        proxy_rank.check_variants([proxy_rank.Variant("ens", ("train.ensemble_size=3",))], "flow")
    resolved = proxy_rank.check_variants([v], "flow")
    assert resolved["mix"]["train"]["epochs"] == 3


@pytest.mark.slow
def test_rank_runs_resumes_and_writes_the_table(tmp_path: Path) -> None:
    args = ["--out", str(tmp_path), "--subset", "0.1", "--workers", "1"]
    tiny = "train.epochs=1,train.pack_folds=1"
    proxy_rank.main([*args, f"base({tiny})", f"sq({tiny},loss.alpha=sqrt_balanced)"])
    table = (tmp_path / "ranking.md").read_text()
    assert "| base |" in table and "| sq |" in table and "UF1 casme2" in table
    summary = json.loads((tmp_path / "sq" / "summary.json").read_text())
    assert summary["config"]["loss"]["alpha"] == "sqrt_balanced"
    stamp = (tmp_path / "sq" / "summary.json").stat().st_mtime_ns
    proxy_rank.main([*args, f"base({tiny})", f"sq({tiny},loss.alpha=sqrt_balanced)"])
    assert (tmp_path / "sq" / "summary.json").stat().st_mtime_ns == stamp  # not re-run
    with pytest.raises(SystemExit, match="another config"):
        proxy_rank.main([*args, "sq(train.epochs=2)"])
