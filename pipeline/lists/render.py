"""Weekly at-risk lists: each CSM's own accounts, ranked, cut at capacity, flagged, rendered.

A CSM acts on the top few rows of *their* list, so the list must be short (capacity), ranked
where an hour of work saves the most (expected ARR at risk, or probability), and say what
changed: new on the list, risen or fallen since last week and which driver moved most, and
renewals coming up.

Rendering is for people and for spreadsheets, both of which can be attacked through the data:
an account named `=HYPERLINK(...)` must not become a live formula when a CSM opens the CSV
(OWASP "CSV injection": cells starting with = + - @ tab or carriage return get a leading
apostrophe, every cell is quoted), and `<script>` must not run in the HTML page (Jinja2 with
autoescaping). Same input, same bytes: rows are sorted with account_id as tie-break, numbers
have fixed formats, and nothing records the time of the run.

Pure functions only; writing the files is the score stage's edge (`pipeline.stages.score`).
"""

from __future__ import annotations

import csv
import hashlib
import io
import re

import numpy as np
import pandas as pd

FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
CHANGE_LABELS = ("risen", "fallen", "steady", "new")

# The columns of each CSM's CSV, in order (the HTML shows the same facts). Columns are only
# ever appended, so a spreadsheet or script that reads them by position keeps working; the
# CSM's own mark columns (action, until, play, note: pipeline.lists.marks) go after these.
LIST_COLUMNS = [
    "rank",  # list_rank on the action section, watch_rank on the watch section
    "account_id",
    "account_name",
    "segment",
    "region",
    "arr",
    "probability",
    "risk_band",
    "expected_arr_at_risk",
    "renewal_date",
    "days_to_renewal",
    "renewal_soon",
    "new_on_list",
    "change",
    "probability_last_week",
    "moved_most",
    "reasons",
    "plays",
    "context",
    "as_of",
    "model_version",
    "data_version",
    "data_warnings",  # freshness warnings in plain words; never drift (data-science) ones
    "section",  # "action" (needs a play this week) or "watch" (below the floor, moving)
    "priority",  # the value the list is ranked by (rank_by x renewal urgency)
    "last_touch_date",
    "last_touch_kind",
    "open_tickets",
    "open_tickets_breached",
    "mark_state",
    "mark_back",
    "mark_reason",
    "mark_note",
]
SECTIONS = ("action", "watch")


# --- ranking and flags -----------------------------------------------------------------------


def list_flags(
    now: pd.DataFrame,
    before: pd.DataFrame,
    *,
    renewal_window_days: int,
    change_threshold: float,
) -> pd.DataFrame:
    """Flags for this week's accounts against last week's scoring of the same accounts.

    `now` and `before` hold account_id, probability and list_rank (before: as scored a week
    earlier with the same model). Returns, aligned with `now`: probability_last_week,
    probability_change, change (risen / fallen when the probability moved by at least
    `change_threshold`, steady otherwise, new when the account was not scored last week),
    new_on_list (on the list now, not last week) and renewal_soon (renewal within
    `renewal_window_days`).
    """
    previous = before.set_index("account_id")
    p_before = now["account_id"].map(previous["probability"]).astype("Float64")
    listed_before = now["account_id"].map(previous["list_rank"].notna()).astype("boolean")
    change = now["probability"].astype("Float64") - p_before
    label = pd.Series("steady", index=now.index, dtype="string")
    label[(change >= change_threshold).fillna(False).to_numpy()] = "risen"
    label[(change <= -change_threshold).fillna(False).to_numpy()] = "fallen"
    label[p_before.isna().to_numpy()] = "new"
    on_list = now["list_rank"].notna()
    return pd.DataFrame(
        {
            "probability_last_week": p_before,
            "probability_change": change,
            "change": label,
            "new_on_list": (on_list & ~listed_before.fillna(False)).astype(bool),
            "renewal_soon": (now["days_to_renewal"] <= renewal_window_days).astype(bool),
        },
        index=now.index,
    )


# --- rendering -------------------------------------------------------------------------------


