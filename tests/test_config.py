"""Config resolution: defaults < hyperparameters.yaml < --config < overrides; strict keys; clear errors."""

from __future__ import annotations

import pytest
import yaml

from zerohar.commands._training import add_training_arguments, config_from_args
from zerohar.config import (
    Config,
    default_out_dir,
    from_dict,
    parse_set,
    resolve_config,
    stage_defaults,
)
from zerohar.errors import ZeroharError
from zerohar.io import load_yaml


def _hp(tmp_path, d: dict):
    p = tmp_path / "hp.yaml"
    p.write_text(yaml.safe_dump(d))
    return p


def test_resolution_order(tmp_path):
    hp = _hp(tmp_path, {
        "default": {"stage1": {"train": {"epochs": 3, "lr": 0.1, "batch_size": 16}}},
        "hapt": {"stage1": {"train": {"epochs": 5}}},
    })
    user = tmp_path / "user.yaml"
    user.write_text(yaml.safe_dump({"train": {"lr": 0.2, "weight_decay": 0.5}}))
    cfg = resolve_config("stage1", config_file=user, overrides=parse_set(["train.weight_decay=0.25"]),
                         hyperparameters=hp)
    assert cfg.train.batch_size == 16  # default entry
    assert cfg.train.epochs == 5  # dataset entry beats default entry
    assert cfg.train.lr == 0.2  # config file beats hyperparameters
    assert cfg.train.weight_decay == 0.25  # command line beats config file
    assert cfg.stage == "stage1"


def test_dataset_entry_follows_requested_dataset(tmp_path):
    hp = _hp(tmp_path, {"default": {"stage2": {"train": {"epochs": 3}}},
                        "shoulder": {"stage2": {"train": {"epochs": 9}}}})
    over = {"data": {"dataset": "shoulder"}}
    assert resolve_config("stage2", overrides=over, hyperparameters=hp).train.epochs == 9
    assert resolve_config("stage2", hyperparameters=hp).train.epochs == 3  # default dataset (hapt) has no entry
    # A user's own window set: the `default` entry only, and no dataset name.
    cfg = resolve_config("stage2", overrides={"data": {"data": "x.npz"}}, hyperparameters=hp)
    assert cfg.train.epochs == 3 and cfg.data.dataset is None and cfg.data.data == "x.npz"


def test_supervised_takes_stage2_then_its_own(tmp_path):
    hp = _hp(tmp_path, {"default": {"stage2": {"train": {"epochs": 3, "lr": 0.5}},
                                    "supervised": {"train": {"lr": 0.1}}}})
    cfg = resolve_config("supervised", hyperparameters=hp)
    assert (cfg.train.epochs, cfg.train.lr) == (3, 0.1)


def test_unknown_key_names_key_and_file(tmp_path):
    user = tmp_path / "mine.yaml"
    user.write_text(yaml.safe_dump({"train": {"epoch": 3}}))
    with pytest.raises(ZeroharError, match=r"mine\.yaml.*unknown key 'train\.epoch'"):
        resolve_config("stage1", config_file=user)
    with pytest.raises(ZeroharError, match=r"command line.*unknown key 'trian'"):
        resolve_config("stage1", overrides=parse_set(["trian.lr=1"]))
    hp = _hp(tmp_path, {"default": {"stage1": {"data": {"windows": 3}}}})
    with pytest.raises(ZeroharError, match=r"unknown key 'data\.windows'"):
        resolve_config("stage1", hyperparameters=hp)
    hp = _hp(tmp_path, {"default": {"stage3": {}}})
    with pytest.raises(ZeroharError, match=r"hp\.yaml: entry 'default' has unknown stage 'stage3'"):
        resolve_config("stage1", hyperparameters=hp)


def test_unknown_model_key_is_an_error():
    with pytest.raises(ZeroharError, match=r"unknown key 'model\.no_such_option'"):
        resolve_config("stage1", overrides={"model": {"no_such_option": 1}})


def test_type_and_value_errors_name_the_key():
    with pytest.raises(ZeroharError, match=r"'train\.epochs' expects int \| None, found 'three'"):
        resolve_config("stage1", overrides=parse_set(["train.epochs=three"]))
    with pytest.raises(ZeroharError, match=r"train\.precision must be one of auto, bf16, fp32, found 'fp16'"):
        resolve_config("stage1", overrides=parse_set(["train.precision=fp16"]))
    with pytest.raises(ZeroharError, match=r"data\.fold is required for stage2"):
        resolve_config("stage2", overrides={"data": {"fold": None}})
    with pytest.raises(ZeroharError, match=r"'stage' is 'stage2', but this command trains stage1"):
        resolve_config("stage1", overrides={}, config_file=_write(yaml.safe_dump({"stage": "stage2"})))


