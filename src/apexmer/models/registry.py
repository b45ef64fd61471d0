"""Named networks: a registry of five-line factories, ``create_model`` and metadata."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from apexmer.errors import ApexmerError
from apexmer.models.flow_nets import OffApexNet, SSSNet, STSTNet
from apexmer.models.layers import SEModule
from apexmer.models.resnet import Bottleneck, ResNet
from apexmer.models.weights import IDENTIFIERS, load_pretrained

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ModelInfo:
    """What a caller needs to feed a network: input size and normalisation."""

    name: str
    description: str
    input_size: tuple[int, int, int] = (3, 224, 224)  # (C, H, W) the factory's default
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    # The classifier's size follows the input (no global pooling): the factory takes
    # ``input_size`` and must be built for the size it will see.
    sized_by_input: bool = False


_FACTORIES: dict[str, Callable[..., nn.Module]] = {}
_INFO: dict[str, ModelInfo] = {}


def register_model(
    fn: Callable[..., nn.Module] | None = None,
    *,
    input_size: tuple[int, int, int] = (3, 224, 224),
    sized_by_input: bool = False,
) -> Any:
    """Register a factory under its function name; its docstring's first line describes it.
    Use bare (``@register_model``) or with metadata (``@register_model(input_size=
    (3, 28, 28), sized_by_input=True)``)."""

    def register(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        name = fn.__name__
        if name in _FACTORIES:
            raise ValueError(f"model {name!r} is registered twice")
        _FACTORIES[name] = fn
        description = (fn.__doc__ or "").strip().split("\n")[0]
        _INFO[name] = ModelInfo(
            name=name,
            description=description,
            input_size=input_size,
            sized_by_input=sized_by_input,
        )
        return fn

    return register(fn) if fn is not None else register


def list_models() -> list[str]:
    """Registered model names, sorted."""
    return sorted(_FACTORIES)


def model_info(name: str) -> ModelInfo:
    """Metadata of a registered model."""
    _check_name(name)
    return _INFO[name]


def _check_name(name: str) -> None:
    if name not in _FACTORIES:
        raise ApexmerError(f"unknown model {name!r}; choose one of: {', '.join(list_models())}")


def create_model(
    name: str, num_classes: int = 5, pretrained_path: str | Path | None = None, **kwargs: Any
) -> nn.Module:
    """Build a registered network, optionally loading weights from a local file.

    ``kwargs`` go to the ``ResNet`` constructor (e.g. ``drop_rate``, ``zero_init_last``).
    A pretrained classifier whose shape differs (1000 ImageNet classes) is replaced by a
    fresh ``num_classes`` head; see ``load_pretrained``. ``model.model_info`` holds the
    input size and mean/std.
    """
    _check_name(name)
    model = _FACTORIES[name](num_classes=num_classes, **kwargs)
    model.model_info = _INFO[name]
    if pretrained_path is not None:
        load_pretrained(model, pretrained_path)
    return model


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (works on the meta device too)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def describe_models(num_classes: int = 5) -> list[dict[str, Any]]:
    """``[{"name", "params", "input"}]`` for every registered model at its default input
    (``input`` = "C x H x W"), counted on the meta device."""
    rows = []
    for name in list_models():
        with torch.device("meta"):  # shapes only: no memory, no init cost
            model = _FACTORIES[name](num_classes=num_classes)
        c, h, w = _INFO[name].input_size
        rows.append({"name": name, "params": count_parameters(model), "input": f"{c}x{h}x{w}"})
    return rows


def identify_state_dict(state_dict: dict[str, torch.Tensor]) -> list[str]:
    """Registered models whose keys and shapes (classifier aside) match ``state_dict``."""

    def signature(sd: dict[str, Any]) -> set[tuple[str, tuple[int, ...]]]:
        return {
            (k, tuple(v.shape))
            for k, v in sd.items()
            if not k.startswith("fc.") and not k.endswith("num_batches_tracked")
        }

    target = signature(state_dict)
    matches = []
    for name in list_models():
        with torch.device("meta"):
            model = _FACTORIES[name](num_classes=1)
        if signature(model.state_dict()) == target:
            matches.append(name)
    return matches


IDENTIFIERS.append(identify_state_dict)  # the hint in weights.py errors, without an import back


def _create_resnet(num_classes: int, **kwargs: Any) -> ResNet:
    return ResNet(num_classes=num_classes, **kwargs)


@register_model
def resnet50(num_classes: int = 5, **kwargs: Any) -> ResNet:
    """ResNet-50: the paper's ablation baseline (no groups, no SE)."""
    args = dict(block=Bottleneck, layers=(3, 4, 6, 3))
    return _create_resnet(num_classes, **dict(args, **kwargs))


@register_model
def resnext50_32x4d(num_classes: int = 5, **kwargs: Any) -> ResNet:
    """ResNeXt-50 32x4d: grouped 3x3 convolutions, no SE (ablation baseline)."""
    args = dict(block=Bottleneck, layers=(3, 4, 6, 3), cardinality=32, base_width=4)
    return _create_resnet(num_classes, **dict(args, **kwargs))


@register_model
def seresnext50_32x4d(num_classes: int = 5, **kwargs: Any) -> ResNet:
    """SE-ResNeXt-50 32x4d, SE r=16: the paper's network."""
    args = dict(
        block=Bottleneck, layers=(3, 4, 6, 3), cardinality=32, base_width=4, attn_layer=SEModule
    )
    return _create_resnet(num_classes, **dict(args, **kwargs))


@register_model
def seresnext_tiny(num_classes: int = 5, **kwargs: Any) -> ResNet:
    """Tiny SE-ResNeXt (same blocks, one per stage, narrow): for tests and smoke runs."""
    args = dict(
        block=Bottleneck,
        layers=(1, 1, 1, 1),
        cardinality=4,
        base_width=16,
        stem_width=16,
        channels=(16, 32, 64, 128),
        attn_layer=SEModule,
    )
    return _create_resnet(num_classes, **dict(args, **kwargs))


@register_model(input_size=(3, 28, 28), sized_by_input=True)
def ststnet(num_classes: int = 3, **kwargs: Any) -> STSTNet:
    """STSTNet: 3/5/8 parallel 3x3 filters on (u, v, strain) flow at 28 px (See et al. 2019)."""
    return STSTNet(num_classes=num_classes, **kwargs)


@register_model(input_size=(2, 28, 28), sized_by_input=True)
def off_apexnet(num_classes: int = 3, **kwargs: Any) -> OffApexNet:
    """OFF-ApexNet: u and v streams, two FC layers of 1024, at 28 px (Gan et al. 2019)."""
    return OffApexNet(num_classes=num_classes, **kwargs)


@register_model(input_size=(3, 64, 64), sized_by_input=True)
def sssnet(num_classes: int = 3, **kwargs: Any) -> SSSNet:
    """SSSNet: two convolutions (32, 64) and FC 256 on flow, 64 px (Khor et al.; MEB re-run)."""
    return SSSNet(num_classes=num_classes, **kwargs)
