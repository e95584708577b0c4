"""TrainingConfig refuses values out of range where a config is built, not where a model loads."""

from __future__ import annotations

import dataclasses
import pickle

import pytest

from model.config import ConfigError, TrainingConfig


@pytest.mark.parametrize(
    ("values", "message"),
    [
        # cv_folds=1 (or 0) ran two folds while the config recorded 1.
        ({"cv_folds": 1}, "cv_folds=1 must be at least 2"),
        ({"cv_folds": 0}, "cv_folds=0 must be at least 2"),
        ({"C": -1.0}, "C=-1.0 must be a finite number > 0"),
        ({"C": float("nan")}, "C=nan must be a finite number > 0"),
        ({"max_features": 0}, "max_features=0 must be at least 1"),
        ({"char_ngram_min": 4}, "char_ngram_min=4 must be at most char_ngram_max (3)"),
        ({"title_repeat": -3}, "title_repeat=-3 must be at least 0 (0: no title)"),
        ({"calibration_cv": 1}, "calibration_cv=1 must be at least 2"),
        ({"target_precision": 2.0}, "target_precision=2.0 must be between 0.5 and 1"),
        ({"lsa_components": -5}, "lsa_components=-5 must be at least 0 (0: no latent view)"),
        ({"min_examples": 2}, "min_examples=2 must be at least 3"),
        ({"prior_alpha": 1.5}, "prior_alpha=1.5 must be between 0 and 1, or None"),
        ({"evidence_min_share": 1.0}, "evidence_min_share=1.0 must be at least 0 and below 1"),
        ({"evidence_min_share": -0.1}, "evidence_min_share=-0.1 must be at least 0 and below 1"),
        ({"seed": -1}, "seed=-1 must be between 0 and 2**32 - 1"),
        ({"tokenizer": "pkuseg"}, "tokenizer='pkuseg' must be one of 'jieba', 'rjieba'"),
        ({"cv_folds": 2.5}, "cv_folds=2.5 must be an integer"),
        ({"C": "1"}, "C='1' must be a number"),
        ({"select_inputs": 1}, "select_inputs=1 must be true or false"),
        (
            {"category_shares_in_ranking": "yes"},
            "category_shares_in_ranking='yes' must be true or false",
        ),
    ],
)
def test_values_out_of_range_are_refused_naming_the_field_and_the_limit(
    values: dict, message: str
) -> None:
    with pytest.raises(ConfigError) as error:
        TrainingConfig(**values)
    assert str(error.value) == message
    with pytest.raises(ConfigError, match="must be"):  # from metadata too (retrain inherits it)
        TrainingConfig.from_dict(TrainingConfig().to_dict() | values)


@pytest.mark.parametrize(
    "values",
    [
        {"cv_folds": 2, "calibration_cv": 2, "min_examples": 3},
        {"char_ngram_max": 0, "char_ngram_min": 4},  # no character view: its minimum is unused
        {"title_repeat": 0, "lsa_components": 0, "multinomial_weight": 1.0},
        {"max_features": None, "cv_max_rows": None, "prior_alpha": None, "class_weight": None},
        {"C": 2, "target_precision": 1, "prior_alpha": 0},  # ints where floats are expected
        {"evidence_min_share": 0},  # every positive term, as before the floor
    ],
)
def test_values_at_their_limits_are_accepted(values: dict) -> None:
    assert dataclasses.asdict(TrainingConfig(**values)).items() >= values.items()


def test_a_models_pickled_config_loads_without_the_checks() -> None:
    # A model keeps its config pickled in the router; loading it for serving must not refuse a
    # model whose config a later version would not build.
    config = TrainingConfig()
    object.__setattr__(config, "C", -1.0)
    assert pickle.loads(pickle.dumps(config)).C == -1.0


def test_a_config_from_before_the_word_cut_setting_keeps_the_precise_cut() -> None:
    # retrain rebuilds the champion's config from its metadata: a champion trained before the
    # setting cut precisely, and its challenger must too, not take today's default.
    old = {k: v for k, v in TrainingConfig().to_dict().items() if k != "word_cut"}
    assert TrainingConfig.from_dict(old).word_cut == "precise"
    assert TrainingConfig().word_cut == "search"
    assert TrainingConfig.from_dict(TrainingConfig().to_dict()).word_cut == "search"


def test_a_config_from_before_the_script_setting_reads_text_as_written() -> None:
    # Models trained before the setting featurised traditional characters as written; retrain's
    # challenger of such a champion must too, and the model itself keeps predicting as before.
    old = {k: v for k, v in TrainingConfig().to_dict().items() if k != "script"}
    assert TrainingConfig.from_dict(old).script == "as_written"
    assert TrainingConfig().script == "simplified"
    assert TrainingConfig.from_dict(TrainingConfig().to_dict()).script == "simplified"
