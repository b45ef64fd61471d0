"""ResNet, ResNeXt and SE-ResNeXt as one parametrised class (after timm's ``resnet.py``).

Parameter names follow timm and torchvision exactly (``conv1``, ``bn1``, ``layer1.0.conv2``,
``layer1.0.se.fc1``, ``layer1.0.downsample.0``, ``fc``) so their ImageNet weights load with
``strict=True`` from a local file.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (grouped) conv with the stride, 1x1 expand; optional attention (SE)
    on the residual branch after ``bn3``, before the addition."""

    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        cardinality: int = 1,
        base_width: int = 64,
        act_layer: type[nn.Module] = nn.ReLU,
        norm_layer: type[nn.Module] = nn.BatchNorm2d,
        attn_layer: type[nn.Module] | None = None,
    ) -> None:
        super().__init__()
        # ResNeXt width: 32x4d at planes=64 gives 32 groups of 4 = 128 channels.
        width = int(math.floor(planes * (base_width / 64)) * cardinality)
        outplanes = planes * self.expansion

        self.conv1 = nn.Conv2d(inplanes, width, kernel_size=1, bias=False)
        self.bn1 = norm_layer(width)
        self.act1 = act_layer(inplace=True)
        self.conv2 = nn.Conv2d(
            width, width, kernel_size=3, stride=stride, padding=1, groups=cardinality, bias=False
        )
        self.bn2 = norm_layer(width)
        self.act2 = act_layer(inplace=True)
        self.conv3 = nn.Conv2d(width, outplanes, kernel_size=1, bias=False)
        self.bn3 = norm_layer(outplanes)
        self.se = attn_layer(outplanes) if attn_layer is not None else None
        self.act3 = act_layer(inplace=True)
        self.downsample = downsample

    def zero_init_last(self) -> None:
        """Start the block as the identity: the residual branch outputs zero."""
        nn.init.zeros_(self.bn3.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x  # (B, inplanes, H, W)
        x = self.act1(self.bn1(self.conv1(x)))
        x = self.act2(self.bn2(self.conv2(x)))  # (B, width, H/s, W/s)
        x = self.bn3(self.conv3(x))  # (B, outplanes, H/s, W/s)
        if self.se is not None:
            x = self.se(x)
        if self.downsample is not None:
            shortcut = self.downsample(shortcut)
        x = x + shortcut  # not in-place: the shortcut may be the caller's tensor
        return self.act3(x)


def _downsample(
    inplanes: int, outplanes: int, stride: int, norm_layer: type[nn.Module]
) -> nn.Module:
    # Sequential so the keys are downsample.0 (conv) and downsample.1 (bn), as in timm.
    return nn.Sequential(
        nn.Conv2d(inplanes, outplanes, kernel_size=1, stride=stride, bias=False),
        norm_layer(outplanes),
    )


class ResNet(nn.Module):
    """ResNet family: ``cardinality``/``base_width`` make it ResNeXt, ``attn_layer`` adds SE.

    Stem: 7x7/2 conv, BN, ReLU, 3x3/2 max pool; four stages of ``block``; global average
    pool; linear classifier ``fc``. At 224x224 the stages output 56, 28, 14 and 7 pixels.
    """

    def __init__(
        self,
        block: type[Bottleneck],
        layers: Sequence[int],
        num_classes: int = 1000,
        in_chans: int = 3,
        cardinality: int = 1,
        base_width: int = 64,
        stem_width: int = 64,
        channels: Sequence[int] = (64, 128, 256, 512),
        act_layer: type[nn.Module] = nn.ReLU,
        norm_layer: type[nn.Module] = nn.BatchNorm2d,
        attn_layer: type[nn.Module] | None = None,
        drop_rate: float = 0.0,
        zero_init_last: bool = False,
    ) -> None:
        super().__init__()
        if len(layers) != len(channels):
            raise ValueError(
                f"layers {tuple(layers)} and channels {tuple(channels)} "
                "must have the same length (one entry per stage)"
            )
        self.num_classes = num_classes
        self.drop_rate = drop_rate

        self.conv1 = nn.Conv2d(in_chans, stem_width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = norm_layer(stem_width)
        self.act1 = act_layer(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

        inplanes = stem_width
        for i, (planes, depth) in enumerate(zip(channels, layers, strict=True)):
            stride = 1 if i == 0 else 2
            outplanes = planes * block.expansion
            blocks = []
            for j in range(depth):
                downsample = None
                if j == 0 and (stride != 1 or inplanes != outplanes):
                    downsample = _downsample(inplanes, outplanes, stride, norm_layer)
                blocks.append(
                    block(
                        inplanes,
                        planes,
                        stride=stride if j == 0 else 1,
                        downsample=downsample,
                        cardinality=cardinality,
                        base_width=base_width,
                        act_layer=act_layer,
                        norm_layer=norm_layer,
                        attn_layer=attn_layer,
                    )
                )
                inplanes = outplanes
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))

        self.num_features = inplanes
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        self._init_weights(zero_init_last)

    def _init_weights(self, zero_init_last: bool) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_last:
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    m.zero_init_last()

    def reset_classifier(self, num_classes: int) -> None:
        """Replace ``fc`` with a fresh head for ``num_classes`` (0 removes it)."""
        self.num_classes = num_classes
        device = self.conv1.weight.device
        self.fc = (
            nn.Linear(self.num_features, num_classes, device=device)
            if num_classes > 0
            else nn.Identity()
        )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.act1(self.bn1(self.conv1(x))))  # (B, 64, H/4, W/4)
        x = self.layer1(x)  # (B, 256, H/4, W/4)
        x = self.layer2(x)  # (B, 512, H/8, W/8)
        x = self.layer3(x)  # (B, 1024, H/16, W/16)
        return self.layer4(x)  # (B, 2048, H/32, W/32)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.global_pool(x).flatten(1)  # (B, num_features)
        if self.drop_rate > 0:
            x = nn.functional.dropout(x, p=self.drop_rate, training=self.training)
        return x if pre_logits else self.fc(x)  # (B, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))
