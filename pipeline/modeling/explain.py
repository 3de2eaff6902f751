"""Explanations: SHAP values per account and the reason codes a CSM reads.

A probability alone does not tell a CSM what to do. SHAP values split each account's model
score (log-odds) into one contribution per feature, exactly: LightGBM's `pred_contrib` for trees
(the same values as shap.TreeExplainer), coefficient x standardised value for the logistic
model, and their weighted mean for a blend. Reason codes turn the largest risk-raising
contributions into plain words:

- drivers are grouped by feature family (usage, training, support...), because a CSM acts on
  "support is hurting this account", not on three correlated SLA counters;
- each reason names the account's value and what is typical for its segment (the
  interquartile range over that segment's scored accounts, "typical for SMB: 0 to 2"), so "4
  breaches" has a yardstick; a dormant account is said to be dormant ("No active users in the
  last 90 days (20 seats paid)"), not given an empty ratio;
- the plays fit the reason and the account (features.plays): the kind of play comes from
  the reason's feature, the channel from the account's ARR within the book (digital for the
  smallest, the executive sponsor for the largest), the numbers from its own row, and a
  renewal on a multi-month term or an account in its first days puts the renewal
  conversation or onboarding recovery first; at most two, one per kind;
- drivers a CSM cannot change (segment, tenure, contract terms: `Feature.actionable` False) are
  kept apart, as context, never mixed with what to act on.

Everything here is pure: frames in, frames out.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.families.commercial import DAYS_PER_MONTH
from features.plays import PLAYS, play_key, write_play
from features.registry import FAMILIES, Feature
from pipeline.core.errors import ExplainError
from pipeline.core.words import group_in_sentence
from pipeline.modeling.learners import ADDITIVITY_TOLERANCE

log = logging.getLogger(__name__)

REASON_SEPARATOR = " | "
# Units written after the number; others are clear from the feature's description.
SPELLED_UNITS = ("days", "hours", "months")
#: Plays per list row: what a CSM can do this week, not a menu.
MAX_PLAYS = 2


def shap_values(learner, X: pd.DataFrame, *, num_threads: int = 0) -> tuple[pd.DataFrame, float]:
    """Contributions (log-odds) per row and feature, and the base value (the expected score):
    exact TreeSHAP for trees, exact linear contributions for the logistic model, their
    weighted mean for a blend (pipeline.modeling.learners). `num_threads` 0 uses all cores."""
    return learner.contributions(X, num_threads=num_threads)


def explain(
    learner, X: pd.DataFrame, raw_score: np.ndarray, *, num_threads: int = 0
) -> tuple[pd.DataFrame, float, float]:
    """Contributions checked against the model's own scores: (shap, base value, largest gap)."""
    shap, base = shap_values(learner, X, num_threads=num_threads)
    return shap, base, check_additivity(shap, base, raw_score)


def check_additivity(
    shap: pd.DataFrame,
    base_value: float,
    raw_score: np.ndarray,
    *,
    tol: float = ADDITIVITY_TOLERANCE,
) -> float:
    """Base value + contributions must equal the model's raw log-odds for every row.

    Returns the largest absolute difference; raises when it exceeds `tol`, because reasons
    built on contributions that do not add up to the score would explain another model.
    """
    raw_score = np.asarray(raw_score, dtype=float)
    if len(raw_score) != len(shap):
        raise ExplainError(f"{len(raw_score)} raw scores for {len(shap)} rows of SHAP values")
    if not len(shap):
        return 0.0
    gap = np.abs(base_value + shap.to_numpy().sum(axis=1) - raw_score)
    worst = float(gap.max())
    if worst > tol:
        row = int(gap.argmax())
        raise ExplainError(
            f"SHAP values do not add up to the model score: off by {worst:.3g} on row {row} "
            f"(base {base_value:.6f}, score {raw_score[row]:.6f})"
        )
    return worst


# --- plain-language values -------------------------------------------------------------------


def segment_label(segment: object) -> str:
    """A peer group as it reads inside a sentence: 'mid_market' -> 'mid-market', 'smb' ->
    'SMB' (pipeline.core.words); a missing segment reads as 'all accounts'."""
    if _is_missing(segment) or str(segment) in ("", "<NA>"):
        return "all accounts"
    return group_in_sentence(segment)


