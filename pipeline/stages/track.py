"""Track stage: one MLflow run per trained model, and the champion/challenger decision.

The run holds the params, the metrics of `reports/metrics.json` (not recomputed), tags naming
the code (git commit) and the data (hash of the feature table, as DVC computes it), the model
with its signature and an input example, the calibrator and schema, and the plots. The model is
registered; the alias `champion` moves to the new version only when it beats the current
champion by more than noise on the declared metric, both scored on the same test rows with a
bootstrap interval over accounts (`pipeline.modeling.champion`); a `dvc exp run` never moves
it (`churn promote` does). The decision and its numbers are recorded on the run.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

import features
import pipeline
from pipeline.core.config import Config
from pipeline.core.errors import ConfigError, TrainingError
from pipeline.core.hashing import dvc_dir_hash, file_md5
from pipeline.core.labels import LABEL, LabelRule, labelled
from pipeline.core.layout import MLFLOW_MODEL_FILES
from pipeline.core.secrets import redact
from pipeline.modeling.champion import METRICS, Comparison, compare
from pipeline.modeling.split import Split
from pipeline.modeling.store import LoadedModel, load_model, load_model_ref, resolve_tracking_uri

log = logging.getLogger(__name__)

CHAMPION = "champion"


@dataclass(frozen=True)
class ChampionDecision:
    """Whether the new version became champion, why, and the numbers behind it.

    `outcome`: first (no champion yet), better (a gain beyond noise), not_better,
    incomparable (the champion cannot score this feature table), experiment (a `dvc exp run`
    never promotes: `churn promote` does, knowingly).
    """

    promoted: bool
    outcome: str
    metric: str
    new_value: float | None
    previous_version: str | None
    previous_value: float | None
    gain: float | None = None
    interval: tuple[float, float] | None = None
    accounts: int | None = None
    reason: str = ""


def in_dvc_experiment() -> bool:
    """True inside `dvc exp run`, which sets these for the stages it runs."""
    return bool(os.environ.get("DVC_EXP_BASELINE_REV") or os.environ.get("DVC_EXP_NAME"))


def run_name_and_tags(
    *, learner: str, as_of_date: str, environ: dict[str, str] | None = None
) -> tuple[str, dict[str, str]]:
    """The MLflow run's name and the tags a data scientist filters on in the UI.

    The name says what changed: inside `dvc exp run` it is DVC's experiment name (the one
    `dvc exp show` lists), so the two tools name the same run alike; otherwise the learner and
    the data's as-of date ("blend 2026-11-16"). The tags carry the same facts as separate
    fields (`data_as_of`, `learner`, `dvc_experiment`, `dvc_baseline_rev`), because a name is
    for reading and a tag is for filtering (`tags.data_as_of = '2026-11-16'`).
    """
    env = os.environ if environ is None else environ
    experiment_name = env.get("DVC_EXP_NAME", "")
    baseline = env.get("DVC_EXP_BASELINE_REV", "")
    tags = {"data_as_of": as_of_date, "learner": learner}
    if experiment_name:
        tags["dvc_experiment"] = experiment_name
    if baseline:
        tags["dvc_baseline_rev"] = baseline
    if experiment_name:
        name = f"{experiment_name} ({learner} {as_of_date})"
    elif baseline:
        name = f"dvc exp on {baseline[:7]} ({learner} {as_of_date})"
    else:
        name = f"{learner} {as_of_date}"
    return name, tags


def decide_champion(
    comparison: Comparison | None,
    *,
    metric: str,
    version: str,
    previous_version: str | None,
    experiment: bool,
    missing: list[str] | None = None,
) -> ChampionDecision:
    """Promote a first model, or one whose gain over the champion is beyond noise (the lower
    end of the bootstrap interval above zero); never from an experiment."""
    numbers: dict = {}
    if comparison is not None:
        numbers = {
            "new_value": comparison.new_value,
            "previous_value": comparison.champion_value,
            "gain": comparison.gain,
            "interval": (comparison.low, comparison.high),
            "accounts": comparison.accounts,
        }
    base = {"metric": metric, "previous_version": previous_version, **numbers}
    base.setdefault("new_value", None)
    base.setdefault("previous_value", None)
    if experiment:
        return ChampionDecision(
            promoted=False,
            outcome="experiment",
            reason=f"version {version} comes from a dvc experiment and is not promoted; "
            f"`churn promote --version {version}` makes it champion",
            **base,
        )
    if previous_version is None:
        return ChampionDecision(
            promoted=True, outcome="first", reason=f"no champion yet: version {version}", **base
        )
    if comparison is None:
        return ChampionDecision(
            promoted=False,
            outcome="incomparable",
            reason=f"champion version {previous_version} cannot score this feature table "
            f"(missing {sorted(missing or [])[:5]}): kept; `churn promote --version {version}` "
            "to replace it knowingly",
            **base,
        )
    share = f"{comparison.confidence:.0%}"
    verdict = (
        f"{metric} {comparison.new_value:.4f} vs {comparison.champion_value:.4f} on the same "
        f"{comparison.accounts} accounts: gain {comparison.gain:+.4f}, {share} interval "
        f"[{comparison.low:+.4f}, {comparison.high:+.4f}]"
    )
    if comparison.beyond_noise:
        return ChampionDecision(
            promoted=True, outcome="better", reason=f"{verdict}: promoted", **base
        )
    return ChampionDecision(
        promoted=False,
        outcome="not_better",
        reason=f"{verdict}: within noise, champion version {previous_version} kept",
        **base,
    )


def compare_with_champion(
    new_model: LoadedModel,
    champion_model: LoadedModel,
    table: pd.DataFrame,
    *,
    rule: LabelRule,
    metric: str,
    resamples: int,
    confidence: float,
    seed: int,
) -> tuple[Comparison | None, list[str]]:
    """Both models on the new model's test rows; (None, missing features) when the champion
    needs features this table lacks."""
    missing = [n for n in champion_model.feature_names if n not in table.columns]
    if missing:
        return None, missing
    test = Split.from_info(new_model.info).parts(labelled(table), rule)["test"]
    comparison = compare(
        test[LABEL].to_numpy(dtype=float),
        new_model.predict(test),
        champion_model.predict(test),
        test["account_id"].to_numpy(),
        metric=metric,
        resamples=resamples,
        confidence=confidence,
        seed=seed,
    )
    return comparison, []


def promote(*, tracking_uri: str, registered_model: str, version: str) -> str:
    """Move `champion` to `version` (the explicit, human decision); returns the one replaced."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    try:
        client.get_model_version(registered_model, version)
    except MlflowException as err:
        raise ConfigError(f"{registered_model} has no version {version!r}") from err
    try:
        previous = str(client.get_model_version_by_alias(registered_model, CHAMPION).version)
    except MlflowException:
        previous = "none"
    client.set_registered_model_alias(registered_model, CHAMPION, version)
    run_id = client.get_model_version(registered_model, version).run_id
    if run_id:
        client.set_tag(run_id, "champion_decision", "promoted_manually")
        client.set_tag(run_id, "champion_reason", f"churn promote (replaced version {previous})")
    return previous


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


