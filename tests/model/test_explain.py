"""Explanations: SHAP additivity on the trained demo model, reason codes on hand-made frames,
and the planted SLA trouble showing up as a support reason on the demo's lists."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.registry import build_registry
from pipeline.modeling.explain import (
    ExplainError,
    check_additivity,
    format_value,
    moved_most,
    reason_codes,
    segment_norms,
    shap_values,
)

REGISTRY = {f.name: f for f in build_registry([30, 90])}
NAMES = ["sla_breaches_90d", "tickets_opened_90d", "latest_nps", "active_users_30d", "segment"]
FEATURES = [REGISTRY[n] for n in NAMES]


def frames(rows: list[tuple]) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series]:
    """(shap, values, segments) from rows of (segment, values tuple, shap tuple)."""
    values = pd.DataFrame([r[1] for r in rows], columns=NAMES)
    shap = pd.DataFrame([r[2] for r in rows], columns=NAMES, dtype=float)
    return shap, values, pd.Series([r[0] for r in rows])


# --- SHAP ------------------------------------------------------------------------------------


def test_shap_values_add_up_to_the_model_log_odds(medium_demo):
    from pipeline.modeling.design import design_matrix
    from pipeline.modeling.store import load_model

    model = load_model(medium_demo["models"])
    table = pd.read_parquet(medium_demo["features"]).tail(300)
    X = design_matrix(table, model.schema)
    raw = model.learner.raw(X)
    shap, base = shap_values(model.learner, X)
    assert list(shap.columns) == model.feature_names and len(shap) == len(X)
    assert np.allclose(base + shap.sum(axis=1), raw, atol=1e-9, rtol=0)
    assert check_additivity(shap, base, raw) < 1e-9
    tampered = shap.copy()
    tampered.iloc[7, 0] += 0.01
    with pytest.raises(ExplainError, match="on row 7"):
        check_additivity(tampered, base, raw)


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning:shap.*")
@pytest.mark.filterwarnings("ignore:LightGBM binary classifier with TreeExplainer:UserWarning")
def test_pred_contrib_agrees_with_shap_tree_explainer(learner_models):
    """LightGBM's own TreeSHAP and the shap package give the same values (log-odds)."""
    import shap as shap_package

    from pipeline.modeling.design import design_matrix

    model = learner_models["lightgbm"]
    table = pd.read_parquet(learner_models["features"]).sample(200, random_state=0)
    X = design_matrix(table, model.schema)
    X.iloc[:20, 0] = np.nan  # missing values take the default direction
    ours, base = shap_values(model.learner, X)
    explainer = shap_package.TreeExplainer(model.learner.booster)
    theirs = explainer.shap_values(X)
    assert np.abs(ours.to_numpy() - np.asarray(theirs)).max() < 1e-6
    assert abs(base - float(np.ravel(explainer.expected_value)[0])) < 1e-6


# --- reason codes ----------------------------------------------------------------------------


def test_reasons_group_by_family_say_value_and_typical_and_keep_context_apart():
    rows = [
        ("mid_market", (4, 9, 8.0, 10, "mid_market"), (0.8, 0.5, 0.0, 0.1, 0.3)),
        ("mid_market", (0, 1, 8.0, 12, "mid_market"), (-0.1, -0.1, 0.0, 0.0, 0.3)),
        ("mid_market", (1, 2, 9.0, 11, "mid_market"), (0.0, 0.0, 0.0, 0.0, 0.3)),
        ("mid_market", (0, 1, 7.0, 30, "mid_market"), (0.0, 0.0, 0.0, 0.0, 0.3)),
    ]
    shap, values, segments = frames(rows)
    out = reason_codes(shap, values, segments, FEATURES, top_n=3)
    first = out.iloc[0]
    assert first["top_families"] == "support,usage"
    reasons = first["reasons"].split(" | ")
    assert reasons[0] == (
        "Support and SLA breaches: SLA breaches (first response or resolution) in the last "
        "90 days: 4; typical for mid-market: 0 to 2"
    )
    assert "Review the 4 SLA breaches of the last 90 days with the support lead" in first["plays"]
    # tickets opened and segment are not actionable: context, never reasons
    assert "tickets opened" not in first["reasons"] and "Customer segment" not in first["reasons"]
    assert "Support tickets opened in the last 90 days: 9" in first["context"]
    assert "Customer segment: mid-market" in first["context"]
    # nothing raises the second account's risk but its segment
    assert out.iloc[1]["reasons"] == "" and out.iloc[1]["top_families"] == ""


def test_a_reassuring_value_is_never_a_reason():
    """A positive SHAP value on an NPS of 9 (above the segment's median) is not shown."""
    rows = [
        ("smb", (0, 1, 9.0, 10, "smb"), (0.0, 0.0, 0.4, 0.0, 0.0)),
        ("smb", (0, 1, 3.0, 10, "smb"), (0.0, 0.0, 0.4, 0.0, 0.0)),
        ("smb", (0, 1, 7.0, 10, "smb"), (0.0, 0.0, 0.0, 0.0, 0.0)),
    ]
    shap, values, segments = frames(rows)
    out = reason_codes(shap, values, segments, FEATURES, top_n=3)
    assert out.iloc[0]["reasons"] == ""
    assert out.iloc[1]["reasons"].startswith("Sentiment and engagement: Latest NPS answer: 3.0")


def test_top_n_caps_the_reasons():
    rows = [("smb", (5, 1, 2.0, 1, "smb"), (0.3, 0.0, 0.2, 0.1, 0.0))] + [
        ("smb", (0, 1, 8.0, 20, "smb"), (0.0, 0.0, 0.0, 0.0, 0.0))
    ] * 3
    shap, values, segments = frames(rows)
    out = reason_codes(shap, values, segments, FEATURES, top_n=2)
    assert out.iloc[0]["top_families"] == "support,engagement"
    with pytest.raises(ExplainError):
        reason_codes(shap, values, segments, FEATURES, top_n=0)


