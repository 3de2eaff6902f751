"""The `churn` command line: one subcommand per pipeline stage.

Each subcommand is a thin entry point: it reads its section of params.yaml, opens inputs,
calls the stage's core function and writes outputs. dvc.yaml calls these with explicit paths.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import sys
from datetime import date
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from pipeline.core.config import DEFAULT_PARAMS, ConfigError, as_of_timestamp, load_params, section
from pipeline.data.contract import DataContractError
from pipeline.data.sources import NameMapping, SourceError, open_source

app = typer.Typer(
    help="Churn prediction for B2B SaaS customer success: from raw account data to weekly "
    "at-risk lists per CSM.",
    no_args_is_help=True,
    add_completion=False,
)
log = logging.getLogger("pipeline")
_console = Console(stderr=True)

ParamsOption = Annotated[
    Path, typer.Option("--params", help="The params file (one section per stage).")
]
VerboseOption = Annotated[bool, typer.Option("--verbose", "-v", help="Log debug detail.")]
# Options shared by `score` and `weekly`, which score the same way.
ScoringInterimOption = Annotated[
    Path, typer.Option("--interim", help="Validated tables (features, CSM ownership, freshness).")
]
ModelRefOption = Annotated[
    str,
    typer.Option(
        "--model",
        help="A model directory, or an MLflow registry URI such as "
        "models:/churn-model@champion (tracking URI from params mlflow.tracking_uri).",
    ),
]
ReferenceOption = Annotated[
    Path,
    typer.Option(
        "--reference", help="Feature table whose training-period rows are the drift reference."
    ),
]
MlflowRunOption = Annotated[
    Path, typer.Option("--mlflow-run", help="Run id of a models/ directory (from `churn track`).")
]
DEMO_MARKER = "DEMO_DISABLED.txt"


@app.callback()
def _setup(verbose: VerboseOption = False) -> None:
    """Configure logging once, for every subcommand."""
    if _console.is_terminal:
        handler: logging.Handler = RichHandler(
            console=_console, show_path=False, rich_tracebacks=False
        )
        fmt = "%(message)s"
    else:  # logs of dvc repro, cron and CI: one plain line per record
        handler = logging.StreamHandler(sys.stderr)
        fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format=fmt,
        handlers=[handler],
        force=True,
    )


def _progress() -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,} rows"),
        TimeElapsedColumn(),
        console=_console,
        transient=True,
        disable=not _console.is_terminal,
    )


def _fail(err: Exception) -> None:
    _console.print(f"[bold red]error:[/] {escape(str(err))}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=2)


@app.command()
def simulate(
    params_path: ParamsOption = DEFAULT_PARAMS,
    raw_dir: Annotated[
        Path, typer.Option(help="Where the demo's raw tables go (the default ingest source).")
    ] = Path("data/raw/demo"),
    truth_dir: Annotated[
        Path, typer.Option(help="Ground truth for evaluation; never read by the pipeline.")
    ] = Path("data/ground_truth"),
    n_accounts: Annotated[
        int | None, typer.Option(help="Override simulate.n_accounts from params.")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Override base.seed from params.")] = None,
    force: Annotated[
        bool, typer.Option(help="Generate even when ingest.source points at user data.")
    ] = False,
) -> None:
    """Generate the demo B2B SaaS company (accounts, contracts, usage, tickets, ...).

    When params name your own data as ingest.source, the demo is not generated (unless
    --force), so `dvc repro` never mixes demo rows into a real run.
    """
    from pipeline.stages.simulate import SimulationConfig, write_simulation

    try:
        params = load_params(params_path)
        sim = dict(section(params, "simulate"))
        source = str(section(params, "ingest").get("source", ""))
        as_of = as_of_timestamp(params)
    except ConfigError as err:
        _fail(err)
    if not force and Path(source).resolve() != raw_dir.resolve():
        log.info("ingest.source is %s, not the demo directory: demo data not generated", source)
        for target in (raw_dir, truth_dir):
            if target.exists():
                shutil.rmtree(target)
            target.mkdir(parents=True)
            (target / DEMO_MARKER).write_text(
                f"Demo data not generated: ingest.source in params.yaml is {source}.\n"
            )
        return
    known = {f.name for f in dataclasses.fields(SimulationConfig)}
    unknown = sorted(set(sim) - known)
    if unknown:
        _fail(ConfigError(f"simulate section has unknown keys {unknown}; known: {sorted(known)}"))
    sim["as_of_date"] = as_of.date()
    base = section(params, "base")
    sim["seed"] = seed if seed is not None else base.get("seed", 0)
    if "renewal_grace_days" in base:
        sim["renewal_grace_days"] = int(base["renewal_grace_days"])
    if n_accounts is not None:
        sim["n_accounts"] = n_accounts
    try:
        config = SimulationConfig(**sim)
    except ValueError as err:
        _fail(ConfigError(f"simulate: {err}"))
    counts = write_simulation(config, raw_dir, truth_dir, progress=_console.is_terminal)
    for table, rows in counts.items():
        log.info("%-16s %12s rows", table, f"{rows:,}")


@app.command()
def ingest(
    params_path: ParamsOption = DEFAULT_PARAMS,
    source: Annotated[
        str | None,
        typer.Option(
            help="Override ingest.source: a directory, duckdb:///file.db or a postgresql:// URL."
        ),
    ] = None,
    out: Annotated[
        Path, typer.Option(help="Output directory for validated tables and the report.")
    ] = Path("data/interim"),
) -> None:
    """Validate raw tables against the data contract into typed Parquet tables.

    Rows that break a rule are quarantined with a reason; a table that breaks the contract as a
    whole stops the run with an error naming table, column and example rows.
    """
    try:
        _ingest(load_params(params_path), source, out)
    except (ConfigError, SourceError, DataContractError) as err:
        _fail(err)


def _parse_day(text: str) -> date:
    """An --as-of option as a date, or a ConfigError that says what is wrong."""
    try:
        return date.fromisoformat(text)
    except ValueError as err:
        raise ConfigError(f"--as-of {text!r} is not a date (YYYY-MM-DD)") from err


def _ingest(params: dict, source: str | None, out: Path) -> None:
    """Ingest as the params say (source, mapping, as-of date), with progress and a summary."""
    from pipeline.stages.ingest import REPORT_NAME, ingest_source

    cfg = section(params, "ingest")
    as_of = as_of_timestamp(params)
    mapping = NameMapping(tables=cfg.get("table_map") or {}, columns=cfg.get("column_map") or {})
    src = open_source(source or cfg["source"], mapping=mapping, schema=cfg.get("schema"))
    with _progress() as progress:
        report = ingest_source(
            src,
            out,
            as_of=as_of,
            naive_timezone=cfg.get("naive_timezone"),
            batch_rows=int(cfg.get("batch_rows", 1_000_000)),
            progress=progress,
        )
    log.info(
        "ingested %s rows: %s accepted, %s quarantined (report: %s)",
        f"{report['rows_read']:,}",
        f"{report['rows_accepted']:,}",
        f"{report['rows_quarantined']:,}",
        out / REPORT_NAME,
    )
    if report["tables_unavailable"]:
        log.warning("optional tables unavailable: %s", ", ".join(report["tables_unavailable"]))


def main() -> None:  # pragma: no cover - console entry
    app(prog_name="churn", args=sys.argv[1:])


@app.command()
def features(
    params_path: ParamsOption = DEFAULT_PARAMS,
    interim: Annotated[Path, typer.Option(help="Validated tables from `churn ingest`.")] = Path(
        "data/interim"
    ),
    out: Annotated[Path, typer.Option(help="The feature table (Parquet).")] = Path(
        "data/processed/features.parquet"
    ),
    summary: Annotated[
        Path, typer.Option(help="Coverage and distribution per feature (JSON).")
    ] = Path("reports/feature_summary.json"),
    engine: Annotated[
        str | None, typer.Option(help="Override features.engine: duckdb or spark.")
    ] = None,
    as_of: Annotated[
        str | None,
        typer.Option(help="Compute one snapshot at this date (YYYY-MM-DD) instead of the cadence."),
    ] = None,
) -> None:
    """Build point-in-time features and churn labels for every account and snapshot date."""
    from pipeline.stages.features import FeatureError, run_features

    try:
        params = load_params(params_path)
        result = run_features(params, interim, out, summary, engine_name=engine, single_date=as_of)
    except (ConfigError, FeatureError) as err:
        _fail(err)
    log.info(
        "features: %s rows, %s accounts, %s snapshots, %s labelled (%s churned) -> %s",
        f"{result['rows']:,}",
        f"{result['accounts']:,}",
        result["snapshots"],
        f"{result['labelled_rows']:,}",
        f"{result['churned_rows']:,}",
        out,
    )
    if result["families_unavailable"] or result["families_partial"]:
        log.warning(
            "feature families unavailable: %s; partial: %s",
            ", ".join(result["families_unavailable"]) or "none",
            ", ".join(result["families_partial"]) or "none",
        )


@app.command()
def train(
    params_path: ParamsOption = DEFAULT_PARAMS,
    features_path: Annotated[
        Path, typer.Option("--features", help="The feature table from `churn features`.")
    ] = Path("data/processed/features.parquet"),
    models: Annotated[
        Path, typer.Option(help="Where model, calibrator and feature schema are written.")
    ] = Path("models"),
) -> None:
    """Train the LightGBM churn model out of time and calibrate it."""
    from pipeline.stages.train import TrainingError, run_train

    try:
        model = run_train(load_params(params_path), features_path, models)
    except (ConfigError, TrainingError) as err:
        _fail(err)
    log.info(
        "trained: %s; best iteration %d -> %s",
        model.info["rows"],
        model.info["best_iteration"],
        models,
    )


@app.command()
def evaluate(
    params_path: ParamsOption = DEFAULT_PARAMS,
    features_path: Annotated[
        Path, typer.Option("--features", help="The feature table from `churn features`.")
    ] = Path("data/processed/features.parquet"),
    models: Annotated[Path, typer.Option(help="The trained model directory.")] = Path("models"),
    interim: Annotated[Path, typer.Option(help="Validated tables (for CSM ownership).")] = Path(
        "data/interim"
    ),
    truth: Annotated[
        Path | None,
        typer.Option(help="Simulator ground truth for oracle metrics (demo data only)."),
    ] = None,
    metrics: Annotated[Path, typer.Option(help="Metrics JSON (DVC metrics).")] = Path(
        "reports/metrics.json"
    ),
    plots: Annotated[Path, typer.Option(help="Directory of curve CSVs (DVC plots).")] = Path(
        "reports/plots"
    ),
) -> None:
    """Score the test period; compare with the health score, logistic regression and oracle."""
    from pipeline.stages.evaluate import run_evaluate
    from pipeline.stages.train import TrainingError

    try:
        result = run_evaluate(
            load_params(params_path), features_path, models, interim, metrics, plots, truth
        )
    except (ConfigError, TrainingError, ValueError) as err:
        _fail(err)
    shown = [
        "roc_auc",
        "pr_auc",
        "ece",
        "lift_top_decile",
        "health_score_roc_auc",
        "logreg_roc_auc",
        "oracle_roc_auc",
    ]
    log.info("test: %s", ", ".join(f"{k}={result[k]:.3f}" for k in shown if k in result))


@app.command()
def track(
    params_path: ParamsOption = DEFAULT_PARAMS,
    features_path: Annotated[
        Path, typer.Option("--features", help="The feature table the model was trained on.")
    ] = Path("data/processed/features.parquet"),
    models: Annotated[Path, typer.Option(help="The trained model directory.")] = Path("models"),
    metrics: Annotated[Path, typer.Option(help="Metrics from `churn evaluate`.")] = Path(
        "reports/metrics.json"
    ),
    plots: Annotated[Path, typer.Option(help="Curve CSVs from `churn evaluate`.")] = Path(
        "reports/plots"
    ),
    out: Annotated[Path, typer.Option(help="Run id, model version and champion decision.")] = Path(
        "reports/mlflow_run.json"
    ),
) -> None:
    """Log the training run to MLflow; register the model; promote it if it beats the champion."""
    import json

    from pipeline.core.atomic import write_json
    from pipeline.stages.track import log_training_run, resolve_tracking_uri
    from pipeline.stages.train import TrainingError

    try:
        params = load_params(params_path)
        cfg = section(params, "mlflow")
        result = log_training_run(
            params=params,
            metrics=json.loads(metrics.read_text()),
            models_dir=models,
            features_path=features_path,
            plots_dir=plots,
            tracking_uri=resolve_tracking_uri(cfg.get("tracking_uri")),
            experiment=str(cfg.get("experiment", "churn")),
            registered_model=str(cfg.get("registered_model", "churn-model")),
            champion_metric=str(cfg.get("champion_metric", "roc_auc")),
        )
    except (ConfigError, TrainingError, FileNotFoundError, KeyError) as err:
        _fail(err)
    write_json(result, out)
    log.info("mlflow run %s, model version %s", result["run_id"], result["version"])


@app.command()
def backtest(
    params_path: ParamsOption = DEFAULT_PARAMS,
    interim: Annotated[
        Path, typer.Option(help="Validated tables (features, CSM ownership).")
    ] = Path("data/interim"),
    models: Annotated[Path, typer.Option(help="The trained model directory.")] = Path("models"),
    metrics: Annotated[Path, typer.Option(help="Backtest metrics JSON (DVC metrics).")] = Path(
        "reports/backtest.json"
    ),
    weekly: Annotated[Path, typer.Option(help="Per-week figures CSV (DVC plots).")] = Path(
        "reports/backtest_weekly.csv"
    ),
) -> None:
    """Replay each CSM's weekly top-k list over the test period: precision, lead time, stability."""
    from pipeline.stages.backtest import BacktestError, run_backtest
    from pipeline.stages.features import FeatureError
    from pipeline.stages.train import TrainingError

    try:
        result = run_backtest(load_params(params_path), interim, models, metrics, weekly)
    except (ConfigError, BacktestError, FeatureError, TrainingError) as err:
        _fail(err)
    shown = [
        "backtest_precision_at_capacity",
        "backtest_lead_time_arr_share",
        "backtest_jaccard_week_over_week",
    ]
    log.info(
        "backtest: %s",
        ", ".join(f"{k}={result[k]:.3f}" for k in shown if result.get(k) is not None),
    )


