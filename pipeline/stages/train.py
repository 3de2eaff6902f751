"""Train stage: out-of-time split, model selection, the churn model, probability calibration.

The labelled rows are split by decision date (pipeline.modeling.split): the test period is the
latest snapshots; validation holds the outcomes decided in the months before it; training the
outcomes decided before that, each boundary purged and embargoed so no renewal outcome is in
two parts. The learner (LightGBM, a logistic regression on transformed features, or a blend;
pipeline.modeling.selection) is chosen on rolling-origin folds that all end before the test,
refitted on the training part with early stopping on validation, and calibrated on validation.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd

from features.registry import Feature
from pipeline.core.config import Config, SelectionSettings
from pipeline.core.errors import TrainingError
from pipeline.core.labels import LABEL, LabelRule, labelled
from pipeline.feature_engine.build import declared_registry
from pipeline.feature_engine.vocabulary import INFO_KEY, table_vocabulary
from pipeline.modeling.calibration import Calibrator, fit_calibrator
from pipeline.modeling.design import design_matrix, feature_schema, monotone_constraints
from pipeline.modeling.learners import (
    BlendLearner,
    Learner,
    LinearLearner,
    TreeLearner,
    fit_linear,
)
from pipeline.modeling.selection import (
    Candidate,
    blend_candidate,
    choose,
    lightgbm_params,
    rolling_folds,
    score_candidate,
    search_lightgbm,
    search_logistic,
)
from pipeline.modeling.split import Split, long_term_days, purged_split
from pipeline.modeling.store import save_model

log = logging.getLogger(__name__)

MIN_ROWS = 200
MIN_POSITIVES = 20


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


#: LightGBM threads: fixed, not the machine's core count, so the trees (whose histogram sums
#: depend on how rows are split between threads) are the same bytes on every machine.
LIGHTGBM_THREADS = 2


def lightgbm_datasets(
    X_train: pd.DataFrame, y_train: pd.Series, X_valid: pd.DataFrame, y_valid: pd.Series
) -> tuple[lgb.Dataset, lgb.Dataset]:
    """Binned training and validation sets, reusable across fits with other tree parameters
    (feature_pre_filter off: leaf sizes may change between fits)."""
    train_set = lgb.Dataset(
        X_train,
        label=np.asarray(y_train, dtype=float),
        free_raw_data=False,
        params={"feature_pre_filter": False, "verbosity": -1},
    )
    valid_set = lgb.Dataset(X_valid, label=np.asarray(y_valid, dtype=float), reference=train_set)
    return train_set, valid_set


def fit_lightgbm(
    train_set: lgb.Dataset,
    valid_set: lgb.Dataset,
    *,
    params: dict,
    monotone: list[int],
    seed: int,
    num_boost_round: int,
    early_stopping_rounds: int,
) -> lgb.Booster:
    """A deterministic LightGBM binary model with early stopping on the validation set."""
    full = {
        "objective": "binary",
        "metric": "binary_logloss",
        "verbosity": -1,
        "seed": seed,
        "deterministic": True,
        "force_row_wise": True,
        "num_threads": LIGHTGBM_THREADS,
        "feature_pre_filter": False,
        "monotone_constraints": monotone,
        "monotone_constraints_method": "advanced",
        **params,
    }
    booster = lgb.train(
        full,
        train_set,
        num_boost_round=num_boost_round,
        valid_sets=[valid_set],
        valid_names=["valid"],
        callbacks=[lgb.early_stopping(early_stopping_rounds, verbose=False)],
    )
    log.debug("lightgbm: best iteration %d of %d", booster.best_iteration, num_boost_round)
    return booster


@dataclass
class TrainedModel:
    """Everything the train stage produces; written to models/ by `save_model`."""

    learner: Learner
    calibrator: Calibrator
    schema: dict
    split: Split
    info: dict


def describe_learner(learner: Learner) -> str:
    """The model in a few plain words, for the report's model card and the log."""
    if isinstance(learner, TreeLearner):
        return f"LightGBM, {learner.trees} trees"
    if isinstance(learner, LinearLearner):
        return f"logistic regression on transformed features (C = {learner.C:g})"
    assert isinstance(learner, BlendLearner)
    return (
        f"blend: {learner.weight:g} x LightGBM ({learner.tree.trees} trees) + "
        f"{1 - learner.weight:g} x logistic regression (C = {learner.linear.C:g})"
    )


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
    selection: SelectionSettings,
    seed: int,
) -> TrainedModel:
    """Split by decision date (purged, with an embargo), select the learner on rolling-origin
    folds before the test period, refit it on the training part (early stopping on
    validation) and calibrate it on validation."""
    known = labelled(table).reset_index(drop=True)
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
    # the same business facts for the logistic candidate: feature -> direction of its risk
    directions = {c["name"]: d for c, d in zip(schema["features"], constraints, strict=True) if d}
    categorical = [c["name"] for c in schema["features"] if c["dtype"] == "category"]

    datasets: dict[object, tuple[lgb.Dataset, lgb.Dataset]] = {}

    def fit_trees(key: object, train_rows, valid_rows, params: dict) -> TreeLearner:
        """Trees on rows `train_rows`, stopped early on `valid_rows` (binned once per key)."""
        if key not in datasets:
            datasets[key] = lightgbm_datasets(
                X[train_rows], y[train_rows], X[valid_rows], y[valid_rows]
            )
        return TreeLearner(
            fit_lightgbm(
                *datasets[key],
                params=params,
                monotone=constraints,
                seed=seed,
                num_boost_round=num_boost_round,
                early_stopping_rounds=early_stopping_rounds,
            )
        )

    X = design_matrix(known, schema)
    y = known[LABEL].astype(int).to_numpy()
    folds = rolling_folds(
        known,
        split,
        rule,
        folds=selection.folds,
        months=used_months,
        enough=lambda part: _enough(pd.Series(part)),
    )
    candidates: dict[str, Candidate] = {}
    if "lightgbm" in selection.candidates:
        candidates["lightgbm"] = search_lightgbm(
            X,
            y,
            folds,
            fit=fit_trees,
            base_params=lgb_params,
            metric=selection.metric,
            trials=selection.trials,
            seed=seed,
        )
    if "logistic" in selection.candidates:
        candidates["logistic"] = search_logistic(
            X,
            y,
            folds,
            categorical=categorical,
            metric=selection.metric,
            trials=selection.trials,
            seed=seed,
            monotone=directions,
        )
    if "blend" in selection.candidates:
        candidates["blend"] = blend_candidate(
            candidates["lightgbm"],
            candidates["logistic"],
            y,
            folds,
            weights=selection.blend_weights,
            metric=selection.metric,
        )
    accounts = known["account_id"].astype(str).to_numpy()
    scored = [
        score_candidate(
            c,
            folds,
            y,
            accounts,
            metric=selection.metric,
            resamples=selection.bootstrap_resamples,
            confidence=selection.confidence,
            seed=seed,
        )
        for c in candidates.values()
    ]
    chosen = choose(scored, selection.metric)

    train = known.index.isin(parts["train"].index)
    valid = known.index.isin(parts["valid"].index)
    X_train, X_valid = X[train], X[valid]
    y_train, y_valid = y[train], y[valid]
    churned = int((y_train == 1).sum())

    def final(name: str, params: dict) -> Learner:
        if name == "lightgbm":
            return fit_trees("final", train, valid, lightgbm_params(params, len(y_train), churned))
        if name == "logistic":
            return fit_linear(
                X_train,
                pd.Series(y_train),
                categorical=categorical,
                C=params["C"],
                seed=seed,
                monotone=directions,
            )
        return BlendLearner(
            final("lightgbm", params["lightgbm"]),
            final("logistic", params["logistic"]),
            float(params["weight"]),
        )

    learner = final(chosen.name, chosen.params)
    calibrator = fit_calibrator(learner.raw(X_valid), y_valid, method=calibration)
    log.info(
        "model selection on %d folds by %s: %s; chosen %s",
        len(folds),
        selection.metric,
        ", ".join(f"{s.name} {s.score:.4f} [{s.low:.4f}, {s.high:.4f}]" for s in scored),
        chosen.name,
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
        "calibration": calibration,
        "learner": learner.kind,
        "model_description": describe_learner(learner),
        "selection": {
            "metric": selection.metric,
            "chosen": chosen.name,
            "trials": selection.trials,
            "confidence": selection.confidence,
            "folds": [f.describe(y) for f in folds],
            "candidates": {s.name: s.as_dict() for s in scored},
        },
    }
    trees = learner.tree if isinstance(learner, BlendLearner) else learner
    if isinstance(trees, TreeLearner):
        info["best_iteration"] = trees.trees
    return TrainedModel(learner, calibrator, schema, split, info)


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
        selection=cfg.selection,
        seed=config.base.seed,
    )
    if vocabulary is not None:
        model = replace(model, info={**model.info, INFO_KEY: vocabulary.as_dict()})
    save_model(model, models_dir)
    return model
