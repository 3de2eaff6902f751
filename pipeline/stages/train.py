"""Train stage: out-of-time split, LightGBM churn model, probability calibration.

Training uses the earliest labelled snapshots; early stopping and calibration use a later
validation period; the test period is the latest with known labels, and starts at least one
label horizon after the last training snapshot, so no renewal outcome is shared between them.
Training rows whose renewal is decided once validation has begun are purged, so training and
validation share no renewal outcome either.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from datetime import date

import lightgbm as lgb
import numpy as np
import pandas as pd

from features.registry import Feature
from pipeline.core.errors import TrainingError
from pipeline.stages.features import LABEL

log = logging.getLogger(__name__)

MIN_ROWS = 200
MIN_POSITIVES = 20


@dataclass(frozen=True)
class Split:
    """Snapshot date ranges (inclusive) of the three periods."""

    train_start: date
    train_end: date
    valid_start: date
    valid_end: date
    test_start: date
    test_end: date

    def assign(self, snapshot_dates: pd.Series) -> pd.Series:
        """'train', 'valid', 'test' or missing (in a gap) per snapshot date."""
        d = pd.to_datetime(snapshot_dates)
        out = pd.Series(pd.NA, index=snapshot_dates.index, dtype="string")
        for name in ("train", "valid", "test"):
            lo = pd.Timestamp(getattr(self, f"{name}_start"))
            hi = pd.Timestamp(getattr(self, f"{name}_end"))
            out[(d >= lo) & (d <= hi)] = name
        return out

    def as_dict(self) -> dict[str, str]:
        return {k: str(v) for k, v in asdict(self).items()}


def out_of_time_split(
    labelled_dates: pd.Series, *, valid_months: int, test_months: int, gap_days: int
) -> Split:
    """Periods from the labelled snapshot dates: test = the last `test_months`, validation =
    the `valid_months` ending `gap_days` before the test starts, train = everything before.

    The gap between the last training (and validation) snapshot and the first test snapshot is
    at least `gap_days`, the label horizon: no label window is shared with the test period.
    """
    dates = pd.to_datetime(pd.Series(labelled_dates).dropna().unique()).sort_values()
    if len(dates) == 0:
        raise TrainingError("no labelled snapshots: nothing to train on")
    last = dates[-1]
    test_start = last - pd.DateOffset(months=test_months) + pd.Timedelta(days=1)
    valid_end = test_start - pd.Timedelta(days=gap_days)
    valid_start = valid_end - pd.DateOffset(months=valid_months) + pd.Timedelta(days=1)
    train_dates = dates[dates < valid_start]
    if len(train_dates) == 0:
        raise TrainingError(
            f"labelled snapshots span {dates[0].date()} to {last.date()}: too short for "
            f"{test_months} test months, a {gap_days}-day gap and {valid_months} validation "
            "months; lower train.test_months/valid_months or use more history"
        )
    return Split(
        train_start=train_dates[0].date(),
        train_end=train_dates[-1].date(),
        valid_start=valid_start.date(),
        valid_end=valid_end.date(),
        test_start=test_start.date(),
        test_end=last.date(),
    )


def feature_schema(table: pd.DataFrame, features: list[Feature]) -> dict:
    """Names, types, order and category levels: what scoring must match exactly."""
    columns = []
    for f in features:
        entry: dict[str, object] = {"name": f.name, "dtype": f.dtype}
        if f.dtype == "category":
            entry["categories"] = sorted(table[f.name].dropna().astype(str).unique().tolist())
        columns.append(entry)
    return {"label": LABEL, "features": columns}


def design_matrix(table: pd.DataFrame, schema: dict) -> pd.DataFrame:
    """The model's input in schema order; categories fixed to the training levels."""
    names = [c["name"] for c in schema["features"]]
    missing = [n for n in names if n not in table.columns]
    if missing:
        raise TrainingError(f"features missing from the table: {missing}")
    X = pd.DataFrame(index=table.index)
    for col in schema["features"]:
        values = table[col["name"]]
        if col["dtype"] == "category":
            X[col["name"]] = pd.Categorical(values.astype("object"), categories=col["categories"])
        else:
            X[col["name"]] = values.astype("float64")
    return X


def monotone_constraints(features: list[Feature], *, enabled: bool) -> list[int]:
    """+1 where more of the feature can only raise churn risk, -1 where it can only lower it."""
    if not enabled:
        return [0] * len(features)
    sign = {"higher_is_riskier": 1, "lower_is_riskier": -1, "neither": 0}
    return [sign[f.direction] if f.monotone else 0 for f in features]


def check_trainable(y: pd.Series, *, name: str) -> None:
    """Stop with a clear error when a period cannot train or validate a model."""
    y = y.dropna()
    positives = int((y == 1).sum())
    if len(y) < MIN_ROWS:
        raise TrainingError(f"{name} period has {len(y)} labelled rows; at least {MIN_ROWS} needed")
    if y.nunique() < 2:
        raise TrainingError(
            f"{name} period has a single class ({'churned' if positives else 'retained'} only): "
            "a churn model needs both"
        )
    if positives < MIN_POSITIVES:
        raise TrainingError(
            f"{name} period has {positives} churned rows; at least {MIN_POSITIVES} needed"
        )