@app.command()
def report(
    params_path: ParamsOption = DEFAULT_PARAMS,
    lists: Annotated[
        Path | None,
        typer.Option(
            help="The score stage's lists, reports/lists/<as-of> (default: the base.as_of_date "
            "week)."
        ),
    ] = None,
    metrics: Annotated[Path, typer.Option(help="Metrics from `churn evaluate`.")] = Path(
        "reports/metrics.json"
    ),
    plots: Annotated[Path, typer.Option(help="Curve CSVs from `churn evaluate`.")] = Path(
        "reports/plots"
    ),
    backtest_path: Annotated[
        Path, typer.Option("--backtest", help="Backtest metrics from `churn backtest`.")
    ] = Path("reports/backtest.json"),
    feature_summary: Annotated[
        Path, typer.Option(help="Feature summary from `churn features`.")
    ] = Path("reports/feature_summary.json"),
    models: Annotated[Path, typer.Option(help="The trained model directory.")] = Path("models"),
    out: Annotated[Path, typer.Option(help="The leadership report (one self-contained HTML).")] = (
        Path("reports/leadership.html")
    ),
) -> None:
    """Write the leadership report: drivers of churn, ARR at risk, model trust, trend, model card.

    Reads the lists, metrics and backtest the earlier stages wrote; computes no score again.
    """
    from pipeline.stages.report import ReportError, run_report

    try:
        params = load_params(params_path)
        if lists is None:
            lists = Path("reports/lists") / as_of_timestamp(params).date().isoformat()
        context = run_report(
            params,
            lists_dir=lists,
            metrics_path=metrics,
            plots_dir=plots,
            backtest_path=backtest_path,
            feature_summary_path=feature_summary,
            models_dir=models,
            out=out,
        )
    except (ConfigError, ReportError) as err:
        _fail(err)
    log.info("report as of %s -> %s", context.as_of, out)


