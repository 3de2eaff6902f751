"""Marks: a CSM's memory of what was done about an account, and how next week's list honours it.

A CSM who ran a play on an account marks it *addressed* (with the play and a note), or
*snoozes* it until a date; *clear* withdraws the newest mark. Marks come back as a CSV the CSM
edits, which works offline, by email and in tests: the list CSV they already receive with four
columns added (action, until, play, note; rows with a blank action are ignored), or a small file
with account_id and those columns. `churn mark <file> --csm <id>` reads it (`parse_marks`),
checks every row against that week's scored accounts (`marks_from_file`: only the CSM's own
accounts, the risk at the time of the mark taken from that week's accounts.parquet) and appends
the rows to the marks log (`append_marks`), which nothing overwrites.

The log is point in time, like any input table: each mark carries the moment it was recorded
and the CSM, and scoring at an as-of date sees only marks recorded before that date
(`apply_marks`). That keeps a rescored past list identical, and lets the pipeline later learn
which plays work (the marks joined with what happened at renewal).

Rules of `apply_marks`, per account, newest mark recorded before as-of wins:
- addressed: off the action list for `addressed_weeks` weeks from the day it was recorded,
  unless its churn probability rose more than `back_margin` (absolute) above the probability
  at the mark: then it comes back, flagged (`mark_back`), with the two figures in the reason.
- snoozed until D: off the list through D inclusive (the list dated D still holds it; the
  first list after D shows it again), whatever the risk: the CSM chose the date.
- clear: no mark.
Text is stored as the CSM typed it; the list renderers escape it for HTML and defuse it
against spreadsheet formulas on the way back out, like every other text cell.
"""

from __future__ import annotations

import csv
import io
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.core.atomic import atomic_path
from pipeline.core.config import MarkSettings
from pipeline.core.errors import DataContractError
from pipeline.core.layout import ACCOUNTS_FILE
from pipeline.data.contract import MARK_ACTIONS, MARKS, arrow_schema, pandas_dtype, pandera_schema
from pipeline.lists.render import FORMULA_TRIGGERS

#: Columns `apply_marks` adds to the scored frame.
MARK_COLUMNS = ["mark_state", "mark_hold", "mark_back", "mark_reason", "mark_note"]
#: Columns a CSM fills in (beside account_id) in the marks CSV.
INPUT_COLUMNS = ["action", "until", "play", "note"]
MAX_TEXT_CHARS = 2000  # a note is a sentence or two, not a document pasted by mistake


# --- reading the CSM's file ------------------------------------------------------------------


def _undefuse(value: str) -> str:
    # Our list CSVs prefix a formula-like cell with an apostrophe; an id read back loses it.
    if value.startswith("'") and value[1:].startswith(FORMULA_TRIGGERS):
        return value[1:]
    return value


def _rows_text(lines: list[int]) -> str:
    shown = ", ".join(str(n) for n in lines[:20])
    return f"line{'s' if len(lines) > 1 else ''} {shown}" + (" ..." if len(lines) > 20 else "")


def _fail(file: str, column: str | None, problem: str, bad: pd.DataFrame | None = None):
    examples = None
    if bad is not None:
        examples = bad.set_index("line")
    raise DataContractError(f"marks (file {file})", column, problem, examples)


def parse_marks(text: str, *, file: str) -> pd.DataFrame:
    """The marks a CSM wrote in a CSV: account_id, action, until, play, note, line.

    Accepts the CSM's list CSV with the columns added, or a file of just those columns (any
    other column is ignored, so the list's own columns can stay). Rows whose action is blank
    are not marks. Errors name the file, the column and the CSV lines, so the CSM can fix
    their spreadsheet: an unknown action, a date that is not YYYY-MM-DD, a snooze without a
    date, one account marked twice in the same file.
    """
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")))
    rows = list(reader)
    if not rows:
        _fail(file, None, "the file is empty; expected a header with account_id and action")
    header = [h.strip().lower() for h in rows[0]]
    missing = [c for c in ("account_id", "action") if c not in header]
    if missing:
        _fail(file, missing[0], f"no column {missing}; the header is {header}")
    records = []
    for line, row in enumerate(rows[1:], start=2):
        cells = dict(zip(header, row, strict=False))
        record = {c: (cells.get(c) or "").strip() for c in ["account_id", *INPUT_COLUMNS]}
        if not record["action"] and not any(record[c] for c in ("until", "play", "note")):
            continue
        record["line"] = line
        records.append(record)
    frame = pd.DataFrame(records, columns=["account_id", *INPUT_COLUMNS, "line"])
    frame["account_id"] = frame["account_id"].map(_undefuse)
    frame["action"] = frame["action"].str.lower()

    def check(mask: pd.Series, column: str, problem: str) -> None:
        if mask.any():
            bad = frame.loc[mask, ["line", "account_id", column]]
            _fail(file, column, f"{problem} ({_rows_text(bad['line'].tolist())})", bad)

    check(frame["account_id"] == "", "account_id", "empty account id")
    check(
        ~frame["action"].isin(MARK_ACTIONS),
        "action",
        f"unknown action; use one of {', '.join(MARK_ACTIONS)}",
    )
    until = pd.to_datetime(frame["until"], format="%Y-%m-%d", errors="coerce")
    check((frame["until"] != "") & until.isna(), "until", "not a date in YYYY-MM-DD form")
    check(
        (frame["action"] == "snoozed") & (frame["until"] == ""),
        "until",
        "a snooze needs the date it ends (YYYY-MM-DD)",
    )
    for column in ("play", "note"):
        check(frame[column].str.len() > MAX_TEXT_CHARS, column, f"over {MAX_TEXT_CHARS} characters")
    check(
        frame["account_id"].duplicated(keep=False),
        "account_id",
        "the same account is marked more than once in this file; keep one row per account",
    )
    return frame.assign(until=until.dt.date)


