"""Unit tests of single-table validation: every bad-input case, on tiny in-memory frames."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.core.errors import DataContractError
from pipeline.data.contract import TABLES
from pipeline.data.validate import REASON, SOURCE_ROW, ValidationContext, validate_table
from tests.conftest import AS_OF


def _ctx(**kwargs) -> ValidationContext:
    return ValidationContext(as_of=AS_OF, **kwargs)


def _accounts_ctx(raw_tables) -> ValidationContext:
    accounts = validate_table(raw_tables["accounts"], TABLES["accounts"], _ctx()).accepted
    return ValidationContext(
        as_of=AS_OF,
        keys={"accounts": accounts[["account_id"]]},
        account_created=accounts.set_index("account_id")["created_at"],
    )


def test_valid_table_is_accepted_whole_and_typed(raw_tables):
    result = validate_table(raw_tables["contracts"], TABLES["contracts"], _ctx())
    assert len(result.accepted) == 4 and len(result.quarantined) == 0
    assert str(result.accepted["arr"].dtype) == "float64"
    assert str(result.accepted["seats"].dtype) == "Int64"
    assert result.accepted["arr"].tolist() == [1200.0, 24000.5, 250000.0, 1200.0]


def test_timestamps_are_normalised_to_utc(raw_tables):
    accepted = validate_table(raw_tables["accounts"], TABLES["accounts"], _ctx()).accepted
    assert str(accepted["created_at"].dtype) == "datetime64[us, UTC]"
    # 2024-02-01T00:00+01:00 is 2024-01-31T23:00Z
    assert accepted.loc[1, "created_at"] == pd.Timestamp("2024-01-31T23:00:00Z")


def test_categories_are_normalised(raw_tables):
    raw = raw_tables["accounts"].assign(segment=["SMB", "Mid-Market", " Enterprise "])
    accepted = validate_table(raw, TABLES["accounts"], _ctx()).accepted
    assert accepted["segment"].tolist() == ["smb", "mid_market", "enterprise"]


def test_missing_required_column_names_table_column_and_rows(raw_tables):
    raw = raw_tables["contracts"].drop(columns=["arr"])
    with pytest.raises(DataContractError) as err:
        validate_table(raw, TABLES["contracts"], _ctx())
    text = str(err.value)
    assert "table 'contracts'" in text and "column 'arr'" in text
    assert "example rows" in text and "K1" in text
    assert "column_map" in text


def test_optional_column_missing_gets_its_default(raw_tables):
    raw = raw_tables["usage_events"].drop(columns=["count"])
    result = validate_table(raw, TABLES["usage_events"], _ctx())
    assert result.accepted["count"].tolist() == [1] * 5
    assert result.defaulted_columns == ["count"]


def test_extra_columns_are_ignored_and_reported(raw_tables):
    raw = raw_tables["csms"].assign(phone=["1", "2"])
    result = validate_table(raw, TABLES["csms"], _ctx())
    assert "phone" not in result.accepted.columns
    assert result.ignored_columns == ["phone"]


@pytest.mark.parametrize(
    ("table", "column", "values", "expected"),
    [
        ("contracts", "arr", ["a", "b", "c", "d"], "expected numbers"),
        ("contracts", "start_date", [1, 2, 3, 4], "expected dates"),
        ("accounts", "created_at", [1.5, 2.5, 3.5], "expected timestamps"),
        ("support_tickets", "escalated", ["maybe", "perhaps"], "expected true/false"),
        ("contracts", "seats", [1.5, 2.5, 3.5, 4.5], "whole numbers"),
    ],
)
def test_wrong_type_for_the_whole_column_stops(raw_tables, table, column, values, expected):
    raw = raw_tables[table].assign(**{column: values})
    with pytest.raises(DataContractError) as err:
        validate_table(raw, TABLES[table], _ctx())
    assert f"table '{table}'" in str(err.value) and f"column '{column}'" in str(err.value)
    assert expected in str(err.value)


def test_unparseable_values_in_single_rows_are_quarantined(raw_tables):
    raw = raw_tables["contracts"].assign(
        start_date=["2024-01-10", "2024-13-45", "2024-03-15", "2024-02-10"],
        arr=["1200", "24000.5", "lots", "1200"],
    )
    result = validate_table(raw, TABLES["contracts"], _ctx())
    assert len(result.accepted) == 2 and len(result.quarantined) == 2
    assert result.reason_counts == {
        "unparseable_date:start_date": 1,
        "unparseable_number:arr": 1,
    }
    assert result.quarantined[SOURCE_ROW].tolist() == [1, 2]
    assert result.quarantined["arr"].tolist() == ["24000.5", "lots"]  # raw values kept


def test_negative_arr_and_seats_are_quarantined(raw_tables):
    raw = raw_tables["contracts"].assign(
        arr=["-5", "24000", "250000", "1"], seats=["5", "-1", "3", "5"]
    )
    result = validate_table(raw, TABLES["contracts"], _ctx())
    assert result.reason_counts == {"below_minimum:arr": 1, "below_minimum:seats": 1}
    assert sorted(result.accepted["contract_id"]) == ["K3", "K4"]


def test_values_outside_allowed_set_and_ranges_are_quarantined(raw_tables):
    raw = raw_tables["nps_responses"].assign(score=["11", "3"])
    result = validate_table(raw, TABLES["nps_responses"], _ctx())
    assert result.reason_counts == {"above_maximum:score": 1}
    raw = raw_tables["accounts"].assign(segment=["smb", "startup", "enterprise"])
    result = validate_table(raw, TABLES["accounts"], _ctx())
    assert result.reason_counts == {"allowed_values:segment": 1}
    assert result.quarantined[REASON].tolist() == ["allowed_values:segment"]


def test_missing_required_value_is_quarantined(raw_tables):
    raw = raw_tables["accounts"].assign(segment=["smb", "", "enterprise"])
    result = validate_table(raw, TABLES["accounts"], _ctx())
    assert result.reason_counts == {"missing_value:segment": 1}


def test_exact_duplicates_keep_first_and_conflicts_drop_all(raw_tables):
    base = raw_tables["accounts"]
    raw = pd.concat([base, base.iloc[[0]], base.iloc[[1]].assign(account_name="Other")])
    result = validate_table(raw, TABLES["accounts"], _ctx())
    assert result.reason_counts == {
        "duplicate_row:account_id": 1,
        "conflicting_duplicate_key:account_id": 2,
    }
    assert result.accepted["account_id"].tolist() == ["A1", "A3"]
    assert len(result.accepted) + len(result.quarantined) == len(raw)


def test_orphan_foreign_keys_are_quarantined(raw_tables):
    ctx = _accounts_ctx(raw_tables)
    raw = raw_tables["contracts"].assign(account_id=["A1", "A2", "A9", "A1"])
    result = validate_table(raw, TABLES["contracts"], ctx)
    assert result.reason_counts == {"orphan:account_id->accounts": 1}
    assert "A9" not in set(result.accepted["account_id"])


def test_usage_event_of_a_user_from_another_account_is_an_orphan(raw_tables):
    ctx = _accounts_ctx(raw_tables)
    users = validate_table(raw_tables["users"], TABLES["users"], ctx).accepted
    ctx = ValidationContext(
        as_of=AS_OF,
        keys={**ctx.keys, "users": users[["user_id", "account_id"]]},
        account_created=ctx.account_created,
    )
    raw = raw_tables["usage_events"].assign(user_id=["U1", "U4", "U3", "U4", None])
    result = validate_table(raw, TABLES["usage_events"], ctx)
    assert result.reason_counts == {"orphan:user_id+account_id->users": 1}


def test_timestamps_after_as_of_are_quarantined(raw_tables):
    raw = raw_tables["usage_events"].assign(
        occurred_at=[
            "2024-01-11T10:00:00Z",
            "2025-01-01T00:00:00Z",  # exactly at the as-of instant: not before it
            "2024-12-31T23:59:59Z",
            "2030-04-01T10:00:00Z",
            "2024-04-02T10:00:00Z",
        ]
    )
    result = validate_table(raw, TABLES["usage_events"], _ctx())
    assert result.reason_counts == {"after_as_of:occurred_at": 2}


def test_contract_end_date_may_lie_after_as_of(raw_tables):
    raw = raw_tables["contracts"].assign(
        start_date=["2024-01-10", "2024-02-01", "2025-02-01", "2024-02-10"]
    )
    raw = raw.assign(end_date=["2024-02-10", "2025-02-01", "2026-02-01", "2024-03-10"])
    result = validate_table(raw, TABLES["contracts"], _ctx())
    # K2 ends after as-of (fine); K3 starts after it (quarantined)
    assert result.reason_counts == {"after_as_of:start_date": 1}


def test_events_before_the_account_existed_are_quarantined(raw_tables):
    ctx = _accounts_ctx(raw_tables)
    raw = raw_tables["usage_events"].assign(
        occurred_at=[
            "2024-01-10T08:59:59Z",  # A1 created 09:00Z
            "2024-02-05T10:00:00Z",
            "2024-02-06T10:00:00Z",
            "2024-03-15T12:30:00Z",  # A3 created exactly then: fine
            "2024-04-02T10:00:00Z",
        ]
    )
    result = validate_table(raw, TABLES["usage_events"], ctx)
    assert result.reason_counts == {"before_account_created:occurred_at": 1}
    contracts = raw_tables["contracts"].assign(
        start_date=["2024-01-01", "2024-02-01", "2024-03-15", "2024-02-10"]
    )
    result = validate_table(contracts, TABLES["contracts"], ctx)
    assert result.reason_counts == {"before_account_created:start_date": 1}


def test_row_rules_across_columns(raw_tables):
    raw = raw_tables["contracts"].assign(
        end_date=["2024-01-10", "2025-02-01", "2026-03-15", "2024-03-10"]
    )
    result = validate_table(raw, TABLES["contracts"], _ctx())
    assert result.reason_counts == {"end_before_start": 1}
    raw = raw_tables["support_tickets"].assign(resolved_at=["2024-02-01T00:00:00Z", None])
    result = validate_table(raw, TABLES["support_tickets"], _ctx())
    assert result.reason_counts == {"resolved_before_open": 1}


def test_mixed_time_zones_quarantine_the_rows_without_one(raw_tables):
    raw = raw_tables["usage_events"].assign(
        occurred_at=[
            "2024-01-11T10:00:00Z",
            "2024-02-05 10:00:00",  # no zone, while the others have one
            "2024-02-06T10:00:00-05:00",
            "2024-04-01T10:00:00+0200",
            "2024-04-02T10:00:00",
        ]
    )
    result = validate_table(raw, TABLES["usage_events"], _ctx())
    assert result.reason_counts == {"missing_timezone:occurred_at": 2}
    assert result.accepted["occurred_at"].tolist() == [
        pd.Timestamp("2024-01-11T10:00:00Z"),
        pd.Timestamp("2024-02-06T15:00:00Z"),
        pd.Timestamp("2024-04-01T08:00:00Z"),
    ]


def test_timestamps_without_any_time_zone_stop_unless_configured(raw_tables):
    raw = raw_tables["csm_touchpoints"].assign(occurred_at=["2024-02-01 14:00", "2024-06-01 14:00"])
    with pytest.raises(DataContractError) as err:
        validate_table(raw, TABLES["csm_touchpoints"], _ctx())
    assert "column 'occurred_at'" in str(err.value) and "naive_timezone" in str(err.value)
    result = validate_table(raw, TABLES["csm_touchpoints"], _ctx(naive_timezone="Europe/Berlin"))
    assert result.accepted["occurred_at"].tolist() == [
        pd.Timestamp("2024-02-01T13:00:00Z"),  # CET = UTC+1
        pd.Timestamp("2024-06-01T12:00:00Z"),  # CEST = UTC+2
    ]


def test_naive_datetime_dtype_needs_a_zone_too(raw_tables):
    raw = raw_tables["csm_touchpoints"].assign(
        occurred_at=pd.to_datetime(["2024-02-01 14:00", "2024-06-01 14:00"])
    )
    with pytest.raises(DataContractError, match="no time zone"):
        validate_table(raw, TABLES["csm_touchpoints"], _ctx())
    result = validate_table(raw, TABLES["csm_touchpoints"], _ctx(naive_timezone="UTC"))
    assert len(result.accepted) == 2


def test_typed_input_from_parquet_or_a_database_is_accepted(raw_tables):
    raw = raw_tables["contracts"].assign(
        arr=[1200.0, 24000.5, 250000.0, 1200.0],
        seats=[5, 40, 300, 5],
        start_date=pd.to_datetime(["2024-01-10", "2024-02-01", "2024-03-15", "2024-02-10"]).date,
    )
    result = validate_table(raw, TABLES["contracts"], _ctx())
    assert len(result.accepted) == 4


def test_a_row_with_several_problems_lists_them_all(raw_tables):
    raw = raw_tables["contracts"].assign(arr=["-1", "24000.5", "250000", "1200"])
    raw = raw.assign(start_date=["2025-06-01", "2024-02-01", "2024-03-15", "2024-02-10"])
    result = validate_table(raw, TABLES["contracts"], _ctx())
    assert len(result.quarantined) == 1
    reasons = set(result.quarantined[REASON].iloc[0].split("; "))
    assert reasons == {"below_minimum:arr", "after_as_of:start_date", "end_before_start"}


# --- value mapping and unknown categories -----------------------------------------------------


def test_value_map_replaces_the_exports_values_before_validation(raw_tables):
    raw = raw_tables["accounts"].assign(segment=["Small Biz", "MM", "enterprise"])
    value_map = {"accounts": {"segment": {"Small Biz": "smb", "MM": "mid_market"}}}
    result = validate_table(raw, TABLES["accounts"], _ctx(value_map=value_map))
    assert result.accepted["segment"].tolist() == ["smb", "mid_market", "enterprise"]
    assert len(result.quarantined) == 0 and result.unknown_values == {}


def test_unknown_category_values_are_quarantined_and_counted_by_export_value(raw_tables):
    raw = raw_tables["accounts"].assign(segment=["Startup", " Startup ", "enterprise"])
    result = validate_table(raw, TABLES["accounts"], _ctx())
    assert result.reason_counts == {"allowed_values:segment": 2}
    assert result.unknown_values == {"segment": {"Startup": 2}}
    assert result.quarantined["segment"].tolist() == ["Startup", " Startup "]  # raw kept
    assert result.rows_read == len(raw)


# --- lifecycle fields after as-of --------------------------------------------------------------


def test_user_deactivated_after_as_of_is_kept_active(raw_tables):
    raw = raw_tables["users"].assign(
        deactivated_at=[None, "2025-01-03T08:00:00Z", "2024-06-01T00:00:00Z", "2025-01-01T00:00Z"]
    )
    result = validate_table(raw, TABLES["users"], _ctx())
    assert len(result.quarantined) == 0 and len(result.accepted) == 4
    assert result.blanked_after_as_of == {"deactivated_at": 2}
    assert result.accepted["deactivated_at"].isna().tolist() == [True, True, False, True]


def test_ticket_resolved_after_as_of_is_kept_open(raw_tables):
    raw = raw_tables["support_tickets"].assign(
        opened_at=["2024-12-31T20:00:00Z", "2024-05-01T09:00:00Z"],
        first_response_at=["2024-12-31T22:00:00Z", "2025-02-01T00:00:00Z"],
        resolved_at=["2025-01-02T09:00:00Z", None],
    )
    result = validate_table(raw, TABLES["support_tickets"], _ctx())
    assert len(result.accepted) == 2 and result.reason_counts == {}
    assert result.blanked_after_as_of == {"first_response_at": 1, "resolved_at": 1}
    assert result.accepted["resolved_at"].isna().all()


def test_training_completed_after_as_of_is_blanked_but_enrolment_after_it_quarantines(
    raw_tables,
):
    raw = raw_tables["trainings"].assign(
        enrolled_at=["2024-12-30T00:00:00Z", "2025-01-05T00:00:00Z"],
        completed_at=["2025-01-02T00:00:00Z", None],
    )
    result = validate_table(raw, TABLES["trainings"], _ctx())
    assert result.reason_counts == {"after_as_of:enrolled_at": 1}  # the row's own stamp
    assert result.blanked_after_as_of == {"completed_at": 1}
    assert result.accepted["completed_at"].isna().all()


def test_every_blankable_lifecycle_field_is_nullable():
    """Blanking a lifecycle field must keep the row valid, so the contract must allow it."""
    from pipeline.data.contract import ROW_STAMPS

    for name, spec in TABLES.items():
        for col in spec.columns:
            lifecycle = col.kind in ("timestamp", "date") and col.before_as_of
            if lifecycle and col.name != ROW_STAMPS.get(name):
                assert col.nullable, f"{name}.{col.name}"


# --- infinite and absurd numbers, placeholder dates ---------------------------------------------


@pytest.mark.parametrize("value", ["inf", "Infinity", "-inf", "-Infinity"])
def test_infinite_numbers_are_quarantined_as_not_finite(raw_tables, value):
    raw = raw_tables["contracts"].assign(arr=["1200", value, "250000", "1200"])
    result = validate_table(raw, TABLES["contracts"], _ctx())
    assert result.reason_counts == {"not_finite:arr": 1}
    assert result.quarantined["arr"].tolist() == [value]
    assert np.isfinite(result.accepted["arr"]).all()


def test_infinite_numbers_from_parquet_dtypes_are_quarantined(raw_tables):
    raw = raw_tables["contracts"].assign(arr=[1200.0, np.inf, 250000.0, -np.inf])
    result = validate_table(raw, TABLES["contracts"], _ctx())
    assert result.reason_counts == {"not_finite:arr": 2}
    assert result.accepted["contract_id"].tolist() == ["K1", "K3"]


def test_absurd_numbers_are_out_of_bounds(raw_tables):
    raw = raw_tables["contracts"].assign(
        arr=["1200", "1e15", "250000", "1200"], seats=["5", "40", "1e20", "5"]
    )
    result = validate_table(raw, TABLES["contracts"], _ctx())
    assert result.reason_counts == {"out_of_bounds:arr": 1, "out_of_bounds:seats": 1}
    assert result.accepted["contract_id"].tolist() == ["K1", "K4"]


def test_ingest_bounds_override_the_contracts_plausible_range(raw_tables):
    from pipeline.data.validate import NumericBounds

    raw = raw_tables["contracts"].assign(arr=["1200", "2e10", "250000", "1200"])
    assert validate_table(raw, TABLES["contracts"], _ctx()).reason_counts == {
        "out_of_bounds:arr": 1
    }
    wider = {"contracts": {"arr": NumericBounds(max=1e11)}}
    assert len(validate_table(raw, TABLES["contracts"], _ctx(bounds=wider)).accepted) == 4
    narrower = {"contracts": {"arr": NumericBounds(min=1000, max=100_000)}}
    result = validate_table(raw, TABLES["contracts"], _ctx(bounds=narrower))
    assert result.reason_counts == {"out_of_bounds:arr": 2}  # 2e10 and 250000


def test_placeholder_dates_are_out_of_bounds(raw_tables):
    raw = raw_tables["contracts"].assign(
        end_date=["2024-02-10", "9999-12-31", "2074-12-31", "2024-03-10"]
    )
    result = validate_table(raw, TABLES["contracts"], _ctx())
    # as-of 2025-01-01 + 50 years: 2074-12-31 is a (long) term, 9999-12-31 a placeholder
    assert result.reason_counts == {"out_of_bounds:end_date": 1}
    assert result.quarantined["contract_id"].tolist() == ["K2"]
    raw = raw_tables["accounts"].assign(
        created_at=["1900-01-01T00:00:00Z", "2024-02-01T00:00:00Z", "2024-03-15T12:30:00Z"]
    )
    result = validate_table(raw, TABLES["accounts"], _ctx())
    assert result.reason_counts == {"out_of_bounds:created_at": 1}


# --- text and the source's parse errors -------------------------------------------------------


def test_text_longer_than_the_limit_is_quarantined(raw_tables):
    merged = "Globex," + "x" * 60  # an unbalanced quote swallowed the rest of the file
    raw = raw_tables["accounts"].assign(account_name=["Acme", merged, "Initech"])
    result = validate_table(raw, TABLES["accounts"], _ctx(max_text_chars=50))
    assert result.reason_counts == {"text_too_long:account_name": 1}
    assert result.quarantined["account_id"].tolist() == ["A2"]
    assert len(validate_table(raw, TABLES["accounts"], _ctx()).accepted) == 3  # no limit


def test_rows_the_source_could_not_parse_are_quarantined_with_its_reason(raw_tables):
    from pipeline.data.contract import PARSE_ERROR

    raw = raw_tables["accounts"].assign(**{PARSE_ERROR: [None, "ragged_row", None]})
    result = validate_table(raw, TABLES["accounts"], _ctx())
    assert result.reason_counts == {"ragged_row": 1}
    assert result.quarantined[REASON].tolist() == ["ragged_row"]
    assert PARSE_ERROR not in result.quarantined.columns
    assert PARSE_ERROR not in result.ignored_columns
    assert result.rows_read == 3


# --- time zones ---------------------------------------------------------------------------------


def test_timestamps_with_a_trailing_utc_parse_as_utc(raw_tables):
    raw = raw_tables["csm_touchpoints"].assign(
        occurred_at=["2024-05-01 10:00:00 UTC", "2024-06-01 14:00:00utc"]
    )
    result = validate_table(raw, TABLES["csm_touchpoints"], _ctx())
    assert result.reason_counts == {}
    assert result.accepted["occurred_at"].tolist() == [
        pd.Timestamp("2024-05-01T10:00:00Z"),
        pd.Timestamp("2024-06-01T14:00:00Z"),
    ]


def test_a_date_given_as_a_timestamp_keeps_its_calendar_day_in_its_zone(raw_tables):
    starts = [
        "2024-01-10T00:00:00+02:00",  # via UTC this would be 9 January
        "2024-02-01 00:30:00 UTC",
        "2024-03-15T23:00:00-05:00",  # via UTC this would be 16 March
        "2024-02-10",
    ]
    result = validate_table(
        raw_tables["contracts"].assign(start_date=starts), TABLES["contracts"], _ctx()
    )
    expected = pd.to_datetime(["2024-01-10", "2024-02-01", "2024-03-15", "2024-02-10"])
    assert result.accepted["start_date"].tolist() == expected.tolist()
    aware = pd.Series(
        pd.to_datetime(
            ["2024-01-10 00:00", "2024-02-01 00:00", "2024-03-15 00:00", "2024-02-10 00:00"]
        )
    ).dt.tz_localize("Europe/Berlin")  # as Parquet gives a timestamptz column
    result = validate_table(
        raw_tables["contracts"].assign(start_date=aware), TABLES["contracts"], _ctx()
    )
    assert result.accepted["start_date"].tolist() == expected.tolist()


# --- CSM contacts -------------------------------------------------------------------------------


def test_a_bad_csm_email_is_blanked_and_the_csm_kept(raw_tables):
    raw = raw_tables["csms"].assign(email=["ada@example", "grace@example.com, boss@example.com"])
    result = validate_table(raw, TABLES["csms"], _ctx())
    assert len(result.quarantined) == 0 and result.accepted["csm_id"].tolist() == ["CSM1", "CSM2"]
    assert result.accepted["email"].isna().all()
    assert result.blanked_by_reason == {"bad_email_blanked": 2}


def test_an_account_whose_csm_is_unknown_is_kept_with_its_csm_id(raw_tables):
    csms = validate_table(raw_tables["csms"].iloc[:1], TABLES["csms"], _ctx()).accepted
    result = validate_table(
        raw_tables["accounts"], TABLES["accounts"], _ctx(keys={"csms": csms[["csm_id"]]})
    )
    assert len(result.quarantined) == 0
    assert result.accepted["csm_id"].tolist() == ["CSM1", "CSM1", "CSM2"]
    assert result.unknown_references == {"unknown_csm": 1}
