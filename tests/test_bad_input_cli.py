"""Bad input at the command line (issue 20): every numeric option is checked at the edge
with its range and a one-line error naming it (exit 2); no command prints a traceback on
a fuzzed set of bad files; batch commands keep going; the frame rate "invalid" and
"unknown" differ; a video too short to spot says so; devices, ports and third-party noise.

Commands run through ``apexmer.cli.main.main`` (what the ``apexmer`` script runs), in
process, so what a user sees (stdout, stderr, exit code) is what is checked."""

from __future__ import annotations

import math
import re
import socket
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
import typer.main

from apexmer.cli.main import app, main
from procs import cli_command
from test_predictor import make_checkpoint, synthetic_clip, write_folder, write_mp4


def run(args: list[str], monkeypatch: pytest.MonkeyPatch, capsys) -> tuple[int, str, str]:
    """``apexmer ARGS`` in this process: (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["apexmer", *map(str, args)])
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out = capsys.readouterr()
    return code, out.out, out.err


def assert_one_line_error(code: int, out: str, err: str, *names: str) -> None:
    assert code == 2, (code, out, err)
    assert "Traceback" not in out + err and out == "", (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "unexpected" not in err, err  # the catch-all for bugs
    for name in names:
        assert name in lines[0], (name, err)


# ---------------------------------------------------------------- every numeric option


def _commands(command, path=()):
    for name, sub in getattr(command, "commands", {}).items():
        yield from _commands(sub, (*path, name))
    if not hasattr(command, "commands"):
        yield path, command


def _annotation(param) -> type | None:
    descriptor = getattr(param, "type_descriptor", None)
    if descriptor is not None:
        return descriptor.annotation
    return {"integer": int, "float": float}.get(getattr(param.type, "name", ""))


NUMERIC = [
    (path, param)
    for path, command in _commands(typer.main.get_command(app))
    for param in command.params
    if param.opts and param.opts[0].startswith("--") and _annotation(param) in (int, float)
]


def _check(param):
    return getattr(param.callback, "__wrapped__", param.callback)


def test_every_numeric_option_has_a_range() -> None:
    assert len(NUMERIC) >= 30  # the introspection found the options
    missing = [
        f"{' '.join(path)} {param.opts[0]}"
        for path, param in NUMERIC
        if not hasattr(_check(param), "low")
    ]
    assert not missing, f"numeric options without a range check (cli/options.py): {missing}"


def _outside(param) -> list[str]:
    """Values outside ``param``'s range: below, above, and for floats NaN and infinities;
    for every numeric option also text that is not a number."""
    check, integer = _check(param), _annotation(param) is int
    values = ["abc"]
    low, high = getattr(check, "low", None), getattr(check, "high", None)
    if low is not None:
        values.append(str(low if check.low_open else (int(low) - 1 if integer else low - 0.5)))
        values.append(str(-(10**12)))
    if high is not None:
        values.append(str(high if check.high_open else (int(high) + 1 if integer else high * 2)))
    if integer:
        values.append("1.5")
    else:
        values += ["nan", "inf", "-inf"]
    return values


CASES = [
    pytest.param(path, param.opts[0], value, id=f"{'-'.join(path)}{param.opts[0]}={value}")
    for path, param in NUMERIC
    for value in _outside(param)
]


@pytest.mark.parametrize(("path", "option", "value"), CASES)
def test_any_numeric_option_outside_its_range_is_one_line_exit_2(
    path: tuple[str, ...], option: str, value: str, monkeypatch, capsys
) -> None:
    code, out, err = run([*path, option, value], monkeypatch, capsys)
    assert_one_line_error(code, out, err, option)


CHOICES = [
    pytest.param(path, param.opts[0], id=f"{'-'.join(path)}{param.opts[0]}")
    for path, command in _commands(typer.main.get_command(app))
    for param in command.params
    if hasattr(_check(param), "choices")
]


@pytest.mark.parametrize(("path", "option"), CHOICES)
def test_any_choice_option_refuses_an_unknown_value_in_one_line(
    path: tuple[str, ...], option: str, monkeypatch, capsys
) -> None:
    code, out, err = run([*path, option, "no-such-value"], monkeypatch, capsys)
    assert_one_line_error(code, out, err, option, "no-such-value", "one of")


def test_the_choice_options_cover_the_issue() -> None:
    named = {p.values[1] for p in CHOICES}
    assert {"--flow-global", "--flow", "--apex", "--align-per", "--threshold"} <= named


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["spot-intervals", "--frames", "x", "--fps", "inf"], "not a valid frame rate"),
        (["spot-intervals", "--frames", "x", "--fps", "1e308"], "not a valid frame rate"),
        (["spot-intervals", "--frames", "x", "--fps", "0"], "not a valid frame rate"),
        (["spot-intervals", "--frames", "x", "--fps", "-5"], "not a valid frame rate"),
        (["spot-intervals", "--frames", "x", "--fps", "nan"], "not a valid frame rate"),
        (["predict", "--checkpoint", "m", "--input-path", "x", "--long", "--fps", "inf"],
         "not a valid frame rate"),
        (["serve", "--checkpoint", "m", "--port", "70000"], "0..65535"),
        (["serve", "--checkpoint", "m", "--workers", "0"], ">= 1"),
        (["preprocess", "--corpus", "casme2", "--root", "r", "--out", "o", "--lag", "0"], ">= 1"),
        (["preprocess", "--corpus", "casme2", "--root", "r", "--out", "o", "--size", "0"],
         ">= 16"),
        (["preprocess", "--corpus", "casme2", "--root", "r", "--out", "o",
          "--flow-global", "median"], "nose_median"),
    ],
)  # fmt: skip
def test_the_issues_options_say_their_own_name(
    args: list[str], words: str, monkeypatch, capsys
) -> None:
    code, out, err = run(args, monkeypatch, capsys)
    option = args[-2]
    assert_one_line_error(code, out, err, option, words)
    assert not re.search(r"[A-Z]\w*Config\b|\w+=", err), err  # no class fields, no kwargs


# ---------------------------------------------------------------- fuzzed bad files


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bad")
    clip = synthetic_clip(seed=2)
    good = write_mp4(clip, root / "good.mp4")
    out = {"good": good}
    (root / "empty.mp4").write_bytes(b"")
    out["empty video"] = root / "empty.mp4"
    (root / "truncated.mp4").write_bytes(good.read_bytes()[:3000])
    out["truncated video"] = root / "truncated.mp4"
    (root / "text.png").write_bytes(b"this is not an image\n")
    out["text as image"] = root / "text.png"
    (root / "noise.avi").write_bytes(np.random.default_rng(0).bytes(5000))
    out["noise as video"] = root / "noise.avi"
    out["one frame"] = write_mp4(clip[:1], root / "one.mp4")
    out["three frames"] = write_mp4(clip[:3], root / "three.mp4")
    out["blank video"] = write_mp4([np.full_like(clip[0], 128)] * 20, root / "blank.mp4")
    mixed = write_folder(clip, root / "mixed")
    small = sorted(mixed.iterdir())[5]
    cv2.imwrite(str(small), cv2.resize(cv2.imread(str(small)), (160, 100)))
    out["frames of two sizes"] = mixed
    zero = write_folder(clip, root / "zero_byte")
    sorted(zero.iterdir())[7].write_bytes(b"")
    out["a 0-byte frame"] = zero
    cut = write_folder(clip, root / "cut_png")
    frame = sorted(cut.iterdir())[3]
    frame.write_bytes(frame.read_bytes()[:200])
    out["a cut-short frame"] = cut
    (root / "no_images").mkdir()
    (root / "no_images" / "notes.txt").write_text("hello")
    out["folder without frames"] = root / "no_images"
    out["missing path"] = root / "does_not_exist"
    return out


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(1)
    return make_checkpoint(tmp_path_factory.mktemp("model") / "model")


BAD = [
    "empty video",
    "truncated video",
    "text as image",
    "noise as video",
    "one frame",
    "three frames",
    "blank video",
    "frames of two sizes",
    "a 0-byte frame",
    "a cut-short frame",
    "folder without frames",
    "missing path",
]
COMMANDS = {
    "spot": lambda x, m: ["spot", "--frames", x],
    "spot-intervals": lambda x, m: ["spot-intervals", "--frames", x, "--fps", "30"],
    "predict": lambda x, m: ["predict", "--checkpoint", m, "--input-path", x],
    "predict --long": lambda x, m: ["predict", "--checkpoint", m, "--input-path", x, "--long",
                                    "--fps", "30"],
    # any bad file given where a manifest belongs
    "train": lambda x, m: ["train", "--data", x, "--out", x.parent / "t_out", "--config", "demo"],
    "loso": lambda x, m: ["loso", "--data", x, "--out", x.parent / "l_out", "--config", "demo"],
    "data summary": lambda x, m: ["data", "summary", "--corpus", "manifest", "--coding", x],
}  # fmt: skip


@pytest.mark.parametrize("kind", BAD)
@pytest.mark.parametrize("command", list(COMMANDS))
def test_no_command_prints_a_traceback_on_bad_files(
    command: str, kind: str, files, checkpoint: Path, monkeypatch, capsys
) -> None:
    path = files[kind]
    code, out, err = run(COMMANDS[command](path, checkpoint), monkeypatch, capsys)
    if kind == "three frames" and command in ("spot", "predict"):
        # 3 frames of a face are enough for the motion spotter (the default since issue 19):
        # a result, not an error
        assert code == 0 and "apex" in out and "Traceback" not in err, (out, err)
        return
    assert code != 0, (out, err)  # nothing usable came out: never exit 0
    assert "Traceback" not in out + err and "unexpected" not in err, err
    assert path.name in err, err  # the error names the input
    assert "ValueError" not in err and "all input arrays" not in err, err  # numpy's text
    assert all(line.count("Fix:") <= 1 for line in err.splitlines()), err


def test_frames_of_two_sizes_name_both_files(files, monkeypatch, capsys) -> None:
    code, _, err = run(["spot", "--frames", files["frames of two sizes"]], monkeypatch, capsys)
    assert code == 2 and "frames differ in size" in err and "160x100" in err and "320x240" in err


def test_too_short_to_spot_is_said(files, monkeypatch, capsys) -> None:
    for kind in ("one frame", "three frames"):
        args = ["spot-intervals", "--frames", files[kind]]
        code, out, err = run(args, monkeypatch, capsys)
        assert_one_line_error(code, out, err, "too short to spot", files[kind].name)
        assert "13 frames" in err  # IntervalConfig.min_frames at the video's 30 fps


def test_frame_rate_invalid_differs_from_unknown(files, monkeypatch, capsys) -> None:
    folder = files["frames of two sizes"]
    code, out, err = run(["spot-intervals", "--frames", folder], monkeypatch, capsys)
    assert_one_line_error(code, out, err, "frame rate is unknown", "--fps")
    code, out, err = run(["spot-intervals", "--frames", folder, "--fps", "0"], monkeypatch, capsys)
    assert_one_line_error(code, out, err, "--fps 0.0 is not a valid frame rate")


def test_predict_long_processes_every_input_and_writes_the_csv(
    files, checkpoint: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    good, blank = files["good"], files["blank video"]
    out_csv = tmp_path / "intervals.csv"
    args = ["predict", "--checkpoint", checkpoint, "--input-path", good, blank, good, "--long",
            "--output-path", out_csv]  # fmt: skip
    code, out, err = run(args, monkeypatch, capsys)
    assert code == 1, (out, err)
    assert err.count("failed: ") == 1 and f"{blank}: no face" in err
    assert out.count(f"{good}: ") == 2  # the third input was processed after the failure
    table = pd.read_csv(out_csv)
    assert table["input"].tolist().count(str(good)) >= 2
    (failed,) = table.index[table["input"] == str(blank)]
    assert "no face" in table.loc[failed, "error"] and math.isnan(table.loc[failed, "onset"])
    assert table.columns[-1] == "error"


# ---------------------------------------------------------------- devices, serve, noise


@pytest.mark.parametrize("command", ["train", "loso"])
def test_train_device_is_checked_like_predict_device(
    command: str, tmp_path: Path, monkeypatch, capsys
) -> None:
    base = [command, "--data", tmp_path / "m.csv", "--out", tmp_path / "o", "--set"]
    code, out, err = run([*base, "train.device=foo"], monkeypatch, capsys)
    assert_one_line_error(code, out, err, "train.device=foo is not a device")
    if not torch.cuda.is_available():
        code, out, err = run([*base, "train.device=cuda"], monkeypatch, capsys)
        assert_one_line_error(code, out, err, "CUDA is not available", "train.device=cpu")


def test_serve_on_a_busy_port_announces_nothing(checkpoint: Path, monkeypatch, capsys) -> None:
    pytest.importorskip("uvicorn")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        args = ["serve", "--checkpoint", checkpoint, "--port", port]
        code, out, err = run(args, monkeypatch, capsys)
    assert_one_line_error(code, out, err, f"127.0.0.1:{port}", "--port")
    assert "serving" not in err and "http://" not in err


def test_ffmpeg_noise_only_with_verbose(files) -> None:
    # A fresh process: FFmpeg reads its log level once, at the first video opened.
    args = ["spot", "--frames", str(files["truncated video"])]
    quiet = subprocess.run(cli_command(*args), capture_output=True, text=True, timeout=300)
    assert quiet.returncode == 2 and quiet.stdout == ""
    assert quiet.stderr.strip().splitlines() == [quiet.stderr.strip()], quiet.stderr
    assert "moov atom" not in quiet.stderr and quiet.stderr.startswith("error: ")
    loud = subprocess.run(
        cli_command("--verbose", *args), capture_output=True, text=True, timeout=300
    )
    assert loud.returncode == 2 and "video cannot be opened" in loud.stderr


# ---------------------------------------------------------------- messages


@pytest.mark.parametrize(
    "build",
    [
        "from apexmer.spotting.apex import SpotConfig as C; C(lag=0)",
        "from apexmer.spotting.apex import SpotConfig as C; C(landmarks='x')",
        "from apexmer.spotting.apex import SpotConfig as C; C(method='x')",
        "from apexmer.spotting.apex import SpotConfig as C; C(blur=-1)",
        "from apexmer.face.align import AlignConfig as C; C(size=0)",
        "from apexmer.preprocess.flow import FlowConfig as C; C(remove_global='median')",
        "from apexmer.spotting.intervals import IntervalConfig as C; C(top_rois=0)",
        "from apexmer.spotting.intervals import IntervalConfig as C; C(threshold='x')",
        "from apexmer.spotting.motion import MotionConfig as C; C(work_iod=1)",
    ],
)
def test_config_errors_use_setting_names_not_classes(build: str) -> None:
    from apexmer.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        exec(build, {})
    text = str(info.value)
    assert not re.search(r"[A-Z]\w*Config\b|\w+=", text), text
    assert text.count("Fix:") == 1, text


def test_spot_errors_speak_options_not_python(files, monkeypatch, capsys) -> None:
    code, out, err = run(["spot", "--frames", files["good"], "--onset", "500"], monkeypatch, capsys)
    assert_one_line_error(code, out, err, "leave --onset out")
    assert "None" not in err
    args = ["spot", "--frames", files["blank video"]]
    code, out, err = run(args, monkeypatch, capsys)
    assert_one_line_error(code, out, err, "no face")
    assert "face=" not in err
