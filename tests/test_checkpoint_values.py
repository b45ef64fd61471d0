"""Values read from a config or a checkpoint are checked in the dtype they are used in:
mean/std in float32 (a denormal std is zero there), weights finite."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from safetensors.torch import save_file

from apexmer.config import DataConfig, load_config
from apexmer.errors import ConfigError, WeightsError
from apexmer.models.registry import create_model
from apexmer.training.checkpoint import (
    FORMAT_VERSION,
    METADATA_KEY,
    check_metadata_values,
    load_checkpoint,
    read_metadata,
    save_checkpoint,
)
from apexmer.training.inputs import get_input
from test_checkpoint import tiny_metadata

EDGES = [0.0, -0.0, 1e-40, -1e-40, 1e-45, 1.1e-38, 1.2e-38, 1e-30, 3.5e38, 1e39]
EDGES += [3.4028234663852886e38, 3.4028235677973366e38]  # float32's largest; just past it
FLOATS = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(EDGES))


def _normalised(mean: list[float], std: list[float]) -> torch.Tensor:
    """What the network gets for an all-black and an all-white image."""
    x = torch.stack([torch.zeros(3, 2, 2), torch.ones(3, 2, 2)])
    return get_input("frame").normalize(x, DataConfig.model_construct(mean=mean, std=std))


@settings(max_examples=300, deadline=None)
@given(mean=st.lists(FLOATS, min_size=3, max_size=3), std=st.lists(FLOATS, min_size=3, max_size=3))
def test_mean_and_std_are_accepted_exactly_when_the_input_is_finite(mean, std) -> None:
    try:
        DataConfig(mean=mean, std=std)
    except ValidationError:
        accepted_by_config = False
    else:
        accepted_by_config = True
    meta = {**tiny_metadata(["a", "b"]), "format_version": FORMAT_VERSION}
    meta.update(mean=mean, std=std)
    try:
        check_metadata_values(meta, "m.safetensors")
    except WeightsError:
        accepted_by_checkpoint = False
    else:
        accepted_by_checkpoint = True
    # Accepted exactly when the network's input is finite for black and white images, every
    # value is a float32 number and std a normal positive one (a denormal std gives inputs
    # of 1e38 or inf; a negative one flips the image).
    f32 = np.finfo(np.float32)
    usable = (
        bool(_normalised(mean, std).isfinite().all())
        and all(abs(v) <= float(f32.max) for v in (*mean, *std))  # float32 numbers, not NaN
        and all(np.float32(s) >= f32.tiny for s in std)  # not zero, negative or denormal
    )
    assert accepted_by_config == accepted_by_checkpoint == usable


def _write(path: Path, meta: dict, state: dict[str, torch.Tensor] | None = None) -> Path:
    if state is None:
        model = create_model("seresnext_tiny", num_classes=2)
        state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path), metadata={METADATA_KEY: json.dumps(meta)})
    return path


def test_a_denormal_std_in_a_checkpoint_is_refused(tmp_path: Path) -> None:
    meta = {**tiny_metadata(["a", "b"]), "format_version": FORMAT_VERSION}
    meta["std"] = [0.229, 1e-40, 0.225]  # not zero in float64; zero-like in float32
    path = _write(tmp_path / "model.safetensors", meta)
    with pytest.raises(WeightsError, match="float32") as err:
        read_metadata(path)
    assert str(path) in str(err.value) and "Fix:" in str(err.value)


def test_a_denormal_std_in_a_config_is_refused() -> None:
    with pytest.raises(ConfigError, match="std"):
        load_config("demo", ["data.std=[0.2,1e-40,0.2]"])


def test_non_finite_weights_are_refused_on_load_naming_the_tensor(tmp_path: Path) -> None:
    model = create_model("seresnext_tiny", num_classes=2)
    state = {k: v.contiguous().clone() for k, v in model.state_dict().items()}
    name = next(k for k in state if k.endswith("running_var"))
    state[name].view(-1)[0] = float("nan")
    meta = {**tiny_metadata(["a", "b"]), "format_version": FORMAT_VERSION}
    path = _write(tmp_path / "model.safetensors", meta, state)
    with pytest.raises(WeightsError) as err:
        load_checkpoint(path)
    assert name in str(err.value) and str(path) in str(err.value)


def test_a_model_with_non_finite_weights_is_never_saved(tmp_path: Path) -> None:
    model = create_model("seresnext_tiny", num_classes=2)
    with torch.no_grad():
        next(model.parameters()).view(-1)[3] = float("inf")
    with pytest.raises(WeightsError, match="NaN or inf"):
        save_checkpoint(model, tiny_metadata(["a", "b"]), tmp_path / "m")
    assert not (tmp_path / "m" / "model.safetensors").exists()
