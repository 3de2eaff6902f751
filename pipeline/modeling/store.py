"""The model artifact store: one loader for a model directory and for the MLflow registry.

A model directory holds the learner (LightGBM trees in model.txt, a logistic regression in
linear.json, or both for a blend, named by learner.json), the calibrator, the feature schema
and the training info. The train stage writes them to `models/`; the track stage logs
the same files to an MLflow run. Scoring, evaluation, the backtest, the report and the pyfunc
all load a model through `load_model` (a directory) or `load_model_ref` (a directory or a
`models:/<name>@<alias>` registry URI), so no stage reaches into another stage's files.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
import pandas as pd

from pipeline.core.atomic import atomic_path
from pipeline.core.errors import ScoringError, TrainingError
from pipeline.core.hashing import dvc_dir_hash
from pipeline.core.layout import (
    CALIBRATOR_FILE,
    INFO_FILE,
    LEARNER_FILE,
    LINEAR_FILE,
    MLFLOW_MODEL_FILES,
    MODEL_FILE,
    SCHEMA_FILE,
)
from pipeline.modeling.calibration import Calibrator
from pipeline.modeling.design import design_matrix
from pipeline.modeling.learners import BlendLearner, LinearLearner, TreeLearner

if TYPE_CHECKING:
    from pipeline.modeling.learners import Learner


class ModelArtifacts(Protocol):
    learner: Learner
    calibrator: Calibrator
    schema: dict
    info: dict


@dataclass
class LoadedModel:
    """A model read back from the store: enough to score and explain."""

    learner: Learner
    calibrator: Calibrator
    schema: dict
    info: dict

    @property
    def feature_names(self) -> list[str]:
        return [c["name"] for c in self.schema["features"]]

    def predict(self, table: pd.DataFrame) -> np.ndarray:
        """Calibrated churn probabilities for rows of a feature table."""
        return self.calibrator(self.learner.raw(design_matrix(table, self.schema)))


def save_model(model: ModelArtifacts, models_dir: Path) -> None:
    """Write model, calibrator, feature schema and training info into `models_dir` atomically."""
    with atomic_path(Path(models_dir)) as tmp:
        tmp.mkdir(parents=True)
        learner = model.learner
        trees = learner.tree if isinstance(learner, BlendLearner) else learner
        linear = learner.linear if isinstance(learner, BlendLearner) else learner
        if isinstance(trees, TreeLearner):
            trees.booster.save_model(str(tmp / MODEL_FILE), num_iteration=trees.trees)
        if isinstance(linear, LinearLearner):
            (tmp / LINEAR_FILE).write_text(linear.to_json())
        about = {"kind": learner.kind}
        if isinstance(learner, BlendLearner):
            about["weight"] = learner.weight
        (tmp / LEARNER_FILE).write_text(json.dumps(about, indent=1) + "\n")
        (tmp / CALIBRATOR_FILE).write_text(model.calibrator.to_json())
        (tmp / SCHEMA_FILE).write_text(json.dumps(model.schema, indent=1) + "\n")
        (tmp / INFO_FILE).write_text(json.dumps(model.info, indent=1, sort_keys=True) + "\n")


def read_training_info(models_dir: Path) -> dict:
    """Only the training info (split, row counts): cheap, no LightGBM needed."""
    path = Path(models_dir) / INFO_FILE
    if not path.is_file():
        raise TrainingError(f"{path} not found: run `churn train` (or `dvc repro`) first")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise TrainingError(f"{path} is not valid JSON: {err}") from err


def load_model(models_dir: Path) -> LoadedModel:
    """A model directory (train stage output, or the files an MLflow run logged)."""
    models_dir = Path(models_dir)
    return LoadedModel(
        learner=load_learner(models_dir),
        calibrator=Calibrator.from_json((models_dir / CALIBRATOR_FILE).read_text()),
        schema=json.loads((models_dir / SCHEMA_FILE).read_text()),
        info=read_training_info(models_dir),
    )


def load_learner(models_dir: Path) -> Learner:
    """The learner a model directory holds; a directory without learner.json is a LightGBM
    model written before model selection existed (registry versions stay loadable)."""
    models_dir = Path(models_dir)
    about_path = models_dir / LEARNER_FILE
    about = json.loads(about_path.read_text()) if about_path.is_file() else {"kind": "lightgbm"}
    kind = about.get("kind")
    needed = {
        "lightgbm": (MODEL_FILE,),
        "logistic": (LINEAR_FILE,),
        "blend": (MODEL_FILE, LINEAR_FILE),
    }
    if kind not in needed:
        raise TrainingError(f"{about_path}: unknown learner kind {kind!r}")
    if not all((models_dir / name).is_file() for name in needed[kind]):
        raise TrainingError(f"no model in {models_dir}: run `churn train` (or `dvc repro`) first")
    trees = linear = None
    if MODEL_FILE in needed[kind]:
        import lightgbm as lgb

        trees = TreeLearner(lgb.Booster(model_file=str(models_dir / MODEL_FILE)))
    if LINEAR_FILE in needed[kind]:
        linear = LinearLearner.from_json((models_dir / LINEAR_FILE).read_text())
    if kind == "blend":
        return BlendLearner(trees, linear, float(about["weight"]))
    return trees if kind == "lightgbm" else linear


def resolve_tracking_uri(configured: str | None) -> str:
    """params, then MLFLOW_TRACKING_URI, then sqlite `mlflow.db` in the working directory."""
    if configured:
        return configured
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    return f"sqlite:///{Path.cwd() / 'mlflow.db'}"


def parse_model_uri(uri: str) -> tuple[str, str | None, str | None]:
    """models:/<name>@<alias> or models:/<name>/<version> -> (name, alias, version)."""
    body = uri.removeprefix("models:/")
    if "@" in body:
        name, alias = body.split("@", 1)
        if name and alias and "/" not in name:
            return name, alias, None
    elif body.count("/") == 1:
        name, version = body.split("/")
        if name and version.isdigit():
            return name, None, version
    raise ScoringError(
        f"model URI {uri!r} must be models:/<name>@<alias> (e.g. models:/churn-model@champion) "
        "or models:/<name>/<version>"
    )


def model_stamp(directory: Path) -> str:
    """A model directory's version on lists and reports: the first 12 digits of its DVC hash.

    The same model files give the same stamp on every clone, unlike a run id or a registry
    number; the MLflow run that logged them carries the full hash as its `model_hash` tag.
    """
    return dvc_dir_hash(Path(directory))[:12]


def load_model_ref(ref: str, *, tracking_uri: str | None = None) -> tuple[LoadedModel, str, str]:
    """(model, source, version) from a model directory or an MLflow registry URI.

    A directory's version is its content stamp (`model_stamp`). A registry URI resolves the
    alias or version to its run and loads the model files that run logged (the same booster,
    calibrator and schema); its version is that run's id, since there the run is the point.
    """
    if not ref.startswith("models:/"):
        try:
            model = load_model(Path(ref))
        except TrainingError as err:
            raise ScoringError(str(err)) from err
        return model, str(ref), model_stamp(Path(ref))

    name, alias, number = parse_model_uri(ref)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    uri = resolve_tracking_uri(tracking_uri)
    client = MlflowClient(tracking_uri=uri)
    try:
        found = (
            client.get_model_version_by_alias(name, alias)
            if alias
            else client.get_model_version(name, number)
        )
        with tempfile.TemporaryDirectory() as tmp:
            path = mlflow.artifacts.download_artifacts(
                run_id=found.run_id,
                artifact_path=MLFLOW_MODEL_FILES,
                dst_path=tmp,
                tracking_uri=uri,
            )
            model = load_model(Path(path))
    except (MlflowException, OSError, TrainingError) as err:
        raise ScoringError(f"cannot load {ref} from the MLflow store {uri}: {err}") from err
    return model, ref, str(found.run_id)