def defuse_cell(value: str) -> str:
    """A spreadsheet cell that cannot start a formula (OWASP CSV injection guidance)."""
    return "'" + value if value.startswith(FORMULA_TRIGGERS) else value


def safe_file_names(csm_ids: list[str]) -> dict[str, str]:
    """csm_id -> a file name stem safe on any file system, unique even ignoring case."""
    out: dict[str, str] = {}
    taken: set[str] = set()
    for csm_id in sorted(csm_ids):
        stem = re.sub(r"[^A-Za-z0-9_-]+", "_", csm_id).strip("_")[:64] or "csm"
        if stem.lower() in taken:
            stem = f"{stem}-{hashlib.md5(csm_id.encode()).hexdigest()[:8]}"
        taken.add(stem.lower())
        out[csm_id] = stem
    return out


def _missing(value: object) -> bool:
    return (
        value is None
        or value is pd.NA
        or value is pd.NaT
        or (isinstance(value, float) and np.isnan(value))
    )


def _text(value: object) -> str:
    return "" if _missing(value) else str(value)


def _number(value: object, digits: int) -> str:
    text = _text(value)
    return "" if text == "" else f"{float(value):.{digits}f}"


def _count(value: object) -> str:
    return "" if _missing(value) else str(int(value))


def _flag(value: object) -> str:
    return "" if _missing(value) else ("yes" if bool(value) else "no")


def _date(value: object) -> str:
    """An ISO date (YYYY-MM-DD) for the CSV, whatever date-like value the frame holds."""
    if _missing(value):
        return ""
    return pd.Timestamp(value).date().isoformat()


# --- words for the CSM (no data-science vocabulary) ------------------------------------------

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
#: Warning kinds a CSM can act on or at least understand: the data behind the list is missing
#: or old. Every other kind (drift, PSI: about the model, not the accounts) goes to the
#: manifest and the log for the data scientist, never to a CSM's page or CSV.
CSM_WARNING_KINDS = ("stale_table", "empty_table", "missing_table")


def human_date(value: object) -> str:
    """'12 Nov 2026': day, English month abbreviation and year, the same on every locale."""
    if _missing(value) or value == "":
        return ""
    day = pd.Timestamp(value)
    return f"{day.day} {_MONTHS[day.month - 1]} {day.year}"


def money(value: object, currency: str) -> str:
    """An account's amount in whole units with the currency symbol: '$11,819'."""
    if _missing(value) or value == "":
        return ""
    amount = float(value)
    return f"{'−' if amount < 0 else ''}{currency}{abs(amount):,.0f}"


def _table_words(table: str) -> str:
    words = table.replace("_", " ").strip()
    return re.sub(r"\bcsm\b", "CSM", words)


def csm_warnings(warnings: list[dict]) -> list[str]:
    """The data warnings a CSM sees, in plain words; drift and any other model warning dropped.

    A stale or missing table means some recent activity is not reflected in this week's
    risk, which a CSM should know before acting on it ("support tickets data is 40 days
    old"). The log's messages name features and tables for the data scientist, so the known
    kinds are re-worded from their fields; a warning of a known kind without them keeps its
    message.
    """
    out = []
    for warning in warnings:
        kind, table = warning.get("kind"), warning.get("table")
        if kind not in CSM_WARNING_KINDS:
            continue
        if not table:
            out.append(str(warning.get("message", "")))
            continue
        what = _table_words(str(table))
        if kind == "stale_table" and warning.get("latest"):
            out.append(
                f"The {what} data is out of date (latest from {human_date(warning['latest'])}, "
                f"{warning.get('days_old', '?')} days before this list): recent {what} are "
                "not reflected in these risks."
            )
        elif kind == "stale_table":
            out.append(f"The {what} data is out of date: recent {what} are not reflected.")
        else:
            out.append(f"No {what} data came in this week: these risks are estimated without it.")
    return out


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def touch_text(last_date: object, kind: object) -> str:
    """'last touch: 12 Nov 2026, call', or 'no touch recorded'."""
    if _missing(last_date) or last_date == "":
        return "no touch recorded"
    kind_text = _text(kind).replace("_", " ")
    kind_text = re.sub(r"\bqbr\b", "QBR", kind_text)
    return f"last touch: {human_date(last_date)}" + (f", {kind_text}" if kind_text else "")