def peer_phrase(label: str) -> str:
    """A peer group's label as a noun phrase: 'SMB' -> 'SMB accounts' (a label that already
    names accounts stays as it is)."""
    return label if " accounts" in f" {label}" else f"{label} accounts"


#: A tenure band needs this many accounts to be the yardstick; smaller ones use the segment.
MIN_PEERS = 10


def peer_groups(segments: pd.Series, tenure_days: pd.Series, *, onboarding_days: int) -> pd.Series:
    """Who an account is compared with: its segment, and for an account in its first
    `onboarding_days` the segment's accounts of that tenure, so an 8-day-old account is not
    told it has fewer active users than mature peers over 90 days. A band with fewer than
    MIN_PEERS accounts falls back to the whole segment (an interquartile range of three
    accounts is no yardstick).
    """
    segment = segments.astype("object").where(segments.notna(), None)
    young = (pd.to_numeric(tenure_days, errors="coerce") < onboarding_days).to_numpy()
    band = pd.Series(
        [
            f"{peer_phrase(segment_label(seg))} in their first {onboarding_days} days"
            if is_young
            else seg
            for seg, is_young in zip(segment, young, strict=True)
        ],
        index=segments.index,
        dtype="object",
    )
    sizes = band.map(band.value_counts())
    return band.where(~young | (sizes >= MIN_PEERS), segment)


def _is_missing(value: object) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


#: The registry's default wording of an empty value, which no CSM should read.
_UNWORDED_MISSING = Feature.__dataclass_fields__["when_missing"].default
#: What an empty value says when its feature has no wording of its own.
NO_DATA = "no data for this account"


def format_value(feature: Feature, value: object) -> str:
    """A feature value as a CSM reads it: 4, 35%, 12 days, yes, enterprise.

    An empty value says what it means (the feature's `when_missing`, e.g. "no NPS answer
    yet"); a feature without its own wording reads "no data for this account", never the
    registry's placeholder.
    """
    if _is_missing(value):
        missing = feature.when_missing
        return NO_DATA if not missing or missing == _UNWORDED_MISSING else missing
    if feature.dtype == "category":
        return segment_label(value) if feature.name == "segment" else str(value)
    number = float(value)
    if feature.dtype == "bool":
        return "yes" if number >= 0.5 else "no"
    if feature.unit == "share":
        return f"{number:.0%}"
    if feature.dtype == "int" or feature.unit in (*SPELLED_UNITS, "ARR"):
        text = f"{number:,.0f}"
    else:
        text = f"{number:,.1f}"
    return f"{text} {feature.unit}" if feature.unit in SPELLED_UNITS else text


def value_range(feature: Feature, low: object, high: object) -> str:
    """An interquartile range in words: '30 to 98', '20% to 45%', '2 to 40 days', or one
    value when both ends read the same."""
    a, b = format_value(feature, low), format_value(feature, high)
    if a == b:
        return a
    suffix = f" {feature.unit}"
    if feature.unit in SPELLED_UNITS and a.endswith(suffix):
        a = a.removesuffix(suffix)
    return f"{a} to {b}"


@dataclass(frozen=True)
class SegmentNorms:
    """What is typical per segment: the words shown next to a value, and the medians that
    decide whether a value sits on the risky side."""

    texts: dict[tuple[str, str], str]  # (segment label, feature) -> "0 to 1", "20% to 45%"...
    medians: pd.DataFrame  # segment label x numeric feature


def segment_norms(
    values: pd.DataFrame, segments: pd.Series, features: list[Feature]
) -> SegmentNorms:
    """Per segment and feature: the interquartile range in words and the median.

    Numbers: the interquartile range over the segment's accounts ("0 to 1", "20% to 45%");
    yes/no features: how many of the segment's accounts have it ("64%"). Categories have no
    typical value, nor has a feature no account of the segment has a value for.
    """
    keys = segments.map(segment_label).astype(str)
    texts: dict[tuple[str, str], str] = {}
    numeric = [f for f in features if f.dtype != "category"]
    frame = values[[f.name for f in numeric]].astype("float64").assign(_segment=keys.to_numpy())
    grouped = frame.groupby("_segment", sort=True)
    q25, q50, q75 = grouped.quantile(0.25), grouped.quantile(0.5), grouped.quantile(0.75)
    means = grouped.mean()
    for segment in q25.index:
        for f in numeric:
            lo, hi = q25.at[segment, f.name], q75.at[segment, f.name]
            if f.dtype == "bool":
                share = means.at[segment, f.name]
                if not _is_missing(share):
                    texts[(segment, f.name)] = f"{share:.0%}"
            elif not (_is_missing(lo) or _is_missing(hi)):
                texts[(segment, f.name)] = value_range(f, lo, hi)
    return SegmentNorms(texts, q50)


