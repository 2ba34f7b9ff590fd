import dataclasses

import pytest
import tomli_w

from neuromask.config import ConfigError
from neuromask.models import get_preset
from neuromask.train.config import (
    TrainConfig,
    load_train_config,
    train_config_from_mapping,
    train_config_to_toml_mapping,
)


def write(tmp_path, text):
    path = tmp_path / "c.toml"
    path.write_text(text)
    return path


def test_defaults_without_file():
    config = load_train_config(None)
    assert config == TrainConfig()
    assert (
        config.model == get_preset("conv5_fc3") and config.max_epochs == 30 and config.patience == 5
    )


def test_preset_with_overrides(tmp_path):
    config = load_train_config(
        write(tmp_path, 'learning_rate = 0.001\n[model]\npreset = "conv5_fc3"\ndropout = 0.2\n')
    )
    assert config.learning_rate == 0.001
    assert config.model == dataclasses.replace(get_preset("conv5_fc3"), dropout=0.2)
    assert config.model_preset == "conv5_fc3"


def test_fewer_blocks_shortens_sub_blocks(tmp_path):
    config = load_train_config(write(tmp_path, '[model]\npreset = "paper"\nn_blocks = 3\n'))
    assert config.model.sub_blocks == (1, 1, 2)
    config = load_train_config(write(tmp_path, '[model]\npreset = "paper"\nn_blocks = 9\n'))
    assert config.model.sub_blocks == (1, 1, 2, 2, 3, 3, 3, 3, 3)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("learning_rat = 0.1\n", r"c\.toml: unknown key\(s\) learning_rat"),
        ("[model]\ndropouts = 0.1\n", r"unknown key\(s\) model\.dropouts"),
        ('batch_size = "8"\n', r"batch_size must be an integer, got '8'"),
        ("batch_size = 8.5\n", r"batch_size must be an integer"),
        ("[model]\nsub_blocks = 2\n", r"model\.sub_blocks must be a list"),
        ("amp = 1\n", r"amp must be true or false"),
        ('model = "vgg"\n', r"unknown model preset 'vgg'; valid names: conv5_fc3, paper"),
        ("learning_rate = -1.0\n", r"learning_rate must be a positive number"),
        ("[model]\ndropout = 2.0\n", r"model\.dropout must be in \[0, 1\)"),
        ("batch_size = \n", r"not valid TOML"),
    ],
)
def test_bad_files_name_the_key(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_train_config(write(tmp_path, text))


def test_toml_roundtrip(tmp_path):
    config = train_config_from_mapping(
        {"batch_size": 4, "model": {"preset": "conv5_fc3", "fc_layers": [20]}}
    )
    path = tmp_path / "round.toml"
    path.write_text(tomli_w.dumps(train_config_to_toml_mapping(config)))
    assert load_train_config(path) == config
