"""Running apexmer as a user does, in a child process: the command line and a free port."""

from __future__ import annotations

import socket
import sys


def cli_command(*args: str) -> list[str]:
    """argv of ``apexmer ARGS`` in a fresh interpreter (this one's Python)."""
    return [sys.executable, "-c", "from apexmer.cli.main import main; main()", *args]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
