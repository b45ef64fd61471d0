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

A practitioner's clip (issue 17) differs from the training data in ways the paper's three
do not cover; four more transforms, all OFF by default (0 = off; which ones a preset turns
on is decided by the proxy benchmark, not here), each drawn per sample with its own
probability, after the flip and rotation:

- ``scale``: zoom by a factor uniform in [1 - scale, 1 + scale] about the centre (a face
  box a little tighter or looser). A flow field zoomed by s is the flow of the zoomed
  images: the grid moves AND every vector (u, v) and the magnitude are multiplied by s;
  strain (a ratio of pixel lengths) does not change.
- ``translate``: shift by up to ``translate`` of the side in x and y (a face box off
  centre); the grid moves, vectors do not change. Scale and translation share one resample
  and repeat the edge pixels (or edge motion) where they uncover the border, so no
  constant border appears.
- ``blur``: Gaussian blur with a sigma uniform in [0, blur] pixels (a softer camera, a
  smoother flow solver); blurring u and v is blurring the field, which stays a flow.
- ``still_noise``: Gaussian noise where nothing moves (the noise TV-L1 leaves in the still
  skin of a real clip, stretched by the min-max scaling). On a flow: added to u and v (same
  sigma, ``still_noise`` times the sample's u/v standard deviation) at the pixels whose
  motion magnitude is at most the sample's median, so the expression itself is untouched;
  other channels unchanged. On an image: added everywhere, sigma ``still_noise`` (images
  are in [0, 1]).

With all four off, no random number is drawn for them: results are bit-identical to
before they existed.
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
    # practitioner's-clip transforms (module doc); 0 = off
    scale: float = 0.0  # zoom factor in [1 - scale, 1 + scale]
    scale_p: float = 0.5
    translate: float = 0.0  # shift up to this fraction of the side, in x and y
    translate_p: float = 0.5
    blur: float = 0.0  # Gaussian sigma in [0, blur] pixels
    blur_p: float = 0.5
    still_noise: float = 0.0  # noise sigma (flow: times the u/v std) in still regions
    still_noise_p: float = 0.5
    # flow fields: the channels holding u (x motion) and v (y motion); None = not a flow
    u_channel: int | None = None
    v_channel: int | None = None
    magnitude_channel: int | None = None  # scaled with u and v by a zoom

    def __post_init__(self) -> None:
        for name in (
            "grayscale_p",
            "hflip_p",
            "rotation_p",
            "scale_p",
            "translate_p",
            "blur_p",
            "still_noise_p",
        ):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(
                    f"augmentation {name} must be a probability in [0, 1], got {value!r}"
                )
        if not 0.0 <= self.rotation_deg <= 180.0:
            raise ConfigError(
                f"augmentation rotation_deg must be in [0, 180], got {self.rotation_deg!r}"
            )
        if not 0.0 <= self.scale < 1.0 or not 0.0 <= self.translate < 0.5:
            raise ConfigError(
                f"augmentation scale must be in [0, 1) and translate in [0, 0.5), got "
                f"{self.scale!r} and {self.translate!r}"
            )
        if self.blur < 0 or self.still_noise < 0:
            raise ConfigError(
                f"augmentation blur and still_noise must be >= 0, got {self.blur!r} and "
                f"{self.still_noise!r}"
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

    @property
    def practitioner(self) -> bool:
        """Whether any of scale, translate, blur, still_noise is on."""
        pairs = (
            (self.scale, self.scale_p),
            (self.translate, self.translate_p),
            (self.blur, self.blur_p),
            (self.still_noise, self.still_noise_p),
        )
        return any(amount > 0 and p > 0 for amount, p in pairs)


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
    if config.practitioner:
        x = _practitioner(x, config, generator)
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


def _groups(
    b: int, generator: torch.Generator | Sequence[torch.Generator] | None
) -> list[torch.Generator | None]:
    if generator is None or isinstance(generator, torch.Generator):
        return [generator]
    gens = list(generator)
    if not gens or b % len(gens):
        raise ValueError(
            f"augment_batch: a batch of {b} cannot be split into {len(gens)} equal groups"
        )
    return gens


def _draw(
    b: int, generator: torch.Generator | Sequence[torch.Generator] | None, rows: int = 4
) -> torch.Tensor:
    """The (rows, b) uniform numbers of a batch: one group per generator, in a fixed order
    within each group ((grayscale, flip, rotate, angle) for the first four)."""
    gens = _groups(b, generator)
    n = b // len(gens)
    return torch.cat(
        [
            torch.rand(rows, n, generator=g, device=g.device if g is not None else "cpu")
            for g in gens
        ],
        1,
    )


def _randn(
    shape: tuple[int, ...], generator: torch.Generator | Sequence[torch.Generator] | None
) -> torch.Tensor:
    """Standard normal numbers of shape (b, ...), each group from its own generator."""
    gens = _groups(shape[0], generator)
    n = shape[0] // len(gens)
    return torch.cat(
        [
            torch.randn(n, *shape[1:], generator=g, device=g.device if g is not None else "cpu")
            for g in gens
        ],
        0,
    )


def _practitioner(
    x: torch.Tensor,
    config: AugmentConfig,
    generator: torch.Generator | Sequence[torch.Generator] | None,
) -> torch.Tensor:
    """Scale, translate, blur and still-region noise (module doc), after flip/rotation."""
    b = x.shape[0]
    u = _draw(b, generator, rows=8).to(x.device)  # (8, b)
    if config.scale > 0 or config.translate > 0:
        on_scale = (u[0] < config.scale_p) & (config.scale > 0)
        factor = torch.where(on_scale, 1.0 + (2.0 * u[1] - 1.0) * config.scale, 1.0)
        on_shift = ((u[2] < config.translate_p) & (config.translate > 0)).to(x.dtype)
        shift = (2.0 * u[3:5] - 1.0) * config.translate * on_shift  # (2, b) fraction of side
        x = zoom_shift(x, factor.to(x.dtype), shift.T.to(x.dtype), config)
    if config.blur > 0:
        on_blur = (u[5] < config.blur_p).to(x.dtype)
        x = blur_batch(x, u[6].to(x.dtype) * config.blur * on_blur)
    if config.still_noise > 0:
        on_noise = (u[7] < config.still_noise_p).to(x.dtype)[:, None, None, None]
        x = x + on_noise * still_noise(x, _randn(tuple(x.shape), generator).to(x), config)
    return x


def zoom_shift(
    x: torch.Tensor, factor: torch.Tensor, shift: torch.Tensor, config: AugmentConfig
) -> torch.Tensor:
    """Zoom each sample of (B, C, H, W) by ``factor`` (B,) about the centre (> 1 = larger)
    and move its content by ``shift`` (B, 2) fractions of the side (x right, y down);
    edge pixels repeat. A flow's u, v (and magnitude) are multiplied by the factor."""
    theta = torch.zeros(x.shape[0], 2, 3, dtype=x.dtype, device=x.device)
    # output point p samples the input at (p - t) / s, in [-1, 1] coordinates (side = 2)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0 / factor
    theta[:, 0, 2] = -2.0 * shift[:, 0] / factor
    theta[:, 1, 2] = -2.0 * shift[:, 1] / factor
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    vectors = [
        c for c in (config.u_channel, config.v_channel, config.magnitude_channel) if c is not None
    ]
    if vectors:
        out[:, vectors] = out[:, vectors] * factor.view(-1, 1, 1, 1)
    return out


def blur_batch(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Gaussian blur of each sample of (B, C, H, W) with its own sigma (B,) in pixels
    (0 = unchanged); separable, edges repeated."""
    top = float(sigma.max())
    if top <= 0:
        return x
    radius = max(1, math.ceil(3.0 * top))
    offsets = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)  # (K,)
    s = sigma.clamp_min(1e-6).view(-1, 1)
    kernel = torch.exp(-0.5 * (offsets / s) ** 2)  # (B, K)
    kernel = torch.where(sigma.view(-1, 1) > 0, kernel, (offsets == 0).to(x.dtype))
    kernel = kernel / kernel.sum(1, keepdim=True)
    b, c, h, w = x.shape
    weights = kernel.repeat_interleave(c, 0)  # (B*C, K): one kernel per sample and channel
    y = F.pad(x.reshape(1, b * c, h, w), (radius, radius, radius, radius), mode="replicate")
    y = F.conv2d(y, weights.view(b * c, 1, 1, -1), groups=b * c)  # along x
    y = F.conv2d(y, weights.view(b * c, 1, -1, 1), groups=b * c)  # along y
    return y.view(b, c, h, w)


def still_noise(x: torch.Tensor, noise: torch.Tensor, config: AugmentConfig) -> torch.Tensor:
    """The noise ``still_noise`` adds to (B, C, H, W), given standard normal ``noise`` of
    the same shape: on a flow, at u and v where the motion is at most the sample's median
    magnitude, sigma ``still_noise`` x the sample's u/v std; on an image, everywhere."""
    if config.u_channel is None or config.v_channel is None:
        return noise * config.still_noise
    uv = x[:, [config.u_channel, config.v_channel]]  # (B, 2, H, W)
    magnitude = uv.pow(2).sum(1).sqrt()  # (B, H, W)
    median = magnitude.flatten(1).median(1).values.view(-1, 1, 1)
    still = (magnitude <= median).to(x.dtype)[:, None]  # (B, 1, H, W)
    spread = uv.flatten(1).std(1).view(-1, 1, 1, 1)
    out = torch.zeros_like(x)
    channels = [config.u_channel, config.v_channel]
    out[:, channels] = noise[:, channels] * config.still_noise * spread * still
    return out


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
