"""Protocols beyond LOSO (lodo, cross, loso within datasets): folds, config, runs, reports."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apexmer.config import load_config
from apexmer.data.sample import Sample
from apexmer.errors import ApexmerError, ConfigError, DataError
from apexmer.evaluation import folds as fold_unit
from apexmer.evaluation.protocol import run_loso
from apexmer.evaluation.splits import class_coverage, protocol_folds
from manifests import TINY_RUN, write_tiny_manifest

FAST = [*TINY_RUN, "train.epochs=1", "eval.bootstrap=200"]
THREE = ("casme2", "samm", "smic")


def _samples(spec: list[tuple[str, str]]) -> list[Sample]:
    return [Sample(d, s, f"c{i}", "happiness") for i, (d, s) in enumerate(spec)]


def test_lodo_on_the_composite_trains_each_fold_on_exactly_the_other_two() -> None:
    spec = [(d, f"s{j}") for d in THREE for j in range(4) for _ in range(3)]
    samples = _samples(spec)
    folds = protocol_folds(samples, "lodo")
    assert [f.name for f in folds] == list(THREE)
    ds = np.asarray([s.dataset for s in samples])
    for fold in folds:
        others = tuple(d for d in THREE if d != fold.name)
        assert fold.train_datasets == others and fold.test_datasets == (fold.name,)
        assert set(ds[fold.train_idx]) == set(others)
        assert set(ds[fold.test_idx]) == {fold.name}
        assert fold.test_idx.size == 12 and fold.train_idx.size == 24


MANIFESTS = st.lists(
    st.tuples(st.sampled_from(["casme2", "samm", "smic", "mmew"]), st.integers(0, 4)),
    min_size=2,
    max_size=50,
)


@settings(max_examples=80, deadline=None)
@given(MANIFESTS, st.data())
def test_no_test_subject_or_dataset_in_training(spec: list, data: st.DataObject) -> None:
    samples = _samples([(d, f"{d[0]}{s}") for d, s in spec])
    ds = np.asarray([s.dataset for s in samples])
    groups = np.asarray([s.group for s in samples])
    known = sorted(set(ds.tolist()))
    protocol = data.draw(st.sampled_from(["loso", "lodo", "cross"]))
    chosen = data.draw(st.lists(st.sampled_from(known), unique=True, min_size=1))
    kwargs: dict = {}
    if protocol == "cross":
        rest = [d for d in known if d not in chosen]
        if not rest:
            with pytest.raises(DataError):
                protocol_folds(samples, "cross", train_datasets=chosen, test_datasets=chosen)
            return
        kwargs = {
            "train_datasets": chosen,
            "test_datasets": rest,
            "both_ways": data.draw(st.booleans()),
        }
    else:
        kwargs = {"datasets": chosen}
    n_groups = len(set(groups[np.isin(ds, chosen)].tolist()))
    if (protocol == "lodo" and len(chosen) < 2) or (protocol == "loso" and n_groups < 2):
        with pytest.raises(DataError):
            protocol_folds(samples, protocol, **kwargs)
        return
    folds = protocol_folds(samples, protocol, **kwargs)
    tested = np.concatenate([f.test_idx for f in folds])
    for fold in folds:
        train, test = fold.train_idx, fold.test_idx
        assert np.intersect1d(train, test).size == 0
        assert not set(groups[test]) & set(groups[train])  # no test subject in training
        assert not set(ds[test]) & set(ds[train]) or protocol == "loso"  # nor its dataset
        assert set(ds[train]) <= set(fold.train_datasets)
        assert set(ds[test]) == set(fold.test_datasets)
    if protocol != "cross" or kwargs["both_ways"]:  # every chosen sample tested once
        inside = np.flatnonzero(np.isin(ds, [*chosen, *kwargs.get("test_datasets", [])]))
        assert sorted(tested.tolist()) == inside.tolist()


def test_cross_both_ways_and_unknown_names() -> None:
    samples = _samples([("casme2", "a"), ("casme2", "b"), ("samm", "c"), ("smic", "d")])
    folds = protocol_folds(samples, "cross", train_datasets=["casme2"], test_datasets=["samm"])
    assert [f.name for f in folds] == ["casme2->samm"]
    assert folds[0].train_idx.tolist() == [0, 1] and folds[0].test_idx.tolist() == [2]
    both = protocol_folds(
        samples, "cross", train_datasets=["casme2"], test_datasets=["samm"], both_ways=True
    )
    assert [f.name for f in both] == ["casme2->samm", "samm->casme2"]
    with pytest.raises(DataError, match=r"no dataset named 'casme'.*casme2, samm, smic"):
        protocol_folds(samples, "lodo", datasets=["casme"])
    sub = protocol_folds(samples, "loso", datasets=["casme2"])
    assert [f.name for f in sub] == ["casme2/a", "casme2/b"]
    assert sub[0].train_idx.tolist() == [1]  # samm and smic in neither set


def test_class_coverage_warns_in_one_line_or_refuses() -> None:
    samples = _samples([("casme2", "a")] * 3 + [("samm", "b")] * 3)
    labels = [0, 0, 1, 0, 1, 2]  # class 2 only in samm
    folds = protocol_folds(samples, "lodo")
    with pytest.raises(DataError, match="z are tested but have no training sample"):
        class_coverage(folds[1:], labels, ["x", "y", "z"])  # samm tested, casme2 trained
    folds = protocol_folds(samples, "cross", train_datasets=["samm"], test_datasets=["casme2"])
    line = class_coverage(folds, labels, ["x", "y", "z"])
    assert line is None  # samm -> casme2: casme2 holds x and y, both trained
    loso = protocol_folds(_samples([("d", "a"), ("d", "b"), ("d", "b")]), "loso")
    line = class_coverage(loso, [2, 0, 1], ["x", "y", "z"])
    assert line is not None and "\n" not in line and "z in 1 fold(s) (d/a)" in line


def test_config_keys_are_validated() -> None:
    cfg = load_config(
        "demo",
        [
            "eval.protocol=cross",
            "eval.train_datasets=[casme2]",
            "eval.test_datasets=[samm]",
            "eval.both_ways=true",
        ],
    )
    assert cfg.eval.protocol == "cross" and cfg.eval.bootstrap == 2000
    for bad, match in (
        (["eval.protocol=cross", "eval.train_datasets=[casme2]"], "needs train_datasets"),
        (["eval.train_datasets=[casme2]"], "belong to protocol cross"),
        (["eval.protocol=lopo"], "eval.protocol"),
        (["eval.bootstrap=50"], "at least 100"),
        (["eval.confidence=1.5"], "eval.confidence"),
    ):
        with pytest.raises(ConfigError, match=match):
            load_config("demo", bad)


@pytest.fixture(scope="module")
def corpora(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # 6 subjects, 3 corpora (2 subjects each), every class in every corpus
    return write_tiny_manifest(
        tmp_path_factory.mktemp("three"), subjects=6, per_subject=3, datasets=THREE
    )


@pytest.fixture(scope="module")
def lodo_run(corpora: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("lodo")
    run_loso(corpora, load_config("demo", [*FAST, "eval.protocol=lodo"]), out)
    return out


def test_lodo_run_names_its_folds_and_scores_each_dataset(lodo_run: Path) -> None:
    summary = json.loads((lodo_run / "summary.json").read_text())
    assert summary["protocol_name"] == "lodo" and summary["n_folds"] == 3
    assert "leave-one-dataset-out" in summary["protocol"]
    assert [(f["train_datasets"], f["test_datasets"]) for f in summary["folds"]] == [
        (["samm", "smic"], ["casme2"]),
        (["casme2", "smic"], ["samm"]),
        (["casme2", "samm"], ["smic"]),
    ]
    per = summary["per_corpus"]["datasets"]
    assert [(d["dataset"], d["n"], d["n_subjects"]) for d in per] == [
        ("casme2", 6, 2),
        ("samm", 6, 2),
        ("smic", 6, 2),
    ]
    for row in [summary, *per]:
        for m in ("accuracy", "uf1", "uar"):
            lo, hi = row[f"{m}_ci"]
            assert 0 <= lo <= hi <= 1
    assert summary["bootstrap"]["n_resamples"] == 200 and summary["n_subjects"] == 6


def _report_figures(text: str) -> set[str]:
    return set(re.findall(r"\d\.\d{4}", text))


@pytest.fixture(scope="module")
def loso_run(corpora: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("loso3")
    run_loso(corpora, load_config("demo", FAST), out)
    return out


@pytest.mark.parametrize("which", ["lodo_run", "loso_run"])
def test_summary_and_report_agree_on_every_figure(which: str, request) -> None:
    """issue 19 item 6: one function computes both; every figure of the report's headline,
    per-class, per-fold and per-corpus parts is summary.json's, and none is missing."""
    run = request.getfixturevalue(which)
    summary = json.loads((run / "summary.json").read_text())
    text = (run / "report.md").read_text()
    # the bug: per_corpus counted each corpus as one subject
    assert [d["n_subjects"] for d in summary["per_corpus"]["datasets"]] == [2, 2, 2]

    def f(x: float) -> str:
        return f"{x:.4f}"

    def ci(x: float, c: list) -> str:
        return f"{f(x)} [{f(c[0])}, {f(c[1])}]"

    assert f"**Accuracy**: {ci(summary['accuracy'], summary['accuracy_ci'])}" in text
    assert f"**UF1 (pooled)**: {ci(summary['uf1'], summary['uf1_ci'])}" in text
    assert f"**UAR**: {ci(summary['uar'], summary['uar_ci'])}" in text
    assert f"{f(summary['uf1_per_fold_mean'])}" in text
    for d in summary["per_corpus"]["datasets"]:
        row = (
            f"| {d['dataset']} | {d['n']} | {d['n_subjects']} | "
            f"{ci(d['accuracy'], d['accuracy_ci'])} | {ci(d['uf1'], d['uf1_ci'])} | "
            f"{ci(d['uar'], d['uar_ci'])} |"
        )
        assert row in text
    for fold in summary["folds"]:
        if summary["protocol_name"] == "loso":
            row = f"| {fold['fold']} | {fold['subject']} | {fold['n']} | {f(fold['accuracy'])} |"
        else:
            row = (
                f"| {fold['fold']} | {fold['subject']} | {'+'.join(fold['train_datasets'])} | "
                f"{'+'.join(fold['test_datasets'])} | {fold['n']} | {f(fold['accuracy'])} | "
                f"{f(fold['uf1'])} | {f(fold['uar'])} |"
            )
        assert row in text
    for c in summary["per_class"]:
        row = f"| {c['class']} | {f(c['precision'])} | {f(c['recall'])} | {f(c['f1'])} |"
        assert row in text
    # and the report holds no 4-decimal figure that summary.json lacks
    body = text.split("## Config")[0]
    in_summary = _report_figures(json.dumps(summary, default=str)) | {
        f(v) for v in _all_numbers(summary)
    }
    assert _report_figures(body) <= in_summary


