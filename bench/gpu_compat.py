"""Config for the benches, also on a machine with torch but without pydantic/PyYAML.

``make_config(sections)`` returns ``apexmer.config.Config`` when it imports. Otherwise it
installs a stand-in ``apexmer.config`` module (plain dataclasses with the same sections,
fields and defaults that training reads) so ``apexmer.training.engine`` and
``apexmer.training.packed`` import with torch and numpy alone. Keep the defaults in step
with ``src/apexmer/config.py``.
"""

from __future__ import annotations

import dataclasses
import sys
import types
from dataclasses import dataclass, field
from typing import Any


class _Section:
    def model_dump(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class _Data(_Section):
    frame: str = "apex"
    input_size: int = 224
    mean: tuple = (0.485, 0.456, 0.406)
    std: tuple = (0.229, 0.224, 0.225)


@dataclass
class _Model(_Section):
    name: str = "seresnext50_32x4d"
    weights: str | None = None


@dataclass
class _Loss(_Section):
    name: str = "focal"
    gamma: float = 2.0
    alpha: Any = "none"


@dataclass
class _Optim(_Section):
    name: str = "adam"
    lr: float = 1e-4
    weight_decay: float = 0.0
    momentum: float = 0.9


@dataclass
class _Augment(_Section):
    grayscale_p: float = 0.2
    hflip_p: float = 0.5
    rotation_deg: float = 15.0
    rotation_p: float = 1.0


@dataclass
class _Train(_Section):
    epochs: int = 100
    batch_size: int = 2
    eval_batch_size: int = 32
    seed: int = 0
    threads: int | None = None
    channels_last: bool = False
    amp: str = "none"
    device: str = "cpu"
    pack_folds: int = 1
    compile: bool = False


@dataclass
class _Eval(_Section):
    protocol: str = "loso"
    oracle: bool = False


@dataclass
class StandInConfig:
    name: str = "bench"
    data: _Data = field(default_factory=_Data)
    model: _Model = field(default_factory=_Model)
    loss: _Loss = field(default_factory=_Loss)
    optim: _Optim = field(default_factory=_Optim)
    augment: _Augment = field(default_factory=_Augment)
    train: _Train = field(default_factory=_Train)
    eval: _Eval = field(default_factory=_Eval)

    def model_copy(self, deep: bool = True) -> StandInConfig:
        import copy

        return copy.deepcopy(self)


def _install_stand_in() -> None:
    module = types.ModuleType("apexmer.config")
    module.Config = StandInConfig
    sys.modules["apexmer.config"] = module


def make_config(sections: dict[str, dict[str, Any]]) -> Any:
    """A validated ``Config`` if pydantic/PyYAML are installed, else the stand-in."""
    try:
        from apexmer.config import Config
    except ImportError:
        _install_stand_in()
        from apexmer.config import Config
    if Config is StandInConfig:
        cfg = StandInConfig()
        for name, values in sections.items():
            for key, value in values.items():
                setattr(getattr(cfg, name), key, value)
        return cfg
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
