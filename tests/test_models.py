"""Networks: parameter counts, timm/torchvision key names, gradients, weight loading, CLI."""

from __future__ import annotations

import inspect
import json
import pickle

import pytest
import torch
import typer
from typer.testing import CliRunner

from apexmer.cli.models import register
from apexmer.errors import ApexmerError, WeightsError
from apexmer.models import (
    SEModule,
    count_parameters,
    create_model,
    describe_models,
    list_models,
    load_pretrained,
    model_info,
    register_model,
    save_weights,
)
from apexmer.models.weights import read_state_dict

FULL = ("resnet50", "resnext50_32x4d", "seresnext50_32x4d")
COUNTS_5 = {"resnet50": 23_518_277, "resnext50_32x4d": 22_990_149, "seresnext50_32x4d": 25_521_141}
BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def expected_keys(layers: tuple[int, ...] = (3, 4, 6, 3), se: bool = False) -> list[str]:
    """torchvision's / timm's state-dict names, written out independently of our code."""
    keys = ["conv1.weight", *(f"bn1.{s}" for s in BN)]
    for stage, depth in enumerate(layers, start=1):
        for j in range(depth):
            p = f"layer{stage}.{j}."
            for c in (1, 2, 3):
                keys += [f"{p}conv{c}.weight", *(f"{p}bn{c}.{s}" for s in BN)]
            if se:
                keys += [
                    f"{p}se.fc1.weight",
                    f"{p}se.fc1.bias",
                    f"{p}se.fc2.weight",
                    f"{p}se.fc2.bias",
                ]
            if j == 0:
                keys += [f"{p}downsample.0.weight", *(f"{p}downsample.1.{s}" for s in BN)]
    return [*keys, "fc.weight", "fc.bias"]


def meta_model(name: str, num_classes: int = 5) -> torch.nn.Module:
    with torch.device("meta"):  # shapes only, instant
        return create_model(name, num_classes=num_classes)


def fake_weights(name: str, num_classes: int) -> dict[str, torch.Tensor]:
    """A state dict shaped like ``name``'s (e.g. ImageNet weights), random values."""
    g = torch.Generator().manual_seed(0)
    sd = meta_model(name, num_classes).state_dict()
    return {
        k: (
            torch.randn(v.shape, generator=g)
            if v.is_floating_point()
            else torch.zeros(v.shape, dtype=v.dtype)
        )
        for k, v in sd.items()
    }


@pytest.fixture(scope="module")
def resnet50_imagenet_file(tmp_path_factory: pytest.TempPathFactory):
    """An ImageNet-style resnet50 .pth (1000 classes), keys in torchvision order."""
    sd = fake_weights("resnet50", 1000)
    sd = {k: sd[k] for k in expected_keys()}  # fails here if a torchvision key is absent
    path = tmp_path_factory.mktemp("w") / "resnet50_imagenet.pth"
    torch.save(sd, path)
    return path, sd


# ---- architecture -----------------------------------------------------------------------


@pytest.mark.parametrize("name", FULL)
def test_parameter_counts_match_paper(name: str) -> None:
    assert count_parameters(meta_model(name)) == COUNTS_5[name]


def test_describe_models_and_tiny_variant() -> None:
    rows = {r["name"]: r["params"] for r in describe_models(num_classes=5)}
    assert {k: rows[k] for k in FULL} == COUNTS_5
    assert set(rows) == set(list_models())
    assert rows["seresnext_tiny"] < 500_000


@pytest.mark.parametrize(
    "name,se", [("resnet50", False), ("resnext50_32x4d", False), ("seresnext50_32x4d", True)]
)
def test_state_dict_names_follow_torchvision_and_timm(name: str, se: bool) -> None:
    sd = meta_model(name).state_dict()
    assert list(sd) == expected_keys(se=se)
    assert len(sd) == (384 if se else 320)
    assert "layer4.2.downsample.0.weight" not in sd


def test_canonical_shapes_of_seresnext50() -> None:
    sd = meta_model("seresnext50_32x4d").state_dict()
    assert sd["conv1.weight"].shape == (64, 3, 7, 7)
    assert sd["layer1.0.conv2.weight"].shape == (128, 4, 3, 3)  # 32 groups of 4
    assert sd["layer1.0.se.fc1.weight"].shape == (16, 256, 1, 1)  # SE fc [16, 256]
    assert sd["layer4.0.se.fc1.weight"].shape == (128, 2048, 1, 1)  # SE fc [128, 2048]
    assert sd["layer1.0.downsample.0.weight"].shape == (256, 64, 1, 1)
    assert sd["fc.weight"].shape == (5, 2048)


