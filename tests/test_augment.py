"""Batch augmentation: determinism, each transform's exact effect, rates, shapes."""

from __future__ import annotations

import math

import pytest
import torch

from apexmer.errors import ConfigError
from apexmer.training.augment import AugmentConfig, augment_batch, rotate_batch, to_grayscale

OFF = dict(grayscale_p=0.0, hflip_p=0.0, rotation_p=0.0)


def _images(b: int = 4, c: int = 3, h: int = 16, w: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.rand(b, c, h, w, generator=torch.Generator().manual_seed(seed))


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_same_seed_same_batch() -> None:
    x = _images(8)
    a = augment_batch(x, AugmentConfig(), _gen(7))
    torch.testing.assert_close(a, augment_batch(x, AugmentConfig(), _gen(7)), rtol=0, atol=0)
    assert not torch.equal(a, augment_batch(x, AugmentConfig(), _gen(8)))


def test_flip_p1_is_torch_flip() -> None:
    x = _images()
    out = augment_batch(x, AugmentConfig(**{**OFF, "hflip_p": 1.0}), _gen(0))
    assert torch.equal(out, torch.flip(x, dims=[-1]))


def test_all_off_is_identity_and_input_untouched() -> None:
    x = _images()
    before = x.clone()
    assert torch.equal(augment_batch(x, AugmentConfig(**OFF), _gen(0)), x)
    augment_batch(x, AugmentConfig(grayscale_p=1.0, hflip_p=1.0, rotation_p=1.0), _gen(0))
    assert torch.equal(x, before)


def test_rotation_zero_is_identity() -> None:
    x = _images(h=12, w=20)
    torch.testing.assert_close(rotate_batch(x, torch.zeros(4)), x, rtol=0, atol=1e-5)
    cfg = AugmentConfig(**{**OFF, "rotation_p": 1.0, "rotation_deg": 0.0})
    assert torch.equal(augment_batch(x, cfg, _gen(0)), x)


def test_rotation_90_on_square_is_rot90() -> None:
    x = _images(b=2, h=9, w=9)
    out = rotate_batch(x, torch.full((2,), math.pi / 2))
    torch.testing.assert_close(out, torch.rot90(x, k=1, dims=(-2, -1)), rtol=0, atol=1e-5)


def test_rotation_is_rigid_on_non_square_images() -> None:
    h, w = 32, 64
    ys, xs = torch.meshgrid(
        torch.arange(h) - (h - 1) / 2, torch.arange(w) - (w - 1) / 2, indexing="ij"
    )
    blob = torch.exp(-((xs - 10) ** 2 + (ys - 4) ** 2) / 4.0)[None, None]  # at (+10, +4) px
    out = rotate_batch(blob, torch.tensor([math.radians(30.0)]))[0, 0]
    cx, cy = (out * xs).sum() / out.sum(), (out * ys).sum() / out.sum()
    # The same 30 degree rotation in pixels, whatever the direction convention.
    r = math.hypot(10, 4)
    assert math.isclose(math.hypot(cx, cy), r, abs_tol=0.1)
    assert math.isclose(abs(math.atan2(cy, cx) - math.atan2(4, 10)), math.radians(30), abs_tol=0.01)


def test_rotation_fills_corners_with_fill_value() -> None:
    x = torch.ones(1, 3, 16, 16)
    out = rotate_batch(x, torch.tensor([math.pi / 4]), fill=0.5)
    assert torch.allclose(out[..., 0, 0], torch.tensor(0.5))
    assert torch.allclose(out[..., 8, 8], torch.tensor(1.0))


@pytest.mark.parametrize("order", ["rgb", "bgr"])
def test_grayscale_equal_channels_and_luma(order: str) -> None:
    x = _images()
    out = augment_batch(
        x, AugmentConfig(**{**OFF, "grayscale_p": 1.0}, channel_order=order), _gen(0)
    )
    assert torch.equal(out[:, 0], out[:, 1]) and torch.equal(out[:, 1], out[:, 2])
    rgb = x if order == "rgb" else x.flip(1)
    luma = 0.299 * rgb[:, 0] + 0.587 * rgb[:, 1] + 0.114 * rgb[:, 2]
    torch.testing.assert_close(out[:, 0], luma)
    torch.testing.assert_close(to_grayscale(x, order), out)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(1, 3, 8, 8), (5, 3, 10, 14), (3, 1, 8, 8)])