def _write(text: str):
    import tempfile
    from pathlib import Path

    p = Path(tempfile.mkdtemp()) / "c.yaml"
    p.write_text(text)
    return p


def test_parse_set_values_and_errors():
    items = ["train.lr=3e-4", "data.fold=fold2", "train.max_minutes=null", "train.pretrain_sensors=[acc, gyro]"]
    assert parse_set(items) == {
        "train": {"lr": "3e-4", "max_minutes": None, "pretrain_sensors": ["acc", "gyro"]}, "data": {"fold": "fold2"}
    }
    # YAML 1.1 reads 3e-4 as a string; a float setting accepts it
    assert resolve_config("stage1", overrides=parse_set(items)).train.lr == 3e-4
    with pytest.raises(ZeroharError, match=r"--set 'epochs': expected KEY=VALUE"):
        parse_set(["epochs"])


def test_saved_config_round_trips(tmp_path):
    cfg = resolve_config("stage2", overrides=parse_set(["train.epochs=2", "data.fold=fold3", "init=runs/s1"]))
    cfg.save(tmp_path / "config.yaml")
    again = from_dict(Config, load_yaml(tmp_path / "config.yaml", mapping=True), "config.yaml")
    assert again == cfg
    # and a run's config.yaml is a valid --config file for the same stage
    assert resolve_config("stage2", config_file=tmp_path / "config.yaml") == cfg


def test_backbone_variant_sets_window_length_unless_explicit():
    cfg = resolve_config("stage1", overrides={"model": {"backbone": "harnet10"}})
    assert cfg.data.window_s == 10.0
    cfg = resolve_config("stage1", overrides={"model": {"backbone": "harnet10"}, "data": {"window_s": 5.0}})
    assert cfg.data.window_s == 5.0


def test_shipped_hyperparameters_are_valid():
    for stage in ("pretrain", "stage1", "stage2", "supervised"):
        for dataset in ("hapt", "shoulder", None):
            over = {"data": {"dataset": dataset, "data": None if dataset else "x.npz"}}
            cfg = resolve_config(stage, overrides=over)
            assert cfg.stage == stage
    assert stage_defaults("stage1", "hapt")  # the shipped file has an entry for the demo dataset


def test_yaml_errors(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("train: [unclosed")
    with pytest.raises(ZeroharError, match=r"config file .*bad\.yaml is not valid YAML"):
        load_yaml(p, "config file", mapping=True)
    p.write_text("- a list")
    with pytest.raises(ZeroharError, match=r"bad\.yaml: expected a mapping at the top level, found list"):
        load_yaml(p, "config file", mapping=True)
    with pytest.raises(ZeroharError, match=r"config file .*missing\.yaml does not exist"):
        resolve_config("stage1", config_file=tmp_path / "missing.yaml")


def test_command_line_flags():
    import argparse

    p = argparse.ArgumentParser()
    add_training_arguments(p, "stage2")
    args = p.parse_args(["--data", "mine.npz", "--folds", "f.yaml", "--fold", "a", "--descriptions", "d.json",
                         "--stage1", "runs/s1", "--epochs", "3", "--lr", "0.01", "--set", "train.lr=0.02",
                         "--set", "train.transductive=true", "--precision", "fp32"])
    cfg = config_from_args("stage2", args)
    assert (cfg.data.data, cfg.data.dataset, cfg.data.folds, cfg.data.fold) == ("mine.npz", None, "f.yaml", "a")
    assert cfg.data.descriptions == "d.json" and cfg.init == "runs/s1"
    assert (cfg.train.epochs, cfg.train.lr, cfg.train.transductive, cfg.train.precision) == (3, 0.02, True, "fp32")
    assert str(default_out_dir(cfg)) == "runs/stage2/mine-a"
    # flags that are not given keep the defaults of hyperparameters.yaml
    hp_epochs = resolve_config("stage2", overrides={"data": {"dataset": "hapt"}}).train.epochs
    assert config_from_args("stage2", p.parse_args(["--dataset", "hapt"])).train.epochs == hp_epochs
    with pytest.raises(SystemExit):
        p.parse_args(["--dataset", "hapt", "--data", "x.npz"])  # one source or the other


def test_training_length_settings_are_checked():
    cfg = resolve_config("stage2")
    assert cfg.train.epochs is None and cfg.train.schedule == "auto"  # the length adapts by default
    for key, bad, expected in (("patience", 0, "at least 1 evaluation"), ("max_steps", 0, "at least 1 or null"),
                               ("cooldown", 1.0, r"a fraction in \(0, 1\)"), ("schedule", "linear", "one of auto"),
                               ("sensor_dropout", 1.0, r"a probability in \[0, 1\)")):
        with pytest.raises(ZeroharError, match=rf"train\.{key} must be {expected}"):
            resolve_config("stage2", overrides={"train": {key: bad}})
