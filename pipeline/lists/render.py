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

# The columns of each CSM's CSV, in order (the HTML shows the same facts).
LIST_COLUMNS = [
    "rank",
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
    "data_warnings",
]


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


def _text(value: object) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return ""
    return str(value)


def _number(value: object, digits: int) -> str:
    text = _text(value)
    return "" if text == "" else f"{float(value):.{digits}f}"


def list_rows(records: list[dict], stamp: dict, warnings: list[dict]) -> list[dict[str, str]]:
    """One CSM's listed accounts (records in list order) as rows of text, fixed formats."""
    data_warnings = " | ".join(w["message"] for w in warnings)
    rows = []
    for rec in records:
        rows.append(
            {
                "rank": str(int(rec["list_rank"])),
                "account_id": _text(rec["account_id"]),
                "account_name": _text(rec["account_name"]),
                "segment": _text(rec["segment"]),
                "region": _text(rec["region"]),
                "arr": _number(rec["arr"], 2),
                "probability": _number(rec["probability"], 4),
                "risk_band": _text(rec["risk_band"]),
                "expected_arr_at_risk": _number(rec["expected_arr_at_risk"], 2),
                "renewal_date": _text(rec["renewal_date"]),
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
            }
        )
    return rows


def list_csv(rows: list[dict[str, str]]) -> str:
    """The list as CSV: every cell quoted and defused against formula injection."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, quoting=csv.QUOTE_ALL, lineterminator="\n")
    writer.writerow(LIST_COLUMNS)
    for row in rows:
        writer.writerow([defuse_cell(row[c]) for c in LIST_COLUMNS])
    return buffer.getvalue()


_HTML = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>At-risk accounts for {{ csm_name }}, week of {{ as_of }}</title>
<style>
body { font-family: Arial, Helvetica, sans-serif; font-size: 14px; color: #222; margin: 16px; }
table { border-collapse: collapse; width: 100%; }
th, td { border-bottom: 1px solid #ddd; padding: 6px 8px; text-align: left; vertical-align: top; }
th { background: #f4f4f4; }
.num { text-align: right; white-space: nowrap; }
.high { color: #b00020; font-weight: bold; }
.medium { color: #b36b00; font-weight: bold; }
.low { color: #2e7d32; }
.warn { background: #fff4e5; border: 1px solid #f0c36d; padding: 8px 12px; margin: 12px 0; }
.flag { display: inline-block; background: #eef; border-radius: 3px; padding: 0 4px;
        margin: 1px 0; font-size: 12px; }
.context { color: #666; font-size: 12px; }
.stamp { color: #666; font-size: 12px; }
ul { margin: 0; padding-left: 18px; }
</style>
</head>
<body>
<h1>At-risk accounts for {{ csm_name }}</h1>
<p>Week of {{ as_of }}: your top {{ rows | length }} of {{ n_owned }} active accounts,
ranked by {{ rank_label }}.</p>
{% if warnings %}<div class="warn"><strong>Data warnings:</strong><ul>
{% for w in warnings %}<li>{{ w.message }}</li>
{% endfor %}</ul></div>
{% endif %}<table>
<thead><tr><th>#</th><th>Account</th><th class="num">ARR</th><th class="num">Churn risk</th>
<th class="num">ARR at risk</th><th>Renewal</th><th>Flags</th><th>Why, and what to do</th></tr>
</thead>
<tbody>
{% for r in rows %}<tr>
<td>{{ r.rank }}</td>
<td><strong>{{ r.account_name }}</strong><br><span class="context">{{ r.account_id }},
{{ r.segment }}, {{ r.region }}</span></td>
<td class="num">{{ r.arr_text }}</td>
<td class="num"><span class="{{ r.risk_band }}">{{ r.probability_text }}</span><br>
<span class="context">{{ r.risk_band }}</span></td>
<td class="num">{{ r.expected_text }}</td>
<td>{{ r.renewal_date }}<br><span class="context">in {{ r.days_to_renewal }} days</span></td>
<td>{% if r.new_on_list == "yes" %}<span class="flag">new on list</span><br>{% endif %}
{% if r.change in ("risen", "fallen") %}<span class="flag">{{ r.change }} since last week
({{ r.last_week_text }} &rarr; {{ r.probability_text }})</span>
{% if r.moved_most %}<br><span class="context">moved most: {{ r.moved_most }}</span>{% endif %}
<br>{% endif %}
{% if r.renewal_soon == "yes" %}<span class="flag">renewal within {{ renewal_window_days }}
days</span>{% endif %}</td>
<td>{% if r.reason_items %}<ul>{% for reason in r.reason_items %}<li>{{ reason }}</li>
{% endfor %}</ul>{% else %}No single driver stands out.{% endif %}
{% if r.play_items %}<strong>Plays:</strong><ul>{% for play in r.play_items %}<li>{{ play }}</li>
{% endfor %}</ul>{% endif %}
{% if r.context %}<p class="context">Context (not actionable): {{ r.context }}</p>{% endif %}
</td>
</tr>
{% endfor %}</tbody>
</table>
<p class="stamp">As of {{ as_of }} &middot; model {{ model_version }} &middot;
data {{ data_version }}.
Churn risk is the calibrated probability that the account leaves at its renewal; ARR at risk
is that probability times ARR.</p>
</body>
</html>
"""


