"""The one check of a torch device name, for every command that takes one: ``predict`` and
``serve`` (``--device``), ``train``, ``loso``, ``ablation`` and ``demo``
(``--set train.device=...``). A bad name or a GPU this machine lacks is a one-line
ConfigError naming the option, not torch's AssertionError or RuntimeError mid-run."""

from __future__ import annotations

import re

import torch

from apexmer.errors import ConfigError

_DEVICE = re.compile(r"(cpu|mps|cuda)(:\d+)?")


def check_device(device: str, option: str = "--device", here: bool = True) -> None:
    """Raise ConfigError when ``device`` is not ``cpu``, ``cuda``, ``cuda:N`` or ``mps``,
    or (``here``: the run is on this machine) names a device this machine does not have.
    ``option`` is how the user set it (``--device``, ``--set train.device``)."""
    eq = " " if option.startswith("--device") else "="
    if not isinstance(device, str) or _DEVICE.fullmatch(device) is None:
        raise ConfigError(
            f"{option}{eq}{device} is not a device. Fix: use {option}{eq}cpu, cuda or cuda:N"
        )
    if not here:
        return
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(
                f"{option}{eq}{device} requested but CUDA is not available here. "
                f"Fix: use {option}{eq}cpu"
            )
        index = int(device.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise ConfigError(
                f"{option}{eq}{device}: this machine has {torch.cuda.device_count()} GPU(s). "
                f"Fix: use {option}{eq}cuda:0 or cpu"
            )
    if device.startswith("mps") and not torch.backends.mps.is_available():
        raise ConfigError(
            f"{option}{eq}{device} requested but MPS is not available here. "
            f"Fix: use {option}{eq}cpu"
        )