def test_values_and_typical_ranges_in_plain_words():
    assert format_value(REGISTRY["active_user_share_30d"], 0.123) == "12%"
    assert format_value(REGISTRY["days_since_last_activity"], 12.0) == "12 days"
    assert format_value(REGISTRY["qbr_last_quarter"], 1.0) == "yes"
    # an empty value says what it means, not "none recorded"
    assert format_value(REGISTRY["latest_nps"], float("nan")) == "no NPS answer yet"
    assert format_value(REGISTRY["stickiness_30d"], None) == "no active users in the last 30 days"
    assert format_value(REGISTRY["events_per_active_user_90d"], float("nan")) == (
        "no active users in the last 90 days"
    )
    assert (
        REGISTRY["days_to_first_value"]
        .describe(None)
        .endswith(": no product use in the first 90 days")
    )
    assert format_value(REGISTRY["segment"], "mid_market") == "mid-market"
    values = pd.DataFrame({"days_since_last_activity": [1.0, 2.0, 3.0, 40.0, 50.0]})
    norms = segment_norms(values, pd.Series(["smb"] * 5), [REGISTRY["days_since_last_activity"]])
    assert norms.texts[("SMB", "days_since_last_activity")] == "2 to 40 days"


def test_moved_most_follows_the_direction_of_the_change():
    names = ["sla_breaches_90d", "active_users_30d"]
    features = [REGISTRY[n] for n in names]
    now = pd.DataFrame([[0.5, 0.1], [0.0, -0.4], [0.2, 0.2]], columns=names)
    before = pd.DataFrame([[0.1, 0.2], [0.0, 0.1], [0.2, 0.2]], columns=names)
    values_now = pd.DataFrame([[4, 10], [0, 2], [1, 5]], columns=names)
    values_before = pd.DataFrame([[1, 9], [0, 12], [1, 5]], columns=names)
    out = moved_most(now, before, values_now, values_before, pd.Series([0.2, -0.3, 0.0]), features)
    assert out["moved_most_feature"].tolist()[:2] == ["sla_breaches_90d", "active_users_30d"]
    assert out["moved_most"].iloc[0].endswith(": 1 -> 4")
    assert out["moved_most"].iloc[1] == "Active users in the last 30 days: 12 -> 2"
    assert pd.isna(out["moved_most"].iloc[2])


# --- on the demo company ---------------------------------------------------------------------


def test_planted_sla_trouble_shows_as_a_support_reason(scored_demo):
    """Accounts whose planted trouble is SLA breaches show the support family among their top
    reasons, far more often than accounts without a trouble.

    Only accounts where the trouble reached the data count: onset 45+ days before the as-of
    date and at least one breach in the last 90 days (a small account with no ticket in the
    window gives no evidence an explanation could show).
    """
    out = scored_demo["out"]
    accounts = pd.read_parquet(out / "accounts.parquet")
    breaches = pd.read_parquet(out / "features.parquet", columns=["account_id", "sla_breaches_90d"])
    truth = pd.read_parquet(
        scored_demo["truth"], columns=["account_id", "trouble", "trouble_onset_at"]
    )
    joined = accounts.merge(truth, on="account_id", validate="one_to_one").merge(
        breaches, on="account_id", validate="one_to_one"
    )
    as_of = pd.Timestamp(scored_demo["manifest"]["as_of"], tz="UTC")
    visible = (joined["trouble_onset_at"] <= as_of - pd.Timedelta(days=45)) & (
        joined["sla_breaches_90d"] >= 1
    )
    support = joined["top_families"].str.split(",").apply(lambda fams: "support" in fams)
    sla = joined["trouble"].eq("sla_breaches") & visible
    assert sla.sum() >= 5
    share_sla = support[sla].mean()
    share_untroubled = support[joined["trouble"].eq("none")].mean()
    assert share_sla >= 0.8, share_sla
    assert share_sla >= share_untroubled + 0.3, (share_sla, share_untroubled)


def test_a_young_account_is_compared_within_its_tenure_band():
    """An 8-day-old account is held against accounts in their first 90 days, not against
    mature ones; a band too small to be a yardstick falls back to the segment."""
    from pipeline.modeling.explain import MIN_PEERS, peer_groups

    n_young = MIN_PEERS
    segments = pd.Series(["smb"] * (n_young + 20) + ["enterprise"] * 3)
    tenure = pd.Series([8.0] * n_young + [400.0] * 20 + [10.0, 500.0, 600.0])
    peers = peer_groups(segments, tenure, onboarding_days=90)
    assert (peers[:n_young] == "SMB accounts in their first 90 days").all()
    assert (peers[n_young : n_young + 20] == "smb").all()
    assert peers.iloc[n_young + 20] == "enterprise"  # one young enterprise account: no band

    names = ["active_users_30d", "segment"]
    features = [REGISTRY[n] for n in names]
    users = [1] + [3] * (n_young - 1) + [40] * 20 + [5, 50, 60]
    values = pd.DataFrame({"active_users_30d": users, "segment": segments})
    shap = pd.DataFrame({"active_users_30d": 0.5, "segment": 0.0}, index=values.index)
    young = reason_codes(shap, values, peers, features, top_n=1).iloc[0]["reasons"]
    assert young.endswith("typical for SMB accounts in their first 90 days: 3")
    mature = reason_codes(shap, values, segments, features, top_n=1).iloc[0]["reasons"]
    assert mature.endswith("typical for SMB: 3 to 40")  # what the young account was told before