def run_record(
    *,
    run_id: str,
    experiment: str,
    registered_model: str,
    version: str,
    model_hash: str,
    tracking_uri: str,
    decision: ChampionDecision,
) -> dict:
    """What this machine's registry made of the run: its id, the registry version and the
    champion decision (`reports/mlflow_run.local.json`, kept out of git: another clone's
    registry numbers them differently). Never a credential of the tracking URI."""
    return {
        "run_id": run_id,
        "experiment": experiment,
        "registered_model": registered_model,
        "version": version,
        "model_hash": model_hash,
        "tracking_uri": redact(tracking_uri),
        "champion": asdict(decision),
    }


def tracked_record(config: Config, *, model_hash: str) -> dict:
    """What `reports/mlflow_run.json` (git-tracked, a DVC output) holds: only what any clone
    computes alike from the same model, so a fresh `make repro` leaves git clean.

    The model hash is the DVC hash of `models/` (the lists' and report's stamp is its first
    12 digits; the run carries it as the tag `model_hash`, which finds the run in MLflow). The
    tracking URI is the configured one (null means the environment's, else `mlflow.db`),
    redacted, never this machine's absolute path.
    """
    cfg = config.mlflow
    return {
        "experiment": cfg.experiment,
        "registered_model": cfg.registered_model,
        "model_hash": model_hash,
        "tracking_uri": redact(cfg.tracking_uri) if cfg.tracking_uri else None,
    }


