"""Training-time augmentation on batches (B, C, H, W), in plain torch.

The paper's three: grayscale, horizontal flip, rotation within +-15 degrees. Each is drawn
per sample with its own probability from a ``torch.Generator``, so a seed fixes the batch.
Apply it to images in [0, 1] before mean/std normalisation (grayscale weights and the fill
value of rotated corners assume that).

Flow fields (``u_channel``/``v_channel`` set): apply to signed flow before normalisation. A
flip mirrors the field and negates u; a rotation moves the grid and turns each (u, v)
vector by the same angle; other channels (strain, magnitude) only move with the grid.
Coordinates are the image's: x to the right, y DOWN. A positive angle turns the content
counter-clockwise on the screen (torchvision's convention): the grid point at (dx, dy) from
the centre goes to (cos a dx + sin a dy, -sin a dx + cos a dy), and so does a vector (u, v).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from apexmer.errors import ConfigError

# ITU-R BT.601 luma, as PIL and torchvision's rgb_to_grayscale use.
_LUMA_RGB = (0.299, 0.587, 0.114)


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities are per sample; the rotation angle is uniform in [-deg, +deg]."""

    grayscale_p: float = 0.2
    hflip_p: float = 0.5
    rotation_deg: float = 15.0
    rotation_p: float = 1.0
    fill: float = 0.0  # value of the corners a rotation uncovers
    channel_order: Literal["rgb", "bgr"] = "rgb"
    # flow fields: the channels holding u (x motion) and v (y motion); None = not a flow
    u_channel: int | None = None
    v_channel: int | None = None

    def __post_init__(self) -> None:
        for name in ("grayscale_p", "hflip_p", "rotation_p"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(
                    f"augmentation {name} must be a probability in [0, 1], got {value!r}"
                )
        if not 0.0 <= self.rotation_deg <= 180.0:
            raise ConfigError(
                f"augmentation rotation_deg must be in [0, 180], got {self.rotation_deg!r}"
            )
        if self.channel_order not in ("rgb", "bgr"):
            raise ConfigError(
                f"augmentation channel_order must be 'rgb' or 'bgr', got {self.channel_order!r}"
            )
        flow = self.u_channel is not None or self.v_channel is not None
        if flow and self.grayscale_p > 0:
            raise ConfigError("augmentation of a flow field: grayscale_p must be 0 (no colour)")
        rotates = self.rotation_deg > 0 and self.rotation_p > 0
        if rotates and (self.u_channel is None) != (self.v_channel is None):
            raise ConfigError(
                "augmentation of a flow field: rotating needs both the u and the v channel"
            )


def augment_batch(
    x: torch.Tensor,
    config: AugmentConfig | None = None,
    generator: torch.Generator | Sequence[torch.Generator] | None = None,
) -> torch.Tensor:
    """Randomly grayscale, flip and rotate each image of ``x`` (B, C, H, W); returns a new
    tensor of the same shape and dtype.

    ``generator`` makes it deterministic (None: torch's global CPU RNG). A sequence of g
    generators treats ``x`` as g equal groups of B/g samples, each drawing from its own
    generator exactly as ``augment_batch(group, config, its_generator)`` would: one call
    augments many LOSO folds' batches (fold packing) with each fold's own random numbers.

    The random numbers are drawn on the generators' device (the CPU for CPU generators) and
    every decision is taken there: on a GPU no step of it waits for the device.
    """
    if isinstance(config, torch.Generator) or isinstance(generator, AugmentConfig):
        raise TypeError("augment_batch takes (x, config, generator), in that order")
    config = config or AugmentConfig()
    if x.ndim != 4 or not x.is_floating_point():
        raise ValueError(
            f"augment_batch expects a float (B, C, H, W) batch, got {x.dtype} {tuple(x.shape)}"
        )
    u = _draw(x.shape[0], generator)  # (4, B) on the generators' device
    gray, flip, rotate = u[0] < config.grayscale_p, u[1] < config.hflip_p, u[2] < config.rotation_p
    angles = (2.0 * u[3] - 1.0) * math.radians(config.rotation_deg)  # (B,) radians

    def on_x(mask: torch.Tensor) -> torch.Tensor:  # (B,) -> (B, 1, 1, 1) on x's device
        return mask.to(x.device, non_blocking=True)[:, None, None, None]

    if x.shape[1] == 3 and config.grayscale_p > 0 and bool(gray.any()):
        x = torch.where(on_x(gray), to_grayscale(x, config.channel_order), x)
    if config.hflip_p > 0 and bool(flip.any()):
        x = torch.where(on_x(flip), hflip(x, config.u_channel), x)
    if config.rotation_deg > 0 and config.rotation_p > 0 and bool(rotate.any()):
        if bool(rotate.all()):
            x = _rotate(x, angles.to(x.device, non_blocking=True), config)
        else:  # only the chosen ones: the rest stay bit-exact
            idx = rotate.nonzero().squeeze(1).to(x.device, non_blocking=True)
            x = x.clone()
            x[idx] = _rotate(x[idx], angles[rotate].to(x.device, non_blocking=True), config)
    return x


def hflip(x: torch.Tensor, u_channel: int | None = None) -> torch.Tensor:
    """The horizontal mirror of a batch (B, C, H, W): columns reversed and, for a flow
    field, the x motion ``u_channel`` negated (a mirrored face moves the other way in x;
    v, strain and magnitude only move with the grid). Training's flip and the test-time
    flip (``eval.tta: hflip``) are this one function. Returns a new tensor."""
    mirrored = x.flip(-1)
    if u_channel is not None:
        mirrored[:, u_channel].neg_()
    return mirrored


def _draw(b: int, generator: torch.Generator | Sequence[torch.Generator] | None) -> torch.Tensor:
    """The (4, b) uniform numbers of a batch: one group per generator, in the fixed order
    (grayscale, flip, rotate, angle) within each group."""
    if generator is None or isinstance(generator, torch.Generator):
        device = generator.device if generator is not None else torch.device("cpu")
        return torch.rand(4, b, generator=generator, device=device)
    gens = list(generator)
    if not gens or b % len(gens):
        raise ValueError(
            f"augment_batch: a batch of {b} cannot be split into {len(gens)} equal groups"
        )
    return torch.cat([torch.rand(4, b // len(gens), generator=g, device=g.device) for g in gens], 1)


def _rotate(x: torch.Tensor, angles: torch.Tensor, config: AugmentConfig) -> torch.Tensor:
    out = rotate_batch(x, angles, fill=config.fill)
    if config.u_channel is not None and config.v_channel is not None:
        out = rotate_vectors(out, angles, config.u_channel, config.v_channel)
    return out


def to_grayscale(x: torch.Tensor, channel_order: str = "rgb") -> torch.Tensor:
    """Luminance of a (B, 3, H, W) batch, replicated to 3 channels."""
    w = _luma(channel_order, x.dtype, x.device)  # (1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True).expand_as(x).contiguous()  # (B, 3, H, W)


@functools.lru_cache(maxsize=16)
def _luma(channel_order: str, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The luma weights on ``device``, made once: on a GPU a fresh tensor is a blocking
    host->device copy in every training step."""
    weights = _LUMA_RGB if channel_order == "rgb" else _LUMA_RGB[::-1]
    return torch.tensor(weights, dtype=dtype, device=device).view(1, 3, 1, 1)


def rotate_batch(x: torch.Tensor, angles: torch.Tensor, fill: float = 0.0) -> torch.Tensor:
    """Rotate each image of (B, C, H, W) by its angle (radians) about the centre, bilinear."""
    h, w = x.shape[-2:]
    cos, sin = torch.cos(angles), torch.sin(angles)  # (B,)
    # affine_grid works in [-1, 1] coordinates on both axes; the H/W factors make the
    # rotation rigid in pixels for non-square images.
    theta = torch.zeros(x.shape[0], 2, 3, dtype=x.dtype, device=x.device)
    theta[:, 0, 0], theta[:, 0, 1] = cos, -sin * (h / w)
    theta[:, 1, 0], theta[:, 1, 1] = sin * (w / h), cos
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)  # (B, H, W, 2)
    # grid_sample pads with zeros: shift by the fill value so uncovered corners get it.
    out = F.grid_sample(x - fill, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out + fill


def rotate_vectors(x: torch.Tensor, angles: torch.Tensor, u: int, v: int) -> torch.Tensor:
    """Turn the (u, v) vectors of (B, C, H, W) by each sample's angle (radians), as
    ``rotate_batch`` turns the grid: (u, v) -> (cos a u + sin a v, -sin a u + cos a v) in
    image coordinates (y down), counter-clockwise on the screen for a positive angle."""
    cos = torch.cos(angles).to(x.dtype).view(-1, 1, 1)  # (B, 1, 1)
    sin = torch.sin(angles).to(x.dtype).view(-1, 1, 1)
    out = x.clone()
    out[:, u] = cos * x[:, u] + sin * x[:, v]
    out[:, v] = -sin * x[:, u] + cos * x[:, v]
    return out
