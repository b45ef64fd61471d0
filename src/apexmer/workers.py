"""Worker processes that do not outlive their parent.

A ``kill -9`` of ``apexmer preprocess --workers N`` or ``apexmer loso --executor process``
gives the parent no chance to stop its pool: without this the workers (200-430 MB each)
ran on and kept writing into the cache, racing a rerun. Call ``exit_with_parent()`` first
thing in a worker (a pool initializer).

On Linux the kernel kills the worker when its parent dies (``prctl(PR_SET_PDEATHSIG)``).
Caveat of that call: the signal follows the parent *thread* that started the worker, so
start pools from a thread that outlives them (the runner's own thread does). Elsewhere a
daemon thread polls the parent's pid once a second and ends the process.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time

_PR_SET_PDEATHSIG = 1  # linux/prctl.h
POLL_SECONDS = 1.0


def _parent_pid() -> int:
    """The pid of the process that started this one (multiprocessing knows it even when the
    parent has already died and we were re-parented)."""
    parent = multiprocessing.parent_process()
    return parent.pid if parent is not None and parent.pid else os.getppid()


def _watch(parent: int) -> None:
    while True:
        time.sleep(POLL_SECONDS)
        if os.getppid() != parent:
            os._exit(1)  # parent gone: no cleanup handlers, no half-finished writes after


def exit_with_parent(kernel: bool = True) -> None:
    """End this process when its parent dies (kill -9 included). ``kernel=False`` uses the
    polling thread even on Linux."""
    parent = _parent_pid()
    armed = False
    if kernel and sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            armed = libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
        except (OSError, AttributeError):
            armed = False
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)
    if not armed:
        threading.Thread(
            target=_watch, args=(parent,), name="exit-with-parent", daemon=True
        ).start()
