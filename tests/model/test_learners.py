"""The learners model selection chooses between: exact contributions for every kind, the
store's round trip, the linear transform, and selection's folds, determinism and behaviour."""

from __future__ import annotations

import json
from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.core.labels import LABEL, LabelRule
from pipeline.modeling.design import design_matrix
from pipeline.modeling.explain import check_additivity, shap_values
from pipeline.modeling.learners import LinearLearner, fit_linear
from pipeline.modeling.selection import (
    choose,
    min_data_in_leaf,
    rolling_folds,
    score_candidate,
    search_logistic,
)
from pipeline.modeling.split import Split

KINDS = ("lightgbm", "logistic", "blend")


@pytest.mark.parametrize("kind", KINDS)
def test_contributions_add_up_to_the_log_odds_for_every_learner(learner_models, kind):
    model = learner_models[kind]
    table = pd.read_parquet(learner_models["features"]).tail(300)
    X = design_matrix(table, model.schema)
    raw = model.learner.raw(X)
    shap, base = shap_values(model.learner, X)
    assert list(shap.columns) == model.feature_names
    assert check_additivity(shap, base, raw) < 1e-9
    assert model.learner.kind == kind
    # the store gives back the learner that was written: same scores, same importances
    assert json.loads((learner_models[f"{kind}_dir"] / "learner.json").read_text())["kind"] == kind
    assert np.isfinite(list(model.learner.importance().values())).all()


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning:shap.*")
def test_linear_contributions_are_what_shap_linear_explainer_computes(learner_models):
    """Against the training mean of each standardised input, coefficient x value is the
    interventional SHAP value of a linear model: the shap package agrees."""
    import shap as shap_package

    model = learner_models["logistic"]
    learner: LinearLearner = model.learner
    table = pd.read_parquet(learner_models["features"]).sample(300, random_state=1)
    X = design_matrix(table, model.schema)
    Z = learner.standardised(X)
    coef = np.array([c.coef for c in learner.columns])
    background = np.zeros((1, len(coef)))  # the training mean of every standardised column
    explainer = shap_package.LinearExplainer((coef, learner.intercept), background)
    theirs = explainer.shap_values(Z)
    ours, base = learner.contributions(X)
    per_feature = pd.DataFrame(0.0, index=range(len(X)), columns=X.columns)
    for j, column in enumerate(learner.columns):
        per_feature[column.feature] += theirs[:, j]
    assert np.abs(ours.to_numpy() - per_feature.to_numpy()).max() < 1e-9
    assert abs(base - float(np.ravel(explainer.expected_value)[0])) < 1e-9


def test_blend_is_the_weighted_mean_of_its_parts(learner_models):
    blend = learner_models["blend"]
    X = design_matrix(pd.read_parquet(learner_models["features"]).head(100), blend.schema)
    w = blend.learner.weight
    expected = w * learner_models["lightgbm"].learner.raw(X) + (1 - w) * learner_models[
        "logistic"
    ].learner.raw(X)
    np.testing.assert_allclose(blend.learner.raw(X), expected, rtol=0, atol=1e-12)


def test_a_model_directory_from_before_selection_loads_as_lightgbm(learner_models, tmp_path):
    import shutil

    from pipeline.modeling.store import load_model

    old = tmp_path / "old"
    shutil.copytree(learner_models["lightgbm_dir"], old)
    (old / "learner.json").unlink()
    model = load_model(old)
    X = design_matrix(pd.read_parquet(learner_models["features"]).head(50), model.schema)
    np.testing.assert_array_equal(model.learner.raw(X), learner_models["lightgbm"].learner.raw(X))


def test_linear_transform_logs_skewed_counts_fills_missing_and_drops_constants():
    rng = np.random.default_rng(0)
    n = 2000
    counts = rng.pareto(1.5, n) * 10  # heavy right tail
    counts[:50] = np.nan
    X = pd.DataFrame(
        {
            "events_30d": counts,
            "latest_nps": rng.normal(7, 2, n),  # symmetric: no log
            "constant": np.ones(n),
            "segment": pd.Categorical(rng.choice(["smb", "enterprise"], n)),
        }
    )
    y = pd.Series((rng.random(n) < 0.2).astype(int))
    learner = fit_linear(X, y, categorical=["segment"], C=1.0, seed=0)
    kinds = {(c.feature, c.kind): c for c in learner.columns}
    assert kinds[("events_30d", "value")].log and not kinds[("latest_nps", "value")].log
    assert ("events_30d", "missing") in kinds
    assert not any(c.feature == "constant" for c in learner.columns)
    assert {c.level for c in learner.columns if c.feature == "segment"} == {"smb", "enterprise"}
    contributions, _ = learner.contributions(X)
    assert (contributions["constant"] == 0).all()
    # an unseen outlier is clipped to the training range: its score stays finite and bounded
    wild = X.head(1).assign(events_30d=1e12)
    top = X.assign(events_30d=np.nanmax(counts)).head(1)
    assert learner.raw(wild)[0] == pytest.approx(learner.raw(top)[0])
    # stored as JSON and read back exactly
    assert LinearLearner.from_json(learner.to_json()) == learner


