"""Track stage: one MLflow run per trained model, and the champion/challenger decision.

The run holds the params, the metrics of `reports/metrics.json` (not recomputed), tags naming
the code (git commit) and the data (hash of the feature table, as DVC computes it), the model
with its signature and an input example, the calibrator and schema, and the plots. The model is
registered; the alias `champion` moves to the new version only when it beats the current
champion on the chosen test metric, and the decision is recorded on the run.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

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


def resolve_tracking_uri(configured: str | None) -> str:
    """params, then MLFLOW_TRACKING_URI, then sqlite `mlflow.db` in the working directory."""
    if configured:
        return configured
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    return f"sqlite:///{Path.cwd() / 'mlflow.db'}"


def file_md5(path: Path) -> str:
    """MD5 of a file, the hash DVC records for it in dvc.lock."""
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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
    params: dict,
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

    from pipeline.stages.train import load_model

    model = load_model(models_dir)
    table = pd.read_parquet(features_path)
    example = table.head(200)[model.feature_names].copy()
    for column in model.schema["features"]:
        if column["dtype"] == "category":  # served as JSON text; the model restores the levels
            example[column["name"]] = example[column["name"]].astype("object")
    probabilities = model.predict(example)
    flat: dict[str, str] = {}
    for section in ("base", "features", "train", "evaluate"):
        if section in params:
            _flatten(section, params[section], flat)

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

        package_root = Path(__file__).resolve().parents[1]
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=ChurnModel(),
            artifacts={"model_dir": str(models_dir)},
            code_paths=[str(package_root / "pipeline"), str(package_root / "features")],
            signature=infer_signature(example, probabilities),
            input_example=example.head(5),
            pip_requirements=[
                f"{name}=={_version(name)}"
                for name in ("lightgbm", "pandas", "numpy", "scikit-learn", "mlflow", "pyarrow")
            ],
            registered_model_name=registered_model,
        )
        mlflow.log_artifacts(str(models_dir), artifact_path="model_files")
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
