"""``benchmarks/accuracy.py --set KEY=VALUE``: values typed like the field, bad ones refused by name."""

from __future__ import annotations

import dataclasses

import pytest

from model.config import TrainingConfig
from tests.benchmarks.scripts import load_benchmark

DEFAULTS = dataclasses.asdict(TrainingConfig())


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("max_features", "None", None),  # an int field that may be None (default 300,000)
        ("max_features", "5000", 5000),
        ("prior_alpha", "0.5", 0.5),  # default None: typed from the annotation, not as int
        ("prior_alpha", "none", None),
        ("class_weight", "None", None),
        ("class_weight", "balanced", "balanced"),
        ("calibration", "isotonic", "isotonic"),
        ("select_inputs", "false", False),
        ("C", "0.5", 0.5),
        ("lsa_components", "100", 100),
    ],
)
def test_values_are_typed_like_the_field(key: str, value: str, expected: object) -> None:
    parsed = load_benchmark("accuracy").parse_override(key, value, DEFAULTS)
    assert parsed == expected
    assert type(parsed) is type(expected)
    TrainingConfig(**DEFAULTS | {key: parsed})  # and the config accepts it


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("C", "abc", "--set C=abc: expected float"),
        ("seed", "None", "--set seed=None: seed cannot be None"),
        ("tokenizer", "foo", "--set tokenizer=foo: expected one of jieba, rjieba"),
        ("select_inputs", "yes", "--set select_inputs=yes: expected true or false"),
        ("nope", "1", "--set nope: not a TrainingConfig field"),
    ],
)
def test_bad_values_exit_with_a_message_naming_the_field(
    key: str, value: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        load_benchmark("accuracy").parse_override(key, value, DEFAULTS)
    # Exit 2, a usage error as argparse's own (it was 1, as for a run that failed).
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.startswith(f"accuracy.py: {message}")


def test_set_builds_the_config_from_the_defaults() -> None:
    config = load_benchmark("accuracy").build_config(["C=0.5", "max_features=None"])
    assert config == TrainingConfig(C=0.5, max_features=None)


@pytest.mark.parametrize(
    ("items", "message"),
    [
        (["C"], "--set C: expected KEY=VALUE, e.g. --set C=0.5"),
        (["C=0.5", "C=2"], "--set C=2: C is already set (C=0.5)"),
        (["cv_folds=1"], "--set: cv_folds=1 must be at least 2"),
        (["C=nan"], "--set: C=nan must be a finite number > 0"),
        (["char_ngram_min=4"], "--set: char_ngram_min=4 must be at most char_ngram_max (3)"),
    ],
)
def test_malformed_repeated_or_out_of_range_items_exit_with_one_line(
    items: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        load_benchmark("accuracy").build_config(items)
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == f"accuracy.py: {message}\n"
