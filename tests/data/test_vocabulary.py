"""The data's vocabulary: names come from params where they pin them, else from the data before
as-of, and a model keeps the vocabulary it was trained with."""

from __future__ import annotations

import json

import pandas as pd

from pipeline.feature_engine.vocabulary import (
    MAX_ATTRIBUTES,
    Vocabulary,
    resolve_attributes,
    resolve_event_types,
)


def _counts(pairs):
    return pd.DataFrame(pairs, columns=["event_type", "events"])


def test_event_types_are_the_most_frequent_unless_params_pin_them():
    counts = _counts([("view", 90), ("share", 40), ("export", 40), ("error", 3)])
    assert resolve_event_types(None, counts, 2) == (("view", "share"), [])
    assert resolve_event_types(None, counts, 0) == ((), [])
    kept, warnings = resolve_event_types(("error", "login"), counts, 5)
    assert kept == ("error",)
    assert warnings and "login" in warnings[0] and "view" in warnings[0]
    assert resolve_event_types((), counts, 5) == ((), [])


def _profile(rows):
    return pd.DataFrame(rows, columns=["attribute", "accounts", "values", "numbers"])


def test_attributes_are_numbers_only_when_every_value_parses():
    profile = _profile(
        [("employees", 10, 30, 30), ("channel", 9, 9, 0), ("tier", 5, 5, 4), ("note", 2, 0, 0)]
    )
    derived, warnings = resolve_attributes(None, profile)
    assert dict(derived) == {
        "employees": "number",
        "channel": "category",
        "tier": "category",  # one value is not a number: a category, never a half-parsed number
        "note": "category",
    }
    assert warnings == []
    pinned, warnings = resolve_attributes({"channel": "category", "arr_band": "category"}, profile)
    assert pinned == (("channel", "category"),)
    assert "arr_band" in warnings[0]


def test_too_many_attributes_keep_the_most_widely_held_and_say_so():
    rows = [(f"a{i:03d}", i, 1, 1) for i in range(MAX_ATTRIBUTES + 5)]
    derived, warnings = resolve_attributes(None, _profile(rows))
    assert len(derived) == MAX_ATTRIBUTES
    assert "a000" not in dict(derived) and f"a{MAX_ATTRIBUTES + 4:03d}" in dict(derived)
    assert "features.attributes" in warnings[0]


def test_vocabulary_round_trips_through_training_info():
    vocabulary = Vocabulary(
        advanced_modules=("api",),
        event_types=("view", "it's"),
        usage_value=True,
        attributes=(("channel", "category"), ("employees", "number")),
    )
    info = {"vocabulary": vocabulary.as_dict()}
    assert Vocabulary.from_info(info) == vocabulary
    assert Vocabulary.from_info({}) is None
    assert Vocabulary.from_dict(json.loads(vocabulary.to_json())) == vocabulary
