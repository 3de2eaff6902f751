"""Training: split, errors, determinism, calibration and model behaviour on real rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.registry import build_registry
from pipeline.core.errors import TrainingError
from pipeline.core.labels import LabelRule, labelled, purge_overlap
from pipeline.modeling.calibration import Calibrator, fit_calibrator
from pipeline.modeling.split import out_of_time_split
from pipeline.modeling.store import load_model
from pipeline.stages.train import check_trainable, run_train


def test_split_periods_are_ordered_with_a_label_horizon_gap():
    dates = pd.Series(pd.date_range("2024-01-01", "2026-10-01", freq="MS").date)
    split = out_of_time_split(dates, valid_months=3, test_months=6, gap_days=365)
    assert split.train_end < split.valid_start <= split.valid_end < split.test_start
    assert (split.test_start - split.train_end).days >= 365
    assert (split.test_start - split.valid_end).days >= 365
    assert str(split.test_end) == "2026-10-01"
    assigned = split.assign(dates)
    assert set(assigned.dropna()) == {"train", "valid", "test"}
    # every train snapshot is before every test snapshot by at least the horizon
    gap = pd.Timestamp(split.test_start) - pd.to_datetime(dates[assigned == "train"]).max()
    assert gap.days >= 365


def test_purge_leaves_no_renewal_outcome_in_training_and_validation():
    train = pd.DataFrame(
        {
            "account_id": ["a", "a", "b", "c"],
            "snapshot_date": pd.to_datetime(
                ["2024-10-01", "2024-12-01", "2024-12-01", "2024-11-01"]
            ),
            "renewal_date": pd.to_datetime(
                ["2024-11-15", "2025-03-01", "2024-12-10", "2024-12-20"]
            ),
        }
    )
    rule = LabelRule(horizon_days=365, grace_days=14)
    kept = purge_overlap(train, valid_start=pd.Timestamp("2025-01-01").date(), rule=rule)
    # a's December row shares its March renewal with January's validation rows; c's renewal is
    # decided only on Jan 3 (Dec 20 + 14 days grace), after validation has begun
    assert kept["renewal_date"].dt.strftime("%Y-%m-%d").tolist() == ["2024-11-15", "2024-12-10"]


def test_trained_model_shares_no_renewal_with_its_validation_period(medium_demo):
    table = labelled(pd.read_parquet(medium_demo["features"]))
    info = load_model(medium_demo["models"]).info
    valid_start = pd.Timestamp(info["split"]["valid_start"])
    grace = medium_demo["params"]["base"]["renewal_grace_days"]
    snap = pd.to_datetime(table["snapshot_date"])
    train = table[snap <= pd.Timestamp(info["split"]["train_end"])]
    decided_late = pd.to_datetime(train["renewal_date"]) + pd.Timedelta(days=grace) >= valid_start
    assert info["purged_train_rows"] == int(decided_late.sum()) > 0
    assert info["rows"]["train"] == len(train) - info["purged_train_rows"]


def test_split_too_short_for_the_gap_is_a_clear_error():
    dates = pd.Series(pd.date_range("2025-01-01", "2025-12-01", freq="MS").date)
    with pytest.raises(TrainingError, match="too short"):
        out_of_time_split(dates, valid_months=3, test_months=6, gap_days=365)


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
