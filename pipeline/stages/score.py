"""Score stage: every active account at an as-of date, explained and put on its CSM's list.

What a CSM sees on Monday is built here: point-in-time features at the as-of date (the same
definitions as training, one snapshot), the model's calibrated churn probability, a risk band,
expected ARR at risk (probability x ARR), days to renewal, SHAP reason codes and the ranked,
flagged list per CSM. The same model rescored a week earlier gives the "risen / fallen since
last week" flags, and the last `score.trend_weeks` weeks give the trend for leadership.

Trust checks come first, because a list built on the wrong model or stale data is worse than
none: scoring refuses a model whose feature schema does not match the features this data and
these params produce (naming the missing and extra features); it warns (log, manifest, on the
lists) when a top model feature drifted from the training data (PSI) and when a source table is
empty or stale.

Each output is stamped with the as-of date, the model version (MLflow run id) and the data
version (the DVC hash of the validated tables), so any past list can be reproduced, and the
same inputs give byte-identical files.

Layout: pure core functions over frames (`check_feature_schema`, `score_accounts`,
`feature_drift`, `source_warnings`, `render_outputs`...) and the I/O edge (`run_score`).
"""

from __future__ import annotations

import io
import json
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from features.registry import Feature, available, build_registry
from pipeline.core.atomic import atomic_path
from pipeline.core.config import Config, MarkSettings, UrgencySettings
from pipeline.core.errors import FeatureError, ScoringError
from pipeline.core.hashing import dvc_dir_hash
from pipeline.core.layout import (
    ACCOUNTS_FILE,
    FEATURES_FILE,
    LAYOUT,
    MANIFEST_FILE,
    SHAP_FILE,
    TREND_FILE,
)
from pipeline.data.contract import interim_path
from pipeline.feature_engine.build import compute_features, feature_settings, read_present_tables
from pipeline.feature_engine.vocabulary import Vocabulary
from pipeline.lists.facts import FACT_COLUMNS, TICKETS, TOUCHPOINTS, account_facts
from pipeline.lists.manifest import (
    CsmEntry,
    ListsManifest,
    RankingRule,
    manifest_bytes,
    parse_manifest,
)
from pipeline.lists.marks import MARK_COLUMNS, apply_marks, read_marks
from pipeline.lists.ranking import (
    floor_probability,
    rank_lists,
    ranking_rule,
    watch_ranks,
    with_priority,
)
from pipeline.lists.render import list_flags, render_lists
from pipeline.modeling.design import design_matrix
from pipeline.modeling.explain import (
    explain,
    moved_most,
    peer_groups,
    reason_codes,
    shap_values,
)
from pipeline.modeling.store import LoadedModel, load_model_ref
from pipeline.monitoring import (
    drift_warnings,
    feature_drift,
    latest_stamps,
    source_warnings,
    training_reference,
)

log = logging.getLogger(__name__)

ACCOUNT_COLUMNS = [
    "as_of",
    "account_id",
    "account_name",
    "csm_id",
    "csm_name",
    "csm_email",
    "assignment",
    "exported_csm_id",
    "segment",
    "region",
    "industry",
    "plan",
    "tenure_days",
    "first_90_days",
    "arr",
    "raw_score",
    "probability",
    "risk_band",
    "expected_arr_at_risk",
    "renewal_date",
    "days_to_renewal",
    "renewal_soon",
    "priority",
    "on_list",
    "list_rank",
    "watch_rank",
    "new_on_list",
    "probability_last_week",
    "probability_change",
    "change",
    "moved_most_feature",
    "moved_most",
    *FACT_COLUMNS,
    "reasons",
    "plays",
    "context",
    "top_families",
    "top_features",
    *MARK_COLUMNS,
]
TREND_COLUMNS = ["week", "n_accounts", "arr_total", "expected_arr_at_risk", "mean_probability"]