def risky_side(
    values: pd.DataFrame, segments: pd.Series, features: list[Feature], medians: pd.DataFrame
) -> np.ndarray:
    """Whether each value sits on the risky side of its segment's median (rows x features).

    A SHAP value can be positive for a value that is, by the registry's business direction,
    reassuring (an NPS of 9 nudging the score up through an interaction). Telling a CSM "NPS 9"
    is a reason for risk costs the list its credibility, so such drivers are not shown as
    reasons. Missing values, features with no direction and categories always qualify.
    """
    keys = segments.map(segment_label).astype(str).to_numpy()
    out = np.ones((len(values), len(features)), dtype=bool)
    for j, f in enumerate(features):
        if f.dtype == "category" or f.direction == "neither" or f.name not in medians.columns:
            continue
        x = values[f.name].to_numpy(dtype=float, na_value=np.nan)
        median = medians[f.name].reindex(keys).to_numpy(dtype=float)
        side = x > median if f.direction == "higher_is_riskier" else x < median
        out[:, j] = side | np.isnan(x) | np.isnan(median)
    return out


def typical_words(feature: Feature, segment: object, typical: dict) -> str:
    """'; typical for SMB: 30 to 98' (or '; yes for 64% of SMB accounts'), '' when unknown."""
    label = segment_label(segment)
    rng = typical.get((label, feature.name))
    if rng is None:
        return ""
    if feature.dtype == "bool":
        return f"; yes for {rng} of {peer_phrase(label)}"
    return f"; typical for {label}: {rng}"


def describe_driver(feature: Feature, value: object, segment: object, typical: dict) -> str:
    """'<what>: <value>; typical for <segment>: <range>' (no range for categories)."""
    text = f"{feature.description}: {format_value(feature, value)}"
    return text + typical_words(feature, segment, typical)


# --- the account's own situation -------------------------------------------------------------


def _windows(columns, prefix: str) -> list[int]:
    """The windows (days) of the columns named `<prefix>_<w>d`, longest first."""
    pattern = re.compile(rf"^{re.escape(prefix)}_(\d+)d$")
    return sorted((int(m.group(1)) for c in columns if (m := pattern.match(str(c)))), reverse=True)


def _numbers(frame: pd.DataFrame, column: str) -> np.ndarray | None:
    """A column as floats (NaN for missing), None when the frame has no such column."""
    if column not in frame.columns:
        return None
    return pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def _count(value: float) -> str:
    return f"{value:,.0f}"


