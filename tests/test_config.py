"""Config: presets load and validate, overrides apply, bad values name the key."""

from __future__ import annotations

import pytest

from apexmer.config import Config, apply_override, config_to_dict, list_presets, load_config
from apexmer.errors import ConfigError


def test_paper_preset_is_the_papers_setting() -> None:
    cfg = load_config("paper")
    assert cfg.model.name == "seresnext50_32x4d"
    assert cfg.data.input_size == 224 and cfg.data.frame == "apex"
    assert cfg.optim.name == "adam" and cfg.optim.lr == pytest.approx(1e-4)
    assert cfg.train.batch_size == 2 and cfg.train.epochs == 100
    assert cfg.loss.name == "focal" and cfg.eval.oracle is False


def test_presets_listed_and_demo_is_small() -> None:
    assert {"paper", "demo"} <= set(list_presets())
    demo = load_config("demo")
    assert demo.data.input_size < 224 and demo.train.epochs < 100


def test_dotted_overrides_parse_yaml_values() -> None:
    cfg = load_config(
        "paper",
        [
            "train.epochs=5",
            "loss.alpha=[1, 2, 3, 4, 5]",
            "model.weights=/tmp/w.pth",
            "eval.oracle=true",
        ],
    )
    assert cfg.train.epochs == 5
    assert cfg.loss.alpha == [1, 2, 3, 4, 5]
    assert cfg.model.weights == "/tmp/w.pth"
    assert cfg.eval.oracle is True


@pytest.mark.parametrize(
    "override, key",
    [
        ("train.epochs=0", "train.epochs"),
        ("train.epochz=3", "train.epochz"),
        ("data.frame=peak", "data.frame"),
        ("optim.lr=-1", "optim.lr"),
    ],
)
def test_bad_overrides_name_the_key(override: str, key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config("paper", [override])


def test_override_without_equals_is_explained() -> None:
    with pytest.raises(ConfigError, match=r"section\.key=value"):
        apply_override({}, "train.epochs")


def test_unknown_preset_lists_presets(tmp_path) -> None:
    with pytest.raises(ConfigError, match="paper"):
        load_config("nope")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_yaml_file_round_trip(tmp_path) -> None:
    import yaml

    cfg = load_config("demo", ["train.seed=7"])
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config_to_dict(cfg)))
    assert load_config(path) == cfg
    assert Config.model_validate(config_to_dict(cfg)) == cfg


def test_a_folder_named_like_a_preset_does_not_hide_it(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "demo").mkdir()  # what `apexmer demo --out demo` leaves behind
    assert load_config("demo").name == "demo"
    (tmp_path / "mine.yaml").write_text("name: mine\n")
    assert load_config("mine.yaml").name == "mine"
