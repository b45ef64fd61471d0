"""Augmentation for a practitioner's clip: scale, translation, blur, noise in still regions.
Off by default (nothing drawn, results unchanged); flow-aware (a zoom scales the vectors)."""

from __future__ import annotations

import pytest
import torch

from apexmer.config import load_config
from apexmer.errors import ConfigError
from apexmer.training.augment import (
    AugmentConfig,
    augment_batch,
    blur_batch,
    still_noise,
    zoom_shift,
)
from apexmer.training.inputs import get_input

OFF = dict(grayscale_p=0.0, hflip_p=0.0, rotation_p=0.0)
FLOW = dict(**OFF, u_channel=0, v_channel=1, magnitude_channel=3)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _grid(h: int = 32, w: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel-centre coordinates relative to the image centre, (H, W) each."""
    ys, xs = torch.meshgrid(
        torch.arange(h) + 0.5 - h / 2, torch.arange(w) + 0.5 - w / 2, indexing="ij"
    )
    return xs.double(), ys.double()


def _flow(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """(1, 4, H, W): u, v, strain (a constant 0.3 here), magnitude."""
    strain = torch.full_like(u, 0.3)
    return torch.stack([u, v, strain, torch.hypot(u, v)])[None]


def test_off_by_default_draws_nothing_and_changes_nothing() -> None:
    x = torch.rand(6, 4, 16, 16, generator=_gen(0))
    config = AugmentConfig(u_channel=0, v_channel=1, grayscale_p=0.0)
    assert not config.practitioner
    g = _gen(7)
    out = augment_batch(x, config, g)
    reference = _gen(7)
    torch.rand(4, 6, generator=reference)  # the paper's transforms' numbers, no more
    assert torch.equal(g.get_state(), reference.get_state())
    assert torch.equal(out, augment_batch(x, config, _gen(7)))
    for name in ("flow", "paper"):
        a = load_config(name).augment
        assert a.scale == a.translate == a.blur == a.still_noise == 0.0


def test_zoom_scales_flow_vectors_and_keeps_strain() -> None:
    """A constant motion c zoomed by s is s c everywhere; a field u = k x (a stretch) is
    the same field after any zoom: s k (x / s) = k x; strain does not change."""
    config = AugmentConfig(**FLOW)
    xs, ys = _grid()
    c = _flow(torch.full_like(xs, 0.4), torch.full_like(xs, -0.2))
    for s in (0.8, 1.25):
        out = zoom_shift(
            c, torch.tensor([s], dtype=c.dtype), torch.zeros(1, 2, dtype=c.dtype), config
        )
        torch.testing.assert_close(out[0, 0], torch.full_like(xs, 0.4 * s))
        torch.testing.assert_close(out[0, 1], torch.full_like(xs, -0.2 * s))
        torch.testing.assert_close(out[0, 2], c[0, 2])  # strain: a ratio
        torch.testing.assert_close(out[0, 3], torch.full_like(xs, s * (0.4**2 + 0.2**2) ** 0.5))
    stretch = _flow(0.05 * xs, 0.03 * ys)
    out = zoom_shift(
        stretch, torch.tensor([1.25], dtype=xs.dtype), torch.zeros(1, 2, dtype=xs.dtype), config
    )
    inner = (slice(4, -4), slice(4, -4))  # away from the repeated border
    torch.testing.assert_close(out[0, 0][inner], stretch[0, 0][inner])
    torch.testing.assert_close(out[0, 1][inner], stretch[0, 1][inner])


def test_zoom_of_an_image_does_not_scale_its_values() -> None:
    xs, _ = _grid()
    image = torch.stack([torch.full_like(xs, 0.6)] * 3)[None]
    out = zoom_shift(
        image,
        torch.tensor([1.2], dtype=xs.dtype),
        torch.zeros(1, 2, dtype=xs.dtype),
        AugmentConfig(),
    )
    torch.testing.assert_close(out, image)


def test_translation_moves_the_grid_not_the_vectors() -> None:
    config = AugmentConfig(**FLOW)
    xs, ys = _grid()
    bump = torch.exp(-((xs - 0.0) ** 2 + ys**2) / 8.0)
    field = _flow(0.5 * bump, -0.25 * bump)
    shift = torch.tensor([[4 / 32, -2 / 32]], dtype=xs.dtype)  # 4 px right, 2 px up
    out = zoom_shift(field, torch.ones(1, dtype=xs.dtype), shift, config)
    moved = torch.roll(field, shifts=(-2, 4), dims=(2, 3))
    torch.testing.assert_close(out, moved, atol=1e-6, rtol=0)  # roll wraps, edges repeat
    assert out[0, 0].max() == pytest.approx(0.5 * bump.max())  # same vectors, elsewhere


def test_blur_keeps_constants_and_smooths_noise() -> None:
    noise = torch.randn(2, 2, 32, 32, generator=_gen(1), dtype=torch.float64)
    const = torch.full((2, 2, 32, 32), 0.7, dtype=torch.float64)
    sigma = torch.tensor([0.0, 1.5], dtype=torch.float64)
    torch.testing.assert_close(blur_batch(const, sigma), const)
    out = blur_batch(noise, sigma)
    assert torch.equal(out[0], noise[0])  # sigma 0: untouched
    assert out[1].std() < 0.5 * noise[1].std()
    # linear: blurring u and v separately is blurring the field
    torch.testing.assert_close(blur_batch(2 * noise, sigma), 2 * out)


def test_still_noise_only_where_nothing_moves_and_only_on_u_v() -> None:
    config = AugmentConfig(**FLOW, still_noise=0.5)
    xs, ys = _grid()
    bump = torch.exp(-(xs**2 + ys**2) / 20.0)
    field = _flow(bump, 0.5 * bump)
    noise = torch.randn(field.shape, generator=_gen(2), dtype=xs.dtype)
    added = still_noise(field, noise, config)
    magnitude = field[0, 3]
    moving = magnitude > magnitude.median()
    assert (added[0, :, moving] == 0).all()  # the expression is untouched
    assert (added[0, 2:] == 0).all()  # strain and magnitude untouched
    assert added[0, 0][~moving].abs().max() > 0 and added[0, 1][~moving].abs().max() > 0
    image = torch.rand(1, 3, 8, 8, generator=_gen(3))
    noise = torch.randn(image.shape, generator=_gen(4))
    torch.testing.assert_close(
        still_noise(image, noise, AugmentConfig(still_noise=0.1)), 0.1 * noise
    )


def test_on_in_augment_batch_deterministic_and_per_fold_groups() -> None:
    config = AugmentConfig(**FLOW, scale=0.1, translate=0.1, blur=1.0, still_noise=0.3)
    assert config.practitioner
    x = torch.randn(8, 4, 28, 28, generator=_gen(5))
    a = augment_batch(x, config, _gen(9))
    assert torch.equal(a, augment_batch(x, config, _gen(9)))
    assert not torch.equal(a, x) and a.shape == x.shape
    # two folds packed: each group as if augmented alone with its own generator
    packed = augment_batch(x, config, [_gen(1), _gen(2)])
    alone = torch.cat(
        [augment_batch(x[:4], config, _gen(1)), augment_batch(x[4:], config, _gen(2))]
    )
    torch.testing.assert_close(packed, alone)


def test_config_knobs_reach_the_flow_input_with_its_channels() -> None:
    config = load_config(
        "flow",
        ["augment.scale=0.1", "augment.blur=0.8", "data.flow_channels=[u, v, strain, magnitude]"],
    )
    batch = get_input("flow").augment_config(config)
    assert (batch.scale, batch.blur, batch.u_channel, batch.v_channel) == (0.1, 0.8, 0, 1)
    assert batch.magnitude_channel == 3
    with pytest.raises(ConfigError, match=r"augment\.scale"):
        load_config("flow", ["augment.scale=1.5"])
    with pytest.raises(ConfigError, match="scale"):
        AugmentConfig(scale=1.0)