def _environment():
    import jinja2

    return jinja2.Environment(
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )


def list_html(
    rows: list[dict[str, str]],
    *,
    csm_name: str,
    n_owned: int,
    stamp: dict,
    warnings: list[dict],
    rank_by: str,
    renewal_window_days: int,
    template=None,
) -> str:
    """The list as a self-contained HTML page (the email body); every value escaped."""
    template = template or _environment().from_string(_HTML)
    shown = []
    for row in rows:
        shown.append(
            {
                **row,
                "arr_text": f"{float(row['arr']):,.0f}" if row["arr"] else "",
                "expected_text": (
                    f"{float(row['expected_arr_at_risk']):,.0f}"
                    if row["expected_arr_at_risk"]
                    else ""
                ),
                "probability_text": f"{float(row['probability']):.0%}",
                "last_week_text": (
                    f"{float(row['probability_last_week']):.0%}"
                    if row["probability_last_week"]
                    else ""
                ),
                "reason_items": [r for r in row["reasons"].split(" | ") if r],
                "play_items": [p for p in row["plays"].split(" | ") if p],
            }
        )
    return template.render(
        rows=shown,
        csm_name=csm_name,
        n_owned=n_owned,
        as_of=stamp["as_of"],
        model_version=stamp["model_version"],
        data_version=stamp["data_version"],
        warnings=warnings,
        rank_label="expected ARR at risk" if rank_by == "expected_arr_at_risk" else "churn risk",
        renewal_window_days=renewal_window_days,
    )


def render_lists(
    accounts: pd.DataFrame,
    *,
    stamp: dict,
    warnings: list[dict],
    rank_by: str,
    renewal_window_days: int,
) -> tuple[dict[str, bytes], list[dict]]:
    """Every CSM's CSV and HTML, and their manifest entries.

    `accounts` is the scored table (one row per account, with csm_id, csm_name, csm_email,
    list_rank and the list columns). A CSM gets files when they own at least one active
    account; each file holds only rows whose csm_id is theirs. Returns (relative path ->
    bytes, manifest entries sorted by csm_id, the unassigned list's entry or None).
    """
    owned = accounts["csm_id"].dropna().astype(str)
    n_owned = owned.value_counts()
    stems = safe_file_names(sorted(n_owned.index))
    template = _environment().from_string(_HTML)
    # Work on the listed rows only: a few per CSM, however large the book.
    on_lists = accounts[accounts["list_rank"].notna() & accounts["csm_id"].notna()]
    on_lists = on_lists.sort_values(["csm_id", "list_rank", "account_id"], kind="stable")
    by_csm: dict[str, list[dict]] = {}
    for rec in on_lists.to_dict("records"):
        by_csm.setdefault(str(rec["csm_id"]), []).append(rec)
    first_of = accounts.loc[owned.index].drop_duplicates("csm_id").set_index("csm_id")
    files: dict[str, bytes] = {}
    entries = []
    page = {
        "stamp": stamp,
        "warnings": warnings,
        "rank_by": rank_by,
        "renewal_window_days": renewal_window_days,
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
    n_owned: int,
    stamp: dict,
    warnings: list[dict],
    rank_by: str,
    renewal_window_days: int,
    template,
) -> dict:
    """One list's CSV and HTML into `files` (listed records in rank order); its manifest keys."""
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
        template=template,
    ).encode("utf-8")
    return {
        "csv": f"{stem}.csv",
        "html": f"{stem}.html",
        "n_accounts": len(rows),
        "n_owned": n_owned,
        "arr_at_risk_listed": round(sum(float(r["expected_arr_at_risk"]) for r in records), 2),
    }


def _unassigned_list(accounts: pd.DataFrame, files: dict[str, bytes], **page) -> dict | None:
    """The unassigned accounts' list (no CSM, or a CSM the csms table lacks), or None.

    Never emailed to a CSM; it is for whoever assigns the book, and the report counts it.
    """
    book = accounts[accounts["csm_id"].isna()]
    if book.empty:
        return None
    listed = book[book["list_rank"].notna()].sort_values(["list_rank", "account_id"])
    written = _write_list(
        files,
        UNASSIGNED_STEM,
        listed.to_dict("records"),
        title="Unassigned accounts",
        n_owned=len(book),
        **page,
    )
    reasons = book["assignment"].value_counts() if "assignment" in book else pd.Series()
    return {**written, "by_reason": {str(k): int(v) for k, v in sorted(reasons.items())}}
