"""Training: split, errors, determinism, calibration and model behaviour on real rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features.registry import build_registry
from pipeline.core.errors import TrainingError
from pipeline.core.labels import LabelRule, labelled
from pipeline.modeling.calibration import Calibrator, fit_calibrator
from pipeline.modeling.split import Split, purged_split
from pipeline.modeling.store import load_model
from pipeline.stages.train import check_trainable, run_train, split_hint

RULE = LabelRule(horizon_days=365, grace_days=14)


def _rows(snapshots, renewals):
    return pd.DataFrame(
        {
            "snapshot_date": pd.to_datetime(pd.Series(snapshots)).dt.date,
            "renewal_date": pd.to_datetime(pd.Series(renewals)).dt.date,
        }
    )


def test_parts_follow_each_rows_decision_date_not_a_fixed_gap():
    table = _rows(
        ["2024-01-01", "2024-06-01", "2024-09-01", "2024-11-01", "2024-12-01", "2025-02-01"],
        ["2024-02-01", "2024-09-10", "2024-10-20", "2024-11-20", "2025-03-01", "2025-03-01"],
    )
    split = purged_split(table, valid_months=3, test_months=1, embargo_days=7, rule=RULE)
    assert str(split.test_start) == "2025-01-02" and str(split.valid_start) == "2024-10-02"
    parts = split.assign(table["snapshot_date"], table["renewal_date"], RULE).tolist()
    # decided 02-15 (train), 09-24 (train: before validation's 10-02 less 7 days), 11-03
    # (validation), 12-04 (validation), 03-15 (after the test starts: purged), test snapshot
    assert parts == ["train", "train", "valid", "valid", "purged", "test"]
    assert split.train_end == pd.Timestamp("2024-06-01").date()
    # the embargo: an outcome decided within 7 days before validation starts is in neither
    near = _rows(["2024-08-01"], ["2024-09-15"])  # decided 09-29
    assert split.assign(near["snapshot_date"], near["renewal_date"], RULE).tolist() == ["purged"]


def test_monthly_terms_keep_their_history():
    """A monthly-billing company: with the old horizon-long gap a year of labels was lost;
    split by decision date, every snapshot before validation trains."""
    snaps = pd.date_range("2023-01-01", "2025-12-01", freq="MS")
    table = _rows(snaps, snaps + pd.Timedelta(days=20))
    split = purged_split(table, valid_months=3, test_months=3, embargo_days=0, rule=RULE)
    parts = split.assign(table["snapshot_date"], table["renewal_date"], RULE)
    # purged: only the two snapshots just before the test whose decision (renewal + 14 days
    # of grace) falls after it starts
    assert (parts == "purged").sum() == 2
    assert (parts == "test").sum() == 3 and (parts == "valid").sum() == 3
    assert (parts == "train").sum() == len(snaps) - 8
    # training reaches up to validation (a month and the grace before it): no year-long gap
    assert (pd.Timestamp(split.valid_start) - pd.Timestamp(split.train_end)).days < 70


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    data=st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=1400),  # snapshot day
            st.sampled_from([30, 31, 90, 365, 730]),  # term length: months to years
            st.integers(min_value=0, max_value=729),  # how far into the term
        ),
        min_size=20,
        max_size=200,
    ),
    valid_months=st.integers(min_value=1, max_value=6),
    test_months=st.integers(min_value=1, max_value=6),
    embargo=st.integers(min_value=0, max_value=30),
    grace=st.integers(min_value=0, max_value=45),
)
def test_no_decision_date_reaches_into_the_next_part(
    data, valid_months, test_months, embargo, grace
):
    """Over random histories and term mixes: every training outcome is decided before
    validation starts (less the embargo), every validation outcome before the test starts
    (less the embargo), and test rows are the latest snapshots."""
    start = pd.Timestamp("2022-01-01")
    snaps = [start + pd.Timedelta(days=d) for d, _, _ in data]
    renewals = [
        s + pd.Timedelta(days=max(1, term - min(into, term - 1)))
        for s, (_, term, into) in zip(snaps, data, strict=True)
    ]
    table = _rows(snaps, renewals)
    rule = LabelRule(horizon_days=365, grace_days=grace)
    try:
        split = purged_split(
            table,
            valid_months=valid_months,
            test_months=test_months,
            embargo_days=embargo,
            rule=rule,
        )
    except TrainingError:
        return  # too short a history for these periods: said, never a silent overlap
    parts = split.assign(table["snapshot_date"], table["renewal_date"], rule)
    decision = pd.to_datetime(table["renewal_date"]) + pd.Timedelta(days=grace)
    snap = pd.to_datetime(table["snapshot_date"])
    valid_start, test_start = pd.Timestamp(split.valid_start), pd.Timestamp(split.test_start)
    gap = pd.Timedelta(days=embargo)
    assert (decision[parts == "train"] < valid_start - gap).all()
    assert (decision[parts == "valid"] >= valid_start).all()
    assert (decision[parts == "valid"] < test_start - gap).all()
    assert (snap[parts != "test"] < test_start).all() and (
        snap[parts == "test"] >= test_start
    ).all()


def test_trained_model_records_parts_and_purged_rows(medium_demo):
    table = labelled(pd.read_parquet(medium_demo["features"]))
    info = load_model(medium_demo["models"]).info
    split = Split.from_info(info)
    grace = medium_demo["params"]["base"]["renewal_grace_days"]
    rule = LabelRule(horizon_days=365, grace_days=grace)
    parts = split.parts(table, rule)
    assert {name: len(parts[name]) for name in ("train", "valid", "test")} == info["rows"]
    assert info["purged_rows"] == len(parts["purged"]) > 0
    assert info["churned"]["valid"] == int((parts["valid"]["churned"] == 1).sum())
    decided = pd.to_datetime(parts["train"]["renewal_date"]) + pd.Timedelta(days=grace)
    assert (decided < pd.Timestamp(split.valid_start)).all()


def test_split_too_short_is_a_clear_error():
    table = _rows(["2026-01-01", "2026-02-01"], ["2026-03-01", "2026-04-01"])
    with pytest.raises(TrainingError, match=r"train\.test_months = 6 and train\.valid_months = 3"):
        purged_split(table, valid_months=3, test_months=6, embargo_days=0, rule=RULE)


def test_a_too_small_part_names_the_horizon_that_fits_the_terms():
    snaps = pd.date_range("2024-01-01", "2025-12-01", freq="MS")
    table = _rows(snaps, snaps + pd.Timedelta(days=28)).assign(
        contract_id=[f"K{i}" for i in range(len(snaps))]
    )
    hint = split_hint(table, RULE, "valid")
    assert "train.valid_months" in hint and "features.label_horizon_days = 42" in hint


def test_single_class_or_too_few_rows_stop_with_a_clear_error():
    with pytest.raises(TrainingError, match="single class"):
        check_trainable(pd.Series([0.0] * 500), name="train")
    with pytest.raises(TrainingError, match="labelled rows"):
        check_trainable(pd.Series([0.0, 1.0] * 10), name="train")
    with pytest.raises(TrainingError, match="churned rows"):
        check_trainable(pd.Series([0.0] * 495 + [1.0] * 5), name="valid")


def test_training_on_one_class_fails_end_to_end(medium_demo, tmp_path):
    table = pd.read_parquet(medium_demo["features"])
    table.loc[table["churned"].notna(), "churned"] = 0.0
    path = tmp_path / "features.parquet"
    table.to_parquet(path)
    with pytest.raises(TrainingError, match="single class"):
        run_train(medium_demo["config"], path, tmp_path / "models")


def test_calibrator_is_monotone_and_round_trips():
    rng = np.random.default_rng(0)
    raw = rng.normal(size=2000)
    y = (rng.random(2000) < 1 / (1 + np.exp(-(raw - 1)))).astype(float)
    for method in ("isotonic", "platt"):
        cal = fit_calibrator(raw, y, method=method)
        grid = np.linspace(-4, 4, 50)
        p = cal(grid)
        assert np.all(np.diff(p) >= 0) and p.min() >= 0 and p.max() <= 1
        again = Calibrator.from_json(cal.to_json())
        np.testing.assert_array_equal(again(grid), p)
    with pytest.raises(TrainingError, match="isotonic or platt"):
        fit_calibrator(raw, y, method="beta")


def test_same_data_params_and_seed_give_an_identical_model(medium_demo, tmp_path):
    run_train(medium_demo["config"], medium_demo["features"], tmp_path / "again")
    first = (medium_demo["models"] / "model.txt").read_bytes()
    assert (tmp_path / "again" / "model.txt").read_bytes() == first
    for name in ("calibrator.json", "feature_schema.json", "training_info.json"):
        assert (tmp_path / "again" / name).read_text() == (medium_demo["models"] / name).read_text()
    table = pd.read_parquet(medium_demo["features"])
    a = load_model(medium_demo["models"]).predict(table)
    b = load_model(tmp_path / "again").predict(table)
    np.testing.assert_array_equal(a, b)


def _real_rows(medium_demo) -> tuple[pd.DataFrame, object]:
    table = pd.read_parquet(medium_demo["features"])
    return labelled(table).sample(400, random_state=1), load_model(medium_demo["models"])


@pytest.mark.parametrize(
    ("feature", "step", "direction"),
    [
        ("sla_breaches_90d", 3.0, +1),
        ("first_response_breaches_90d", 2.0, +1),
        ("resolution_breaches_30d", 2.0, +1),
        ("tickets_open_past_sla", 2.0, +1),
        ("trained_user_share", -0.3, +1),  # lower coverage may never lower the risk
    ],
)
def test_more_breaches_or_less_training_never_lowers_risk(medium_demo, feature, step, direction):
    rows, model = _real_rows(medium_demo)
    base = model.predict(rows)
    changed = rows.copy()
    values = changed[feature].fillna(0.0) + step
    changed[feature] = values.clip(lower=0.0, upper=1.0 if "share" in feature else None)
    moved = model.predict(changed)
    assert np.all((moved - base) * direction >= -1e-12), f"{feature} lowered risk somewhere"


def _rename_accounts(interim: Path, target: Path, rename) -> None:
    """A copy of the validated tables with every account_id replaced by rename(id)."""
    import shutil

    import pyarrow as pa
    import pyarrow.parquet as pq

    shutil.copytree(interim, target)
    for path in sorted(target.rglob("*.parquet")):
        table = pq.read_table(path)
        if "account_id" not in table.column_names or "quarantine" in path.parts:
            continue
        frame = table.to_pandas()
        frame["account_id"] = frame["account_id"].map(rename)
        pq.write_table(pa.Table.from_pandas(frame, schema=table.schema), path)


def test_renaming_accounts_changes_nothing(medium_demo, tmp_path):
    """Account ids are labels, not signal: renaming every account in the validated tables (which
    reorders them) leaves each account's features and churn probability exactly the same."""
    from pipeline.feature_engine.build import (
        compute_features,
        feature_settings,
        read_present_tables,
    )
    from pipeline.feature_engine.vocabulary import Vocabulary

    def rename(account_id):
        return "X" + str(account_id)[::-1]

    _rename_accounts(medium_demo["interim"], tmp_path / "renamed", rename)
    config = medium_demo["config"]
    model = load_model(medium_demo["models"])
    day = [pd.Timestamp(config.base.as_of_date).date() - pd.Timedelta(days=35)]
    results = {}
    for name, interim in (("original", medium_demo["interim"]), ("renamed", tmp_path / "renamed")):
        tables, _ = read_present_tables(interim)
        # the model's vocabulary (event types...), as scoring uses it
        settings = feature_settings(
            config, interim_dir=interim, vocabulary=Vocabulary.from_info(model.info)
        )
        table = compute_features(config, interim, tables, day, settings=settings).table
        table = table.assign(probability=model.predict(table))
        if name == "renamed":
            back = {rename(a): a for a in results["original"]["account_id"]}
            table = table.assign(account_id=table["account_id"].map(back).astype("string"))
        results[name] = table.sort_values("account_id").reset_index(drop=True)
    assert len(results["original"]) > 100
    assert results["original"]["account_id"].tolist() != sorted(
        results["original"]["account_id"].map(rename)
    )  # the renaming does reorder the accounts
    pd.testing.assert_frame_equal(results["original"], results["renamed"])


