"""Workers exit when their parent dies: kill -9 of a parent leaves no worker running."""

from __future__ import annotations

import contextlib
import glob
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from manifests import write_tiny_manifest
from procs import cli_command

SRC = str(Path(__file__).resolve().parents[1] / "src")

# A parent with a pool of 2 spawned workers sleeping in a task; prints their pids.
PARENT = """
import functools, sys, time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from apexmer.workers import exit_with_parent
kernel = sys.argv[1] == "kernel"
pool = ProcessPoolExecutor(2, mp_context=get_context("spawn"),
                           initializer=functools.partial(exit_with_parent, kernel))
futures = [pool.submit(time.sleep, 120) for _ in range(2)]
time.sleep(0.5)
while len(pool._processes) < 2:
    time.sleep(0.1)
print(" ".join(str(p) for p in pool._processes), flush=True)
time.sleep(120)
"""


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": SRC, "PYTHONUNBUFFERED": "1"}


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"  # a zombie has exited; only its parent's wait is missing


def _children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def _gone_within(pids: list[int], seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        alive = [p for p in pids if _alive(p)]
        if not alive:
            return []
        time.sleep(0.1)
    return [p for p in pids if _alive(p)]


def _kill_all(pids: list[int]) -> None:
    for p in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGKILL)


pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


@pytest.mark.parametrize("mode", ["kernel", "poll"])
def test_pool_workers_die_with_a_killed_parent(mode: str) -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, mode], env=_env(), stdout=subprocess.PIPE, text=True
    )
    workers = [int(p) for p in parent.stdout.readline().split()]
    try:
        assert len(workers) == 2 and all(_alive(p) for p in workers)
        time.sleep(0.5)  # the initializers have run: the workers sleep in their task
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        assert _gone_within(workers, 5.0) == []
    finally:
        _kill_all(workers)


def _kill_parent_mid_run(cmd: list[str], first_result: str, n_workers: int = 2) -> None:
    """Start ``cmd``; once its first result file (glob ``first_result``) is written its
    workers are past start-up and at work: kill -9 the parent, check they follow."""
    parent = subprocess.Popen(
        cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 180
        while not glob.glob(first_result, recursive=True):
            assert parent.poll() is None, parent.stderr.read()
            assert time.monotonic() < deadline, "no result written"
            time.sleep(0.1)
        workers = [
            p
            for p in _children(parent.pid)
            if b"spawn_main" in Path(f"/proc/{p}/cmdline").read_bytes()
        ]
        assert len(workers) == n_workers and parent.poll() is None  # killed mid-run
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        assert _gone_within(workers, 5.0) == []
    finally:
        _kill_all(workers)


@pytest.mark.slow
def test_loso_process_workers_die_with_a_killed_runner(tmp_path: Path) -> None:
    manifest = write_tiny_manifest(tmp_path / "tiny")
    # 4 folds on 2 workers; a fold of 60 epochs takes a few seconds here.
    sets = ["data.input=diff", "model.name=seresnext_tiny", "data.input_size=32", "train.epochs=60"]
    cmd = cli_command(
        "loso",
        "--data",
        str(manifest),
        "--config",
        "demo",
        "--out",
        str(tmp_path / "run"),
        "--executor",
        "process",
        "--workers",
        "2",
        *[a for s in sets for a in ("--set", s)],
    )
    _kill_parent_mid_run(cmd, str(tmp_path / "run" / "folds" / "fold_*.json"))


@pytest.mark.slow
def test_preprocess_workers_die_with_a_killed_parent(tmp_path: Path) -> None:
    from apexmer.data.synth import write_synthetic_corpus

    corpus = write_synthetic_corpus(tmp_path / "corpus", subjects=2, clips_per_subject=16, seed=3)
    cmd = cli_command(
        "preprocess",
        "--corpus",
        "casme2",
        "--coding",
        str(corpus.coding),
        "--root",
        str(corpus.frames_root),
        "--out",
        str(tmp_path / "cache"),
        "--workers",
        "2",
        "--size",
        "64",
    )
    _kill_parent_mid_run(cmd, str(tmp_path / "cache" / "records" / "**" / "*.json"))
