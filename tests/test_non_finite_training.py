"""A NaN or infinite loss stops training with the fold, epoch and first offending sample
named, and nothing is written from it: no checkpoint, no fold record, no misleading error
on a rerun."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from apexmer.cli.main import app
from apexmer.config import load_config
from apexmer.errors import NonFiniteTraining
from apexmer.training.engine import check_weights, fit
from apexmer.training.packed import FoldData, fit_packed
from manifests import TINY_RUN, write_tiny_manifest

FLOW = [
    "data.input=flow",
    "data.flow_channels=[u,v,strain]",
    "model.name=seresnext_tiny",
    "data.input_size=16",
    "train.epochs=2",
    "train.batch_size=4",
    "train.threads=1",
]
DIVERGE = "optim.lr=1e12"  # SGD with this step size gives a NaN loss in the first epoch


def flows(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, 16, 16, generator=g).half()
    return x, torch.arange(n) % 3


@settings(max_examples=8, deadline=None)
@given(
    sample=st.integers(0, 7),
    pixel=st.tuples(st.integers(0, 2), st.integers(0, 15), st.integers(0, 15)),
    bad=st.sampled_from([float("nan"), float("inf"), float("-inf")]),
)
def test_any_non_finite_training_input_stops_fit_naming_the_sample(sample, pixel, bad) -> None:
    config = load_config("demo", FLOW)
    x, y = flows(8, 0)
    x[(sample, *pixel)] = bad
    with pytest.raises(NonFiniteTraining) as err:
        fit(config, x, y, 3, seed=0)
    assert err.value.epoch == 1 and err.value.sample_index == sample
    assert f"number {sample} of the training set" in str(err.value)


def test_a_packed_fold_with_a_non_finite_input_is_named_by_its_position() -> None:
    config = load_config("demo", FLOW)
    folds = [FoldData(*flows(8, seed), seed=seed) for seed in range(3)]
    folds[1].x[5, 0, 3, 3] = float("inf")
    with pytest.raises(NonFiniteTraining) as err:
        fit_packed(config, folds, 3)
    assert err.value.pack_index == 1 and err.value.sample_index == 5 and err.value.epoch == 1
    named = err.value.named("casme2/sub02", [f"k{i}" for i in range(8)])
    again = pickle.loads(pickle.dumps(named))  # as the process and ray executors pass it on
    assert str(again) == str(named) and "fold casme2/sub02, epoch 1" in str(again)
    assert "the first training sample with a non-finite input is k5" in str(again)


def test_non_finite_trained_weights_are_refused() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    check_weights(model, 3)  # finite: nothing happens
    model[1].running_var[1] = float("nan")
    with pytest.raises(NonFiniteTraining, match=r"epoch 3: the trained weight 1\.running_var"):
        check_weights(model, 3)


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_manifest(tmp_path_factory.mktemp("tiny"), subjects=3, per_subject=4)


@pytest.mark.parametrize("pack", [1, 3], ids=["one-fold", "packed"])
def test_loso_that_diverges_stops_naming_the_fold_and_a_rerun_says_the_same(
    manifest: Path, tmp_path: Path, pack: int
) -> None:
    out = tmp_path / "run"
    # One fold group at a time: under the default `auto` executor two processes race and
    # either failing fold may be the one reported.
    args = ["loso", "--data", str(manifest), "--config", "demo", "--out", str(out)]
    args += ["--executor", "local"]
    for item in [*TINY_RUN, DIVERGE, "train.epochs=1", f"train.pack_folds={pack}"]:
        args += ["--set", item]
    for _ in range(2):  # a rerun meets the same clear error, not "changed while this run"
        result = CliRunner().invoke(app, args)
        assert isinstance(result.exception, NonFiniteTraining), result.output
        text = str(result.exception)
        assert "fold casme2/sub01, epoch 1" in text and "lower optim.lr" in text
        assert not list((out / "folds").glob("fold_*.json*"))


def test_train_that_diverges_writes_no_checkpoint(manifest: Path, tmp_path: Path) -> None:
    args = ["train", "--data", str(manifest), "--config", "demo", "--out", str(tmp_path / "m")]
    for item in [*TINY_RUN, DIVERGE]:
        args += ["--set", item]
    (manifest.parent / "preprocess.json").write_text('{"preprocess": {}, "version": "t"}')
    result = CliRunner().invoke(app, args)
    assert isinstance(result.exception, NonFiniteTraining), result.output
    assert "epoch 1" in str(result.exception)
    assert not (tmp_path / "m").exists() or not any((tmp_path / "m").iterdir())