def marks_from_file(
    parsed: pd.DataFrame,
    week_accounts: pd.DataFrame,
    *,
    csm_id: str,
    list_as_of: date,
    recorded_at: datetime,
    file: str,
) -> pd.DataFrame:
    """The rows of the marks log for a parsed file, checked against that week's accounts.

    `week_accounts` is the week's accounts.parquet (account_id, csm_id, probability). A CSM
    marks only their own accounts: any other id (another CSM's, or not scored that week) is
    refused by id and CSV line, and nothing of the file is recorded. The probability at the
    mark is that week's score, so "risk rose since addressed" compares like with like.
    """
    if recorded_at.tzinfo is None:
        raise ValueError("recorded_at must be timezone-aware")
    owners = week_accounts.set_index(week_accounts["account_id"].astype(str))
    known = parsed["account_id"].isin(owners.index)
    if (~known).any():
        bad = parsed.loc[~known, ["line", "account_id"]]
        _fail(
            file,
            "account_id",
            f"not accounts scored in the list of {list_as_of} "
            f"({_rows_text(bad['line'].tolist())}): {bad['account_id'].tolist()}",
            bad,
        )
    owner = parsed["account_id"].map(owners["csm_id"].astype("string"))
    foreign = (owner != csm_id).fillna(True).to_numpy(dtype=bool)
    if foreign.any():
        bad = parsed.loc[foreign, ["line", "account_id"]].assign(owner=owner[foreign])
        _fail(
            file,
            "account_id",
            f"CSM {csm_id!r} may mark only their own accounts; these belong to another CSM or "
            f"to none ({_rows_text(bad['line'].tolist())}): {bad['account_id'].tolist()}",
            bad,
        )
    stamp = pd.Timestamp(recorded_at).tz_convert("UTC").floor("us")
    until = pd.to_datetime(pd.Series(parsed["until"], dtype="object"))
    early = until.notna() & (until < pd.Timestamp(list_as_of))
    if early.any():
        bad = parsed.loc[early.to_numpy(), ["line", "account_id", "until"]]
        _fail(
            file,
            "until",
            f"a date before the list's week {list_as_of} ({_rows_text(bad['line'].tolist())})",
            bad,
        )
    frame = pd.DataFrame(
        {
            "account_id": parsed["account_id"],
            "csm_id": csm_id,
            "action": parsed["action"],
            "until": until.astype("datetime64[s]"),
            "play": parsed["play"].replace("", pd.NA),
            "note": parsed["note"].replace("", pd.NA),
            "probability_at_mark": parsed["account_id"]
            .map(owners["probability"])
            .astype("float64"),
            "list_as_of": pd.Timestamp(list_as_of),
            "recorded_at": stamp,
            "source_file": Path(file).name,
        }
    )
    return normalise_marks(frame.sort_values("account_id", kind="stable").reset_index(drop=True))


# --- the log ---------------------------------------------------------------------------------


def normalise_marks(frame: pd.DataFrame) -> pd.DataFrame:
    """The marks table in the contract's dtypes, validated by its pandera schema."""
    typed = pd.DataFrame(
        {c.name: frame[c.name].astype(pandas_dtype(c.kind)) for c in MARKS.columns}
    )
    return pandera_schema(MARKS).validate(typed)


def empty_marks() -> pd.DataFrame:
    return normalise_marks(pd.DataFrame({c.name: pd.Series(dtype="object") for c in MARKS.columns}))


def read_marks(path: Path) -> pd.DataFrame | None:
    """The marks log, or None when no mark was ever recorded."""
    path = Path(path)
    if not path.is_file():
        return None
    return normalise_marks(pd.read_parquet(path))


