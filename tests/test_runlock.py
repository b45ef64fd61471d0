"""A LOSO run folder holds one run: locked for the life of a run, fold files fingerprinted,
damaged or foreign files retrained with a message, leftovers of killed runs removed."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from apexmer.config import load_config
from apexmer.errors import ApexmerError
from apexmer.evaluation.protocol import run_loso
from apexmer.evaluation.runfolder import RunLock
from manifests import TINY_RUN, write_tiny_manifest
from procs import cli_command

SRC = str(Path(__file__).resolve().parents[1] / "src")
FAST = TINY_RUN
KEYS = ("accuracy", "uf1", "uar")


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_manifest(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def finished(manifest: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run")
    run_loso(manifest, load_config("demo", FAST), out)
    return out


def _copy(finished: Path, tmp_path: Path) -> Path:
    out = tmp_path / "copy"
    shutil.copytree(finished, out)
    return out


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": SRC, "PYTHONUNBUFFERED": "1"}


def _main(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str]:
    """The real CLI entry point in this process: (exit code, stderr)."""
    from apexmer.cli.main import main

    old = sys.argv
    sys.argv = ["apexmer", *argv]
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    finally:
        sys.argv = old
    return code, capsys.readouterr().err


def test_a_second_run_on_a_locked_folder_is_refused_in_one_line(
    manifest: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "run"
    with RunLock(out):
        with pytest.raises(ApexmerError, match="in use by another apexmer run"):
            run_loso(manifest, load_config("demo", FAST), out)
        code, err = _main(
            ["loso", "--data", str(manifest), "--config", "demo", "--out", str(out)]
            + [a for s in FAST for a in ("--set", s)],
            capsys,
        )
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and str(out) in lines[0] and f"pid {os.getpid()}" in lines[0]
    assert "Fix:" in lines[0]
    assert not (out / "run.json").exists() and not (out / ".lock").exists()


def test_a_killed_runs_lock_is_taken_over(tmp_path: Path) -> None:
    out = tmp_path / "run"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from apexmer.evaluation.runfolder import RunLock\n"
            "RunLock(sys.argv[1]).acquire(); print('locked', flush=True); time.sleep(60)",
            str(out),
        ],
        env=_env(),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(ApexmerError, match=f"pid {holder.pid}"):
            RunLock(out).acquire()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
    lock = RunLock(out)
    lock.acquire()
    try:
        assert lock.notice is not None and f"pid {holder.pid}" in lock.notice
    finally:
        lock.release()
    assert not (out / ".lock").exists()  # a clean release leaves nothing behind


def test_run_json_deleted_then_another_config_retrains_every_fold(
    manifest: Path, finished: Path, tmp_path: Path
) -> None:
    # Issue 11: run.json deleted, rerun with 1 epoch -> 6-epoch folds were reused silently.
    out = _copy(finished, tmp_path)
    (out / "run.json").unlink()
    events: list[dict] = []
    summary = run_loso(
        manifest, load_config("demo", [*FAST, "train.epochs=1"]), out, progress=events.append
    )
    warnings = [e["message"] for e in events if e["event"] == "warning"]
    assert len(warnings) == 4 and all("another run" in w for w in warnings)
    assert summary["warnings"] == warnings
    for i in range(4):
        fold = json.loads((out / "folds" / f"fold_{i:03d}.json").read_text())
        assert len(fold["history"]) == 1
        assert (out / "folds" / f"fold_{i:03d}.json.stale").exists()
    assert "another run" in (out / "report.md").read_text()


def test_folder_deleted_mid_run_stops_the_run(manifest: Path, tmp_path: Path) -> None:
    # Issue 11: run A going, folder deleted, run B started -> B's folds mixed with A's.
    out = tmp_path / "run"

    def delete_after_first_fold(event: dict) -> None:
        if event["event"] == "fold_done":
            shutil.rmtree(out)

    with pytest.raises(ApexmerError, match="deleted or taken over"):
        run_loso(manifest, load_config("demo", FAST), out, progress=delete_after_first_fold)
    assert not out.exists()  # A wrote nothing more into the (new) folder


def _without_probs(text: str) -> str:
    return json.dumps({k: v for k, v in json.loads(text).items() if k != "probs"})


def _string_probs(text: str) -> str:
    record = json.loads(text)
    return json.dumps({**record, "probs": [["x"] * 3 for _ in record["probs"]]})


def test_bad_fold_files_are_retrained_each_with_a_message(
    manifest: Path, finished: Path, tmp_path: Path
) -> None:
    out = _copy(finished, tmp_path)
    damage = {  # fold -> (damage, what the message says)
        0: (lambda t: "[]", "holds a list"),
        1: (_without_probs, "lacks probs"),
        2: (_string_probs, "probabilities"),
        3: (lambda t: t[: len(t) // 3], "truncated"),
    }
    for i, (spoil, _) in damage.items():
        path = out / "folds" / f"fold_{i:03d}.json"
        path.write_text(spoil(path.read_text()))
    events: list[dict] = []
    resumed = run_loso(manifest, load_config("demo", FAST), out, progress=events.append)
    warnings = [e["message"] for e in events if e["event"] == "warning"]
    assert len(warnings) == 4
    for i, (_, why) in damage.items():
        (message,) = [w for w in warnings if f"fold_{i:03d}.json " in w]
        assert why in message and "retraining" in message
        assert (out / "folds" / f"fold_{i:03d}.json.bad").exists()
    full = json.loads((finished / "summary.json").read_text())
    assert all(resumed[k] == full[k] for k in KEYS)


@pytest.mark.parametrize(
    "text",
    ["[]", '{"config": {}}', '"run"', "{"],
    ids=["list", "missing-keys", "string", "unparseable"],
)
def test_a_malformed_run_json_is_one_line_exit_2(
    manifest: Path, finished: Path, tmp_path: Path, text: str, capsys: pytest.CaptureFixture
) -> None:
    out = _copy(finished, tmp_path)
    (out / "run.json").write_text(text)
    code, err = _main(
        ["loso", "--data", str(manifest), "--config", "demo", "--out", str(out)]
        + [a for s in FAST for a in ("--set", s)],
        capsys,
    )
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "run.json is damaged" in err


def test_a_killed_runs_temp_files_are_removed(
    manifest: Path, finished: Path, tmp_path: Path
) -> None:
    out = _copy(finished, tmp_path)
    left = [out / ".confusion.png.k3j2x9.tmp", out / "folds" / ".fold_001.json.a8s7d6.tmp"]
    for p in left:
        p.write_bytes(b"partial")
    summary = run_loso(manifest, load_config("demo", FAST), out)
    assert not any(p.exists() for p in left)
    assert any("removed 2 temporary" in w for w in summary["warnings"])


# ---------------------------------------------------------------- real processes


def _loso_cmd(manifest: Path, out: Path, *sets: str) -> list[str]:
    return cli_command(
        "loso",
        "--data",
        str(manifest),
        "--config",
        "demo",
        "--out",
        str(out),
        *[a for s in [*FAST, *sets] for a in ("--set", s)],
    )


@pytest.mark.slow
def test_two_runs_started_together_one_is_refused(manifest: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    procs = [
        subprocess.Popen(
            _loso_cmd(manifest, out, f"train.epochs={e}"),
            env=_env(),
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for e in (2, 3)
    ]
    results = [(p.wait(240), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    refused = next(err for code, err in results if code == 2)
    assert "in use by another apexmer run" in refused or "different config" in refused
    epochs = json.loads((out / "run.json").read_text())["config"]["train"]["epochs"]
    for i in range(4):
        fold = json.loads((out / "folds" / f"fold_{i:03d}.json").read_text())
        assert len(fold["history"]) == epochs


@pytest.mark.slow
def test_folder_deleted_under_a_running_process_then_run_b(manifest: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    a = subprocess.Popen(
        _loso_cmd(manifest, out, "train.epochs=6"),
        env=_env(),
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    while not list(out.glob("folds/fold_*.json")):
        assert time.monotonic() < deadline and a.poll() is None
        time.sleep(0.2)
    shutil.rmtree(out)
    b = subprocess.run(
        _loso_cmd(manifest, out, "train.epochs=1"),
        env=_env(),
        text=True,
        capture_output=True,
        timeout=240,
    )
    a_code = a.wait(240)
    assert b.returncode == 0, b.stderr
    assert a_code == 2 and "deleted or taken over" in a.stderr.read()
    for i in range(4):
        fold = json.loads((out / "folds" / f"fold_{i:03d}.json").read_text())
        assert len(fold["history"]) == 1
