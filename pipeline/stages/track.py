"""Track stage: one MLflow run per trained model, and the champion/challenger decision.

The run holds the params, the metrics of `reports/metrics.json` (not recomputed), tags naming
the code (git commit) and the data (hash of the feature table, as DVC computes it), the model
with its signature and an input example, the calibrator and schema, and the plots. The model is
registered; the alias `champion` moves to the new version only when it beats the current
champion on the chosen test metric, and the decision is recorded on the run.
"""

from __future__ import annotations

import logging
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

import features
import pipeline
from pipeline.core.config import Config
from pipeline.core.errors import ConfigError, TrainingError
from pipeline.core.hashing import file_md5
from pipeline.core.layout import MLFLOW_MODEL_FILES
from pipeline.modeling.store import load_model, resolve_tracking_uri

log = logging.getLogger(__name__)

CHAMPION = "champion"


@dataclass(frozen=True)
class ChampionDecision:
    """Whether the new version became champion, and against what."""

    promoted: bool
    metric: str
    new_value: float
    previous_version: str | None
    previous_value: float | None

    def reason(self) -> str:
        if self.previous_version is None:
            return f"no champion yet: version becomes champion ({self.metric}={self.new_value:.4f})"
        verb = "beats" if self.promoted else "does not beat"
        return (
            f"{self.metric} {self.new_value:.4f} {verb} champion version "
            f"{self.previous_version} ({self.previous_value:.4f})"
        )


def decide_champion(
    new_value: float,
    *,
    metric: str,
    previous_version: str | None,
    previous_value: float | None,
    higher_is_better: bool = True,
) -> ChampionDecision:
    """Promote only a strict improvement: a tie keeps the champion that has been in use."""
    if previous_version is None or previous_value is None:
        promoted = True
    elif higher_is_better:
        promoted = new_value > previous_value
    else:
        promoted = new_value < previous_value
    return ChampionDecision(promoted, metric, new_value, previous_version, previous_value)


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _flatten(prefix: str, value, out: dict[str, str]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = str(value)


def log_training_run(
    *,
    config: Config,
    metrics: dict[str, float],
    models_dir: Path,
    features_path: Path,
    plots_dir: Path | None,
    tracking_uri: str,
    experiment: str,
    registered_model: str,
    champion_metric: str,
) -> dict:
    """Log the run, register the model, move `champion` if it wins; return what happened."""
    import mlflow
    from mlflow.models import infer_signature
    from mlflow.tracking import MlflowClient

    model = load_model(models_dir)
    table = pd.read_parquet(features_path)
    example = table.head(200)[model.feature_names].copy()
    for column in model.schema["features"]:
        if column["dtype"] == "category":  # served as JSON text; the model restores the levels
            example[column["name"]] = example[column["name"]].astype("object")
    probabilities = model.predict(example)
    flat: dict[str, str] = {}
    settings = config.model_dump(mode="json", by_alias=True)
    for section in ("base", "features", "train", "evaluate"):
        _flatten(section, settings[section], flat)

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment(experiment)
    client = MlflowClient()
    with mlflow.start_run() as run:
        mlflow.log_params(flat)
        mlflow.log_metrics({k: float(v) for k, v in metrics.items()})
        mlflow.set_tags(
            {
                "git_commit": git_commit(),
                "data_md5": file_md5(features_path),
                "split": str(model.info["split"]),
            }
        )
        from pipeline.modeling.pyfunc_model import ChurnModel

        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=ChurnModel(),
            artifacts={"model_dir": str(models_dir)},
            code_paths=[str(Path(pipeline.__file__).parent), str(Path(features.__file__).parent)],
            signature=infer_signature(example, probabilities),
            input_example=example.head(5),
            pip_requirements=[
                f"{name}=={_version(name)}"
                for name in ("lightgbm", "pandas", "numpy", "scikit-learn", "mlflow", "pyarrow")
            ],
            registered_model_name=registered_model,
        )
        mlflow.log_artifacts(str(models_dir), artifact_path=MLFLOW_MODEL_FILES)
        if plots_dir is not None and Path(plots_dir).is_dir():
            mlflow.log_artifacts(str(plots_dir), artifact_path="plots")
            for name, fig in _figures(Path(plots_dir)).items():
                mlflow.log_figure(fig, f"plots/{name}.png")
        version = str(info.registered_model_version)
        previous_version = previous_value = None
        try:
            current = client.get_model_version_by_alias(registered_model, CHAMPION)
            previous_version = str(current.version)
            previous_value = client.get_run(current.run_id).data.metrics.get(champion_metric)
        except mlflow.exceptions.MlflowException:
            pass  # no champion yet
        decision = decide_champion(
            float(metrics[champion_metric]),
            metric=champion_metric,
            previous_version=previous_version,
            previous_value=previous_value,
        )
        if decision.promoted:
            client.set_registered_model_alias(registered_model, CHAMPION, version)
        mlflow.set_tags(
            {
                "champion_decision": "promoted" if decision.promoted else "kept_previous",
                "champion_reason": decision.reason(),
            }
        )
        log.info("model version %s: %s", version, decision.reason())
        return {
            "run_id": run.info.run_id,
            "experiment": experiment,
            "registered_model": registered_model,
            "version": version,
            "tracking_uri": tracking_uri,
            "champion": asdict(decision),
        }


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


def _figures(plots_dir: Path) -> dict:
    from pipeline.modeling.plots import curve_figures

    frames = {p.stem: pd.read_csv(p) for p in sorted(plots_dir.glob("*.csv"))}
    return curve_figures(frames)


def run_track(
    config: Config,
    *,
    metrics_path: Path,
    models_dir: Path,
    features_path: Path,
    plots_dir: Path | None,
) -> dict:
    """The track stage's edge: read the metrics, log the run, decide the champion."""
    import json

    cfg = config.mlflow
    if not Path(metrics_path).is_file():
        raise TrainingError(f"{metrics_path} not found: run `churn evaluate` first")
    metrics = json.loads(Path(metrics_path).read_text())
    if cfg.champion_metric not in metrics:
        raise ConfigError(
            f"mlflow.champion_metric {cfg.champion_metric!r} is not in {metrics_path}; "
            f"choose one of {sorted(metrics)[:12]}..."
        )
    return log_training_run(
        config=config,
        metrics=metrics,
        models_dir=models_dir,
        features_path=features_path,
        plots_dir=plots_dir,
        tracking_uri=resolve_tracking_uri(cfg.tracking_uri),
        experiment=cfg.experiment,
        registered_model=cfg.registered_model,
        champion_metric=cfg.champion_metric,
    )
