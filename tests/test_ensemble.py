"""Ensembles (``train.ensemble``) and test-time augmentation (``eval.tta``): members' seeds,
packed members equal members trained alone, LOSO outputs, checkpoint round trip, the
flow-aware test-time flip."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score
from typer.testing import CliRunner

from apexmer.cli.main import app
from apexmer.config import load_config
from apexmer.errors import ConfigError, WeightsError
from apexmer.evaluation.folds import fold_groups, train_fold, train_fold_group
from apexmer.evaluation.paper import recipe_differences
from apexmer.evaluation.protocol import run_loso
from apexmer.evaluation.splits import loso_folds
from apexmer.inference import Predictor
from apexmer.models.ensemble import Ensemble
from apexmer.models.registry import create_model
from apexmer.preprocess.pipeline import PreprocessConfig
from apexmer.training.augment import AugmentConfig, augment_batch, hflip
from apexmer.training.checkpoint import load_checkpoint, read_metadata, save_checkpoint
from apexmer.training.dataset import load_manifest_data
from apexmer.training.engine import fit, member_seed, predict_proba, seed_for
from apexmer.training.inputs import get_input, input_metadata, prepare_batch
from apexmer.training.members import fit_ensemble
from manifests import CLASSES, TINY_RUN, write_tiny_manifest

# lr 1e-4 (test_packed): Adam turns rounding differences of packed kernels into ~lr steps.
SLOW_LR = [*TINY_RUN, "optim.lr=1e-4"]


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_manifest(tmp_path_factory.mktemp("tiny"))


# ---------------------------------------------------------------- config and seeds


def test_options_are_validated_and_settable() -> None:
    cfg = load_config("demo", ["train.ensemble=3", "eval.tta=hflip"])
    assert cfg.train.ensemble == 3 and cfg.eval.tta == "hflip"
    default = load_config("demo")
    assert default.train.ensemble == 1 and default.eval.tta == "none"
    with pytest.raises(ConfigError, match=r"train\.ensemble"):
        load_config("demo", ["train.ensemble=0"])
    with pytest.raises(ConfigError, match=r"eval\.tta"):
        load_config("demo", ["eval.tta=vflip"])


def test_member_seeds_are_distinct_and_member_zero_is_the_network_itself() -> None:
    cfg = load_config("demo", ["train.seed=3"])
    fold_seeds = [seed_for(cfg, f) for f in range(68)]
    assert all(member_seed(s, 0) == s for s in fold_seeds)
    seeds = [member_seed(s, m) for s in fold_seeds for m in range(8)]
    assert len(set(seeds)) == len(seeds)  # no two networks of a run share a seed


def test_an_ensemble_of_one_is_plain_fit(manifest: Path) -> None:
    cfg = load_config("demo", TINY_RUN)
    data = load_manifest_data(manifest, cfg.data)
    (alone,) = fit_ensemble(cfg, data.inputs, data.labels, len(CLASSES), seed=5)
    ref = fit(cfg, data.inputs, data.labels, len(CLASSES), seed=5)
    assert alone.history == ref.history
    for key, value in ref.model.state_dict().items():
        assert torch.equal(alone.model.state_dict()[key], value), key


# ---------------------------------------------------------------- packing


def test_fold_groups_count_networks_not_folds(manifest: Path) -> None:
    folds = loso_folds([f"s{i}" for i in range(10)])
    assert [len(g) for g in fold_groups(folds, folds, 8, 3)] == [2, 2, 2, 2, 2]
    assert [len(g) for g in fold_groups(folds, folds, 8, 1)] == [8, 2]
    assert [len(g) for g in fold_groups(folds, folds, 2, 3)] == [1] * 10


def test_packed_ensemble_members_equal_members_trained_one_at_a_time(manifest: Path) -> None:
    """2 folds x 3 members as ONE packed network of 6 give each member what training it
    alone gives (float rounding aside): same seeds, batches, augmentation, steps."""
    config = load_config("demo", [*SLOW_LR, "train.ensemble=3"])
    data = load_manifest_data(manifest, config.data)
    folds = loso_folds(data.groups)[:2]
    packed_config = load_config("demo", [*SLOW_LR, "train.ensemble=3", "train.pack_folds=6"])
    packed = train_fold_group(data, folds, packed_config)
    for fold, got in zip(folds, packed, strict=True):
        want = train_fold(data, fold, config)  # pack_folds 1: each member alone
        got_m, want_m = np.array(got["member_probs"]), np.array(want["member_probs"])
        assert got_m.shape == want_m.shape == (3, len(fold.test_idx), len(CLASSES))
        np.testing.assert_allclose(got_m, want_m, atol=2e-3)
        # The members are different networks (their seeds differ) ...
        assert np.abs(want_m[0] - want_m[1]).max() > 1e-2
        # ... and the fold's probabilities are their mean.
        np.testing.assert_allclose(np.array(want["probs"]), want_m.mean(0), atol=2e-6)
        for m in range(3):  # each member's own history: same steps, same accuracies
            rows = [h for h in got["history"] if h["member"] == m]
            ref = [h for h in want["history"] if h["member"] == m]
            assert [h["train_acc"] for h in rows] == [h["train_acc"] for h in ref]
            assert rows[-1]["loss"] == pytest.approx(ref[-1]["loss"], rel=1e-2)


# ---------------------------------------------------------------- LOSO outputs


def test_loso_ensemble_keeps_members_and_reports_their_spread(
    manifest: Path, tmp_path: Path
) -> None:
    cfg = load_config("demo", [*TINY_RUN, "train.ensemble=2", "train.pack_folds=4"])
    summary = run_loso(manifest, cfg, tmp_path / "run")
    preds = pd.read_csv(tmp_path / "run" / "predictions.csv")
    ens = np.stack([preds[f"prob_{c}"] for c in CLASSES], 1)
    members = [np.stack([preds[f"prob_{c}_m{m}"] for c in CLASSES], 1) for m in range(2)]
    np.testing.assert_allclose(ens, np.mean(members, axis=0), atol=2e-6)
    assert (preds["y_pred"].to_numpy() == ens.argmax(1)).all()
    y = preds["y_true"].to_numpy()
    assert summary["uf1"] == pytest.approx(f1_score(y, ens.argmax(1), average="macro"))
    block = summary["ensemble"]
    assert block["members"] == 2
    for m, row in enumerate(block["member_scores"]):
        p = members[m].argmax(1)
        assert row["member"] == m
        assert row["uf1"] == pytest.approx(
            f1_score(y, p, average="macro", labels=range(len(CLASSES)), zero_division=0)
        )
        assert row["uar"] == pytest.approx(balanced_accuracy_score(y, p))
        assert row["accuracy"] == pytest.approx(accuracy_score(y, p))
    uf1s = [r["uf1"] for r in block["member_scores"]]
    assert block["spread"]["uf1"]["min"] == min(uf1s)
    assert block["spread"]["uf1"]["max"] == max(uf1s)
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["ensemble"] == block
    report = (tmp_path / "run" / "report.md").read_text()
    assert "**Ensemble**: 2 networks per fold" in report
    history = pd.read_csv(tmp_path / "run" / "history.csv")
    assert sorted(history["member"].unique()) == [0, 1]
    assert len(history) == 4 * 2 * cfg.train.epochs  # folds x members x epochs


def test_single_network_runs_have_no_member_columns(manifest: Path, tmp_path: Path) -> None:
    summary = run_loso(manifest, load_config("demo", [*TINY_RUN, "train.epochs=1"]), tmp_path)
    preds = pd.read_csv(tmp_path / "predictions.csv")
    assert not [c for c in preds if "_m0" in c]
    assert summary["ensemble"] == {"members": 1}
    assert "**Ensemble**" not in (tmp_path / "report.md").read_text()


def test_oracle_mode_chooses_the_epoch_of_the_ensemble(manifest: Path, tmp_path: Path) -> None:
    cfg = load_config("demo", [*TINY_RUN, "train.ensemble=2", "eval.oracle=true"])
    summary = run_loso(manifest, cfg, tmp_path)
    assert summary["oracle"] and summary["ensemble"]["members"] == 2
    for path in sorted((tmp_path / "folds").glob("fold_*.json")):
        record = json.loads(path.read_text())
        members = np.array(record["member_probs"])
        np.testing.assert_allclose(np.array(record["probs"]), members.mean(0), atol=2e-6)
        assert 1 <= record["epoch_used"] <= cfg.train.epochs


def test_paper_comparison_names_ensemble_and_tta_as_recipe_differences() -> None:
    assert recipe_differences({"ensemble": 3, "tta": "hflip"}) == [
        "ensemble 3 (paper 1)",
        "tta hflip (paper none)",
    ]
    assert recipe_differences({"ensemble": 1, "tta": "none"}) == []


# ---------------------------------------------------------------- test-time flip


def _flow_config(channels: str = "[u, v, strain]") -> object:
    return load_config(
        "demo", ["data.input=flow", f"data.flow_channels={channels}", "data.input_size=16"]
    )


@pytest.mark.parametrize("channels", ["[u, v, strain]", "[v, strain, u]"])
def test_tta_flip_of_a_flow_is_the_mirror_with_negated_u(channels: str) -> None:
    cfg = _flow_config(channels)
    names = tuple(cfg.data.flow_channels)
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0)).half()
    f = x.float().numpy()
    want = np.empty_like(f)
    for b in range(2):
        for c, name in enumerate(names):
            for i in range(16):
                for j in range(16):  # column j of the mirror is column 15 - j of the input
                    value = f[b, c, i, 15 - j]
                    want[b, c, i, j] = -value if name == "u" else value  # strain as is
    u = names.index("u")
    assert np.array_equal(hflip(x.float(), u).numpy(), want)
    kind = get_input("flow")
    got = prepare_batch(x, cfg, mirror=True)
    np.testing.assert_array_equal(got.numpy(), kind.normalize(torch.from_numpy(want), cfg.data))
    # Training's flip is the same function.
    aug = AugmentConfig(grayscale_p=0, hflip_p=1.0, rotation_deg=0, u_channel=u, v_channel=None)
    assert np.array_equal(augment_batch(x.float(), aug).numpy(), want)


def test_tta_flip_of_images_is_a_plain_mirror() -> None:
    cfg = load_config("demo", TINY_RUN)  # diff input: RGB images
    x = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    want = prepare_batch(x.flip(-1), cfg)
    assert torch.equal(prepare_batch(x, cfg, mirror=True), want)


def test_tta_averages_both_views_and_is_mirror_invariant() -> None:
    cfg = load_config("demo", ["data.input_size=28", "eval.tta=hflip"])  # flow, SSSNet
    plain = load_config("demo", ["data.input_size=28"])
    torch.manual_seed(0)
    model = create_model("sssnet", num_classes=3, in_chans=3, input_size=28).eval()
    x = torch.randn(5, 3, 28, 28, generator=torch.Generator().manual_seed(1)).half()
    with torch.no_grad():
        views = [model(prepare_batch(x, plain, mirror=m)).softmax(1) for m in (False, True)]
    got = predict_proba(model, x, cfg)
    np.testing.assert_allclose(got, ((views[0] + views[1]) / 2).numpy(), atol=1e-7)
    assert np.abs(got - predict_proba(model, x, plain)).max() > 1e-4  # the flip counts
    # A mirrored input (u negated, as stored) gets the same averaged prediction.
    mirrored = hflip(x.float(), 0).half()
    np.testing.assert_allclose(predict_proba(model, mirrored, cfg), got, atol=1e-6)


# ---------------------------------------------------------------- checkpoints


def _members(k: int, seed: int = 0) -> list[torch.nn.Module]:
    out = []
    for m in range(k):
        torch.manual_seed(seed + m)
        net = create_model("seresnext_tiny", num_classes=len(CLASSES)).eval()
        for module in net.modules():  # non-trivial BatchNorm statistics round-trip too
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
        out.append(net)
    return out


def _preprocess(align: int) -> dict:
    """Default preprocessing settings with ``align`` px crops."""
    settings = PreprocessConfig().to_dict()
    settings["align"]["size"] = align
    return settings


def _metadata(k: int, tta: str, align: int = 32) -> dict:
    return {
        "architecture": "seresnext_tiny",
        "classes": list(CLASSES),
        "num_classes": len(CLASSES),
        "input_size": 32,
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "frame": "apex",
        "input": input_metadata(load_config("demo", ["data.input=frame"]).data),
        "preprocess": _preprocess(align),
        "config": {"train": {"threads": 1, "eval_batch_size": 8}},
        "ensemble": k,
        "tta": tta,
    }


@pytest.mark.parametrize("tta", ["none", "hflip"])
def test_ensemble_checkpoint_round_trip_gives_identical_probabilities(
    tmp_path: Path, tta: str
) -> None:
    members = _members(3)
    ensemble = Ensemble(members)
    cfg = load_config(
        "demo",
        ["data.input=frame", "model.name=seresnext_tiny", "data.input_size=32", f"eval.tta={tta}"],
    )
    x = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    before = predict_proba(ensemble, x, cfg)
    alone = [predict_proba(m, x, cfg) for m in members]
    np.testing.assert_allclose(before, np.mean(alone, axis=0), atol=1e-6)
    save_checkpoint(ensemble, _metadata(3, tta), tmp_path / "ck")
    loaded, meta = load_checkpoint(tmp_path / "ck")
    assert isinstance(loaded, Ensemble) and len(loaded.members) == 3
    assert meta["ensemble"] == 3 and meta["tta"] == tta
    assert np.array_equal(predict_proba(loaded, x, cfg), before)
    # The Predictor follows the checkpoint: all members, its test-time flip.
    predictor = Predictor.from_checkpoint(tmp_path / "ck")
    assert predictor.config.eval.tta == tta
    assert np.array_equal(predictor.predict_inputs(list(x.numpy())), before)


def test_wrong_member_count_is_one_clear_error(tmp_path: Path) -> None:
    save_checkpoint(Ensemble(_members(2)), _metadata(2, "none"), tmp_path / "ck")
    meta = read_metadata(tmp_path / "ck")
    path = tmp_path / "ck" / "model.safetensors"
    from safetensors.torch import load_file, save_file

    save_file(
        load_file(str(path)), str(path), metadata={"apexmer": json.dumps({**meta, "ensemble": 3})}
    )
    with pytest.raises(WeightsError, match="3 x seresnext_tiny"):
        load_checkpoint(tmp_path / "ck")


def test_train_cli_writes_all_members_into_one_checkpoint(manifest: Path, tmp_path: Path) -> None:
    settings = {"preprocess": _preprocess(32)}
    (manifest.parent / "preprocess.json").write_text(json.dumps(settings))
    args = ["train", "--data", str(manifest), "--config", "demo", "--out", str(tmp_path)]
    for item in [*SLOW_LR, "train.ensemble=2", "train.pack_folds=2", "eval.tta=hflip"]:
        args += ["--set", item]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "trained 2 x seresnext_tiny, test-time flip" in result.output
    meta = read_metadata(tmp_path)
    assert meta["ensemble"] == 2 and meta["tta"] == "hflip"
    assert {row["member"] for row in meta["history"]} == {0, 1}
    from safetensors.torch import load_file

    keys = load_file(str(tmp_path / "model.safetensors")).keys()
    assert {k.split(".")[1] for k in keys} == {"0", "1"} and all(
        k.startswith("members.") for k in keys
    )
    # The deployable members are those of fit with the member seeds (packed: rounding).
    cfg = load_config("demo", [*SLOW_LR, "eval.tta=hflip"])
    data = load_manifest_data(manifest, cfg.data)
    loaded, _ = load_checkpoint(tmp_path)
    for m, member in enumerate(loaded.members):
        ref = fit(cfg, data.inputs, data.labels, len(CLASSES), member_seed(cfg.train.seed, m))
        np.testing.assert_allclose(
            predict_proba(member, data.inputs, cfg),
            predict_proba(ref.model, data.inputs, cfg),
            atol=2e-3,  # packed kernels sum in another order (test_packed)
        )
    predictor = Predictor.from_checkpoint(tmp_path)
    want = np.mean([predict_proba(m, data.inputs, cfg) for m in loaded.members], axis=0)
    np.testing.assert_allclose(predictor.predict_inputs(list(data.inputs.numpy())), want, atol=1e-6)


def test_web_app_serves_the_ensemble_with_its_test_time_flip(tmp_path: Path) -> None:
    pytest.importorskip("fastapi", reason="the serve extra (fastapi) is not installed")
    from fastapi.testclient import TestClient

    from apexmer.serving.app import create_app
    from test_predictor import synthetic_clip
    from test_serving import LIMITS, zip_bytes

    torch.set_num_threads(1)
    save_checkpoint(Ensemble(_members(2)), _metadata(2, "hflip", align=64), tmp_path / "ck")
    predictor = Predictor.from_checkpoint(tmp_path / "ck")
    clip = synthetic_clip(seed=2)
    # The upload below holds JPEGs (test_serving.zip_bytes): the Predictor gets the same.
    quality = [cv2.IMWRITE_JPEG_QUALITY, 95]
    jpegs = [cv2.imdecode(cv2.imencode(".jpg", f, quality)[1], cv2.IMREAD_COLOR) for f in clip]
    (want,) = predictor.predict_clips(jpegs)
    members = [
        predict_proba(m, torch.from_numpy(want.stored_input[None]), predictor.config)[0]
        for m in predictor.model.members
    ]
    np.testing.assert_allclose(want.probs, np.mean(members, axis=0), atol=1e-6)
    with TestClient(create_app(predictor, LIMITS)) as client:
        model = client.get("/api/model").json()
        assert model["ensemble"] == 2 and model["tta"] == "hflip"
        files = {"file": ("frames.zip", zip_bytes(clip), "application/zip")}
        body = client.post("/api/predict", files=files).json()
    got = [p["p"] for p in body["probabilities"]]
    np.testing.assert_allclose(got, want.probs, atol=1e-6)