def tickets_text(open_tickets: object, breached: object) -> str:
    """'2 open tickets, 1 past SLA', 'no open tickets', or '' when tickets are unknown."""
    if _missing(open_tickets) or open_tickets == "":
        return ""
    n = int(open_tickets)
    if n == 0:
        return "no open tickets"
    text = _plural(n, "open ticket")
    if not (_missing(breached) or breached == "") and int(breached) > 0:
        text += f", {int(breached)} past SLA"
    return text


def renewal_text(days: object) -> str:
    if _missing(days) or days == "":
        return ""
    n = int(days)
    if n < 0:
        return f"{_plural(-n, 'day')} ago"
    return "today" if n == 0 else f"in {_plural(n, 'day')}"


def rule_text(rank_by: str, ranking: dict | None) -> str:
    """The ranking rule in plain words, from the manifest's ranking rule when given."""
    value = "expected ARR at risk (churn risk × ARR)"
    if rank_by != "expected_arr_at_risk":
        value = "churn risk"
    if not ranking:
        return f"Ranked by {value}."
    text = f"Ranked by {value}"
    urgency = ranking.get("urgency") or {}
    if urgency.get("enabled") and float(urgency.get("floor", 1.0)) < 1.0:
        text += f", weighted toward renewals in the next {urgency.get('horizon_days')} days"
    floor = ranking.get("action_floor", "low")
    if floor != "low":
        share = float(ranking.get("floor_probability", 0.0))
        text += f"; only accounts at {floor} risk or above (churn risk {share:.0%} or more)"
    return text + "."


# --- rows ------------------------------------------------------------------------------------


def _section(rec: dict) -> str:
    return "action" if not _missing(rec.get("list_rank")) else "watch"


def list_rows(records: list[dict], stamp: dict, warnings: list[dict]) -> list[dict[str, str]]:
    """One CSM's accounts (action rows in list order, then watch rows) as rows of text.

    Fixed number formats, so the same data gives the same bytes; a column the scored frame
    lacks (an older frame without facts or marks) reads empty.
    """
    data_warnings = " | ".join(csm_warnings(warnings))
    rows = []
    for rec in records:
        section = _section(rec)
        rank = rec["list_rank"] if section == "action" else rec.get("watch_rank")
        rows.append(
            {
                "rank": str(int(rank)),
                "account_id": _text(rec["account_id"]),
                "account_name": _text(rec["account_name"]),
                "segment": _text(rec["segment"]),
                "region": _text(rec["region"]),
                "arr": _number(rec["arr"], 2),
                "probability": _number(rec["probability"], 4),
                "risk_band": _text(rec["risk_band"]),
                "expected_arr_at_risk": _number(rec["expected_arr_at_risk"], 2),
                "renewal_date": _date(rec["renewal_date"]),
                "days_to_renewal": _text(rec["days_to_renewal"]),
                "renewal_soon": "yes" if rec["renewal_soon"] else "no",
                "new_on_list": "yes" if rec["new_on_list"] else "no",
                "change": _text(rec["change"]),
                "probability_last_week": _number(rec["probability_last_week"], 4),
                "moved_most": _text(rec["moved_most"]),
                "reasons": _text(rec["reasons"]),
                "plays": _text(rec["plays"]),
                "context": _text(rec["context"]),
                "as_of": str(stamp["as_of"]),
                "model_version": str(stamp["model_version"]),
                "data_version": str(stamp["data_version"]),
                "data_warnings": data_warnings,
                "section": section,
                "priority": _number(rec.get("priority"), 4),
                "last_touch_date": _date(rec.get("last_touch_date")),
                "last_touch_kind": _text(rec.get("last_touch_kind")),
                "open_tickets": _count(rec.get("open_tickets")),
                "open_tickets_breached": _count(rec.get("open_tickets_breached")),
                "mark_state": _text(rec.get("mark_state")),
                "mark_back": _flag(rec.get("mark_back")),
                "mark_reason": _text(rec.get("mark_reason")),
                "mark_note": _text(rec.get("mark_note")),
                # for the page only (not CSV columns): whether the frame had the facts
                "_has_touch": "last_touch_date" in rec,
            }
        )
    return rows