@app.command()
def score(
    params_path: ParamsOption = DEFAULT_PARAMS,
    as_of: Annotated[
        str | None,
        typer.Option(help="Score at this date (YYYY-MM-DD); default: base.as_of_date."),
    ] = None,
    interim: ScoringInterimOption = Path("data/interim"),
    model: ModelRefOption = "models",
    reference: ReferenceOption = Path("data/processed/features.parquet"),
    mlflow_run: MlflowRunOption = Path("reports/mlflow_run.json"),
    out: Annotated[
        Path | None,
        typer.Option(help="Output directory; default: reports/lists/<as-of>."),
    ] = None,
) -> None:
    """Score every active account, explain it and write each CSM's ranked at-risk list."""
    from pipeline.stages.score import ScoringError, run_score
    from pipeline.stages.train import TrainingError

    try:
        manifest = run_score(
            load_params(params_path),
            as_of=_parse_day(as_of) if as_of is not None else None,
            interim_dir=interim,
            model_ref=model,
            reference_features=reference,
            mlflow_run=mlflow_run,
            out_dir=out,
        )
    except (ConfigError, ScoringError, TrainingError) as err:
        _fail(err)
    log.info(
        "lists for %d CSMs as of %s, %d warnings",
        len(manifest["csms"]),
        manifest["as_of"],
        len(manifest["warnings"]),
    )