def fit_lightgbm(
    X_train: pd.DataFrame,
    y_train: pd.Series,
    X_valid: pd.DataFrame,
    y_valid: pd.Series,
    *,
    params: dict,
    monotone: list[int],
    seed: int,
    num_boost_round: int,
    early_stopping_rounds: int,
) -> lgb.Booster:
    """A deterministic LightGBM binary model with early stopping on the validation period."""
    full = {
        "objective": "binary",
        "metric": "binary_logloss",
        "verbosity": -1,
        "seed": seed,
        "deterministic": True,
        "force_row_wise": True,
        "num_threads": 1,
        "monotone_constraints": monotone,
        "monotone_constraints_method": "advanced",
        **params,
    }
    train_set = lgb.Dataset(X_train, label=y_train.astype(float), free_raw_data=False)
    valid_set = lgb.Dataset(X_valid, label=y_valid.astype(float), reference=train_set)
    booster = lgb.train(
        full,
        train_set,
        num_boost_round=num_boost_round,
        valid_sets=[valid_set],
        valid_names=["valid"],
        callbacks=[lgb.early_stopping(early_stopping_rounds, verbose=False)],
    )
    log.info("lightgbm: best iteration %d of %d", booster.best_iteration, num_boost_round)
    return booster


def raw_scores(booster: lgb.Booster, X: pd.DataFrame) -> np.ndarray:
    """Uncalibrated log-odds of churn."""
    return booster.predict(X, raw_score=True, num_iteration=booster.best_iteration)


@dataclass(frozen=True)
class Calibrator:
    """Maps raw log-odds to calibrated probabilities; stored as JSON next to the model."""

    method: str
    x: tuple[float, ...]
    y: tuple[float, ...]

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        raw = np.asarray(raw, dtype=float)
        if self.method == "platt":
            a, b = self.x
            return 1.0 / (1.0 + np.exp(-(a * raw + b)))
        return np.interp(raw, self.x, self.y)

    def to_json(self) -> str:
        return json.dumps({"method": self.method, "x": self.x, "y": self.y}, indent=1) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Calibrator:
        data = json.loads(text)
        return cls(data["method"], tuple(data["x"]), tuple(data["y"]))


def fit_calibrator(raw: np.ndarray, y: np.ndarray, *, method: str) -> Calibrator:
    """Platt (the params default) or isotonic calibration fitted on the validation period."""
    raw, y = np.asarray(raw, dtype=float), np.asarray(y, dtype=float)
    if method == "platt":
        from sklearn.linear_model import LogisticRegression

        lr = LogisticRegression(C=1e6, max_iter=1000).fit(raw.reshape(-1, 1), y)
        return Calibrator("platt", (float(lr.coef_[0, 0]), float(lr.intercept_[0])), ())
    if method != "isotonic":
        raise TrainingError(f"train.calibration must be isotonic or platt, not {method!r}")
    from sklearn.isotonic import IsotonicRegression

    iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(raw, y)
    return Calibrator(
        "isotonic",
        tuple(float(v) for v in iso.X_thresholds_),
        tuple(float(v) for v in iso.y_thresholds_),
    )


@dataclass
class TrainedModel:
    """Everything the train stage produces; written to models/ by `save_model`."""

    booster: lgb.Booster
    calibrator: Calibrator
    schema: dict
    split: Split
    info: dict


def labelled(table: pd.DataFrame) -> pd.DataFrame:
    """Rows whose outcome is known (censored rows are for scoring only)."""
    return table[table[LABEL].notna()]


def purge_overlap(train: pd.DataFrame, *, valid_start: date, grace_days: int) -> pd.DataFrame:
    """Training rows whose renewal is decided before the validation period starts.

    Monthly snapshots of one account share the outcome of its next renewal, so a training row
    from December and a validation row from January can carry the very same label. Early
    stopping and calibration then reward memorising those accounts, which inflates the number of
    trees and skews the calibration. Dropping ("purging") the training rows whose renewal is
    decided (renewal date + grace) on or after the first validation day leaves no renewal
    outcome in both periods.
    """
    decided = pd.to_datetime(train["renewal_date"]) + pd.Timedelta(days=grace_days)
    return train[decided < pd.Timestamp(valid_start)]