@pytest.mark.parametrize("name", ["resnet50", "resnext50_32x4d"])
def test_full_network_forward_shapes(name: str) -> None:
    model = create_model(name).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        feats = model.forward_features(x)
        assert feats.shape == (1, 2048, 2, 2)  # stride 32
        assert model.forward_head(feats).shape == (1, 5)
        assert model.forward_head(feats, pre_logits=True).shape == (1, model.num_features)


def test_seresnext50_trains_every_parameter() -> None:
    torch.manual_seed(0)
    model = create_model("seresnext50_32x4d").train()
    out = model(torch.randn(2, 3, 64, 64))  # batch 2, the paper's
    assert out.shape == (2, 5)
    out.square().sum().backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert no_grad == []


def test_tiny_trains_every_parameter_channels_last() -> None:
    torch.manual_seed(0)
    model = create_model("seresnext_tiny").train()
    x = torch.randn(2, 3, 64, 64)
    model(x).square().sum().backward()
    assert all(p.grad is not None and p.grad.any() for p in model.parameters())
    model.eval()
    with torch.no_grad():
        ref = model(x)
        cl = model.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(cl, ref, rtol=1e-4, atol=1e-5)


def test_se_module_scales_channels() -> None:
    se = SEModule(256)
    assert se.fc1.out_channels == 16 and isinstance(se.bn, torch.nn.Identity)
    x = torch.rand(2, 256, 5, 5)
    with torch.no_grad():
        gate = torch.sigmoid(se.fc2(torch.relu(se.fc1(x.mean((2, 3), keepdim=True)))))
        torch.testing.assert_close(se(x), x * gate)


def test_se_sits_on_residual_branch_before_addition() -> None:
    block = create_model("seresnext_tiny").layer2[0].eval()
    x = torch.randn(1, 64, 8, 8)
    with torch.no_grad():
        block.se.fc2.weight.zero_()
        block.se.fc2.bias.fill_(-100.0)  # gate ~ 0: the residual branch vanishes
        torch.testing.assert_close(block(x), torch.relu(block.downsample(x)))


def test_zero_init_last_makes_blocks_start_as_shortcut() -> None:
    model = create_model("seresnext_tiny", zero_init_last=True).eval()
    block = model.layer3[0]
    x = torch.randn(1, 128, 4, 4)
    with torch.no_grad():
        torch.testing.assert_close(block(x), torch.relu(block.downsample(x)))
    assert not create_model("seresnext_tiny").layer3[0].bn3.weight.eq(0).all()


def test_reset_classifier_and_metadata() -> None:
    model = create_model("seresnext_tiny", num_classes=3)
    assert model.fc.out_features == 3
    model.reset_classifier(7)
    assert model.fc.out_features == 7 and model.num_classes == 7
    info = model_info("seresnext50_32x4d")
    assert info.input_size == (3, 224, 224)
    assert info.mean == (0.485, 0.456, 0.406) and info.std == (0.229, 0.224, 0.225)
    assert model.model_info.name == "seresnext_tiny"


def test_unknown_model_lists_choices() -> None:
    with pytest.raises(ApexmerError, match="seresnext50_32x4d"):
        create_model("seresnet50")


def test_register_twice_is_refused() -> None:
    def resnet50(num_classes: int = 5) -> torch.nn.Module:  # name already registered
        raise AssertionError

    with pytest.raises(ValueError, match="twice"):
        register_model(resnet50)


# ---- weights ----------------------------------------------------------------------------


def test_imagenet_file_loads_strictly_and_head_is_replaced(resnet50_imagenet_file) -> None:
    path, sd = resnet50_imagenet_file
    model = create_model("resnet50", num_classes=5)
    fresh_fc = model.fc.weight.detach().clone()
    report = load_pretrained(model, path)  # strict=True
    assert report.replaced_head == ["fc.weight", "fc.bias"]
    assert report.loaded == len(sd) - 2
    own = model.state_dict()
    for key in (
        "conv1.weight",
        "layer1.0.conv2.weight",
        "layer4.2.bn3.running_var",
        "layer1.0.downsample.1.running_mean",
    ):
        torch.testing.assert_close(own[key], sd[key])
    torch.testing.assert_close(model.fc.weight, fresh_fc)


def test_wrong_architecture_lists_keys_and_cause(resnet50_imagenet_file) -> None:
    path, _ = resnet50_imagenet_file
    model = meta_model("seresnext50_32x4d")  # checked before any tensor is copied
    with pytest.raises(WeightsError) as info:
        load_pretrained(model, path)
    msg = str(info.value)
    assert str(path) in msg
    assert "missing keys: 64 [layer1.0.se.fc1.weight" in msg
    assert "shape-mismatched keys" in msg and "layer1.0.conv2.weight" in msg
    assert "looks like resnet50 but the model is seresnext50_32x4d" in msg