@dataclass(frozen=True)
class ScoreSettings:
    """What scoring needs from the `score` section, plus the capacity shared with evaluation.

    Built from the validated config by `score_settings`; the core functions take this instead
    of the whole config so a test can state exactly what it varies.
    """

    capacity_per_csm: int
    rank_by: str = "expected_arr_at_risk"
    # score.urgency: how a renewal's nearness weighs in the priority lists are ranked by.
    urgency: UrgencySettings = field(default_factory=UrgencySettings)
    high_risk: float = 0.35
    medium_risk: float = 0.15
    # score.action_floor: the lowest risk band an action list holds.
    action_floor: str = "medium"
    # score.watch_per_csm: accounts below the floor on a CSM's watch section (0: none).
    watch_per_csm: int = 3
    top_reasons: int = 3
    renewal_window_days: int = 90
    change_threshold: float = 0.05
    trend_weeks: int = 8
    psi_warn: float = 0.25
    drift_top_features: int = 10
    drift_bins: int = 10
    stale_after_days: dict[str, int] = field(default_factory=dict)
    # Accounts this young are compared with peers of their tenure (features.onboarding_days).
    onboarding_days: int = 90
    marks: MarkSettings = field(default_factory=MarkSettings)  # score.marks
    currency: str = "$"  # report.currency: amounts on the lists read as on the report

    @property
    def floor_probability(self) -> float:
        """The probability at which the action floor's band starts (0 for "low": every
        account); tied to the risk bands so the list and the band column never disagree."""
        return floor_probability(self.action_floor, high=self.high_risk, medium=self.medium_risk)

    def ranking_rule(self) -> dict:
        """The ranking rule as the manifest records it (pipeline.lists.ranking)."""
        return ranking_rule(
            rank_by=self.rank_by,
            action_floor=self.action_floor,
            floor=self.floor_probability,
            urgency=self.urgency,
            capacity=self.capacity_per_csm,
            watch_per_csm=self.watch_per_csm,
            change_threshold=self.change_threshold,
            renewal_window_days=self.renewal_window_days,
        )


def score_settings(config: Config) -> ScoreSettings:
    """The scoring settings of a validated config."""
    cfg = config.score
    return ScoreSettings(
        capacity_per_csm=config.evaluate.capacity_per_csm,
        rank_by=cfg.rank_by,
        urgency=cfg.urgency,
        high_risk=cfg.risk_bands.high,
        medium_risk=cfg.risk_bands.medium,
        action_floor=cfg.action_floor,
        watch_per_csm=cfg.watch_per_csm,
        top_reasons=cfg.top_reasons,
        renewal_window_days=cfg.renewal_window_days,
        change_threshold=cfg.change_threshold,
        trend_weeks=cfg.trend_weeks,
        psi_warn=cfg.drift.psi_warn,
        drift_top_features=cfg.drift.top_features,
        drift_bins=cfg.drift.bins,
        stale_after_days=dict(cfg.stale_after_days),
        onboarding_days=config.features.onboarding_days,
        marks=cfg.marks,
        currency=config.report.currency,
    )


# --- trust checks ----------------------------------------------------------------------------


def check_feature_schema(
    names: list[str],
    schema: dict,
    *,
    registry: list[Feature] | None = None,
    tables_present: set[str] | None = None,
) -> None:
    """Refuse to score when the model's features and the scoring table's features differ.

    `names` are the features these data and params produce; `schema` the model's
    feature_schema.json. A model silently fed a different table gives wrong scores that look
    right, so any missing or extra feature (or a category/number mismatch) is an error that
    names them, and the tables whose absence explains the missing ones.
    """
    expected = [c["name"] for c in schema.get("features", [])]
    missing = [n for n in expected if n not in names]
    extra = [n for n in names if n not in expected]
    by_name = {f.name: f for f in registry or []}
    trained_as = {c["name"]: c["dtype"] for c in schema.get("features", [])}
    mistyped = [
        n
        for n, dtype in trained_as.items()
        if n in names and n in by_name and (by_name[n].dtype == "category") != (dtype == "category")
    ]
    if not (missing or extra or mistyped):
        return
    problems = []
    if missing:
        problems.append(f"{len(missing)} model features missing from the scoring table: {missing}")
        absent = sorted(
            {t for n in missing if n in by_name for t in by_name[n].tables}
            - set(tables_present or set())
        )
        if tables_present is not None and absent:
            problems.append(f"(their tables are absent or empty in the validated data: {absent})")
    if extra:
        problems.append(
            f"{len(extra)} features in the scoring table the model was not trained on: {extra}"
        )
    if mistyped:
        problems.append(f"features whose type differs from training: {mistyped}")
    raise ScoringError(
        "the model's feature schema does not match the scoring table: "
        + "; ".join(problems)
        + ". Score with the model trained on these features (feature_schema.json), or retrain "
        "(`dvc repro`) after changing features.windows or the input tables."
    )