def _all_numbers(obj: object) -> list[float]:
    if isinstance(obj, bool):
        return []
    if isinstance(obj, (int, float)):
        return [float(obj)]
    if isinstance(obj, dict):
        return [x for v in obj.values() for x in _all_numbers(v)]
    if isinstance(obj, list):
        return [x for v in obj for x in _all_numbers(v)]
    return []


def test_loso_within_a_dataset_and_cross(corpora: Path, tmp_path: Path) -> None:
    summary = run_loso(
        corpora, load_config("demo", [*FAST, "eval.datasets=[samm]"]), tmp_path / "loso"
    )
    assert summary["n_folds"] == 2 and summary["n_samples"] == 6
    assert summary["datasets"] == ["samm"] and "LOSO within samm" in summary["protocol"]
    assert summary["setting"]["dataset"] == "samm" and summary["setting"]["n_samples"] == 6
    cross = run_loso(
        corpora,
        load_config(
            "demo",
            [
                *FAST,
                "eval.protocol=cross",
                "eval.train_datasets=[casme2, samm]",
                "eval.test_datasets=[smic]",
            ],
        ),
        tmp_path / "cross",
    )
    assert [f["subject"] for f in cross["folds"]] == ["casme2+samm->smic"]
    assert cross["n_samples"] == 6 and cross["datasets"] == ["smic"]
    preds = pd.read_csv(tmp_path / "cross" / "predictions.csv")
    assert set(preds["dataset"]) == {"smic"}


