"""Shallow networks for onset->apex optical flow (METHOD.md section 11).

Each is written so that fold packing (``training/packed.py``) can widen it: parallel
streams are grouped convolutions, never channel slices or concatenations of separately
computed branches, so fold f's features stay in one contiguous block of channels.

- ``STSTNet`` (See/Liong et al. 2019): three parallel 3x3 branches of 3, 5 and 8 filters
  (padding 2) on (u, v, strain) at 28 px. Three convolutions over the same input with
  their outputs concatenated are one convolution with 3+5+8 = 16 filters; so are the ReLU,
  BatchNorm, max pool and dropout that follow per channel. Parameter count equals the
  three-branch form's.
- ``OffApexNet`` (Gan et al. 2019): a u stream and a v stream (5x5 conv 6 -> pool ->
  5x5 conv 16 -> pool), concatenated, FC 1024 -> FC 1024 -> classes, at 28 px. The two
  streams are one convolution with ``groups=2``.
- ``SSSNet`` (Khor et al. 2019; Varanka et al.'s re-run in MEB): conv 5x5 (32) -> ReLU ->
  max pool 3 -> BN -> Dropout2d -> conv 3x3 (64) -> ReLU -> max pool 2 -> BN -> Dropout2d ->
  FC 256 -> classes; 64 px in the re-run, any size here (the FC input follows the size).

Dropout draws come from ``layers.Dropout``: a per-model generator when one is set
(``seed_dropout``), so a fold trains identically alone or packed.
"""

from __future__ import annotations

import torch
from torch import nn

from apexmer.models.layers import Dropout


def _pooled(size: int, kernel: int, stride: int, padding: int = 0) -> int:
    return (size + 2 * padding - kernel) // stride + 1


class STSTNet(nn.Module):
    """Shallow triple-stream network on (u, v, strain) flow, 28 x 28 by default."""

    def __init__(
        self, num_classes: int = 3, in_chans: int = 3, input_size: int = 28, drop_rate: float = 0.5
    ) -> None:
        super().__init__()
        self.branch_widths = (3, 5, 8)
        width = sum(self.branch_widths)
        self.conv = nn.Conv2d(in_chans, width, kernel_size=3, padding=2)  # (B, 16, S+2, S+2)
        self.act = nn.ReLU()
        self.bn = nn.BatchNorm2d(width)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=3, padding=1)
        self.drop = Dropout(drop_rate)
        self.avgpool = nn.AvgPool2d(kernel_size=2, stride=2)
        side = _pooled(_pooled(input_size + 2, 3, 3, 1), 2, 2)  # 28 -> 30 -> 10 -> 5
        self.fc = nn.Linear(width * side * side, num_classes)  # 400 -> K at 28 px

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop(self.maxpool(self.bn(self.act(self.conv(x)))))  # (B, 16, 10, 10)
        x = self.avgpool(x).flatten(1)  # (B, 400)
        return self.fc(x)


class OffApexNet(nn.Module):
    """OFF-ApexNet: a u stream and a v stream, fused by two FC layers; 28 x 28 by default."""

    def __init__(
        self, num_classes: int = 3, in_chans: int = 2, input_size: int = 28, drop_rate: float = 0.5
    ) -> None:
        super().__init__()
        if in_chans != 2:
            raise ValueError("OffApexNet takes exactly the (u, v) flow channels: in_chans=2")
        # One stream per channel: groups=2 keeps u and v apart until the FC layers.
        self.conv1 = nn.Conv2d(2, 2 * 6, kernel_size=5, padding=2, groups=2)  # (B, 12, S, S)
        self.conv2 = nn.Conv2d(2 * 6, 2 * 16, kernel_size=5, padding=2, groups=2)
        self.act = nn.ReLU()
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)
        side = input_size // 4  # 28 -> 7
        self.drop1 = Dropout(drop_rate)
        self.fc1 = nn.Linear(2 * 16 * side * side, 1024)
        self.fc2 = nn.Linear(1024, 1024)
        self.drop2 = Dropout(drop_rate)
        self.fc = nn.Linear(1024, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.act(self.conv1(x)))  # (B, 12, S/2, S/2)
        x = self.pool(self.act(self.conv2(x))).flatten(1)  # (B, 32 * (S/4)^2)
        x = self.act(self.fc1(self.drop1(x)))  # (B, 1024)
        x = self.act(self.fc2(x))
        return self.fc(self.drop2(x))


class SSSNet(nn.Module):
    """Shallow single-stream network: two convolutions, two FC layers; 64 x 64 by default."""

    def __init__(
        self,
        num_classes: int = 3,
        in_chans: int = 3,
        input_size: int = 64,
        drop_rate: float = 0.5,
        widths: tuple[int, int, int] = (32, 64, 256),
    ) -> None:
        super().__init__()
        h1, h2, h3 = widths
        self.conv1 = nn.Conv2d(in_chans, h1, kernel_size=5)
        self.pool1 = nn.MaxPool2d(kernel_size=3, stride=3)
        self.bn1 = nn.BatchNorm2d(h1)
        self.drop1 = Dropout(drop_rate, channelwise=True)
        self.conv2 = nn.Conv2d(h1, h2, kernel_size=3)
        self.pool2 = nn.MaxPool2d(kernel_size=2, stride=2)
        self.bn2 = nn.BatchNorm2d(h2)
        self.drop2 = Dropout(drop_rate, channelwise=True)
        side = _pooled(_pooled(input_size - 4, 3, 3) - 2, 2, 2)  # 64 -> 60 -> 20 -> 18 -> 9
        if side < 1:
            raise ValueError(f"SSSNet needs inputs of at least 16 px, got {input_size}")
        self.fc1 = nn.Linear(h2 * side * side, h3)
        self.act = nn.ReLU()
        self.drop3 = Dropout(drop_rate)
        self.fc = nn.Linear(h3, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Max-pool before ReLU: the same values and gradients as ReLU then pool (ReLU is
        # monotone, so they commute), with the ReLU on a 9x / 4x smaller tensor.
        x = self.drop1(self.bn1(self.act(self.pool1(self.conv1(x)))))  # (B, 32, 20, 20) at 64
        x = self.drop2(self.bn2(self.act(self.pool2(self.conv2(x))))).flatten(1)  # (B, 5184)
        x = self.act(self.fc1(x))  # (B, 256)
        return self.fc(self.drop3(x))
