"""Building blocks shared by the networks: squeeze-and-excitation and channel rounding."""

from __future__ import annotations

import torch
from torch import nn


def make_divisible(
    value: float, divisor: int = 8, min_value: int | None = None, round_limit: float = 0.9
) -> int:
    """Round ``value`` to the nearest multiple of ``divisor`` (timm's rule, same results).

    The result is never below ``min_value`` (default ``divisor``) and, unless
    ``round_limit`` is 0, never more than ``1 - round_limit`` below ``value``.
    """
    min_value = min_value or divisor
    new_value = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new_value < round_limit * value:
        new_value += divisor
    return new_value


class SEModule(nn.Module):
    """Squeeze-and-excitation (Hu et al. 2018) with timm's parameter names.

    squeeze = global average pool; excitation = ``fc1`` (C -> C/r), ``act``, ``fc2``
    (C/r -> C), ``gate``; output = input scaled per channel. The FCs are 1x1 convolutions
    with bias, so timm's ``layer1.0.se.fc1.weight`` (shape (C/r, C, 1, 1)) loads as is.
    """

    def __init__(
        self,
        channels: int,
        rd_ratio: float = 1.0 / 16,
        rd_channels: int | None = None,
        rd_divisor: int = 8,
        act_layer: type[nn.Module] = nn.ReLU,
        norm_layer: type[nn.Module] | None = None,
        gate_layer: type[nn.Module] = nn.Sigmoid,
    ) -> None:
        super().__init__()
        if not rd_channels:
            # timm rounds C/r to a multiple of 8 without the 90% floor: 256/16 = 16 etc.
            rd_channels = make_divisible(channels * rd_ratio, rd_divisor, round_limit=0.0)
        self.fc1 = nn.Conv2d(channels, rd_channels, kernel_size=1, bias=True)
        self.bn = norm_layer(rd_channels) if norm_layer is not None else nn.Identity()
        self.act = act_layer()  # on a (B, C/r, 1, 1) tensor: in-place saves nothing
        self.fc2 = nn.Conv2d(rd_channels, channels, kernel_size=1, bias=True)
        self.gate = gate_layer()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)  # (B, C, 1, 1) squeeze
        s = self.fc2(self.act(self.bn(self.fc1(s))))  # (B, C, 1, 1) excitation
        return x * self.gate(s)  # (B, C, H, W) channel-wise scale


class Dropout(nn.Module):
    """Dropout (``channelwise``: Dropout2d, whole channels) whose masks can come from the
    module's own ``generator`` instead of torch's global RNG.

    With a generator (``seed_dropout``) a model's dropout draws depend on its seed only, not
    on whatever else used the global RNG: a LOSO fold then trains identically alone or
    packed with other folds (fold packing draws each fold's masks from its own generator).
    Masks are drawn on the CPU (the generator's device) and moved to the input's device.
    """

    def __init__(self, p: float = 0.5, channelwise: bool = False) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p
        self.channelwise = channelwise
        self.generator: torch.Generator | None = None

    def mask_shape(self, x: torch.Tensor) -> tuple[int, ...]:
        """(B, C, 1, 1) for channel-wise dropout, else the input's shape."""
        if self.channelwise:
            return (*x.shape[:2], *([1] * (x.ndim - 2)))
        return tuple(x.shape)

    def draw_mask(self, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
        """A scaled keep-mask (0 or 1/(1-p)) from ``generator`` (or the global RNG)."""
        keep = 1.0 - self.p
        mask = torch.empty(shape, dtype=torch.float32).bernoulli_(keep, generator=self.generator)
        return mask.div_(keep).to(device, non_blocking=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        return x * self.draw_mask(self.mask_shape(x), x.device).to(x.dtype)

    def extra_repr(self) -> str:
        return f"p={self.p}, channelwise={self.channelwise}"


def seed_dropout(model: nn.Module, seed: int) -> None:
    """Give every ``Dropout`` of ``model`` its own CPU generator, seeded from ``seed`` and the
    module's position, so dropout draws depend on the seed alone."""
    for i, module in enumerate(m for m in model.modules() if isinstance(m, Dropout)):
        module.generator = torch.Generator().manual_seed(seed * 1_000 + i)