def features_without_data(
    model_features: list[str], registry: list[Feature], tables_present: set[str]
) -> dict[str, list[str]]:
    """Optional table -> the model's features that need it, for tables absent or empty now.

    A weekly export can miss an optional table (the NPS tool's export failed, a table came out
    empty). Refusing to score would stop every CSM's list; instead those features are scored as
    missing, which the model has seen (accounts without survey answers, without tickets), and a
    data warning says so. Features missing for any other reason still fail the schema guard.
    """
    by_name = {f.name: f for f in registry}
    out: dict[str, list[str]] = {}
    for name in model_features:
        feature = by_name.get(name)
        if feature is None or set(feature.tables) <= tables_present:
            continue
        for table in sorted(set(feature.tables) - tables_present):
            out.setdefault(table, []).append(name)
    return out


def with_missing_features(
    table: pd.DataFrame, without_data: dict[str, list[str]], by_name: dict[str, Feature]
) -> pd.DataFrame:
    """The feature table with the features of absent tables added as missing values."""
    names = sorted({n for ns in without_data.values() for n in ns} - set(table.columns))
    if not names:
        return table
    missing = {
        n: pd.Series(pd.NA, index=table.index, dtype="string")
        if by_name[n].dtype == "category"
        else pd.Series(np.nan, index=table.index, dtype="float64")
        for n in names
    }
    return table.assign(**missing)


def missing_table_warnings(without_data: dict[str, list[str]], report: dict) -> list[dict]:
    """One data warning per optional table the model needs and this week's data lacks."""
    out = []
    for table, names in sorted(without_data.items()):
        status = report.get("tables", {}).get(table, {}).get("status", "absent")
        out.append(
            {
                "kind": "missing_table",
                "table": table,
                "status": status,
                "features": names,
                "message": f"table {table} is {status} in this week's data: the model's "
                f"{len(names)} features from it are scored as missing, so these scores lean on "
                "the other feature families; restore the export, or retrain without the table",
            }
        )
    return out


def risk_bands(probability: np.ndarray, *, high: float, medium: float) -> pd.Series:
    """'high' at or above `high`, 'medium' at or above `medium`, else 'low'."""
    p = np.asarray(probability, dtype=float)
    bands = np.where(p >= high, "high", np.where(p >= medium, "medium", "low"))
    return pd.Series(bands, dtype="string")


# --- scoring ---------------------------------------------------------------------------------


@dataclass
class ScoreResult:
    """What scoring one as-of date produces, before it is written."""

    accounts: pd.DataFrame  # one row per active account (ACCOUNT_COLUMNS)
    shap: pd.DataFrame  # account_id + one SHAP column per model feature
    features: pd.DataFrame  # account_id + the feature values scored
    trend: pd.DataFrame  # TREND_COLUMNS, one row per week
    base_value: float
    additivity_gap: float
    contribution_method: str  # how the reasons' contributions were computed (learners)


def weeks_to_score(as_of: date, trend_weeks: int) -> list[date]:
    """The as-of date and the weeks before it that scoring needs (oldest first): at least the
    previous week (for the flags) and `trend_weeks` weeks ending at as-of (for the trend)."""
    return sorted(as_of - timedelta(weeks=k) for k in range(max(trend_weeks, 2)))