def train_model(
    table: pd.DataFrame,
    features: list[Feature],
    *,
    lgb_params: dict,
    num_boost_round: int,
    early_stopping_rounds: int,
    valid_months: int,
    test_months: int,
    gap_days: int,
    grace_days: int,
    calibration: str,
    monotone: bool,
    seed: int,
) -> TrainedModel:
    """Split out of time, purge shared renewals, fit LightGBM with early stopping, calibrate
    on validation."""
    known = labelled(table)
    split = out_of_time_split(
        known["snapshot_date"],
        valid_months=valid_months,
        test_months=test_months,
        gap_days=gap_days,
    )
    period = split.assign(known["snapshot_date"])
    parts = {name: known[period == name] for name in ("train", "valid", "test")}
    before = len(parts["train"])
    parts["train"] = purge_overlap(
        parts["train"], valid_start=split.valid_start, grace_days=grace_days
    )
    for name, part in parts.items():
        check_trainable(part[LABEL], name=name)
    schema = feature_schema(parts["train"], features)
    constraints = monotone_constraints(features, enabled=monotone)
    schema["monotone_constraints"] = constraints
    X_train = design_matrix(parts["train"], schema)
    X_valid = design_matrix(parts["valid"], schema)
    booster = fit_lightgbm(
        X_train,
        parts["train"][LABEL],
        X_valid,
        parts["valid"][LABEL],
        params=lgb_params,
        monotone=constraints,
        seed=seed,
        num_boost_round=num_boost_round,
        early_stopping_rounds=early_stopping_rounds,
    )
    calibrator = fit_calibrator(
        raw_scores(booster, X_valid), parts["valid"][LABEL].to_numpy(), method=calibration
    )
    info = {
        "split": split.as_dict(),
        "rows": {name: len(part) for name, part in parts.items()},
        "purged_train_rows": before - len(parts["train"]),
        "purge_grace_days": grace_days,
        "churned": {name: int((part[LABEL] == 1).sum()) for name, part in parts.items()},
        "best_iteration": int(booster.best_iteration),
        "calibration": calibration,
    }
    return TrainedModel(booster, calibrator, schema, split, info)


def predict_proba(
    model_booster: lgb.Booster, calibrator: Calibrator, X: pd.DataFrame
) -> np.ndarray:
    """Calibrated churn probabilities."""
    return calibrator(raw_scores(model_booster, X))


MODEL_FILE = "model.txt"
CALIBRATOR_FILE = "calibrator.json"
SCHEMA_FILE = "feature_schema.json"
INFO_FILE = "training_info.json"


def save_model(model: TrainedModel, models_dir) -> None:
    """Write model, calibrator, feature schema and training info into `models_dir` atomically."""
    from pathlib import Path

    from pipeline.core.atomic import atomic_path

    with atomic_path(Path(models_dir)) as tmp:
        tmp.mkdir(parents=True)
        model.booster.save_model(str(tmp / MODEL_FILE), num_iteration=model.booster.best_iteration)
        (tmp / CALIBRATOR_FILE).write_text(model.calibrator.to_json())
        (tmp / SCHEMA_FILE).write_text(json.dumps(model.schema, indent=1) + "\n")
        (tmp / INFO_FILE).write_text(json.dumps(model.info, indent=1, sort_keys=True) + "\n")


@dataclass
class LoadedModel:
    """A model read back from models/: enough to score and explain."""

    booster: lgb.Booster
    calibrator: Calibrator
    schema: dict
    info: dict

    @property
    def feature_names(self) -> list[str]:
        return [c["name"] for c in self.schema["features"]]

    def predict(self, table: pd.DataFrame) -> np.ndarray:
        """Calibrated churn probabilities for rows of a feature table."""
        return self.calibrator(
            self.booster.predict(design_matrix(table, self.schema), raw_score=True)
        )


def load_model(models_dir) -> LoadedModel:
    from pathlib import Path

    models_dir = Path(models_dir)
    if not (models_dir / MODEL_FILE).is_file():
        raise TrainingError(f"no model in {models_dir}: run `churn train` (or `dvc repro`) first")
    return LoadedModel(
        booster=lgb.Booster(model_file=str(models_dir / MODEL_FILE)),
        calibrator=Calibrator.from_json((models_dir / CALIBRATOR_FILE).read_text()),
        schema=json.loads((models_dir / SCHEMA_FILE).read_text()),
        info=json.loads((models_dir / INFO_FILE).read_text()),
    )


def run_train(params: dict, features_path, models_dir) -> TrainedModel:
    """The train stage's edge: params and the feature table in, models/ out."""
    from pathlib import Path

    from features.registry import build_registry
    from pipeline.core.config import section

    cfg = section(params, "train")
    feat_cfg = section(params, "features")
    table = pd.read_parquet(Path(features_path))
    registry = build_registry(feat_cfg["windows"])
    features = [f for f in registry if f.name in table.columns]
    model = train_model(
        table,
        features,
        lgb_params=dict(cfg.get("lightgbm") or {}),
        num_boost_round=int(cfg["num_boost_round"]),
        early_stopping_rounds=int(cfg["early_stopping_rounds"]),
        valid_months=int(cfg["valid_months"]),
        test_months=int(cfg["test_months"]),
        gap_days=int(feat_cfg["label_horizon_days"]),
        grace_days=int(section(params, "base")["renewal_grace_days"]),
        calibration=str(cfg.get("calibration", "platt")),
        monotone=bool(cfg.get("monotone_constraints", True)),
        seed=int(section(params, "base")["seed"]),
    )
    save_model(model, models_dir)
    return model
