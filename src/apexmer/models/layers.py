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