def append_marks(path: Path, new: pd.DataFrame) -> pd.DataFrame:
    """Append rows to the marks log (written atomically; earlier rows are kept as they are)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    existing = read_marks(path)
    combined = new if existing is None else pd.concat([existing, new], ignore_index=True)
    combined = normalise_marks(combined)
    table = pa.Table.from_pandas(combined, schema=arrow_schema(MARKS), preserve_index=False)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return combined


# --- applying marks to a week's scores -------------------------------------------------------


def _percent(p: float) -> str:
    return f"{100 * p:.0f}%"


def _addressed_text(day: date, play: object) -> str:
    return f"addressed on {day}" + (f" ({play})" if isinstance(play, str) and play else "")


def apply_marks(
    scored: pd.DataFrame,
    marks: pd.DataFrame | None,
    *,
    as_of: date,
    addressed_weeks: int = MarkSettings().addressed_weeks,
    back_margin: float = MarkSettings().back_margin,
) -> pd.DataFrame:
    """`scored` (account_id, probability) with mark_state, mark_hold, mark_back, mark_reason
    and mark_note added.

    Only marks recorded before `as_of` (midnight UTC) count, so a list rescored later is the
    same list; the newest per account wins (ties: the later row of the log). mark_state is
    the mark in force ("addressed" or "snoozed", "" when none or it lapsed); mark_hold keeps
    the account off this week's action list; mark_back flags an addressed account whose
    probability rose more than `back_margin` above its probability at the mark (it is not
    held, and the reason gives both figures). Never mutates its inputs.
    """
    n = len(scored)
    state = np.full(n, "", dtype=object)
    hold = np.zeros(n, dtype=bool)
    back = np.zeros(n, dtype=bool)
    reason = np.full(n, "", dtype=object)
    note = np.full(n, "", dtype=object)
    if marks is not None and len(marks):
        cutoff = pd.Timestamp(as_of, tz="UTC")
        known = marks[marks["recorded_at"] < cutoff].reset_index(drop=True)
        newest = known.iloc[::-1].sort_values("recorded_at", ascending=False, kind="stable")
        newest = newest.drop_duplicates("account_id").set_index("account_id")
        probability = scored["probability"].to_numpy(dtype=float)
        for i, account in enumerate(scored["account_id"].astype(str)):
            if account not in newest.index:
                continue
            mark = newest.loc[account]
            recorded = mark["recorded_at"].date()
            if mark["action"] == "clear":
                continue
            note[i] = "" if pd.isna(mark["note"]) else str(mark["note"])
            if mark["action"] == "snoozed":
                until = mark["until"].date()
                if as_of <= until:
                    state[i], hold[i] = "snoozed", True
                    reason[i] = f"snoozed until {until} (on {recorded})"
                else:
                    reason[i] = f"snooze ended {until}"
                continue
            # addressed
            done = _addressed_text(recorded, mark["play"])
            before, now = mark["probability_at_mark"], probability[i]
            hold_until = recorded + timedelta(weeks=addressed_weeks)
            if pd.notna(before) and now - float(before) > back_margin:
                state[i], back[i] = "addressed", True
                reason[i] = f"back: risk {_percent(before)} -> {_percent(now)} since {done}"
            elif as_of < hold_until:
                state[i], hold[i] = "addressed", True
                reason[i] = f"{done}; off the list until {hold_until}"
            else:
                reason[i] = f"{done}; hold ended {hold_until}"
    return scored.assign(
        mark_state=pd.array(state, dtype="string"),
        mark_hold=hold,
        mark_back=back,
        mark_reason=pd.array(reason, dtype="string"),
        mark_note=pd.array(note, dtype="string"),
    )


# --- the edge of `churn mark` ----------------------------------------------------------------


def record_marks(
    file: Path,
    *,
    csm_id: str,
    list_as_of: date,
    lists_dir: Path,
    marks_path: Path,
    recorded_at: datetime,
) -> pd.DataFrame:
    """Read a CSM's marks file, check it against the week's scored accounts, append it to the
    log; returns the rows recorded. Nothing is recorded when any row is refused."""
    file = Path(file)
    if not file.is_file():
        raise DataContractError(f"marks (file {file})", None, "no such file")
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise DataContractError(
            f"marks (file {file})", None, f"not UTF-8 text ({err}); save the CSV as UTF-8"
        ) from None
    accounts_path = Path(lists_dir) / ACCOUNTS_FILE
    if not accounts_path.is_file():
        raise DataContractError(
            "marks",
            None,
            f"no scored accounts at {accounts_path}: score the week of {list_as_of} first "
            "(`churn score --as-of`), or give --lists",
        )
    week = pd.read_parquet(accounts_path, columns=["account_id", "csm_id", "probability"])
    parsed = parse_marks(text, file=str(file))
    new = marks_from_file(
        parsed,
        week,
        csm_id=csm_id,
        list_as_of=list_as_of,
        recorded_at=recorded_at,
        file=str(file),
    )
    if len(new):
        append_marks(marks_path, new)
    return new