def list_csv(rows: list[dict[str, str]]) -> str:
    """The list as CSV: every cell quoted and defused against formula injection."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, quoting=csv.QUOTE_ALL, lineterminator="\n")
    writer.writerow(LIST_COLUMNS)
    for row in rows:
        writer.writerow([defuse_cell(row.get(c, "")) for c in LIST_COLUMNS])
    return buffer.getvalue()


# --- the page (and the email body) -----------------------------------------------------------

# Email clients differ: most honour <style> and media queries, some (older Outlook, some
# webmail) ignore media queries. So the base layout is already readable anywhere (a
# max-width container, cells that wrap, dates that do not), and below 600 px the table turns
# into one card per account. No script, no external resource.
_HTML = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Accounts that need action: {{ csm_name }}, week of {{ as_of_text }}</title>
<style>
body { font-family: Arial, Helvetica, sans-serif; font-size: 14px; color: #222; margin: 0;
       padding: 12px; }
.page { max-width: 1100px; margin: 0 auto; }
h1 { font-size: 22px; margin: 4px 0; }
h2 { font-size: 18px; margin: 24px 0 4px; }
p { margin: 6px 0; }
table { border-collapse: collapse; width: 100%; }
th, td { border-bottom: 1px solid #ddd; padding: 6px 8px; text-align: left; vertical-align: top;
         overflow-wrap: anywhere; word-break: break-word; }
th { background: #f4f4f4; }
.num { text-align: right; }
.nowrap, .date { white-space: nowrap; }
.high { color: #b00020; font-weight: bold; }
.medium { color: #b36b00; font-weight: bold; }
.low { color: #2e7d32; }
.warn { background: #fff4e5; border: 1px solid #f0c36d; padding: 8px 12px; margin: 12px 0; }
.flag { display: inline-block; background: #eef; border-radius: 3px; padding: 0 4px;
        margin: 1px 0; font-size: 12px; }
.back { background: #fde7e9; color: #8a0016; font-weight: bold; }
.context, .stamp, .facts { color: #555; font-size: 12px; }
.watch th { background: #f7f7f7; }
.watch td { color: #444; }
ul { margin: 0; padding-left: 18px; }
code { font-family: Consolas, monospace; background: #f4f4f4; padding: 0 3px;
       overflow-wrap: anywhere; }
@media (max-width: 600px) {
  body { padding: 8px; }
  table, tbody, tr, td { display: block; width: auto; }
  thead { display: none; }
  tr { border: 1px solid #ccc; border-radius: 6px; margin: 0 0 12px; padding: 6px 8px; }
  td { border: 0; padding: 3px 0; text-align: left; }
  td.num { text-align: left; }
  td[data-label]:before { content: attr(data-label) ": "; color: #666; font-size: 12px; }
}
</style>
</head>
<body>
<div class="page">
<h1>Accounts that need action</h1>
<p>For {{ csm_name }}, week of <span class="date">{{ as_of_text }}</span>:
{% if rows %}your top {{ rows | length }} of {{ n_owned }} active accounts.{% else %}none of
your {{ n_owned }} active accounts needs action this week.{% endif %}</p>
<p class="rule">{{ rule }}</p>
{% if warnings %}<div class="warn"><strong>About this week's data:</strong><ul>
{% for w in warnings %}<li>{{ w }}</li>
{% endfor %}</ul></div>
{% endif %}{% if rows %}<table class="action">
<thead><tr><th>#</th><th>Account</th><th class="num">ARR</th><th class="num">Churn risk</th>
<th class="num">ARR at risk</th><th>Renewal</th><th>Flags</th><th>Why, and what to do</th></tr>
</thead>
<tbody>
{% for r in rows %}{{ row(r) }}{% endfor %}</tbody>
</table>
{% endif %}{% if watch %}<h2>Watch: no action needed yet</h2>
<p>Below the risk level that needs action, but moving: risk rising or a renewal coming up.
Keep an eye on them; they need no play this week.</p>
<table class="watch">
<thead><tr><th>#</th><th>Account</th><th class="num">ARR</th><th class="num">Churn risk</th>
<th class="num">ARR at risk</th><th>Renewal</th><th>Flags</th><th>Why</th></tr>
</thead>
<tbody>
{% for r in watch %}{{ row(r) }}{% endfor %}</tbody>
</table>
{% endif %}<p class="stamp">Done something about an account? Add the columns action
(addressed, snoozed or clear), until, play and note to this list's CSV, fill the rows you acted
on and record them with <code>churn mark {{ csv_name }} --csm {{ csm_id }}</code>.</p>
<p class="stamp">As of <span class="date">{{ as_of_text }}</span> &middot; model
{{ model_version }} &middot; data {{ data_version }}.
Churn risk is the chance that the account leaves at its renewal, learned from past renewals;
ARR at risk is that chance times ARR.</p>
</div>
</body>
</html>
"""

