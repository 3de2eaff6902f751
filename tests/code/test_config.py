"""Typed config: params.yaml parsed once into frozen sections, defaults in one place, clear
errors naming the key path."""

from __future__ import annotations

from datetime import date

import pytest
from pydantic import ValidationError

from pipeline.core.config import Config, load_config, parse_config
from pipeline.core.errors import ConfigError
from tests.conftest import ROOT_PARAMS, default_params


def test_the_repository_params_parse_and_hold_every_key():
    config = load_config(ROOT_PARAMS)
    raw = default_params()
    dumped = config.model_dump(mode="json", by_alias=True)
    for section, values in raw.items():
        for key in values:
            assert key in dumped[section], f"{section}.{key} is not a typed setting"


def test_left_out_sections_take_the_defaults_declared_once():
    config = parse_config({"base": {"as_of_date": "2026-01-05"}})
    assert config.base.as_of_date == date(2026, 1, 5)
    assert config.train.lightgbm.as_params() == {}  # LightGBM's own defaults
    assert config.score.rank_by == "expected_arr_at_risk"
    assert config.features.windows == (30, 90)


def test_config_is_frozen_and_with_as_of_returns_a_new_one():
    config = load_config(ROOT_PARAMS)
    with pytest.raises(ValidationError):
        config.base.seed = 3
    later = config.with_as_of(date(2030, 1, 7))
    assert later.base.as_of_date == date(2030, 1, 7)
    assert config.base.as_of_date != later.base.as_of_date
    assert later.train == config.train


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda p: p["train"]["lightgbm"].update(learnign_rate=0.1), "did you mean learning_rate?"),
        (lambda p: p.update(scor={}), "scor: unknown key; did you mean score?"),
        (lambda p: p["features"].update(windows=[]), "features.windows: needs at least one"),
        (lambda p: p["features"].update(windows=[30, -1]), "features.windows.1"),
        (lambda p: p["features"].update(snapshot_cadence="daily"), "monthly, weekly or Nd"),
        (lambda p: p["features"].update(engine="polars"), "features.engine"),
        (lambda p: p["train"].update(monotone_constraints="yes"), "valid boolean"),
        (lambda p: p["train"].update(test_months=2.5), "train.test_months"),
        (lambda p: p["ingest"].update(naive_timezone="Mars/Base"), "unknown time zone"),
        (lambda p: p["base"].pop("as_of_date"), "base.as_of_date: required setting is missing"),
        (lambda p: p["deliver"].update(port=70000), "deliver.port"),
        (lambda p: p["simulate"].update(segment_shares=[0.5, 0.5, 0.5]), "sum to 1"),
        (
            lambda p: p["ingest"].update(sla_policy={"p1": {"first_response_hours": 1}}),
            "ingest.sla_policy",
        ),
    ],
)
def test_bad_settings_name_the_key_and_what_is_allowed(edit, message):
    params = default_params()
    edit(params)
    with pytest.raises(ConfigError) as err:
        parse_config(params)
    assert message in str(err.value)


def test_every_problem_is_reported_at_once():
    params = default_params()
    params["train"]["num_boost_round"] = "many"
    params["score"]["top_reasons"] = 0
    with pytest.raises(ConfigError) as err:
        parse_config(params)
    assert "train.num_boost_round" in str(err.value) and "score.top_reasons" in str(err.value)


def test_a_config_round_trips_through_its_own_dump():
    config = load_config(ROOT_PARAMS)
    again = Config.model_validate(config.model_dump(by_alias=True))
    assert again == config
