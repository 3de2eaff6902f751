"""The leadership page's wording helpers: amounts, group names, driver directions, the weekly
change, the one definition of precision and the glossed warnings."""

from __future__ import annotations

import math

import pytest

from pipeline.core.config import ConfigError, parse_config
from pipeline.stages.report.words import (
    direction_words,
    format_money,
    format_value,
    group_name,
    precision_note,
    signed_money,
    warning_title,
    week_change,
)


@pytest.mark.parametrize(
    ("value", "currency", "text"),
    [
        (11_819.4, "$", "$11,819"),
        (999.0, "$", "$999"),
        (0.0, "$", "$0"),
        (999_949.0, "$", "$999,949"),
        (999_950.0, "$", "$1.0M"),  # would round to $1,000,000: written in millions
        (1_234_567.0, "$", "$1.2M"),
        (12_345_678.0, "€", "€12.3M"),
        (-3_100.0, "£", "−£3,100"),
        (2_500.0, "CHF ", "CHF 2,500"),
    ],
)
def test_money_is_written_in_full_below_a_million_and_in_millions_above(value, currency, text):
    assert format_money(value, currency) == text
    assert format_value(value, "money", currency) == text


def test_missing_amounts_and_signed_changes():
    assert format_value(None, "money") == "n/a"
    assert format_value(math.nan, "money") == "n/a"
    assert signed_money(12_500.0) == "+$12,500"
    assert signed_money(-3_100.0, "€") == "−€3,100"
    assert signed_money(None) == "–"
    assert signed_money(0.0) == "$0"


def test_report_currency_is_a_setting_with_a_default():
    base = {"base": {"seed": 1, "as_of_date": "2026-11-16", "renewal_grace_days": 30}}
    assert parse_config(base).report.currency == "$"
    assert parse_config({**base, "report": {"currency": "€"}}).report.currency == "€"
    with pytest.raises(ConfigError, match=r"report\.currency"):
        parse_config({**base, "report": {"currency": 1}})


@pytest.mark.parametrize(
    ("key", "words"),
    [
        ("mid_market", "Mid-market"),
        ("smb", "SMB"),
        ("enterprise", "Enterprise"),
        ("strategic_accounts", "Strategic accounts"),  # a company's own segment, no mapping
        ("emea", "EMEA"),
        ("DACH", "DACH"),  # already written by a person: kept
        (None, "(none)"),
        (math.nan, "(none)"),
    ],
)
def test_segment_and_region_keys_read_as_words(key, words):
    assert group_name(key) == words


def test_a_driver_says_which_way_it_pushes_risk():
    assert direction_words("Active users", "lower") == "lower active users raises risk"
    assert direction_words("SLA breaches", "higher") == "higher SLA breaches raises risk"
    assert direction_words("Tenure", "mixed") == "tenure: no simple more-or-less effect"


def test_week_over_week_change_in_words_and_honest_without_an_earlier_week():
    assert week_change(110_000.0, 100_000.0, previous_week="2026-11-09") == (
        "up $10,000 (+10.0%) since 2026-11-09"
    )
    assert week_change(90_000.0, 100_000.0, currency="€") == "down €10,000 (−10.0%) since last week"
    assert week_change(100_000.2, 100_000.0) == "unchanged since last week"
    assert week_change(5_000.0, 0.0) == "up $5,000 since last week"  # no share of nothing
    assert week_change(100_000.0, None) == "no earlier week to compare with"
    assert week_change(100_000.0, math.nan) == "no earlier week to compare with"


def test_precision_has_one_definition_and_the_two_figures_are_told_apart():
    both = precision_note(0.4, 0.3, capacity=5, rank_by="expected_arr_at_risk")
    assert both.count("Precision means") == 1
    assert "top 5" in both and "40.0%" in both and "30.0%" in both
    assert "differ because" in both and "revenue" in both
    by_probability = precision_note(0.4, 0.3, capacity=5, rank_by="probability")
    assert "once for every week" in by_probability and "revenue" not in by_probability
    only_model = precision_note(0.4, None, capacity=5, rank_by="probability")
    assert "40.0%" in only_model and "differ" not in only_model
    assert precision_note(None, None, capacity=5, rank_by="probability") is None


def test_scoring_warnings_are_glossed_in_plain_words():
    drift = warning_title("drift")
    assert "PSI" in drift and "population stability index" in drift and "shift" in drift
    assert warning_title("stale").startswith("Stale data")
    assert warning_title("something_new") == "Note (something_new)"
