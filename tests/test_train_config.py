"""Training configuration: presets, checked --key=value overrides, resume, saved configs."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pandas as pd
import pytest

from train.config import (
    ClassifierConfig,
    SegmenterConfig,
    command_line,
    describe,
    describe_fields,
    load_config,
    parse_config,
    parse_overrides,
    parse_settings,
    save_config,
)
from train.data import known_metadata


def test_presets_set_recipes_and_overrides_replace_them():
    tiny = parse_config(SegmenterConfig, [])
    paper = parse_config(SegmenterConfig, ["--preset=paper"])
    assert (tiny.preset, tiny.epochs, tiny.pretrained) == ("tiny", 8, False)
    assert (paper.preset, paper.epochs, paper.pretrained, paper.workers) == ("paper", 60, True, 8)
    config = parse_config(SegmenterConfig, ["--preset=paper", "--lr=0.01", "--pretrained=false"])
    assert config.lr == 0.01 and config.pretrained is False and config.epochs == 60
    assert config.out == "runs/segmenter-paper"


def test_values_are_converted_to_the_field_types():
    config = parse_config(ClassifierConfig, ["--batch_size=8", "--time-limit", "2.5", "--augment=no", "--compile",
                                             "--balance=focal", "--image_size=64"])  # fmt: skip
    assert config.batch_size == 8 and isinstance(config.batch_size, int)
    assert config.time_limit == 2.5 and config.augment is False and config.compile is True
    assert config.balance == "focal" and config.image_size == 64


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--lrr=0.1"], r"unknown setting --lrr \(did you mean --lr\?\)"),
        (["--batch_size=eight"], "expected an integer"),
        (["--lr=fast"], "expected a number"),
        (["--augment=maybe"], "expected a boolean"),
        (["--precision=fp16"], "expected one of auto, bf16, fp32"),
        (["--balance=oversample"], "expected one of sampler, weighted, focal, none"),
        (["--preset=huge"], "unknown preset 'huge'"),
        (["--epochs=0"], "at least 1"),
        (["--image_size=100"], "multiple of 32"),
        (["--consistency=-1"], "a loss weight"),
        (["--data=x", "--phantoms=10"], "either --data"),
        (["lr=0.1"], "write settings as --key=value"),
        (["--lr=0.1", "--lr=0.2"], "given twice"),
    ],
)
def test_bad_settings_are_errors_that_say_what_is_valid(argv, message):
    with pytest.raises(ValueError, match=message):
        parse_config(ClassifierConfig, argv)


def test_segmenter_settings_are_not_classifier_settings():
    with pytest.raises(ValueError, match="unknown setting --balance"):
        parse_config(SegmenterConfig, ["--balance=focal"])


def test_parse_overrides_forms():
    assert parse_overrides(["--a=1", "--b", "--c-d", "x", "--e="]) == {"a": "1", "b": "true", "c_d": "x", "e": ""}


def test_saved_config_round_trips_and_resume_starts_from_it(tmp_path):
    config = parse_config(ClassifierConfig, [f"--out={tmp_path}", "--lr=0.005", "--epochs=3"])
    save_config(config, tmp_path / "train_config.json")
    assert json.loads((tmp_path / "train_config.json").read_text())["stage"] == "classifier"
    assert load_config(ClassifierConfig, tmp_path / "train_config.json") == config
    with pytest.raises(ValueError, match="classifier run's configuration"):
        load_config(SegmenterConfig, tmp_path / "train_config.json")
    resumed = parse_config(ClassifierConfig, ["--resume", f"--out={tmp_path}", "--max_steps=7"])
    assert (resumed.lr, resumed.epochs, resumed.max_steps, resumed.resume) == (0.005, 3, 7, True)
    with pytest.raises(FileNotFoundError, match="--resume"):
        parse_config(ClassifierConfig, ["--resume", f"--out={tmp_path / 'nothing'}"])


def test_describe_prints_every_setting_and_help_lists_comments():
    config = parse_config(SegmenterConfig, ["--lr=0.5"])
    text = describe(config)
    assert "segmenter configuration (preset tiny)" in text and "lr                 = 0.5" in text
    help_text = describe_fields(ClassifierConfig)
    assert "--balance='sampler' [str]" in help_text and "class imbalance" in help_text
    assert "(tiny: 15, small: 10, paper: 50)" in help_text  # the epochs per preset


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_a_study_asked_for_help_lists_its_settings_and_exits(flag, capsys):
    from experiments.stability import StabilityConfig

    with pytest.raises(SystemExit) as exit_:
        parse_settings(StabilityConfig, ["--images=3", flag])
    assert exit_.value.code == 0
    assert "--images=300 [int]  its first images" in capsys.readouterr().out


@pytest.mark.parametrize("columns, known", [
    ({"age": [None, None], "sex": ["unknown", "unknown"], "site": ["unknown", None]}, []),  # PH2: no metadata
    ({"age": [None, 55.0], "sex": ["unknown", "unknown"], "site": ["unknown", "back"]}, ["age", "site"]),
    ({"age": [40.0, 55.0], "sex": ["male", "female"], "site": ["face", "back"]}, ["age", "sex", "site"]),
])
def test_a_classifier_records_the_metadata_its_training_images_carried(columns, known):
    table = pd.DataFrame(columns).astype({"age": float, "sex": "string", "site": "string"})
    assert known_metadata(table) == known


def test_command_line_names_the_settings_that_differ_from_their_defaults():
    @dataclass
    class Settings:
        split: str = "test"
        images: int = 300

    assert command_line("experiments.stability", Settings()) == "python -m experiments.stability"
    assert command_line("experiments.stability", Settings(split="val", images=300)) == "python -m experiments.stability --split=val"