_ROW = """{% macro row(r) %}<tr>
<td data-label="#">{{ r.rank }}</td>
<td><strong>{{ r.account_name }}</strong><br><span class="context">{{ r.account_id }}
&middot; {{ r.segment_text }} &middot; {{ r.region_text }}</span>
{% if r.touch_text %}<br><span class="facts">{{ r.touch_text }}</span>{% endif %}
{% if r.tickets_text %}<br><span class="facts">{{ r.tickets_text }}</span>{% endif %}</td>
<td class="num nowrap" data-label="ARR">{{ r.arr_text }}</td>
<td class="num nowrap" data-label="Churn risk"><span class="{{ r.risk_band }}">
{{ r.probability_text }}</span> <span class="context">{{ r.risk_band }}</span></td>
<td class="num nowrap" data-label="ARR at risk">{{ r.expected_text }}</td>
<td data-label="Renewal"><span class="date">{{ r.renewal_text }}</span><br>
<span class="context nowrap">{{ r.renewal_in }}</span></td>
<td>{% if r.mark_back == "yes" %}<span class="flag back">back on your list: {{ r.back_text }}
</span><br>{% if r.mark_note %}<span class="context">your note: {{ r.mark_note }}</span><br>
{% endif %}{% elif r.mark_reason %}<span class="context">your mark: {{ r.mark_reason }}</span>
<br>{% endif %}
{% if r.new_on_list == "yes" %}<span class="flag">new on list</span><br>{% endif %}
{% if r.change in ("risen", "fallen") %}<span class="flag">{{ r.change }} since last week
({{ r.last_week_text }} &rarr; {{ r.probability_text }})</span>
{% if r.moved_most %}<br><span class="context">moved most: {{ r.moved_most }}</span>{% endif %}
<br>{% endif %}
{% if r.renewal_soon == "yes" %}<span class="flag">renewal within {{ renewal_window_days }}
days</span>{% endif %}</td>
<td>{% if r.reason_items %}<ul>{% for reason in r.reason_items %}<li>{{ reason }}</li>
{% endfor %}</ul>{% else %}No single driver stands out.{% endif %}
{% if r.play_items and r.section == "action" %}<strong>Plays:</strong><ul>
{% for play in r.play_items %}<li>{{ play }}</li>
{% endfor %}</ul>{% endif %}
{% if r.context %}<p class="context">Context (not actionable): {{ r.context }}</p>{% endif %}
</td>
</tr>
{% endmacro %}"""


def _environment():
    import jinja2

    return jinja2.Environment(
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )


def _template(environment=None):
    environment = environment or _environment()
    return environment.from_string(_ROW + _HTML)


