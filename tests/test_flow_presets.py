"""The flow presets: the recommended recipe and the two published networks, fixed epochs."""

from __future__ import annotations

import pytest
import torch

from apexmer.config import list_presets, load_config
from apexmer.models.registry import create_model


def test_flow_is_the_recommended_recipe() -> None:
    cfg = load_config("flow")
    assert cfg.data.input == "flow" and cfg.data.frame == "apex"
    assert cfg.data.flow_channels == ("u", "v", "strain") and cfg.data.input_size == 28
    assert cfg.model.name == "sssnet"
    assert cfg.optim.name == "adam" and cfg.optim.lr == pytest.approx(2e-4)
    assert cfg.optim.weight_decay == pytest.approx(1e-3)
    assert cfg.loss.name == "cross_entropy" and cfg.loss.alpha == "sqrt_balanced"
    assert cfg.augment.grayscale_p == 0 and cfg.augment.hflip_p == 0.5
    assert cfg.augment.rotation_deg == 10 and cfg.augment.rotation_p == 0.5
    # Sized for the whole recipe (two members) on a composite LOSO within 15 minutes on 2
    # cores (bench/recipe_speed.py).
    assert cfg.train.epochs == 50 and cfg.train.batch_size == 16 and cfg.train.seed == 0
    assert cfg.train.ensemble == 2 and cfg.train.pack_folds == 8 and cfg.train.channels_last
    assert cfg.eval.tta == "hflip" and cfg.eval.oracle is False


def test_published_networks_with_fixed_epochs_and_no_augmentation() -> None:
    ststnet, off = load_config("ststnet"), load_config("off_apexnet")
    assert ststnet.model.name == "ststnet" and ststnet.data.flow_channels == ("u", "v", "strain")
    assert ststnet.optim.lr == pytest.approx(5e-5) and ststnet.train.batch_size == 256
    assert ststnet.train.epochs == 500
    assert off.model.name == "off_apexnet" and off.data.flow_channels == ("u", "v")
    assert off.train.epochs == 3000
    for cfg in (ststnet, off):
        assert cfg.data.input == "flow" and cfg.data.input_size == 28
        assert cfg.loss.name == "cross_entropy" and cfg.loss.alpha == "none"
        assert cfg.augment.hflip_p == cfg.augment.rotation_p == cfg.augment.grayscale_p == 0
        assert cfg.eval.oracle is False


@pytest.mark.parametrize("preset", ["flow", "ststnet", "off_apexnet"])
def test_each_flow_preset_builds_its_network_for_its_input(preset: str) -> None:
    cfg = load_config(preset)
    channels, size = len(cfg.data.flow_channels), cfg.data.input_size
    model = create_model(cfg.model.name, num_classes=3, in_chans=channels, input_size=size)
    model.eval()
    with torch.no_grad():
        out = model(torch.rand(2, channels, size, size))
    assert out.shape == (2, 3)
    assert preset in list_presets()
