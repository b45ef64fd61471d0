"""The LOSO run folder's guards: one run at a time, no results mixed across runs.

- ``RunLock``: an OS lock (``flock``) on ``RUN/.lock`` held for the life of a run; the file
  names the holder (pid, host, start). A second run on the folder is refused; a run killed
  with ``kill -9`` loses its lock with its process, and the next run takes it over and
  says so. A run whose folder was deleted (or whose lock file was replaced) under it
  notices before its next write (``check``) and stops instead of writing into a new run.
- ``run.json`` is checked and first written while the lock is held, so the check and the
  write are one step for any other apexmer run.
- Every fold file carries the run's ``fingerprint`` (resolved config, data digest, classes,
  package version). A fold file with another fingerprint, or damaged, is moved aside and
  retrained, and the reason is reported.
- Hidden ``.NAME.*.tmp`` files that a killed run's atomic writes left behind are removed.

Linux and macOS (``fcntl``).
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import json
import math
import os
import socket
from numbers import Real
from pathlib import Path
from typing import Any

from apexmer.errors import ApexmerError
from apexmer.evaluation.splits import Fold
from apexmer.fileio import write_json

LOCK_NAME = ".lock"
HEADER_KEYS = ("config", "data_digest", "classes", "version")


class RunLock:
    """``with RunLock(out) as lock:`` holds ``out/.lock`` exclusively; ``lock.notice`` says
    when a dead run's lock was taken over; ``lock.check()`` before every write."""

    def __init__(self, out: str | Path) -> None:
        self.out = Path(out)
        self.path = self.out / LOCK_NAME
        self.fd: int | None = None
        self.notice: str | None = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def acquire(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        for _ in range(20):  # a releasing run unlinks the file: retry on the new one
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_fd(fd)
                os.close(fd)
                raise ApexmerError(
                    f"{self.out} is in use by another apexmer run ({holder or 'starting'}). "
                    "Fix: wait for that run to finish (it resumes where it stops), or pass "
                    "another --out folder"
                ) from None
            if not _same_file(fd, self.path):
                os.close(fd)
                continue
            previous = _read_fd(fd)
            if previous:
                self.notice = (
                    f"{self.path}: took over the lock of a run that ended without releasing "
                    f"it ({previous}); its finished folds are checked before reuse"
                )
            os.ftruncate(fd, 0)
            os.pwrite(fd, _holder().encode(), 0)
            os.fsync(fd)
            self.fd = fd
            return
        raise ApexmerError(f"{self.path}: could not take the run lock (it keeps changing)")

    def check(self) -> None:
        """Raise if the lock file at the path is no longer ours (folder deleted or replaced)."""
        if self.fd is None or not _same_file(self.fd, self.path):
            raise ApexmerError(
                f"{self.out} was deleted or taken over by another run while this run was "
                "writing to it; this run stops so that results are not mixed. Fix: start "
                "it again (with another --out folder if the other run is still going)"
            )

    def release(self) -> None:
        if self.fd is None:
            return
        if _same_file(self.fd, self.path):
            self.path.unlink()  # still holding the lock: a waiting run retries on a new file
        os.close(self.fd)  # closing drops the flock
        self.fd = None


def _holder() -> str:
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"pid {os.getpid()} on {socket.gethostname()}, started {now}"


def _read_fd(fd: int) -> str:
    return os.pread(fd, 400, 0).decode(errors="replace").strip()


def _same_file(fd: int, path: Path) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (st.st_ino, st.st_dev) == (mine.st_ino, mine.st_dev)


def run_fingerprint(header: dict[str, Any]) -> str:
    """What makes two runs' folds interchangeable: config, data, classes, version."""
    key = json.dumps({k: header.get(k) for k in HEADER_KEYS}, sort_keys=True, default=str)
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def check_header(out: Path, header: dict[str, Any]) -> None:
    """Write ``run.json`` for a new run, or check that the folder holds this same run.
    Call it with the lock held."""
    path = out / "run.json"
    if not path.exists():
        write_json(path, header)
        return
    damaged = ApexmerError(
        f"{path} is damaged, so the folds beside it cannot be checked against this run. "
        f"Fix: delete {out} to start over, or pass a new --out folder"
    )
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        raise damaged from None
    if not isinstance(old, dict) or any(k not in old for k in HEADER_KEYS):
        raise damaged
    for key in HEADER_KEYS:
        if old[key] != header.get(key):
            raise ApexmerError(
                f"{out}: this run folder holds a run with a different {key.replace('_', ' ')}; "
                "its finished folds cannot be reused. Fix: pass a new --out folder, or delete "
                f"{out} to start over."
            )


def fold_path(out: Path, fold: Fold) -> Path:
    return out / "folds" / f"fold_{fold.index:03d}.json"


def _number(x: Any) -> bool:
    return isinstance(x, Real) and not isinstance(x, bool) and math.isfinite(x)


def _prob_table(probs: Any, n: int, num_classes: int) -> bool:
    """Whether ``probs`` is an n x num_classes nested list of finite numbers."""
    return (
        isinstance(probs, list)
        and len(probs) == n
        and all(isinstance(p, list) and len(p) == num_classes for p in probs)
        and all(_number(v) for p in probs for v in p)
    )


def fold_problem(
    record: Any, fold: Fold, num_classes: int, fingerprint: str, epochs: int
) -> str | None:
    """Why a parsed fold file cannot be used for ``fold`` of this run (None: it can)."""
    if not isinstance(record, dict):
        return f"holds a {type(record).__name__}, not a fold record"
    if record.get("fingerprint") != fingerprint:
        return "was written by another run (another config, data or version)"
    missing = [
        k
        for k in ("fold", "group", "test_idx", "probs", "epoch_used", "history")
        if k not in record
    ]
    if missing:
        return f"lacks {', '.join(missing)}"
    if record["fold"] != fold.index or record["test_idx"] != [int(i) for i in fold.test_idx]:
        return "is for another fold"
    if not _prob_table(record["probs"], len(fold.test_idx), num_classes):
        return f"has no valid {len(fold.test_idx)} x {num_classes} probabilities"
    members = record.get("member_probs")  # an ensemble's (train.ensemble), one per member
    if members is not None and not (
        isinstance(members, list)
        and len(members) >= 2
        and all(_prob_table(p, len(fold.test_idx), num_classes) for p in members)
    ):
        return "has invalid member probabilities"
    rows = epochs * (1 if members is None else len(members))  # one per epoch and member
    history = record["history"]
    if not (
        isinstance(history, list)
        and len(history) == rows
        and all(isinstance(h, dict) and _number(h.get("loss")) for h in history)
    ):
        return f"has no valid history of {epochs} epochs"
    if not isinstance(record["epoch_used"], int) or not 1 <= record["epoch_used"] <= epochs:
        return "has an invalid epoch_used"
    diagnostics = record.get("diagnostics")
    if not isinstance(diagnostics, dict) or not isinstance(diagnostics.get("warnings", []), list):
        return "has invalid diagnostics"
    return None


def read_fold(
    out: Path, fold: Fold, num_classes: int, fingerprint: str, epochs: int
) -> tuple[dict[str, Any] | None, str | None]:
    """``(record, None)`` for a usable fold file; ``(None, None)`` when there is none;
    ``(None, reason)`` when one was there but cannot be used: it is moved aside
    (``.bad`` damaged, ``.stale`` another run's) and the fold is to be retrained."""
    path = fold_path(out, fold)
    if not path.exists():
        return None, None
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        record, problem = None, "is damaged (not readable JSON: truncated?)"
    else:
        problem = fold_problem(record, fold, num_classes, fingerprint, epochs)
    if problem is None:
        return record, None
    stale = isinstance(record, dict) and record.get("fingerprint") != fingerprint
    aside = path.with_suffix(".json.stale" if stale else ".json.bad")
    path.replace(aside)
    return None, f"{path} {problem}: moved to {aside.name}, retraining fold {fold.name}"


def remove_temp_files(out: Path) -> int:
    """Delete the hidden ``.NAME.*.tmp`` files of atomic writes a killed run left; call it
    with the lock held (no other run writes here then). Returns how many."""
    n = 0
    for folder in (out, out / "folds"):
        for tmp in folder.glob(".*.tmp") if folder.is_dir() else []:
            if tmp.is_file():
                tmp.unlink()
                n += 1
    return n