def usage_silence(account: pd.DataFrame) -> pd.DataFrame:
    """Per account, how its silence reads when the product is not used (`text`, NA when it
    is used) and which case it is (`state`: dormant, never_used, no_data or NA).

    `account` is the point-in-time feature row of each account (any subset of its columns).
    Three cases a CSM handles differently:

    - usage is zero (dormant): "No active users in the last 90 days (20 seats paid)", over
      the longest window with nobody active, with the last use when it falls in the look-back
      ("...; last use 41 days ago"); "No product use" when the data counts no users at all
      (an event log without user ids: no account of the book has an active user);
    - the account never used the product (no first use on record): "No usage data for this
      account since it started 200 days ago (20 seats paid)": set-up or data, not adoption;
    - the usage features are empty (the usage table is absent this week): "No usage data for
      this account".
    """
    n = len(account)
    out = np.full(n, None, dtype=object)
    state = np.full(n, None, dtype=object)
    silent_window = np.full(n, None, dtype=object)
    user_windows = _windows(account.columns, "active_users")
    use_windows = _windows(account.columns, "active_days") or _windows(account.columns, "events")
    use_prefix = "active_days" if _windows(account.columns, "active_days") else "events"
    windows = sorted(set(user_windows) | set(use_windows), reverse=True)
    if not windows or not n:
        return _silence_frame(out, state, silent_window, account.index)
    users = {w: _numbers(account, f"active_users_{w}d") for w in user_windows}
    use = {w: _numbers(account, f"{use_prefix}_{w}d") for w in use_windows}
    users_tracked = any(np.nan_to_num(u, nan=0.0).max() > 0 for u in users.values())
    nan = np.full(n, np.nan)
    seats = _numbers(account, "seats")
    seats = nan if seats is None else seats
    tenure = _numbers(account, "tenure_days")
    tenure = nan if tenure is None else tenure
    since = _numbers(account, "days_since_last_activity")
    since = nan if since is None else since
    first = _numbers(account, "days_to_first_value")
    lookback = 2 * windows[0]
    for i in range(n):
        known = [
            w
            for w in windows
            if not np.isnan(use.get(w, nan)[i]) or not np.isnan(users.get(w, nan)[i])
        ]
        if not known:
            out[i], state[i] = "No usage data for this account", "no_data"
            continue
        paid = f" ({_count(seats[i])} seats paid)" if seats[i] > 0 else ""
        silent_users = [w for w in known if users_tracked and users.get(w, nan)[i] == 0]
        silent_use = [w for w in known if use.get(w, nan)[i] == 0]
        if not silent_users and not silent_use:
            continue
        silent_all = set(silent_users) | set(silent_use) == set(known)
        no_use_in_lookback = not since[i] <= lookback  # capped beyond it, or unknown
        # Never used: nothing in a look-back that covers the account's whole life, and no
        # first use on record (first use is only looked for in the onboarding days).
        if (
            silent_all
            and no_use_in_lookback
            and tenure[i] <= lookback
            and (first is None or np.isnan(first[i]))
        ):
            started = f" since it started {_count(tenure[i])} days ago" if tenure[i] >= 0 else ""
            out[i], state[i] = f"No usage data for this account{started}{paid}", "never_used"
            continue
        if silent_users:
            text = f"No active users in the last {max(silent_users)} days{paid}"
            window = max(silent_users)
        else:
            text = f"No product use in the last {max(silent_use)} days{paid}"
            window = max(silent_use)
        if window < since[i] <= lookback:
            text += f"; last use {_count(since[i])} days ago"
        elif silent_all and no_use_in_lookback and not np.isnan(since[i]):
            text += f"; no use in the last {lookback} days"
        out[i], state[i], silent_window[i] = text, "dormant", window
    return _silence_frame(out, state, silent_window, account.index)


def _silence_frame(text, state, window, index: pd.Index) -> pd.DataFrame:
    frame = pd.DataFrame({"text": text, "state": state}, index=index).astype("string")
    return frame.assign(window=pd.array(window, dtype="Int64"))


#: ARR percentile ranks within the scored book at or below which an account is "low" (digital,
#: one-to-many plays) and above which it is "high" (the executive sponsor is involved).
LOW_ARR_RANK, HIGH_ARR_RANK = 0.25, 0.75


def arr_tiers(arr: pd.Series) -> np.ndarray:
    """'low', 'mid' or 'high' per account, by its ARR's percentile rank in the scored book.

    Relative to the book, not to segment names or fixed amounts, so a company whose largest
    account pays $20k and one whose smallest pays $50k both get tech-touch plays for their
    smallest quarter and sponsor plays for their largest. Ties share their average rank (a
    book where every account pays the same is all "mid"); an unknown ARR is "mid".
    """
    values = pd.to_numeric(arr, errors="coerce")
    rank = values.rank(pct=True, method="average").to_numpy(dtype=float, na_value=np.nan)
    tiers = np.full(len(values), "mid", dtype=object)
    tiers[rank <= LOW_ARR_RANK] = "low"
    tiers[rank > HIGH_ARR_RANK] = "high"
    return tiers


#: A play kind that makes another redundant on the same row: onboarding recovery already
#: re-activates a young account that has not started.
_SUBSUMES = {"onboarding": ("reactivate",), "reactivate": ("adoption", "engagement")}


#: Plays that follow up on survey answers: with no answer at all, the play asks for one.
_ASKS_ANSWERS = ("sentiment", "satisfaction", "effort")