def _owners(accounts: pd.DataFrame, csms: pd.DataFrame | None) -> pd.DataFrame:
    """account_id -> account_name, region, industry, csm_id, csm_name, csm_email, assignment.

    An account whose csm_id names nobody in the csms table (when there is one) has no CSM to
    act on it: its csm_id is emptied, so it goes to the unassigned list instead of a list that
    nobody receives, and `exported_csm_id` keeps what the export said. `assignment` is
    assigned, no_csm or unknown_csm. A missing account name falls back to the id.
    """
    wanted = ["account_id", "account_name", "region", "industry", "csm_id"]
    owners = accounts.reindex(columns=wanted).astype("string")
    if owners["account_id"].duplicated().any():
        raise ScoringError("accounts table has duplicate account_id values")
    owners["account_name"] = owners["account_name"].fillna(owners["account_id"])
    owners["exported_csm_id"] = owners["csm_id"]
    assignment = np.where(owners["csm_id"].isna().to_numpy(), "no_csm", "assigned").astype(object)
    if csms is not None and len(csms):
        people = csms.reindex(columns=["csm_id", "name", "email"]).astype("string")
        people = people.drop_duplicates("csm_id").rename(
            columns={"name": "csm_name", "email": "csm_email"}
        )
        unknown = (owners["csm_id"].notna() & ~owners["csm_id"].isin(people["csm_id"])).to_numpy()
        assignment[unknown] = "unknown_csm"
        owners["csm_id"] = owners["csm_id"].mask(unknown)
        owners = owners.merge(people, on="csm_id", how="left", validate="many_to_one")
    else:
        owners = owners.assign(csm_name=pd.NA, csm_email=pd.NA)
    owners["assignment"] = pd.array(assignment, dtype="string")
    owners["csm_name"] = owners["csm_name"].fillna(owners["csm_id"]).astype("string")
    owners["csm_email"] = owners["csm_email"].astype("string")
    return owners


def _base_frame(
    table: pd.DataFrame, probability: np.ndarray, owners: pd.DataFrame, settings: ScoreSettings
) -> pd.DataFrame:
    """One week's rows with probability, expected ARR at risk, priority and owner."""
    out = table[["account_id", "snapshot_date", "arr", "renewal_date"]].assign(
        probability=probability, expected_arr_at_risk=probability * table["arr"].to_numpy()
    )
    out = with_priority(out, rank_by=settings.rank_by, urgency=settings.urgency)
    return out.merge(owners[["account_id", "csm_id"]], on="account_id", how="left")


