"""Small helpers the benches share: a validated config from sections, and the device in
words.

(An earlier version installed a stand-in ``apexmer.config`` for machines without pydantic;
the training code has since needed ``DataConfig`` and the input registry, so the stand-in
could no longer import it. The GPU suite brings pydantic as a wheel: bench/README.md.)
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def make_config(sections: dict[str, dict[str, Any]]) -> Any:
    """A validated ``apexmer.config.Config`` from ``{"section": {"field": value}}``."""
    from apexmer.config import Config

    return Config.model_validate(sections)


def describe_device(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        return f"{torch.cuda.get_device_name(0)} (torch {torch.__version__})"
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{cpu}, {torch.get_num_threads()} threads (torch {torch.__version__})"


def add_packed_args(ap: argparse.ArgumentParser) -> None:
    """The options of the packed-step benches: the network, its input, the pack, --quick and
    the suite's results file."""
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--model", default="seresnext50_32x4d")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--pack", type=int, default=26)
    ap.add_argument("--quick", action="store_true", help="CPU smoke run: tiny network, 32 px")
    ap.add_argument("--json", type=Path, default=None, help="gpu_suite results file")