def test_schema_records_monotone_constraints_from_the_registry(medium_demo):
    model = load_model(medium_demo["models"])
    registry = {f.name: f for f in build_registry((30, 90))}
    constraints = dict(zip(model.feature_names, model.schema["monotone_constraints"], strict=True))
    assert constraints["sla_breaches_90d"] == 1
    assert constraints["trained_user_share"] == -1
    for name, value in constraints.items():
        if value:
            assert registry[name].monotone


def test_validation_grows_until_it_holds_enough_churned_rows():
    """Few renewals a month: three months of outcomes hold 15 churned rows, too few to stop
    early and calibrate on; the split takes the shortest longer window that holds 20."""
    from pipeline.stages.train import adaptive_split

    months = pd.date_range("2022-01-01", "2025-12-01", freq="MS")
    rows = []
    for snap in months:
        for i in range(100):
            rows.append((snap, snap + pd.Timedelta(days=10), 1.0 if i < 5 else 0.0))
    table = pd.DataFrame(rows, columns=["snapshot_date", "renewal_date", "churned"])
    table = table.assign(
        snapshot_date=table["snapshot_date"].dt.date, renewal_date=table["renewal_date"].dt.date
    )
    rule = LabelRule(horizon_days=365, grace_days=0)
    _, parts, used = adaptive_split(table, valid_months=3, test_months=3, embargo_days=0, rule=rule)
    assert used == 4
    assert int((parts["valid"]["churned"] == 1).sum()) == 20
    fixed = purged_split(table, valid_months=3, test_months=3, embargo_days=0, rule=rule)
    assert int((fixed.parts(table, rule)["valid"]["churned"] == 1).sum()) == 15
