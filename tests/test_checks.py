"""Frame checks: a cut-short image (an interrupted copy) is reported by name with a fix,
by ``data summary --root`` and by preprocessing, whatever the JPEG decoder makes of it."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from apexmer.cli.main import app
from apexmer.data.casme2 import read_casme2
from apexmer.data.frames import image_file_issue, read_image
from apexmer.errors import FrameError
from corpus_files import truncate, write_casme2_sheet


def photo(seed: int, size: tuple[int, int] = (120, 160)) -> np.ndarray:
    """A smooth random image: JPEG-compresses like a photograph, not like noise."""
    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur(rng.integers(0, 256, (*size, 3), dtype=np.uint8), (9, 9), 3)


def write_clip(folder: Path, numbers: range, suffix: str = ".jpg") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for n in numbers:
        assert cv2.imwrite(str(folder / f"img{n}{suffix}"), photo(n))
    return folder


@pytest.mark.parametrize("keep", [1 / 3, 0.9, 0.999])
def test_cut_jpeg_is_named_with_a_fix(tmp_path: Path, keep: float) -> None:
    path = truncate(write_clip(tmp_path, range(1, 2)) / "img1.jpg", keep)
    with pytest.raises(FrameError, match="JPEG is cut short") as info:
        read_image(path)
    assert str(path) in str(info.value) and "Fix: copy or extract this frame again" in str(
        info.value
    )
    issue = image_file_issue(path)
    assert issue is not None and "cut short" in issue.message


def test_cut_png_is_named(tmp_path: Path) -> None:
    path = truncate(write_clip(tmp_path, range(1, 2), ".png") / "img1.png", 0.5)
    with pytest.raises(FrameError, match="PNG is cut short"):
        read_image(path)
    assert image_file_issue(path) is not None


@pytest.mark.parametrize("trailer", [b"\x00" * 300, b"\n", b"EXTRA TRAILER DATA " * 20])
def test_complete_files_with_trailing_bytes_still_read(tmp_path: Path, trailer: bytes) -> None:
    path = write_clip(tmp_path, range(1, 2)) / "img1.jpg"
    expected = read_image(path)
    path.write_bytes(path.read_bytes() + trailer)
    assert image_file_issue(path) is None
    assert np.array_equal(read_image(path), expected)
    png = write_clip(tmp_path, range(2, 3), ".png") / "img2.png"
    assert image_file_issue(png) is None and read_image(png).shape == (120, 160, 3)


def test_data_summary_reports_a_cut_frame_inside_the_clip(tmp_path: Path) -> None:
    rows = [
        dict(subject=1, filename="EP02_01f", onset=10, apex=15, offset=25, emotion="happiness"),
        dict(subject=1, filename="EP03_02", onset=40, apex=44, offset=50, emotion="disgust"),
    ]
    for r in rows:
        r.update(aus="12", objective=1)
    sheet = write_casme2_sheet(tmp_path / "CASME2-coding-20190701.xlsx", "2019", rows)
    root = tmp_path / "raw"
    write_clip(root / "sub01" / "EP02_01f", range(10, 26))
    write_clip(root / "sub01" / "EP03_02", range(40, 51))
    cut = truncate(root / "sub01" / "EP02_01f" / "img18.jpg", 1 / 3)  # not a key frame

    result = read_casme2(sheet, root=root, classes="all")
    assert [s.clip for s in result] == ["EP03_02"]
    (problem,) = result.errors
    assert problem.file == str(cut) and problem.sample == "casme2/sub01/EP02_01f"
    assert "cut short" in problem.message and "Fix: copy or extract" in problem.message

    out = CliRunner().invoke(
        app,
        [
            "data",
            "summary",
            "--corpus",
            "casme2",
            "--coding",
            str(sheet),
            "--root",
            str(root),
            "--classes",
            "all",
            "--json",
        ],
    )
    info = json.loads(out.output)
    assert info["samples"] == 1 and len(info["problems"]) == 1
    assert "img18.jpg" in info["problems"][0] and "cut short" in info["problems"][0]


def test_preprocessing_reports_a_cut_frame(tmp_path: Path) -> None:
    from apexmer.face.align import AlignConfig
    from apexmer.preprocess.pipeline import PreprocessConfig, preprocess_corpus

    rows = [dict(subject=1, filename="EP02_01f", onset=10, apex=15, offset=25)]
    rows[0].update(emotion="happiness", aus="12", objective=1)
    sheet = write_casme2_sheet(tmp_path / "CASME2-coding-20190701.xlsx", "2019", rows)
    folder = write_clip(tmp_path / "raw" / "sub01" / "EP02_01f", range(10, 26))
    cut = truncate(folder / "img10.jpg", 1 / 3)
    sheet_only = read_casme2(sheet, classes="all")  # no root: the frames are not checked
    sheet_only.samples = [s.with_(frames=folder) for s in sheet_only.samples]
    result = preprocess_corpus(
        sheet_only, tmp_path / "cache", PreprocessConfig(align=AlignConfig(size=48))
    )
    assert result.n_ok == 0 and result.n_failed == 1
    message = result.problems[0].message
    assert str(cut) in message and "JPEG is cut short" in message and "Fix:" in message


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"<!DOCTYPE html><html><body>502 Bad Gateway</body></html>\n", "not an image file"),
        (b"", "empty file"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 200, "JPEG header is corrupt"),
    ],
)
def test_data_summary_lists_a_frame_that_is_not_an_image(
    tmp_path: Path, content: bytes, why: str
) -> None:
    # A failed download saved an HTML error page as a frame in the middle of the clip (not
    # a key frame): the check that exists to find such files before a long job lists it.
    rows = [dict(subject=1, filename="EP02_01f", onset=10, apex=15, offset=25)]
    rows[0].update(emotion="happiness", aus="12", objective=1)
    sheet = write_casme2_sheet(tmp_path / "CASME2-coding-20190701.xlsx", "2019", rows)
    root = tmp_path / "raw"
    write_clip(root / "sub01" / "EP02_01f", range(10, 26))
    bad = root / "sub01" / "EP02_01f" / "img22.jpg"
    bad.write_bytes(content)
    args = ["data", "summary", "--corpus", "casme2", "--coding", str(sheet)]
    out = CliRunner().invoke(app, [*args, "--root", str(root), "--classes", "all", "--json"])
    info = json.loads(out.output)
    assert info["samples"] == 0
    (problem,) = info["problems"]
    assert str(bad) in problem and why in problem and "Fix:" in problem


def test_header_check_accepts_every_image_format_opencv_writes(tmp_path: Path) -> None:
    for suffix in (".jpg", ".png", ".bmp", ".tif", ".webp", ".pgm", ".ppm"):
        path = tmp_path / f"img1{suffix}"
        image = photo(1)[..., 0] if suffix == ".pgm" else photo(1)
        assert cv2.imwrite(str(path), image)
        assert image_file_issue(path) is None, suffix
    html = tmp_path / "img2.jpg"
    html.write_bytes(b"<html>Not Found</html>")
    issue = image_file_issue(html)
    assert issue is not None and "'<html>Not Found<'" in issue.message