def local_record_path(out: Path) -> Path:
    """`reports/mlflow_run.json` -> `reports/mlflow_run.local.json`, beside it."""
    out = Path(out)
    return out.with_name(f"{out.stem}.local{out.suffix}")


@contextlib.contextmanager
def _no_url_printing(tracking_uri: str) -> Iterator[None]:
    """MLflow prints 'View run ... at: <tracking URI>/#/...' to stdout when a run ends; with
    credentials in the URI that line would hold them, so it is switched off for such a URI."""
    name = "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"
    if redact(tracking_uri) == tracking_uri:
        yield
        return
    saved = os.environ.get(name)
    os.environ[name] = "true"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = saved


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
    model_hash = dvc_dir_hash(models_dir)
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
    run_name, identity_tags = run_name_and_tags(
        learner=str(model.info.get("learner", "lightgbm")),
        as_of_date=str(config.base.as_of_date),
    )
    with _no_url_printing(tracking_uri), mlflow.start_run(run_name=run_name) as run:
        mlflow.log_params(flat)
        mlflow.log_metrics({k: float(v) for k, v in metrics.items()})
        mlflow.set_tags(
            {
                "git_commit": git_commit(),
                "data_md5": file_md5(features_path),
                "split": str(model.info["split"]),
                "selection_chosen": str(model.info.get("selection", {}).get("chosen", "")),
                "model_hash": model_hash,
                **identity_tags,
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
        previous_version = None
        comparison, missing = None, []
        try:
            current = client.get_model_version_by_alias(registered_model, CHAMPION)
            previous_version = str(current.version)
        except mlflow.exceptions.MlflowException:
            pass  # no champion yet
        experiment_run = in_dvc_experiment()
        if previous_version is not None and not experiment_run:
            champion_model, _, _ = load_model_ref(
                f"models:/{registered_model}@{CHAMPION}", tracking_uri=tracking_uri
            )
            comparison, missing = compare_with_champion(
                model,
                champion_model,
                table,
                rule=LabelRule(
                    horizon_days=config.features.label_horizon_days,
                    grace_days=int(model.info["purge_grace_days"]),
                ),
                metric=champion_metric,
                resamples=config.mlflow.bootstrap_resamples,
                confidence=config.mlflow.promotion_confidence,
                seed=config.base.seed,
            )
        decision = decide_champion(
            comparison,
            metric=champion_metric,
            version=version,
            previous_version=previous_version,
            experiment=experiment_run,
            missing=missing,
        )
        if decision.promoted:
            client.set_registered_model_alias(registered_model, CHAMPION, version)
        mlflow.set_tags(
            {
                "champion_decision": "promoted" if decision.promoted else "kept_previous",
                "champion_outcome": decision.outcome,
                "champion_reason": decision.reason,
            }
        )
        log.info("model version %s: %s", version, decision.reason)
        return run_record(
            run_id=run.info.run_id,
            experiment=experiment,
            registered_model=registered_model,
            version=version,
            model_hash=model_hash,
            tracking_uri=tracking_uri,
            decision=decision,
        )


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
    if cfg.champion_metric not in metrics or cfg.champion_metric not in METRICS:
        raise ConfigError(
            f"mlflow.champion_metric {cfg.champion_metric!r}: the champion is chosen on one of "
            f"{sorted(METRICS)}, compared on the same test rows"
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
