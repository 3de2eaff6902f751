"""Train stage: out-of-time split, LightGBM churn model, probability calibration.

Training uses the earliest labelled snapshots; early stopping and calibration use a later
validation period; the test period is the latest with known labels, and starts at least one
label horizon after the last training snapshot, so no renewal outcome is shared between them.
Training rows whose renewal is decided once validation has begun are purged, so training and
validation share no renewal outcome either.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

import lightgbm as lgb
import pandas as pd

from features.registry import Feature
from pipeline.core.config import Config
from pipeline.core.errors import TrainingError
from pipeline.core.labels import LABEL, LabelRule, labelled
from pipeline.feature_engine.build import declared_registry
from pipeline.feature_engine.vocabulary import INFO_KEY, table_vocabulary
from pipeline.modeling.calibration import Calibrator, fit_calibrator, raw_scores
from pipeline.modeling.design import design_matrix, feature_schema
from pipeline.modeling.split import Split, long_term_days, purged_split
from pipeline.modeling.store import save_model

log = logging.getLogger(__name__)

MIN_ROWS = 200
MIN_POSITIVES = 20


def monotone_constraints(features: list[Feature], *, enabled: bool) -> list[int]:
    """+1 where more of the feature can only raise churn risk, -1 where it can only lower it."""
    if not enabled:
        return [0] * len(features)
    sign = {"higher_is_riskier": 1, "lower_is_riskier": -1, "neither": 0}
    return [sign[f.direction] if f.monotone else 0 for f in features]


def check_trainable(y: pd.Series, *, name: str, hint: str = "") -> None:
    """Stop with a clear error when a period cannot train or validate a model; `hint` says
    which setting would fit the data."""
    y = y.dropna()
    positives = int((y == 1).sum())
    suffix = f"; {hint}" if hint else ""
    if len(y) < MIN_ROWS:
        raise TrainingError(
            f"{name} period has {len(y)} labelled rows; at least {MIN_ROWS} needed{suffix}"
        )
    if y.nunique() < 2:
        raise TrainingError(
            f"{name} period has a single class ({'churned' if positives else 'retained'} only): "
            f"a churn model needs both{suffix}"
        )
    if positives < MIN_POSITIVES:
        raise TrainingError(
            f"{name} period has {positives} churned rows; at least {MIN_POSITIVES} needed{suffix}"
        )


#: Validation grows to at most this many months to hold enough churned rows.
MAX_VALID_MONTHS = 12


def _enough(y: pd.Series) -> bool:
    y = y.dropna()
    return len(y) >= MIN_ROWS and int((y == 1).sum()) >= MIN_POSITIVES and y.nunique() == 2


def adaptive_split(
    known: pd.DataFrame,
    *,
    valid_months: int,
    test_months: int,
    embargo_days: int,
    rule: LabelRule,
) -> tuple[Split, dict[str, pd.DataFrame], int]:
    """The purged split with `valid_months`, or, when its validation part holds too few
    churned rows, the shortest longer validation window (up to MAX_VALID_MONTHS) that holds
    enough while training still does: a company with few renewals per month needs more months
    of outcomes to stop early and calibrate on. Returns the split, its parts and the months
    used (logged when they differ from the setting)."""
    months = valid_months
    while True:
        split = purged_split(
            known,
            valid_months=months,
            test_months=test_months,
            embargo_days=embargo_days,
            rule=rule,
        )
        parts = split.parts(known, rule)
        done = _enough(parts["valid"][LABEL]) or months >= max(MAX_VALID_MONTHS, valid_months)
        if done or not _enough(parts["train"][LABEL]):
            break
        try:
            longer = purged_split(
                known,
                valid_months=months + 1,
                test_months=test_months,
                embargo_days=embargo_days,
                rule=rule,
            )
        except TrainingError:
            break
        if not _enough(longer.parts(known, rule)["train"][LABEL]):
            break
        months += 1
    if months != valid_months:
        log.warning(
            "train.valid_months = %d held too few churned rows to validate on; %d months used "
            "(set train.valid_months to pin it)",
            valid_months,
            months,
        )
    return split, parts, months


def split_hint(known: pd.DataFrame, rule: LabelRule, part: str) -> str:
    """What to change when a part is too small: a longer period for its outcomes, and the
    label horizon the data's terms call for (a horizon far beyond the terms adds no labels;
    one shorter than the terms labels only their last stretch)."""
    setting = {"train": "more history", "valid": "a longer train.valid_months"}.get(
        part, "a longer train.test_months"
    )
    term = long_term_days(known)
    if term is None:
        return f"try {setting}"
    fit = term + rule.grace_days
    horizon = (
        f"; 90% of the terms here last at most {term} days, so features.label_horizon_days = "
        f"{fit} covers a whole term (now {rule.horizon_days})"
        if abs(rule.horizon_days - fit) > max(7, fit // 4)
        else ""
    )
    return f"try {setting}{horizon}"


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


@dataclass
class TrainedModel:
    """Everything the train stage produces; written to models/ by `save_model`."""

    booster: lgb.Booster
    calibrator: Calibrator
    schema: dict
    split: Split
    info: dict


def train_model(
    table: pd.DataFrame,
    features: list[Feature],
    *,
    lgb_params: dict,
    num_boost_round: int,
    early_stopping_rounds: int,
    valid_months: int,
    test_months: int,
    embargo_days: int,
    rule: LabelRule,
    calibration: str,
    monotone: bool,
    seed: int,
) -> TrainedModel:
    """Split by decision date (purged, with an embargo), fit LightGBM with early stopping,
    calibrate on validation."""
    known = labelled(table)
    split, parts, used_months = adaptive_split(
        known,
        valid_months=valid_months,
        test_months=test_months,
        embargo_days=embargo_days,
        rule=rule,
    )
    purged = parts.pop("purged")
    for name, part in parts.items():
        check_trainable(part[LABEL], name=name, hint=split_hint(known, rule, name))
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
        "valid_months": used_months,
        # labelled rows before the test whose outcome falls in a later part (or the embargo)
        "purged_rows": len(purged),
        "purged_churned": int((purged[LABEL] == 1).sum()),
        "purge_grace_days": rule.grace_days,
        "churned": {name: int((part[LABEL] == 1).sum()) for name, part in parts.items()},
        "best_iteration": int(booster.best_iteration),
        "calibration": calibration,
    }
    return TrainedModel(booster, calibrator, schema, split, info)


def run_train(config: Config, features_path: Path, models_dir: Path) -> TrainedModel:
    """The train stage's edge: the feature table in, the model directory out."""
    cfg = config.train
    table = pd.read_parquet(Path(features_path))
    vocabulary = table_vocabulary(Path(features_path))
    registry = declared_registry(config, vocabulary)
    features = [f for f in registry if f.name in table.columns]
    model = train_model(
        table,
        features,
        lgb_params=cfg.lightgbm.as_params(),
        num_boost_round=cfg.num_boost_round,
        early_stopping_rounds=cfg.early_stopping_rounds,
        valid_months=cfg.valid_months,
        test_months=cfg.test_months,
        embargo_days=cfg.embargo_days,
        rule=config.label_rule,
        calibration=cfg.calibration,
        monotone=cfg.monotone_constraints,
        seed=config.base.seed,
    )
    if vocabulary is not None:
        model = replace(model, info={**model.info, INFO_KEY: vocabulary.as_dict()})
    save_model(model, models_dir)
    return model
