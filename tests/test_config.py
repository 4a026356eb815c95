"""Config: strict keys with suggestions, type coercion, file then flags."""
from __future__ import annotations

import pytest

from fewshot.config import FewShotConfig, load_config


def test_defaults_and_round_trip():
    cfg = FewShotConfig()
    d = cfg.to_dict()
    assert d["episodes"]["way"] == 5 and d["episodes"]["shot"] == 1 and d["episodes"]["query"] == 15
    assert d["learner"]["name"] == "protonet" and d["learner"]["metric"] is None  # None: the encoder's metric
    again = FewShotConfig.from_dict(d)
    assert again.to_dict() == d


def test_unknown_key_suggests_closest():
    with pytest.raises(ValueError, match=r"unknown config key episodes\.'shots'.*Did you mean 'shot'\?"):
        FewShotConfig.from_dict({"episodes": {"shots": 5}})
    with pytest.raises(ValueError, match=r"unknown config key learner\.'metrc'.*Did you mean 'metric'\?"):
        FewShotConfig.from_dict({"learner": {"name": "protonet", "metrc": "cosine"}})


def test_coercion_by_field_type_and_bad_types():
    cfg = FewShotConfig.from_dict({"episodes": {"way": "10", "seed": 3.0}, "batch_size": "64"})
    assert cfg.episodes.way == 10 and cfg.episodes.seed == 3 and cfg.batch_size == 64
    with pytest.raises(ValueError, match=r"config key 'episodes.shot': expected int, got str 'five'"):
        FewShotConfig.from_dict({"episodes": {"shot": "five"}})
    with pytest.raises(ValueError, match=r"expected int, got float 1.5"):
        FewShotConfig.from_dict({"episodes": {"shot": 1.5}})


def test_validation_in_post_init():
    with pytest.raises(ValueError, match="--way must be at least 2, got 1"):
        FewShotConfig.from_dict({"episodes": {"way": 1}})
    with pytest.raises(ValueError, match="--metric must be one of"):
        FewShotConfig.from_dict({"learner": {"name": "protonet", "metric": "manhattan"}})
    with pytest.raises(ValueError, match="unknown learner 'protonett'.*Did you mean 'protonet'"):
        FewShotConfig.from_dict({"learner": "protonett"})


@pytest.mark.parametrize("suffix,text", [
    (".toml", 'encoder = "minilm"\n[episodes]\nway = 7\n[learner]\nname = "protonet"\nmetric = "cosine"\n'),
    (".yaml", "encoder: minilm\nepisodes:\n  way: 7\nlearner:\n  name: protonet\n  metric: cosine\n"),
])
def test_load_config_files(tmp_path, suffix, text):
    path = tmp_path / f"c{suffix}"
    path.write_text(text)
    cfg = FewShotConfig.from_dict(load_config(path))
    assert cfg.episodes.way == 7 and cfg.learner.metric == "cosine" and cfg.encoder == "minilm"


def test_load_config_errors(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[episodes\nway=")
    with pytest.raises(ValueError, match="could not be parsed"):
        load_config(bad)
    other = tmp_path / "c.ini"
    other.write_text("x")
    with pytest.raises(ValueError, match=r"expected a .toml, .yaml, .yml or .json file, got '.ini'"):
        load_config(other)


def test_a_negative_seed_is_refused_naming_the_option(tmp_path):
    from click.testing import CliRunner

    from fewshot.cli import main

    for args in (["run", "--seed", "-1"], ["train", "--seed", "-1", "--out", str(tmp_path / "o")]):
        r = CliRunner().invoke(main, args)
        assert r.exit_code == 2 and "--seed must be an integer from 0 to 4294967295, got -1" in r.output, r.output
    assert not (tmp_path / "o").exists()


def test_a_config_file_whose_top_level_is_not_a_table_is_refused(tmp_path):
    from fewshot.config import load_config

    (tmp_path / "c.json").write_text("[1, 2]")
    (tmp_path / "c.yaml").write_text("- way: 5\n")
    for name in ("c.json", "c.yaml"):
        with pytest.raises(ValueError, match=r"expected a table of settings at the top level .* got a list"):
            load_config(tmp_path / name)