class _Facts:
    """The numbers a play quotes, read from the account frame (columns may be absent)."""

    def __init__(self, account: pd.DataFrame, onboarding_days: int | None):
        self._account = account
        self._columns: dict[str, np.ndarray | None] = {}  # read on first use
        self.onboarding_days = onboarding_days
        windows = _windows(account.columns, "active_users") or _windows(account.columns, "events")
        self.max_window = windows[0] if windows else None
        users = [self._column(f"active_users_{w}d") for w in windows]
        self.users_tracked = any(u is not None and np.nan_to_num(u).max() > 0 for u in users)

    def _column(self, column: str) -> np.ndarray | None:
        if column not in self._columns:
            self._columns[column] = _numbers(self._account, column)
        return self._columns[column]

    def get(self, column: str, i: int) -> float | None:
        values = self._column(column)
        if values is None or np.isnan(values[i]):
            return None
        return float(values[i])

    def _windowed(self, prefix: str, window: int | None, i: int) -> float | None:
        for w in (window, self.max_window):
            if w is not None and (value := self.get(f"{prefix}_{w}d", i)) is not None:
                return value
        return None

    def for_play(self, i: int, window: int | None) -> dict[str, float | None]:
        window = window or self.max_window
        seats = self.get("seats", i)
        users = self._windowed("active_users", window, i) if self.users_tracked else None
        inactive = max(seats - users, 0.0) if seats is not None and users is not None else None
        all_users = self._windowed("active_users", self.max_window, i)
        trained = self.get("trained_user_share", i)
        untrained = (
            all_users * (1 - trained)
            if all_users is not None and trained is not None and self.users_tracked
            else None
        )
        return {
            "window": window,
            "seats": seats,
            "inactive_seats": inactive,
            "untrained_users": untrained,
            "breaches": self._windowed("sla_breaches", window, i),
            "open_past_sla": self.get("tickets_open_past_sla", i),
            "escalations": self._windowed("escalations", window, i),
            "modules_used": self._windowed("distinct_modules", window, i),
            "touchpoints": self._windowed("touchpoints", window, i),
            "days_to_renewal": self.get("days_to_renewal", i),
            "tenure_days": self.get("tenure_days", i),
            "onboarding_days": self.onboarding_days,
            "days_since_exec_contact": self.get("days_since_exec_contact", i),
        }


def _renewal_due(account: pd.DataFrame, window_days: int | None) -> np.ndarray:
    """Accounts whose renewal falls within `window_days`, on a term longer than that window.

    On a monthly contract every renewal is within any window: a "renewal conversation" each
    month is not a play, so terms no longer than the window never call for one (no term on
    record: the renewal date alone decides).
    """
    n = len(account)
    days = _numbers(account, "days_to_renewal")
    if window_days is None or days is None:
        return np.zeros(n, dtype=bool)
    term = _numbers(account, "term_months")
    long_term = (
        np.ones(n, dtype=bool)
        if term is None
        else np.isnan(term) | (term * DAYS_PER_MONTH > window_days)
    )
    return (days >= 0) & (days <= window_days) & long_term


def _young(account: pd.DataFrame, onboarding_days: int | None) -> np.ndarray:
    tenure = _numbers(account, "tenure_days")
    if onboarding_days is None or tenure is None:
        return np.zeros(len(account), dtype=bool)
    return tenure < onboarding_days


# --- reason codes ----------------------------------------------------------------------------