def test_shape_and_dtype_preserved(dtype: torch.dtype, shape: tuple[int, ...]) -> None:
    x = torch.rand(shape, dtype=dtype)
    cfg = AugmentConfig(grayscale_p=1.0, hflip_p=1.0, rotation_p=1.0)
    out = augment_batch(x, cfg, _gen(1))
    assert out.shape == x.shape and out.dtype == dtype


@pytest.mark.parametrize("field,p", [("hflip_p", 0.5), ("grayscale_p", 0.2), ("rotation_p", 0.3)])
def test_probabilities_respected(field: str, p: float) -> None:
    n = 2000
    x = _images(b=n, h=6, w=6, seed=3)
    out = augment_batch(x, AugmentConfig(**{**OFF, field: p}), _gen(4))
    changed = (out - x).flatten(1).abs().amax(1) > 1e-6
    assert abs(changed.float().mean().item() - p) < 0.04


def test_rotation_angles_within_range() -> None:
    # One bright pixel off-centre: its angle after rotation stays within +-15 degrees.
    h = w = 33
    x = torch.zeros(200, 1, h, w)
    x[:, :, 16, 28] = 1.0  # 12 px right of the centre
    out = augment_batch(x, AugmentConfig(**{**OFF, "rotation_p": 1.0}), _gen(5))
    ys, xs = torch.meshgrid(torch.arange(h) - 16.0, torch.arange(w) - 16.0, indexing="ij")
    mass = out[:, 0].flatten(1).sum(1)
    ang = torch.atan2(
        (out[:, 0] * ys).flatten(1).sum(1) / mass, (out[:, 0] * xs).flatten(1).sum(1) / mass
    )
    assert ang.abs().max() <= math.radians(15.5) and ang.abs().max() > math.radians(10)


def test_invalid_config_and_argument_order() -> None:
    with pytest.raises(ConfigError, match="hflip_p"):
        AugmentConfig(hflip_p=1.5)
    with pytest.raises(ConfigError, match="rotation_deg"):
        AugmentConfig(rotation_deg=-1.0)
    with pytest.raises(TypeError, match="order"):
        augment_batch(_images(), _gen(0), AugmentConfig())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="float"):
        augment_batch(torch.zeros(1, 3, 4, 4, dtype=torch.uint8), AugmentConfig(), _gen(0))


@pytest.mark.parametrize(
    "cfg",
    [
        AugmentConfig(),
        AugmentConfig(rotation_p=0.5),
        AugmentConfig(u_channel=0, v_channel=1, grayscale_p=0.0),
    ],
    ids=["paper", "some-rotated", "flow"],
)
def test_groups_with_their_own_generators_equal_separate_calls(cfg: AugmentConfig) -> None:
    # Fold packing augments k folds' batches in one call: each group must get exactly
    # what it gets alone from its generator.
    groups = [_images(b=6, seed=s) for s in range(3)]
    together = augment_batch(torch.cat(groups), cfg, [_gen(10), _gen(11), _gen(12)])
    alone = torch.cat([augment_batch(x, cfg, _gen(10 + i)) for i, x in enumerate(groups)])
    assert torch.equal(together, alone)


def test_groups_must_be_equal() -> None:
    with pytest.raises(ValueError, match="cannot be split into 3 equal groups"):
        augment_batch(_images(b=4), AugmentConfig(), [_gen(0), _gen(1), _gen(2)])
