"""Marks: what a CSM did about an account, and how the next lists honour it (point in time)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pandas as pd
import pytest

from pipeline.core.errors import DataContractError
from pipeline.data.contract import contract_markdown
from pipeline.lists.marks import (
    MARK_COLUMNS,
    append_marks,
    apply_marks,
    marks_from_file,
    parse_marks,
    read_marks,
)

AS_OF = date(2026, 11, 16)
WEEK = pd.DataFrame(
    {
        "account_id": ["a1", "a2", "a3", "=evil", "b1"],
        "csm_id": ["csm_a", "csm_a", "csm_a", "csm_a", "csm_b"],
        "probability": [0.31, 0.20, 0.50, 0.40, 0.60],
    }
)


def _marks(csv_text: str, *, recorded: datetime, week: date = date(2026, 11, 9)):
    parsed = parse_marks(csv_text, file="csm_a.csv")
    return marks_from_file(
        parsed, WEEK, csm_id="csm_a", list_as_of=week, recorded_at=recorded, file="csm_a.csv"
    )


def _scored(**probabilities: float) -> pd.DataFrame:
    ids = list(probabilities)
    return pd.DataFrame({"account_id": ids, "probability": [probabilities[i] for i in ids]})


MONDAY = datetime(2026, 11, 9, 15, 30, tzinfo=UTC)


def test_addressed_is_held_with_play_and_note():
    marks = _marks(
        "account_id,action,until,play,note\na1,addressed,,QBR,Met the sponsor\n", recorded=MONDAY
    )
    out = apply_marks(_scored(a1=0.33, a2=0.2), marks, as_of=AS_OF)
    row = out.set_index("account_id").loc["a1"]
    assert row["mark_state"] == "addressed" and bool(row["mark_hold"]) and not row["mark_back"]
    assert row["mark_note"] == "Met the sponsor"
    assert "addressed on 2026-11-09 (QBR)" in row["mark_reason"]
    other = out.set_index("account_id").loc["a2"]
    assert other["mark_state"] == "" and not other["mark_hold"]
    assert list(out.columns[-5:]) == MARK_COLUMNS


def test_addressed_hold_lapses_after_the_declared_weeks():
    marks = _marks("account_id,action\na1,addressed\n", recorded=MONDAY)
    held = apply_marks(_scored(a1=0.31), marks, as_of=date(2026, 11, 30), addressed_weeks=4)
    lapsed = apply_marks(_scored(a1=0.31), marks, as_of=date(2026, 12, 7), addressed_weeks=4)
    assert bool(held["mark_hold"].iloc[0])
    assert not lapsed["mark_hold"].iloc[0] and lapsed["mark_state"].iloc[0] == ""
    assert "hold ended 2026-12-07" in lapsed["mark_reason"].iloc[0]


def test_addressed_account_whose_risk_rose_comes_back_flagged():
    marks = _marks("account_id,action,play\na1,addressed,QBR\n", recorded=MONDAY)
    out = apply_marks(_scored(a1=0.48), marks, as_of=AS_OF, back_margin=0.10)
    row = out.iloc[0]
    assert bool(row["mark_back"]) and not row["mark_hold"] and row["mark_state"] == "addressed"
    assert row["mark_reason"] == "back: risk 31% -> 48% since addressed on 2026-11-09 (QBR)"
    # within the margin it stays held
    within = apply_marks(_scored(a1=0.40), marks, as_of=AS_OF, back_margin=0.10)
    assert bool(within["mark_hold"].iloc[0]) and not within["mark_back"].iloc[0]


def test_snooze_holds_through_its_date_inclusive_then_lets_go():
    marks = _marks("account_id,action,until\na2,snoozed,2026-11-30\n", recorded=MONDAY)
    for as_of, held in ((AS_OF, True), (date(2026, 11, 30), True), (date(2026, 12, 7), False)):
        out = apply_marks(_scored(a2=0.9), marks, as_of=as_of)
        assert bool(out["mark_hold"].iloc[0]) is held, as_of
        assert out["mark_state"].iloc[0] == ("snoozed" if held else "")
        assert not out["mark_back"].iloc[0]  # a snooze ignores risk: the CSM chose the date


def test_clear_removes_and_the_newest_mark_wins(tmp_path):
    log = tmp_path / "marks.parquet"
    append_marks(log, _marks("account_id,action\na1,addressed\na2,addressed\n", recorded=MONDAY))
    later = datetime(2026, 11, 10, 9, tzinfo=UTC)
    append_marks(
        log, _marks("account_id,action,until\na1,clear,\na2,snoozed,2026-12-31\n", recorded=later)
    )
    marks = read_marks(log)
    assert len(marks) == 4  # append-only: the earlier marks are still there
    out = apply_marks(_scored(a1=0.3, a2=0.2), marks, as_of=AS_OF).set_index("account_id")
    assert out.loc["a1", "mark_state"] == "" and not out.loc["a1", "mark_hold"]
    assert out.loc["a2", "mark_state"] == "snoozed"
    assert "2026-12-31" in out.loc["a2", "mark_reason"]


def test_a_mark_recorded_on_or_after_as_of_is_ignored():
    marks = _marks(
        "account_id,action\na1,addressed\n", recorded=datetime(2026, 11, 16, 0, tzinfo=UTC)
    )
    out = apply_marks(_scored(a1=0.31), marks, as_of=AS_OF)
    assert out["mark_state"].iloc[0] == "" and not out["mark_hold"].iloc[0]
    later = apply_marks(_scored(a1=0.31), marks, as_of=date(2026, 11, 23))
    assert bool(later["mark_hold"].iloc[0])


def test_apply_marks_without_marks_and_does_not_mutate():
    scored = _scored(a1=0.3)
    out = apply_marks(scored, None, as_of=AS_OF)
    assert list(scored.columns) == ["account_id", "probability"]
    assert out["mark_state"].tolist() == [""] and not out["mark_hold"].any()


def test_another_csms_account_is_refused_naming_file_column_and_lines():
    with pytest.raises(DataContractError) as err:
        _marks("account_id,action\na1,addressed\nb1,addressed\n", recorded=MONDAY)
    message = str(err.value)
    assert "csm_a.csv" in message and "'account_id'" in message
    assert "line 3" in message and "b1" in message and "own accounts" in message


def test_unknown_account_is_refused():
    with pytest.raises(DataContractError, match=r"not accounts scored.*zz9"):
        _marks("account_id,action\nzz9,addressed\n", recorded=MONDAY)


@pytest.mark.parametrize(
    ("body", "column", "words"),
    [
        ("a1,done,,", "action", "unknown action"),
        ("a1,snoozed,30/11/2026,", "until", "not a date"),
        ("a1,snoozed,,", "until", "needs the date"),
        ("a1,snoozed,2026-11-01,", "until", "before the list's week"),
    ],
)
def test_bad_actions_and_dates_are_reported_with_table_column_and_lines(body, column, words):
    text = f"account_id,action,until,note\na2,addressed,,ok\n{body}\n"
    with pytest.raises(DataContractError) as err:
        _marks(text, recorded=MONDAY)
    message = str(err.value)
    assert "marks (file csm_a.csv)" in message and f"column '{column}'" in message
    assert words in message and "line 3" in message


def test_the_list_csv_itself_with_added_columns_is_read_and_defused_ids_restored():
    # The list CSV has more columns; rows left blank are not marks; '=evil was defused.
    text = (
        '"rank","account_id","account_name","action","until","play","note"\n'
        '"1","\'=evil","x","addressed","","Exec call","=HYPERLINK(1)"\n'
        '"2","a1","y","","","",""\n'
    )
    marks = _marks(text, recorded=MONDAY)
    assert marks["account_id"].tolist() == ["=evil"]
    assert marks["note"].tolist() == ["=HYPERLINK(1)"]  # stored as typed; defused on output
    assert marks["probability_at_mark"].tolist() == [0.40]
    assert marks["csm_id"].tolist() == ["csm_a"]
    assert str(marks["recorded_at"].dtype) == "datetime64[us, UTC]"


def test_same_account_twice_in_one_file_is_refused():
    with pytest.raises(DataContractError, match=r"more than once.*lines 2, 3"):
        _marks("account_id,action\na1,addressed\na1,clear\n", recorded=MONDAY)


def test_contract_documents_the_marks_table():
    doc = contract_markdown()
    assert "### `marks` (optional)" in doc and "`probability_at_mark`" in doc