def reason_codes(
    shap: pd.DataFrame,
    values: pd.DataFrame,
    segments: pd.Series,
    features: list[Feature],
    *,
    top_n: int,
    context_n: int | None = None,
    account: pd.DataFrame | None = None,
    renewal_window_days: int | None = None,
    onboarding_days: int | None = None,
    max_plays: int = MAX_PLAYS,
) -> pd.DataFrame:
    """Per account: the top risk-raising families (actionable drivers), their plays, and the
    non-actionable drivers as context.

    `shap` and `values` hold one row per account (same index) and one column per model
    feature; `segments` the account's peer group (for what is typical). A family's weight is
    the sum of its actionable features' SHAP values; it is a reason when that sum raises risk
    (> 0), described by its feature with the largest contribution among those whose value is
    on the risky side of the segment's median (`risky_side`; a family with none is skipped).
    Context: the non-actionable features that raise risk, largest first, same rule.

    `account` is the whole point-in-time feature row of each account, aligned with `shap`'s
    rows (seats, every usage window, days to renewal, tenure...: columns the model may not
    use); without it, `values`. It lets a reason say what a person would ("No active users in
    the last 90 days (20 seats paid)", `usage_silence`) and the plays fit the account: the
    renewal conversation first when a multi-month term renews within `renewal_window_days`,
    onboarding recovery first in the first `onboarding_days`, then each reason's play, written
    for the account's ARR tier within this book (`arr_tiers`) with its own numbers. At most
    `max_plays` plays, one per kind.

    Returns, per row: reasons (plain text, joined by " | "), plays (joined the same way),
    context (non-actionable drivers), top_families (comma-separated family keys),
    top_features (the features named in reasons). Same inputs, same text.
    """
    if top_n < 1:
        raise ExplainError(f"top_n must be at least 1, not {top_n}")
    if max_plays < 1:
        raise ExplainError(f"max_plays must be at least 1, not {max_plays}")
    context_n = top_n if context_n is None else context_n
    by_name = {f.name: f for f in features}
    missing = [c for c in shap.columns if c not in by_name]
    if missing:
        raise ExplainError(f"no registry entry for the model features {missing}")
    if account is None:
        account = values
    if len(account) != len(shap):
        raise ExplainError(f"{len(account)} account rows for {len(shap)} rows of SHAP values")
    names = list(shap.columns)
    S = shap.to_numpy(dtype=float)
    n = len(S)
    actionable = np.array([by_name[c].actionable for c in names])
    families = [fam for fam in FAMILIES if any(by_name[c].family == fam for c in names)]
    family_of = np.array([families.index(by_name[c].family) for c in names])

    norms = segment_norms(values, segments, [by_name[c] for c in names])
    risky = risky_side(values, segments, [by_name[c] for c in names], norms.medians)
    # A feature can describe a reason when it raises risk and its value is on the risky side.
    shown = np.where((S > 0) & risky, S, -np.inf)

    # Family weight (all its actionable contributions) and its strongest showable feature.
    weight = np.full((n, len(families)), -np.inf)
    strongest = np.full((n, len(families)), -1, dtype=np.int64)
    for k in range(len(families)):
        cols = np.flatnonzero(actionable & (family_of == k))
        if len(cols):
            weight[:, k] = S[:, cols].sum(axis=1)
            best = np.argmax(shown[:, cols], axis=1)
            has = np.isfinite(shown[np.arange(n), cols[best]])
            strongest[:, k] = np.where(has, cols[best], -1)
    order = np.argsort(-weight, axis=1, kind="stable")

    context_cols = np.flatnonzero(~actionable)
    context_order = (
        context_cols[np.argsort(-shown[:, context_cols], axis=1, kind="stable")[:, :context_n]]
        if len(context_cols)
        else np.empty((n, 0), dtype=np.int64)
    )

    account = account.reset_index(drop=True)
    silent = usage_silence(account)
    silence = silent["text"].to_numpy(dtype=object, na_value=None)
    silent_state = silent["state"].to_numpy(dtype=object, na_value=None)
    silent_window = silent["window"].to_numpy(dtype=object, na_value=None)
    tiers = arr_tiers(account["arr"]) if "arr" in account.columns else np.full(n, "mid")
    renewal_due = _renewal_due(account, renewal_window_days)
    young = _young(account, onboarding_days)
    facts = _Facts(account, onboarding_days)

    value_rows = values[names].to_numpy(dtype=object)
    segment_rows = segments.to_numpy(dtype=object)
    reasons, plays, context, top_families, top_features = [], [], [], [], []
    for i in range(n):
        texts, fams, feats = [], [], []
        wanted: list[tuple[str, int | None, str]] = []  # (play kind, window, registry text)
        if renewal_due[i]:
            wanted.append(("renewal", None, PLAYS["renewal"]))
        elif young[i]:
            wanted.append(("onboarding", None, PLAYS["onboarding"]))
        for k in order[i]:
            if len(texts) == top_n or not weight[i, k] > 0:
                break
            col = strongest[i, k]
            if col < 0:
                continue
            feature = by_name[names[col]]
            title = FAMILIES[feature.family].title
            kind = play_key(feature.play) if feature.play else None
            if feature.family == "usage" and silence[i] is not None:
                described = silence[i]
                if silent_state[i] == "dormant":
                    kind = "reactivate"
                    users_feature = by_name.get(f"active_users_{silent_window[i]}d")
                    typical = (
                        typical_words(users_feature, segment_rows[i], norms.texts)
                        if users_feature is not None and facts.users_tracked
                        else ""
                    )
                    described += f"{typical} active users" if typical else ""
                elif silent_state[i] == "never_used":
                    kind = "onboarding"  # never started: set up, not win back
            else:
                described = describe_driver(
                    feature, value_rows[i, col], segment_rows[i], norms.texts
                )
                if kind in _ASKS_ANSWERS and _is_missing(value_rows[i, col]):
                    kind = "feedback"  # nobody answered: ask, do not call "low raters"
            texts.append(f"{title}: {described}")
            if feature.play:
                # a play chosen for the situation, not the feature's: its own generic text
                overridden = kind is not None and kind != play_key(feature.play)
                registry_text = PLAYS.get(kind, feature.play) if overridden else feature.play
                wanted.append((kind or feature.play, feature.window_days, registry_text))
            fams.append(feature.family)
            feats.append(feature.name)
        notes = []
        for col in context_order[i]:
            if not np.isfinite(shown[i, col]):
                break
            feature = by_name[names[col]]
            notes.append(describe_driver(feature, value_rows[i, col], segment_rows[i], norms.texts))
        reasons.append(REASON_SEPARATOR.join(texts))
        plays.append(REASON_SEPARATOR.join(_row_plays(wanted, tiers[i], facts, i, max_plays)))
        context.append(REASON_SEPARATOR.join(notes))
        top_families.append(",".join(fams))
        top_features.append(",".join(feats))
    return pd.DataFrame(
        {
            "reasons": reasons,
            "plays": plays,
            "context": context,
            "top_families": top_families,
            "top_features": top_features,
        },
        index=shap.index,
    ).astype("string")