def _back_text(reason: str) -> str:
    # apply_marks writes "back: risk 20% -> 35% since addressed on <date> (<play>)".
    text = reason.removeprefix("back:").strip().replace("->", "→")
    return text or "risk up since it was addressed"


def _shown(row: dict[str, str], currency: str) -> dict:
    from pipeline.core.words import group_name

    has_touch = row.get("_has_touch", False)
    return {
        **row,
        "segment_text": group_name(row["segment"] or None),
        "region_text": group_name(row["region"] or None),
        "arr_text": money(row["arr"], currency),
        "expected_text": money(row["expected_arr_at_risk"], currency),
        "probability_text": f"{float(row['probability']):.0%}" if row["probability"] else "",
        "last_week_text": (
            f"{float(row['probability_last_week']):.0%}" if row["probability_last_week"] else ""
        ),
        "renewal_text": human_date(row["renewal_date"]),
        "renewal_in": renewal_text(row["days_to_renewal"]),
        "touch_text": (
            touch_text(row["last_touch_date"], row["last_touch_kind"]) if has_touch else ""
        ),
        "tickets_text": tickets_text(row["open_tickets"], row["open_tickets_breached"]),
        "back_text": _back_text(row["mark_reason"]),
        "reason_items": [r for r in row["reasons"].split(" | ") if r],
        "play_items": [p for p in row["plays"].split(" | ") if p],
    }


def list_html(
    rows: list[dict[str, str]],
    *,
    csm_name: str,
    n_owned: int,
    stamp: dict,
    warnings: list[dict],
    rank_by: str,
    renewal_window_days: int,
    currency: str = "$",
    ranking: dict | None = None,
    csm_id: str = "<csm_id>",
    csv_name: str = "<list.csv>",
    template=None,
) -> str:
    """The list as a self-contained HTML page (the email body); every value escaped.

    Action rows first (a table on a wide screen, one card per account on a phone), then the
    short watch section, the ranking rule stated above them, the footer saying how to mark
    what was done. Only warnings a CSM can use are shown (`csm_warnings`).
    """
    template = template or _template()
    shown = [_shown(row, currency) for row in rows]
    return template.render(
        rows=[r for r in shown if r["section"] == "action"],
        watch=[r for r in shown if r["section"] == "watch"],
        csm_name=csm_name,
        csm_id=csm_id,
        csv_name=csv_name,
        n_owned=n_owned,
        as_of_text=human_date(stamp["as_of"]),
        model_version=stamp["model_version"],
        data_version=stamp["data_version"],
        warnings=csm_warnings(warnings),
        rule=rule_text(rank_by, ranking),
        renewal_window_days=renewal_window_days,
    )