def score_accounts(
    weekly: pd.DataFrame,
    model: LoadedModel,
    features: list[Feature],
    accounts: pd.DataFrame,
    csms: pd.DataFrame | None,
    *,
    as_of: date,
    settings: ScoreSettings,
    num_threads: int = 0,
    marks: pd.DataFrame | None = None,
    fact_tables: Mapping[str, pd.DataFrame | None] | None = None,
) -> ScoreResult:
    """Score, explain and list every account active at `as_of`.

    `weekly` is the point-in-time feature table for `weeks_to_score(as_of, ...)` (it may hold
    more weeks; rows of other dates are ignored); `features` the registry entries of the
    model's features; `accounts` and `csms` the validated tables (ownership, names);
    `fact_tables` the validated csm_touchpoints and support_tickets (either may be absent)
    for each row's last touch and open tickets. The previous week is rescored with the same
    model for the flags, and the trend weeks for the trend.
    """
    weeks = weeks_to_score(as_of, settings.trend_weeks)
    previous_week = as_of - timedelta(weeks=1)
    names = model.feature_names
    table = weekly[weekly["snapshot_date"].isin(weeks)].reset_index(drop=True)
    now_mask = (table["snapshot_date"] == as_of).to_numpy()
    if not now_mask.any():
        raise ScoringError(f"no account has an active contract on {as_of}: nothing to score")
    X = design_matrix(table, model.schema)
    raw = model.learner.raw(X, num_threads=num_threads)
    probability = model.calibrator(raw)

    now = table[now_mask].sort_values("account_id", kind="stable")
    order = now.index.to_numpy()
    now = now.reset_index(drop=True)
    X_now = X.iloc[order].reset_index(drop=True)
    raw_now, p_now = raw[order], probability[order]
    shap, base_value, gap = explain(model.learner, X_now, raw_now, num_threads=num_threads)

    owners = _owners(accounts, csms)
    scored = _base_frame(now, p_now, owners, settings)
    # CSMs' marks recorded before as-of (pipeline.lists.marks): held accounts are not ranked.
    scored = apply_marks(scored, marks, as_of=as_of, **settings.marks.model_dump())
    scored["list_rank"] = (
        rank_lists(
            scored[~scored["mark_hold"]],
            capacity=settings.capacity_per_csm,
            floor=settings.floor_probability,
        )
        .reindex(scored.index)
        .to_numpy()
    )
    renewal = pd.to_datetime(now["renewal_date"])
    scored["days_to_renewal"] = (renewal - pd.Timestamp(as_of)).dt.days.astype("int64")

    before_mask = (table["snapshot_date"] == previous_week).to_numpy()
    before = _base_frame(table[before_mask], probability[before_mask], owners, settings)
    before["list_rank"] = (
        rank_lists(
            before,
            capacity=settings.capacity_per_csm,
            floor=settings.floor_probability,
        )
        if len(before)
        else pd.Series(dtype="Int64")
    ).to_numpy()
    flags = list_flags(
        scored,
        before,
        renewal_window_days=settings.renewal_window_days,
        change_threshold=settings.change_threshold,
    )
    scored["watch_rank"] = watch_ranks(
        scored.assign(probability_change=flags["probability_change"].to_numpy()),
        capacity=settings.watch_per_csm,
        floor=settings.floor_probability,
        change_threshold=settings.change_threshold,
        renewal_window_days=settings.renewal_window_days,
    ).to_numpy()
    facts = account_facts(fact_tables or {}, as_of, account_ids=now["account_id"])

    values_now = now[names]
    peers = (
        peer_groups(now["segment"], now["tenure_days"], onboarding_days=settings.onboarding_days)
        if "tenure_days" in now.columns
        else now["segment"]
    )
    reasons = reason_codes(
        shap,
        values_now,
        peers,
        features,
        top_n=settings.top_reasons,
        account=now,
        renewal_window_days=settings.renewal_window_days,
        onboarding_days=settings.onboarding_days,
    )
    movers = _movers(scored, flags, table, before_mask, X, shap, values_now, model, features)

    by_account = owners.set_index("account_id")
    out = pd.DataFrame(
        {
            "as_of": [as_of] * len(now),
            "account_id": now["account_id"].astype("string"),
            "account_name": now["account_id"].map(by_account["account_name"]),
            "csm_id": scored["csm_id"].astype("string"),
            "csm_name": now["account_id"].map(by_account["csm_name"]),
            "csm_email": now["account_id"].map(by_account["csm_email"]),
            "assignment": now["account_id"].map(by_account["assignment"]),
            "exported_csm_id": now["account_id"].map(by_account["exported_csm_id"]),
            "segment": now["segment"].astype("string"),
            "region": now["account_id"].map(by_account["region"]),
            "industry": now["account_id"].map(by_account["industry"]),
            "plan": now["plan"].astype("string"),
            "tenure_days": now["tenure_days"].astype("Int64"),
            "first_90_days": now["in_first_90_days"].fillna(0).astype(bool),
            "arr": now["arr"].astype("float64"),
            "raw_score": raw_now,
            "probability": p_now,
            "risk_band": risk_bands(p_now, high=settings.high_risk, medium=settings.medium_risk),
            "expected_arr_at_risk": scored["expected_arr_at_risk"].to_numpy(),
            "renewal_date": now["renewal_date"],
            "days_to_renewal": scored["days_to_renewal"],
            "renewal_soon": flags["renewal_soon"],
            "priority": scored["priority"].to_numpy(dtype=float),
            "on_list": scored["list_rank"].notna().to_numpy(),
            "list_rank": scored["list_rank"].astype("Int64"),
            "watch_rank": scored["watch_rank"].astype("Int64"),
            "new_on_list": flags["new_on_list"],
            "probability_last_week": flags["probability_last_week"],
            "probability_change": flags["probability_change"],
            "change": flags["change"],
            "moved_most_feature": movers["moved_most_feature"],
            "moved_most": movers["moved_most"],
            **{c: facts[c].to_numpy() for c in FACT_COLUMNS},
            **{c: reasons[c] for c in reasons.columns},
            **{c: scored[c].to_numpy() for c in MARK_COLUMNS},
        }
    )
    for column in (
        "account_name",
        "csm_name",
        "csm_email",
        "assignment",
        "exported_csm_id",
        "region",
        "industry",
    ):
        out[column] = out[column].astype("string")
    trend = weekly_trend(table, probability, weeks[-settings.trend_weeks :])
    shap_out = pd.concat([now[["account_id"]], shap], axis=1)
    features_out = pd.concat([now[["account_id"]], values_now], axis=1)
    return ScoreResult(
        out[ACCOUNT_COLUMNS],
        shap_out,
        features_out,
        trend,
        base_value,
        gap,
        model.learner.contribution_method,
    )