@app.command()
def registry(
    params_path: ParamsOption = DEFAULT_PARAMS,
) -> None:
    """Print the feature registry (every feature, its meaning and play) as Markdown."""
    from features.registry import build_registry, registry_markdown

    try:
        windows = section(load_params(params_path), "features").get("windows", [30, 90])
    except ConfigError as err:
        _fail(err)
    typer.echo(registry_markdown(build_registry(windows)), nl=False)


@app.command()
def contract() -> None:
    """Print the data contract (tables, columns, rules) as Markdown."""
    from pipeline.data.contract import contract_markdown

    typer.echo(contract_markdown(), nl=False)


@app.command()
def deliver(
    params_path: ParamsOption = DEFAULT_PARAMS,
    lists: Annotated[
        Path | None,
        typer.Option(
            help="One week's lists, reports/lists/<as-of> (default: the base.as_of_date week)."
        ),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Write one .eml file per CSM to the outbox; send nothing."),
    ] = False,
    outbox: Annotated[
        Path | None,
        typer.Option(
            help="Where --dry-run writes the .eml files "
            "(default: reports/deliveries/<as-of>/outbox)."
        ),
    ] = None,
    log_file: Annotated[
        Path | None,
        typer.Option(
            "--log",
            help="The delivery log JSON (default: reports/deliveries/<as-of>/delivery.json).",
        ),
    ] = None,
    resend: Annotated[
        bool,
        typer.Option(help="Send again the lists the delivery log already records as sent."),
    ] = False,
) -> None:
    """Email each CSM their own list (HTML body, CSV attached) over SMTP.

    SMTP settings come from the deliver section of params.yaml, the login from the environment
    variables it names. Exit code 1 when some CSM's delivery failed (the others still go out;
    a rerun sends only what is missing), 2 on a settings or manifest error (nothing sent).
    """
    from pipeline.stages.deliver import DeliveryError, run_deliver

    if outbox is not None and not dry_run:
        _fail(ValueError("--outbox applies only with --dry-run"))
    try:
        params = load_params(params_path)
        if lists is None:
            lists = Path("reports/lists") / as_of_timestamp(params).date().isoformat()
        result = run_deliver(
            params, lists, dry_run=dry_run, outbox=outbox, log_path=log_file, resend=resend
        )
    except (ConfigError, DeliveryError) as err:
        _fail(err)
    _report_delivery(result)