def test_a_class_never_trained_is_refused(tmp_path: Path) -> None:
    manifest = write_tiny_manifest(tmp_path / "m", subjects=2, per_subject=3, datasets=("a", "b"))
    table = pd.read_csv(manifest)
    table.loc[table["dataset"] == "a", "label"] = "disgust"  # a holds one class only
    table.to_csv(manifest, index=False)
    cfg = load_config(
        "demo",
        [*FAST, "eval.protocol=cross", "eval.train_datasets=[a]", "eval.test_datasets=[b]"],
    )
    with pytest.raises(DataError, match="no training sample in any fold"):
        run_loso(manifest, cfg, tmp_path / "run")


def test_old_run_folders_resume_and_bootstrap_keys_only_rescore(
    lodo_run: Path, corpora: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    header = json.loads((lodo_run / "run.json").read_text())
    assert header["config"]["eval"] == {"protocol": "lodo", "oracle": False}
    default = run_loso(corpora, load_config("demo", FAST), tmp_path / "loso")
    run_json = json.loads((tmp_path / "loso" / "run.json").read_text())
    # the shape run.json had before the protocols existed: such a folder still resumes
    assert run_json["config"]["eval"] == {"protocol": "loso", "oracle": False}

    def never(*args, **kwargs):
        raise AssertionError("a finished fold was retrained")

    monkeypatch.setattr(fold_unit, "train_fold", never)
    more = run_loso(
        corpora,
        load_config("demo", [*FAST, "eval.protocol=lodo", "eval.bootstrap=400"]),
        lodo_run,
    )
    before = json.loads((lodo_run / "summary.json").read_text())
    assert more["bootstrap"]["n_resamples"] == 400 and more["uf1"] == before["uf1"]
    again = run_loso(corpora, load_config("demo", FAST), tmp_path / "loso")
    assert again["uf1_ci"] == default["uf1_ci"]  # same seed, same interval
    with pytest.raises(ApexmerError, match="different config"):
        run_loso(corpora, load_config("demo", [*FAST, "eval.protocol=lodo"]), tmp_path / "loso")