def _movers(scored, flags, table, before_mask, X, shap, values_now, model, features):
    """The driver that moved most, for listed or watched accounts that rose or fell since
    last week.

    Only those rows are explained a second time (last week's SHAP values), which keeps the
    cost of the flags at a list's size, not the whole book's.
    """
    shown = scored["list_rank"].notna() | scored["watch_rank"].notna()
    moved = (shown & flags["change"].isin(["risen", "fallen"]).fillna(False)).to_numpy()
    empty = pd.DataFrame(
        {"moved_most_feature": pd.NA, "moved_most": pd.NA}, index=scored.index
    ).astype("string")
    if not moved.any():
        return empty
    before_rows = table.index[before_mask]
    position = pd.Series(before_rows, index=table.loc[before_mask, "account_id"].to_numpy())
    idx = np.flatnonzero(moved)
    rows_before = position.loc[scored["account_id"].to_numpy()[idx]].to_numpy()
    shap_before, _ = shap_values(model.learner, X.loc[rows_before])
    shap_before.index = idx
    values_before = table.loc[rows_before, model.feature_names].set_index(pd.Index(idx))
    found = moved_most(
        shap.iloc[idx],
        shap_before,
        values_now.iloc[idx],
        values_before,
        flags["probability_change"].iloc[idx].astype(float),
        features,
    )
    empty.loc[idx, ["moved_most_feature", "moved_most"]] = found.to_numpy()
    return empty


def weekly_trend(table: pd.DataFrame, probability: np.ndarray, weeks: list[date]) -> pd.DataFrame:
    """Accounts, ARR, expected ARR at risk and mean probability per scored week."""
    frame = pd.DataFrame(
        {
            "week": table["snapshot_date"].to_numpy(),
            "arr": table["arr"].to_numpy(dtype=float),
            "probability": probability,
        }
    )
    frame = frame[frame["week"].isin(weeks)]
    frame["expected"] = frame["probability"] * frame["arr"]
    grouped = frame.groupby("week", sort=True).agg(
        n_accounts=("arr", "size"),
        arr_total=("arr", "sum"),
        expected_arr_at_risk=("expected", "sum"),
        mean_probability=("probability", "mean"),
    )
    grouped = grouped.reindex(sorted(weeks))
    grouped["n_accounts"] = grouped["n_accounts"].fillna(0).astype("int64")
    return grouped.rename_axis("week").reset_index()[TREND_COLUMNS]


# --- outputs ---------------------------------------------------------------------------------