def _report_delivery(result) -> None:
    """Log the delivery counts and every failure; exit 1 when any CSM's delivery failed."""
    counts = result.counts
    log.info(
        "delivery as of %s: %d sent, %d dry-run, %d skipped (%d without email), %d failed; log: %s",
        result.manifest.as_of,
        counts["sent"],
        counts["dry-run"],
        counts["skipped"],
        counts["skipped_no_email"],
        counts["failed"],
        result.log_path,
    )
    if counts["failed"]:
        for outcome in result.outcomes:
            if outcome.status == "failed":
                log.error("not delivered to CSM %r: %s", outcome.csm_id, outcome.detail)
        raise typer.Exit(code=1)


@app.command()
def weekly(
    params_path: ParamsOption = DEFAULT_PARAMS,
    as_of: Annotated[
        str | None,
        typer.Option(
            help="The week's date, YYYY-MM-DD (e.g. $(date +%F) from cron); default: "
            "base.as_of_date. Data stamped on or after it is quarantined as not yet happened."
        ),
    ] = None,
    ingest_first: Annotated[
        bool,
        typer.Option(
            "--ingest/--no-ingest",
            help="Ingest the source named in params into --interim first (a fresh extract).",
        ),
    ] = True,
    interim: ScoringInterimOption = Path("data/interim"),
    model: ModelRefOption = "models",
    reference: ReferenceOption = Path("data/processed/features.parquet"),
    mlflow_run: MlflowRunOption = Path("reports/mlflow_run.json"),
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run", help="Write .eml files to reports/deliveries/<as-of>/outbox; send nothing."
        ),
    ] = False,
) -> None:
    """The weekly job (for cron): ingest the fresh extract, score the week, write each CSM's
    list and email it, all at one as-of date.

    Lists go to reports/lists/<as-of>, the delivery log to reports/deliveries/<as-of>. A rerun
    the same week rescores and sends only what did not go out (or changed). Exit codes as for
    `churn deliver`.
    """
    from pipeline.stages.deliver import DeliveryError, run_deliver
    from pipeline.stages.score import ScoringError, run_score
    from pipeline.stages.train import TrainingError

    try:
        params = load_params(params_path)
        if as_of is not None:
            params["base"]["as_of_date"] = _parse_day(as_of).isoformat()
        lists = Path("reports/lists") / as_of_timestamp(params).date().isoformat()
        if ingest_first:
            _ingest(params, None, interim)
        run_score(
            params,
            as_of=None,
            interim_dir=interim,
            model_ref=model,
            reference_features=reference,
            mlflow_run=mlflow_run,
            out_dir=lists,
        )
        result = run_deliver(params, lists, dry_run=dry_run)
    except (
        ConfigError,
        SourceError,
        DataContractError,
        ScoringError,
        TrainingError,
        DeliveryError,
    ) as err:
        _fail(err)
    _report_delivery(result)