def test_leaf_size_scales_with_the_churned_rows():
    assert min_data_in_leaf(10, rows=10_000, churned=1_000) == 100
    assert min_data_in_leaf(10, rows=10_000, churned=100) == 1_000
    assert min_data_in_leaf(10, rows=1_000, churned=5) == 100  # at most a tenth of the rows
    assert min_data_in_leaf(0.01, rows=10_000, churned=5_000) == 5  # at least 5


# --- rolling-origin folds ------------------------------------------------------------------------


def _history(seed: int, n_accounts: int, terms: list[int]) -> pd.DataFrame:
    """Monthly snapshots of accounts on terms of the given lengths (months), each labelled by
    its next renewal."""
    rng = np.random.default_rng(seed)
    rows = []
    start = date(2021, 1, 1)
    for a in range(n_accounts):
        term = int(rng.choice(terms))
        first = start + timedelta(days=int(rng.integers(0, 400)))
        renewal = pd.Timestamp(first) + pd.DateOffset(months=term)
        for m in range(60):
            snap = (pd.Timestamp(start) + pd.DateOffset(months=m)).date()
            if snap < first:
                continue
            while renewal.date() <= snap:
                renewal += pd.DateOffset(months=term)
            if snap > date(2025, 12, 1):
                break
            rows.append(
                {
                    "account_id": f"a{a}",
                    "snapshot_date": snap,
                    "renewal_date": renewal.date(),
                    LABEL: float(rng.random() < 0.3),
                }
            )
    return pd.DataFrame(rows)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    terms=st.lists(st.sampled_from([1, 3, 12, 24]), min_size=1, max_size=3),
    months=st.integers(1, 4),
    embargo=st.integers(0, 20),
)
def test_no_fold_trains_or_validates_on_an_outcome_decided_later(seed, terms, months, embargo):
    """Every fold: training outcomes are decided before its validation window (less the
    embargo), validation outcomes before the test period, and no row is in the test."""
    table = _history(seed, 40, terms)
    rule = LabelRule(horizon_days=800, grace_days=30)
    last = pd.Timestamp(table["snapshot_date"].max())
    test_start = (last - pd.DateOffset(months=6) + pd.Timedelta(days=1)).date()
    valid_start = (pd.Timestamp(test_start) - pd.DateOffset(months=months)).date()
    split = Split(
        train_start=date(2021, 1, 1),
        train_end=date(2021, 1, 1),
        valid_start=valid_start,
        valid_end=(pd.Timestamp(test_start) - pd.Timedelta(days=embargo + 1)).date(),
        test_start=test_start,
        test_end=last.date(),
        embargo_days=embargo,
    )
    folds = rolling_folds(table, split, rule, folds=4, months=months, enough=lambda y: len(y) > 0)
    decision = rule.decision_dates(table["renewal_date"]).reset_index(drop=True)
    snap = pd.to_datetime(table["snapshot_date"]).reset_index(drop=True)
    embargo_td = pd.Timedelta(days=embargo)
    for k, fold in enumerate(folds):
        start = pd.Timestamp(fold.valid_start)
        assert not (fold.train & fold.valid).any()
        assert (decision[fold.train] < start - embargo_td).all()
        assert (decision[fold.valid] >= start).all()
        assert (decision[fold.valid] <= pd.Timestamp(fold.valid_end)).all()
        assert (decision[fold.valid] < pd.Timestamp(test_start) - embargo_td).all()
        assert (snap[fold.train | fold.valid] < pd.Timestamp(test_start)).all()
        if k:  # oldest first
            assert fold.valid_start > folds[k - 1].valid_start
    if folds:
        assert folds[-1].valid_start == split.valid_start  # the newest fold is the split's own


# --- selection -------------------------------------------------------------------------------


def _frame(n: int, seed: int, interaction: bool) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=n), rng.normal(size=n)
    logit = 3.0 * (a * b) if interaction else 1.5 * a - 1.0 * b
    y = (rng.random(n) < 1 / (1 + np.exp(-(logit - 1.5)))).astype(int)
    return pd.DataFrame({"a": a, "b": b, "noise": rng.normal(size=n)}), y


def _folds(n: int, k: int):
    from pipeline.modeling.selection import Fold

    edges = np.linspace(0, n, k + 2).astype(int)
    out = []
    for i in range(k):
        train = np.zeros(n, bool)
        valid = np.zeros(n, bool)
        train[: edges[i + 1]] = True
        valid[edges[i + 1] : edges[i + 2]] = True
        out.append(Fold(date(2025, 1 + i, 1), date(2025, 1 + i, 28), train, valid))
    return out