def _row_plays(
    wanted: list[tuple[str, int | None, str]], tier: str, facts: _Facts, i: int, max_plays: int
) -> list[str]:
    """The row's plays in order, one per kind (and none a kind already listed subsumes),
    written for the account, at most `max_plays`."""
    kinds: list[str] = []
    out: list[str] = []
    for kind, window, registry_text in wanted:
        if kind in kinds or any(kind in _SUBSUMES.get(k, ()) for k in kinds):
            continue
        text = write_play(kind, tier, facts.for_play(i, window), registry_text)
        if not text or text in out:
            continue
        kinds.append(kind)
        out.append(text)
        if len(out) == max_plays:
            break
    return out


def moved_most(
    shap_now: pd.DataFrame,
    shap_before: pd.DataFrame,
    values_now: pd.DataFrame,
    values_before: pd.DataFrame,
    direction: pd.Series,
    features: list[Feature],
) -> pd.DataFrame:
    """The driver that moved an account's risk most since the previous scoring.

    For an account whose risk rose (`direction` > 0), the feature whose SHAP value rose most;
    for one that fell (< 0), the feature whose SHAP value fell most; nothing otherwise. All
    frames share an index (the accounts to look at). Returns moved_most_feature and
    moved_most (e.g. "SLA breaches ... in the last 90 days: 1 -> 4").
    """
    by_name = {f.name: f for f in features}
    names = list(shap_now.columns)
    delta = shap_now[names].to_numpy(dtype=float) - shap_before[names].to_numpy(dtype=float)
    sign = np.sign(direction.to_numpy(dtype=float))
    signed = delta * sign[:, None]
    pick = np.argmax(signed, axis=1) if len(names) else np.zeros(len(delta), dtype=int)
    feature_out, text_out = [], []
    now_rows = values_now[names].to_numpy(dtype=object)
    before_rows = values_before[names].to_numpy(dtype=object)
    for i, col in enumerate(pick):
        if sign[i] == 0 or not signed[i, col] > 0:
            feature_out.append(pd.NA)
            text_out.append(pd.NA)
            continue
        feature = by_name[names[col]]
        before = format_value(feature, before_rows[i, col])
        now = format_value(feature, now_rows[i, col])
        feature_out.append(feature.name)
        text_out.append(f"{feature.description}: {before} -> {now}")
    return pd.DataFrame(
        {"moved_most_feature": feature_out, "moved_most": text_out}, index=shap_now.index
    ).astype("string")