@pytest.mark.parametrize(
    "wrap", ["safetensors", "raw", "state_dict", "model", "model_state_dict", "ddp"]
)
def test_weight_formats_round_trip(tmp_path, wrap: str) -> None:
    src = create_model("seresnext_tiny")
    with torch.no_grad():
        src.layer1[0].bn1.running_mean.add_(1.0)
    sd = src.state_dict()
    if wrap == "safetensors":
        path = save_weights(src, tmp_path / "w.safetensors")
    else:
        obj = {f"module.{k}": v for k, v in sd.items()} if wrap == "ddp" else sd
        if wrap not in ("raw", "ddp"):
            obj = {wrap: obj, "epoch": 3}
        path = tmp_path / "w.pth"
        torch.save(obj, path)
    dst = create_model("seresnext_tiny")
    report = load_pretrained(dst, path)
    assert report.replaced_head == [] and report.loaded == len(sd)
    for k, v in dst.state_dict().items():
        torch.testing.assert_close(v, sd[k])


def test_create_model_with_pretrained_path_and_metadata(tmp_path) -> None:
    path = save_weights(
        create_model("seresnext_tiny", num_classes=1000), tmp_path / "tiny.safetensors"
    )
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    assert meta["apexmer_model"] == "seresnext_tiny" and meta["num_classes"] == "1000"
    assert json.loads(meta["mean"]) == [0.485, 0.456, 0.406]
    model = create_model("seresnext_tiny", num_classes=5, pretrained_path=path)
    assert model.fc.out_features == 5


def test_old_files_without_num_batches_tracked_load(tmp_path) -> None:
    sd = {
        k: v
        for k, v in create_model("seresnext_tiny").state_dict().items()
        if not k.endswith("num_batches_tracked")
    }
    torch.save(sd, tmp_path / "old.pt")
    assert load_pretrained(create_model("seresnext_tiny"), tmp_path / "old.pt").missing == []


def test_non_strict_reports_instead_of_raising(tmp_path) -> None:
    sd = create_model("seresnext_tiny").state_dict()
    sd.pop("layer1.0.se.fc1.bias")
    sd["extra.weight"] = torch.zeros(1)
    sd["layer1.0.conv1.weight"] = torch.zeros(1, 1, 1, 1)
    torch.save(sd, tmp_path / "w.pth")
    with pytest.raises(WeightsError, match=r"extra\.weight"):
        load_pretrained(create_model("seresnext_tiny"), tmp_path / "w.pth")
    report = load_pretrained(create_model("seresnext_tiny"), tmp_path / "w.pth", strict=False)
    assert report.missing == ["layer1.0.se.fc1.bias"]
    assert report.unexpected == ["extra.weight"]
    assert report.mismatched[0].startswith("layer1.0.conv1.weight (1, 1, 1, 1)")


class _Payload:  # not a tensor: must never be unpickled
    def __reduce__(self):
        return (print, ("unpickled!",))


@pytest.mark.parametrize(
    "content,match",
    [
        (None, "no such weights file"),
        (b"not a checkpoint", "not a PyTorch weights file"),
        ("pickle", "Python objects"),
        ("list", "not a state dict"),
        ("mixed", "not tensors"),
    ],
)
def test_bad_files_raise_weights_error(tmp_path, content, match: str) -> None:
    path = tmp_path / "w.pth"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content == "pickle":
        torch.save({"conv1.weight": torch.zeros(1), "obj": _Payload()}, path)
    elif content == "list":
        torch.save([torch.zeros(1)], path)
    elif content == "mixed":
        torch.save({"conv1.weight": torch.zeros(1), "epoch": 3}, path)
    with pytest.raises(WeightsError, match=match) as info:
        read_state_dict(path)
    assert str(path) in str(info.value)


def test_bad_safetensors_file(tmp_path) -> None:
    path = tmp_path / "w.safetensors"
    path.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(WeightsError, match="safetensors"):
        read_state_dict(path)


# ---- CLI --------------------------------------------------------------------------------


def test_cli_models_json_and_table() -> None:
    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """root"""

    register(app)
    runner = CliRunner()
    result = runner.invoke(app, ["models", "--json", "--num-classes", "5"])
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r["params"] for r in json.loads(result.output)}
    assert rows["seresnext50_32x4d"] == 25_521_141
    table = runner.invoke(app, ["models"])
    assert table.exit_code == 0 and "25,521,141" in table.output


def test_sized_by_input_matches_the_constructors() -> None:
    # The registry flag says which factories take ``input_size``; it must match the code.
    from apexmer.models.registry import _FACTORIES, list_models

    for name in list_models():
        with torch.device("meta"):
            model = _FACTORIES[name](num_classes=2)
        takes = "input_size" in inspect.signature(type(model).__init__).parameters
        assert model_info(name).sized_by_input is takes, name