def test_the_search_is_deterministic_and_selection_follows_the_data():
    """Same data and seed, same search; on a linear truth the logistic model wins, on a pure
    interaction (which no linear model can express) the trees win."""
    import lightgbm as lgb

    from pipeline.modeling.learners import TreeLearner
    from pipeline.modeling.selection import search_lightgbm

    results = {}
    for interaction in (False, True):
        X, y = _frame(4000, 3, interaction)
        folds = _folds(len(y), 2)

        def fit(key, train, valid, params, X=X, y=y):
            sets = lgb.Dataset(X[train], label=y[train].astype(float), params={"verbosity": -1})
            booster = lgb.train(
                {"objective": "binary", "verbosity": -1, "num_threads": 1, "seed": 0, **params},
                sets,
                num_boost_round=200,
            )
            return TreeLearner(booster)

        kwargs = dict(metric="pr_auc", trials=3, seed=5)
        trees = search_lightgbm(X, y, folds, fit=fit, base_params={"num_leaves": 7}, **kwargs)
        linear = search_logistic(X, y, folds, categorical=[], **kwargs)
        again = search_logistic(X, y, folds, categorical=[], **kwargs)
        assert again.params == linear.params
        pairs = zip(again.fold_raw, linear.fold_raw, strict=True)
        assert all(np.array_equal(p, q) for p, q in pairs)
        accounts = np.array([f"a{i % 500}" for i in range(len(y))])
        scored = [
            score_candidate(
                c, folds, y, accounts, metric="pr_auc", resamples=50, confidence=0.9, seed=1
            )
            for c in (trees, linear)
        ]
        assert all(s.low <= s.score <= s.high for s in scored)
        results[interaction] = choose(scored, "pr_auc").name
    assert results == {False: "logistic", True: "lightgbm"}


def test_choose_respects_the_metric_direction_and_prefers_the_simpler_on_a_tie():
    from pipeline.modeling.selection import Scored

    def s(name, score):
        return Scored(name, {}, score, score, score, (score,))

    assert choose([s("lightgbm", 0.30), s("logistic", 0.25)], "log_loss").name == "logistic"
    assert choose([s("lightgbm", 0.30), s("logistic", 0.25)], "pr_auc").name == "lightgbm"
    assert choose([s("lightgbm", 0.3), s("logistic", 0.3)], "pr_auc").name == "logistic"


def test_training_info_records_every_candidate_with_its_interval(medium_demo):
    from pipeline.modeling.store import read_training_info

    info = read_training_info(medium_demo["models"])
    selection = info["selection"]
    assert selection["metric"] == medium_demo["params"]["train"]["selection"]["metric"]
    assert set(selection["candidates"]) == {"lightgbm", "logistic", "blend"}
    assert selection["chosen"] == info["learner"]
    best = max(c["score"] for c in selection["candidates"].values())
    assert selection["candidates"][selection["chosen"]]["score"] == best
    for scored in selection["candidates"].values():
        assert scored["low"] <= scored["score"] <= scored["high"]
        assert len(scored["fold_scores"]) == len(selection["folds"]) >= 2
    folds = selection["folds"]
    assert [f["valid_start"] for f in folds] == sorted(f["valid_start"] for f in folds)
    assert folds[-1]["valid_start"] == info["split"]["valid_start"]
    assert folds[-1]["train_rows"] == info["rows"]["train"]


def test_logistic_coefficients_follow_the_registrys_directions():
    """Two near-copies of one signal share its weight and one can come out negative: a feature
    whose direction is a business fact (more breaches never lower risk) is held at 0 instead,
    and its risk can then never fall as it grows."""
    rng = np.random.default_rng(4)
    n = 3000
    signal = rng.normal(size=n)
    X = pd.DataFrame(
        {
            "breaches": signal + rng.normal(0, 0.05, n),
            "breaches_copy": signal + rng.normal(0, 0.05, n),
            "noise": rng.normal(size=n),
        }
    )
    y = pd.Series((rng.random(n) < 1 / (1 + np.exp(-(1.5 * signal - 2)))).astype(int))
    free = fit_linear(X, y, categorical=[], C=100.0, seed=0)
    coef = {c.feature: c.coef for c in free.columns if c.kind == "value"}
    negative = min(coef, key=coef.get)
    assert coef[negative] < 0, coef  # unconstrained, the shared signal splits with a flip
    held = fit_linear(
        X, y, categorical=[], C=100.0, seed=0, monotone={"breaches": 1, "breaches_copy": 1}
    )
    coef = {c.feature: c.coef for c in held.columns if c.kind == "value"}
    assert coef["breaches"] >= 0 and coef["breaches_copy"] >= 0, coef
    more = X.assign(**{negative: X[negative] + 1.0})
    assert np.all(held.raw(more) >= held.raw(X) - 1e-12)