def _shown_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows a list shows: the action list in rank order, then the watch section."""
    action = frame[frame["list_rank"].notna()]
    action = action.sort_values(["list_rank", "account_id"], kind="stable")
    if "watch_rank" not in frame:  # a frame from before the watch section
        return action
    watched = frame[frame["watch_rank"].notna() & frame["list_rank"].isna()]
    watched = watched.sort_values(["watch_rank", "account_id"], kind="stable")
    return pd.concat([action, watched])


def render_lists(
    accounts: pd.DataFrame,
    *,
    stamp: dict,
    warnings: list[dict],
    rank_by: str,
    renewal_window_days: int,
    currency: str = "$",
    ranking: dict | None = None,
) -> tuple[dict[str, bytes], list[dict], dict | None]:
    """Every CSM's CSV and HTML, and their manifest entries.

    `accounts` is the scored table (one row per account, with csm_id, csm_name, csm_email,
    list_rank, watch_rank and the list columns). A CSM gets files when they own at least one
    active account; each file holds only rows whose csm_id is theirs: their action list, then
    their watch section. `currency` is `report.currency`; `ranking` the manifest's ranking
    rule (its plain-words statement heads each page). Returns (relative path -> bytes,
    manifest entries sorted by csm_id, the unassigned list's entry or None).
    """
    owned = accounts["csm_id"].dropna().astype(str)
    n_owned = owned.value_counts()
    stems = safe_file_names(sorted(n_owned.index))
    template = _template()
    # Work on the shown rows only: a few per CSM, however large the book.
    shown = _shown_rows(accounts[accounts["csm_id"].notna()])
    by_csm: dict[str, list[dict]] = {}
    for rec in shown.to_dict("records"):
        by_csm.setdefault(str(rec["csm_id"]), []).append(rec)
    first_of = accounts.loc[owned.index].drop_duplicates("csm_id").set_index("csm_id")
    files: dict[str, bytes] = {}
    entries = []
    page = {
        "stamp": stamp,
        "warnings": warnings,
        "rank_by": rank_by,
        "renewal_window_days": renewal_window_days,
        "currency": currency,
        "ranking": ranking,
        "template": template,
    }
    for csm_id in sorted(n_owned.index):
        listed = by_csm.get(csm_id, [])
        if any(str(rec["csm_id"]) != csm_id for rec in listed):  # pragma: no cover - invariant
            raise AssertionError("a list holds another CSM's account")
        name = _text(first_of.at[csm_id, "csm_name"]) or csm_id
        email = _text(first_of.at[csm_id, "csm_email"]) or None
        written = _write_list(
            files,
            f"csm/{stems[csm_id]}",
            listed,
            title=name,
            csm_id=csm_id,
            n_owned=int(n_owned[csm_id]),
            **page,
        )
        entries.append({"csm_id": csm_id, "csm_name": name, "csm_email": email, **written})
    unassigned = _unassigned_list(accounts, files, **page)
    return files, entries, unassigned


UNASSIGNED_STEM = "unassigned"  # at the lists root, beside csm/: no CSM id can collide


def _write_list(
    files: dict[str, bytes],
    stem: str,
    records: list[dict],
    *,
    title: str,
    csm_id: str,
    n_owned: int,
    stamp: dict,
    warnings: list[dict],
    rank_by: str,
    renewal_window_days: int,
    currency: str,
    ranking: dict | None,
    template,
) -> dict:
    """One list's CSV and HTML into `files` (action rows in rank order, then watch rows);
    its manifest keys (n_accounts counts the action rows, n_watch the watch rows)."""
    rows = list_rows(records, stamp, warnings)
    files[f"{stem}.csv"] = list_csv(rows).encode("utf-8")
    files[f"{stem}.html"] = list_html(
        rows,
        csm_name=title,
        n_owned=n_owned,
        stamp=stamp,
        warnings=warnings,
        rank_by=rank_by,
        renewal_window_days=renewal_window_days,
        currency=currency,
        ranking=ranking,
        csm_id=csm_id,
        csv_name=f"{stem.rsplit('/', 1)[-1]}.csv",
        template=template,
    ).encode("utf-8")
    action = [rec for rec in records if _section(rec) == "action"]
    return {
        "csv": f"{stem}.csv",
        "html": f"{stem}.html",
        "n_accounts": len(action),
        "n_watch": len(records) - len(action),
        "n_owned": n_owned,
        "arr_at_risk_listed": round(sum(float(r["expected_arr_at_risk"]) for r in action), 2),
    }


def _unassigned_list(accounts: pd.DataFrame, files: dict[str, bytes], **page) -> dict | None:
    """The unassigned accounts' list (no CSM, or a CSM the csms table lacks), or None.

    Never emailed to a CSM; it is for whoever assigns the book, and the report counts it.
    """
    book = accounts[accounts["csm_id"].isna()]
    if book.empty:
        return None
    written = _write_list(
        files,
        UNASSIGNED_STEM,
        _shown_rows(book).to_dict("records"),
        title="Unassigned accounts",
        csm_id="<csm_id>",
        n_owned=len(book),
        **page,
    )
    reasons = book["assignment"].value_counts() if "assignment" in book else pd.Series()
    return {**written, "by_reason": {str(k): int(v) for k, v in sorted(reasons.items())}}