def parquet_bytes(frame: pd.DataFrame) -> bytes:
    """A frame as Parquet bytes; the same frame always gives the same bytes."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), sink)
    return sink.getvalue()


def trend_csv(trend: pd.DataFrame) -> str:
    lines = [",".join(TREND_COLUMNS)]
    for rec in trend.to_dict("records"):
        lines.append(
            f"{rec['week']},{int(rec['n_accounts'])},{_fixed(rec['arr_total'], 2)},"
            f"{_fixed(rec['expected_arr_at_risk'], 2)},{_fixed(rec['mean_probability'], 6)}"
        )
    return "\n".join(lines) + "\n"


def _fixed(value: float, digits: int) -> str:
    return (
        ""
        if value is None or (isinstance(value, float) and math.isnan(value))
        else (f"{float(value):.{digits}f}")
    )


def render_outputs(
    result: ScoreResult,
    *,
    stamp: dict,
    warnings: list[dict],
    settings: ScoreSettings,
    drift: pd.DataFrame | None,
) -> dict[str, bytes]:
    """Every file of `reports/lists/<as-of>/`, as relative path -> bytes.

    manifest.json (stamps, warnings, one entry per CSM), accounts.parquet, shap.parquet,
    features.parquet, trend.csv and csm/<id>.csv|html. Nothing here depends on the clock.
    """
    files, csm_entries, unassigned = render_lists(
        result.accounts,
        stamp=stamp,
        warnings=warnings,
        rank_by=settings.rank_by,
        renewal_window_days=settings.renewal_window_days,
        currency=settings.currency,
        ranking=settings.ranking_rule(),
    )
    accounts = result.accounts
    manifest = ListsManifest(
        as_of=stamp["as_of"],
        model_version=stamp["model_version"],
        model_source=stamp["model_source"],
        data_version=stamp["data_version"],
        rank_by=settings.rank_by,
        capacity_per_csm=settings.capacity_per_csm,
        base_value=result.base_value,
        warnings=tuple(warnings),
        csms=tuple(CsmEntry(**entry) for entry in csm_entries),
        n_accounts=len(accounts),
        n_listed=int(accounts["on_list"].sum()),
        n_unassigned=int(accounts["csm_id"].isna().sum()),
        n_watch=int(accounts["watch_rank"].notna().sum()),
        ranking=RankingRule(**settings.ranking_rule()),
        unassigned=unassigned,
        arr_total=round(float(accounts["arr"].sum()), 2),
        expected_arr_at_risk=round(float(accounts["expected_arr_at_risk"].sum()), 2),
        risk_bands={"high": settings.high_risk, "medium": settings.medium_risk},
        risk_band_counts={
            band: int((accounts["risk_band"] == band).sum()) for band in ("high", "medium", "low")
        },
        previous_week=stamp["as_of"] - timedelta(weeks=1),
        trend_weeks=settings.trend_weeks,
        shap_method=result.contribution_method,
        additivity_max_error=float(f"{result.additivity_gap:.3g}"),
        drift_checked=drift is not None,
        drift=()
        if drift is None
        else tuple(
            {
                "feature": rec["feature"],
                "psi": None if math.isnan(rec["psi"]) else round(float(rec["psi"]), 4),
                "importance_rank": int(rec["importance_rank"]),
            }
            for rec in drift.to_dict("records")
        ),
        files={
            "accounts": ACCOUNTS_FILE,
            "shap": SHAP_FILE,
            "features": FEATURES_FILE,
            "trend": TREND_FILE,
        },
    )
    files[MANIFEST_FILE] = manifest_bytes(manifest)
    files[ACCOUNTS_FILE] = parquet_bytes(accounts)
    files[SHAP_FILE] = parquet_bytes(result.shap)
    files[FEATURES_FILE] = parquet_bytes(result.features)
    files[TREND_FILE] = trend_csv(result.trend).encode("utf-8")
    return dict(sorted(files.items()))


# --- I/O edge --------------------------------------------------------------------------------


def run_score(
    config: Config,
    *,
    as_of: date | None,
    interim_dir: Path,
    model_ref: str,
    reference_features: Path | None,
    out_dir: Path | None,
    marks_path: Path | None = None,
    feature_state: Path | None = None,
) -> ListsManifest:
    """The score stage's edge: validated tables and a model in; the lists out.

    `marks_path` is the CSMs' marks log (`churn mark`); absent or None: no marks.
    `feature_state` is a directory for the saved usage grain (the weekly job's), reused when
    it matches the data and rewritten; None: every event is aggregated afresh. Writes
    `out_dir` (default reports/lists/<as-of>) atomically and returns the manifest.
    """
    settings = score_settings(config)
    data_as_of = config.base.as_of_date
    as_of = as_of or data_as_of
    if as_of > data_as_of:
        raise ScoringError(f"--as-of {as_of} is after the data's as-of date {data_as_of}")
    interim_dir = Path(interim_dir)
    tables, report = read_present_tables(interim_dir)

    # The MLflow section is read only for a registry URI, so the DVC stage does not depend on it.
    tracking_uri = config.mlflow.tracking_uri if model_ref.startswith("models:/") else None
    model, source, version = load_model_ref(model_ref, tracking_uri=tracking_uri)
    # The model's vocabulary (the names its features were built from); a model from before it
    # was recorded resolves against the data before this list's date.
    feature_cfg = feature_settings(
        config,
        interim_dir=interim_dir,
        modules_as_of=as_of,
        vocabulary=Vocabulary.from_info(model.info),
    )
    registry = build_registry(feature_cfg.windows, settings=feature_cfg)
    usable = available(registry, tables)
    without_data = features_without_data(model.feature_names, registry, tables)
    as_missing = sorted(n for names in without_data.values() for n in names)
    check_feature_schema(
        [f.name for f in usable] + as_missing,
        model.schema,
        registry=registry,
        tables_present=tables,
    )
    by_name = {f.name: f for f in registry}
    features = [by_name[n] for n in model.feature_names]

    weeks = weeks_to_score(as_of, settings.trend_weeks)
    try:
        built = compute_features(
            config, interim_dir, tables, weeks, settings=feature_cfg, state_dir=feature_state
        )
    except FeatureError as err:
        raise ScoringError(str(err)) from err
    table = with_missing_features(built.table, without_data, by_name)
    check_feature_schema(
        [f.name for f in built.features] + as_missing,
        model.schema,
        registry=registry,
    )

    accounts = pd.read_parquet(interim_path(interim_dir, "accounts"))
    csms_path = interim_path(interim_dir, "csms")
    csms = pd.read_parquet(csms_path) if "csms" in tables and csms_path.is_file() else None
    marks = read_marks(marks_path) if marks_path is not None else None
    fact_tables = {
        name: pd.read_parquet(interim_path(interim_dir, name))
        for name in (TOUCHPOINTS, TICKETS)
        if name in tables and interim_path(interim_dir, name).is_file()
    }
    result = score_accounts(
        table,
        model,
        features,
        accounts,
        csms,
        as_of=as_of,
        settings=settings,
        marks=marks,
        fact_tables=fact_tables,
    )

    warnings = source_warnings(
        report,
        latest_stamps(interim_dir, tables, as_of),
        as_of=as_of,
        stale_after_days=settings.stale_after_days,
    )
    # An empty table the model needs is reported once, as missing: the same as an absent one.
    warnings = [
        w for w in warnings if not (w["kind"] == "empty_table" and w["table"] in without_data)
    ]
    warnings += missing_table_warnings(without_data, report)
    drift = None
    reference = (
        training_reference(reference_features, model) if reference_features is not None else None
    )
    if reference is not None and len(reference):
        drift = feature_drift(reference, result.features, model, bins=settings.drift_bins)
        warnings += drift_warnings(
            drift, psi_warn=settings.psi_warn, top_features=settings.drift_top_features
        )
    else:
        log.warning("drift not checked: no training rows in %s", reference_features)
    for warning in warnings:
        log.warning("%s", warning["message"])

    stamp = {
        "as_of": as_of,
        "model_version": version,
        "model_source": source,
        "data_version": dvc_dir_hash(interim_dir),
    }
    files = render_outputs(result, stamp=stamp, warnings=warnings, settings=settings, drift=drift)
    out_dir = Path(out_dir) if out_dir is not None else LAYOUT.lists_dir(as_of)
    with atomic_path(out_dir) as tmp:
        for relative, payload in files.items():
            target = tmp / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(payload)
    manifest = parse_manifest(json.loads(files[MANIFEST_FILE]))
    log.info(
        "scored %d accounts at %s (model %s, data %s): %d listed for %d CSMs -> %s",
        manifest.n_accounts,
        as_of,
        version,
        stamp["data_version"],
        manifest.n_listed,
        len(manifest.csms),
        out_dir,
    )
    return manifest
