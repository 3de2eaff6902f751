"""The `churn` command line: one subcommand per pipeline stage, plus `check`, `weekly` and docs.

Each subcommand is a thin edge: it parses params.yaml into the typed config (failing before
any work on an unknown key, a wrong type or a value out of range), calls the stage's entry
point and logs a summary. Defaults of every path option come from `pipeline.core.layout`, the
same paths dvc.yaml passes (a test checks they agree). Any error a user can cause is a
`ChurnError`: one red line, exit code 2, no traceback. No credential is ever shown: every log
record and every error line goes through `pipeline.core.secrets.redact` first.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from pipeline.core.config import DEFAULT_PARAMS, Config, load_config, parse_day
from pipeline.core.errors import ChurnError, ConfigError
from pipeline.core.layout import LAYOUT, VALIDATION_REPORT
from pipeline.core.secrets import RedactingFilter, redact

app = typer.Typer(
    help="Churn prediction for B2B SaaS customer success: from raw account data to weekly "
    "at-risk lists per CSM.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,  # a traceback's locals would show connection URLs
)
log = logging.getLogger("pipeline")
_console = Console(stderr=True)
# `churn weekly` held the delivery back on stale or quarantined data (1 and 2 as everywhere).
HELD_EXIT_CODE = 3

ParamsOption = Annotated[
    Path, typer.Option("--params", help="The params file (one section per stage).")
]
VerboseOption = Annotated[bool, typer.Option("--verbose", "-v", help="Log debug detail.")]
InterimOption = Annotated[
    Path, typer.Option("--interim", help="Validated tables from `churn ingest`.")
]
FeaturesOption = Annotated[
    Path, typer.Option("--features", help="The feature table from `churn features`.")
]
ModelsOption = Annotated[Path, typer.Option("--models", help="The trained model directory.")]
MetricsInOption = Annotated[Path, typer.Option("--metrics", help="Metrics from `churn evaluate`.")]
PlotsInOption = Annotated[Path, typer.Option("--plots", help="Curve CSVs from `churn evaluate`.")]
# Options shared by `score` and `weekly`, which score the same way.
FeatureStateOption = Annotated[
    Path | None,
    typer.Option(
        "--feature-state",
        help="Keep the usage grain in this directory between runs, so a run aggregates only "
        "the days after the saved ones (reused only when every saved day's events are "
        "unchanged; the lists are the same either way).",
    ),
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
    # A safety net: a URI with a password, logged by us or by a library, is shown redacted.
    handler.addFilter(RedactingFilter())
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
    message = escape(redact(str(err)))
    _console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=2)


def _config(params_path: Path) -> Config:
    """The typed config, or exit 2 naming the bad key: before any stage does any work."""
    try:
        return load_config(params_path)
    except ChurnError as err:
        _fail(err)
        raise  # unreachable: _fail exits


def main() -> None:  # pragma: no cover - console entry
    app(prog_name="churn", args=sys.argv[1:])


@app.command()
def check(
    params_path: ParamsOption = DEFAULT_PARAMS,
    source: Annotated[
        str | None, typer.Option(help="Check this source instead of ingest.source.")
    ] = None,
) -> None:
    """Validate params.yaml and the data source without running the pipeline.

    Parses every setting (unknown keys, types, ranges), opens the source, and checks that the
    required tables and their required columns are there, reading only a few rows per table.
    """
    config = _config(params_path)
    from pipeline.data.check import check_source

    try:
        findings = check_source(config, source=source)
    except ChurnError as err:
        _fail(err)
    log.info("params: %s is valid", params_path)
    for line in findings.lines():
        log.info("%s", line)
    if findings.problems:
        for problem in findings.problems:
            _console.print(f"[bold red]problem:[/] {escape(problem)}", highlight=False)
        raise typer.Exit(code=2)
    log.info("source %s: ready to ingest", findings.description)


@app.command()
def simulate(
    params_path: ParamsOption = DEFAULT_PARAMS,
    raw_dir: Annotated[
        Path, typer.Option(help="Where the demo's raw tables go (the default ingest source).")
    ] = LAYOUT.raw_demo,
    truth_dir: Annotated[
        Path, typer.Option(help="Ground truth for evaluation; never read by the pipeline.")
    ] = LAYOUT.ground_truth,
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
    config = _config(params_path)
    from pipeline.stages.simulate import run_simulate

    try:
        counts = run_simulate(
            config,
            raw_dir=raw_dir,
            truth_dir=truth_dir,
            n_accounts=n_accounts,
            seed=seed,
            force=force,
            progress=_console.is_terminal,
        )
    except ChurnError as err:
        _fail(err)
    if counts is None:
        log.info(
            "ingest.source is %s, not the demo directory: demo data not generated",
            config.ingest.source,
        )
        return
    for table, rows in counts.items():
        log.info("%-16s %12s rows", table, f"{rows:,}")


def _ingest(config: Config, source: str | None, out: Path) -> None:
    """Ingest as the config says (source, mapping, as-of date), with progress and a summary."""
    from pipeline.stages.ingest import run_ingest

    with _progress() as progress:
        report = run_ingest(config, out, source=source, progress=progress)
    log.info(
        "ingested %s rows: %s accepted, %s quarantined (report: %s)",
        f"{report['rows_read']:,}",
        f"{report['rows_accepted']:,}",
        f"{report['rows_quarantined']:,}",
        out / VALIDATION_REPORT,
    )
    if report["tables_unavailable"]:
        log.warning("optional tables unavailable: %s", ", ".join(report["tables_unavailable"]))


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
    ] = LAYOUT.interim,
) -> None:
    """Validate raw tables against the data contract into typed Parquet tables.

    Rows that break a rule are quarantined with a reason; a table that breaks the contract as a
    whole stops the run with an error naming table, column and example rows.
    """
    config = _config(params_path)
    try:
        _ingest(config, source, out)
    except ChurnError as err:
        _fail(err)


@app.command()
def features(
    params_path: ParamsOption = DEFAULT_PARAMS,
    interim: InterimOption = LAYOUT.interim,
    out: Annotated[Path, typer.Option(help="The feature table (Parquet).")] = LAYOUT.features,
    summary: Annotated[
        Path | None,
        typer.Option(
            help="Coverage and distribution per feature (JSON); default "
            "reports/feature_summary.json, or <out>.summary.json beside --out with --as-of, "
            "so a one-date run never overwrites the training table's summary."
        ),
    ] = None,
    engine: Annotated[
        str | None, typer.Option(help="Override features.engine: duckdb or spark.")
    ] = None,
    as_of: Annotated[
        str | None,
        typer.Option(help="Compute one snapshot at this date (YYYY-MM-DD) instead of the cadence."),
    ] = None,
) -> None:
    """Build point-in-time features and churn labels for every account and snapshot date."""
    config = _config(params_path)
    from pipeline.stages.features import run_features

    try:
        if engine is not None and engine not in ("duckdb", "spark"):
            raise ConfigError(f"--engine must be duckdb or spark, not {engine!r}")
        day = parse_day(as_of).isoformat() if as_of is not None else None
        if summary is None:
            summary = LAYOUT.feature_summary if day is None else out.with_suffix(".summary.json")
        if day is not None and out == LAYOUT.features:
            raise ConfigError(
                f"--as-of writes one date's features: give --out (not the training table {out})"
            )
        result = run_features(config, interim, out, summary, engine_name=engine, single_date=day)
    except ChurnError as err:
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
    features_path: FeaturesOption = LAYOUT.features,
    models: Annotated[
        Path, typer.Option(help="Where model, calibrator and feature schema are written.")
    ] = LAYOUT.models,
) -> None:
    """Select, train and calibrate the churn model out of time (LightGBM, logistic or blend)."""
    config = _config(params_path)
    from pipeline.stages.train import run_train

    try:
        model = run_train(config, features_path, models)
    except ChurnError as err:
        _fail(err)
    log.info(
        "trained: %s; %s -> %s",
        model.info["rows"],
        model.info.get("model_description", model.info.get("learner", "model")),
        models,
    )


@app.command()
def evaluate(
    params_path: ParamsOption = DEFAULT_PARAMS,
    features_path: FeaturesOption = LAYOUT.features,
    models: ModelsOption = LAYOUT.models,
    interim: InterimOption = LAYOUT.interim,
    truth: Annotated[
        Path | None,
        typer.Option(help="Simulator ground truth for oracle metrics (demo data only)."),
    ] = None,
    metrics: Annotated[Path, typer.Option(help="Metrics JSON (DVC metrics).")] = LAYOUT.metrics,
    plots: Annotated[
        Path, typer.Option(help="Directory of curve CSVs (DVC plots).")
    ] = LAYOUT.plots,
) -> None:
    """Score the test period; compare with the health score, logistic regression and oracle."""
    config = _config(params_path)
    from pipeline.stages.evaluate import run_evaluate

    try:
        result = run_evaluate(config, features_path, models, interim, metrics, plots, truth)
    except ChurnError as err:
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
    ] = LAYOUT.features,
    models: ModelsOption = LAYOUT.models,
    metrics: MetricsInOption = LAYOUT.metrics,
    plots: PlotsInOption = LAYOUT.plots,
    out: Annotated[
        Path,
        typer.Option(
            help="The model's hash and registry name (git-tracked); this machine's run id, "
            "version and champion decision go beside it, in <name>.local.json (not tracked)."
        ),
    ] = LAYOUT.mlflow_run,
) -> None:
    """Log the training run to MLflow; register the model; promote it if it beats the champion."""
    config = _config(params_path)
    from pipeline.core.atomic import write_json
    from pipeline.stages.track import local_record_path, run_track, tracked_record

    try:
        result = run_track(
            config,
            metrics_path=metrics,
            models_dir=models,
            features_path=features_path,
            plots_dir=plots,
        )
    except ChurnError as err:
        _fail(err)
    write_json(result, local_record_path(out))
    write_json(tracked_record(config, model_hash=result["model_hash"]), out)
    log.info("mlflow run %s, model version %s", result["run_id"], result["version"])


@app.command()
def promote(
    version: Annotated[str, typer.Option(help="The registered model version to make champion.")],
    params_path: ParamsOption = DEFAULT_PARAMS,
) -> None:
    """Make a registered model version the champion: the explicit decision `dvc exp run` never
    takes, and the way back to an earlier version. Recorded on that version's run."""
    config = _config(params_path)
    from pipeline.modeling.store import resolve_tracking_uri
    from pipeline.stages.track import promote as promote_version

    cfg = config.mlflow
    try:
        previous = promote_version(
            tracking_uri=resolve_tracking_uri(cfg.tracking_uri),
            registered_model=cfg.registered_model,
            version=version,
        )
    except ChurnError as err:
        _fail(err)
    log.info("%s: champion is version %s (was %s)", cfg.registered_model, version, previous)


@app.command()
def backtest(
    params_path: ParamsOption = DEFAULT_PARAMS,
    interim: InterimOption = LAYOUT.interim,
    models: ModelsOption = LAYOUT.models,
    metrics: Annotated[
        Path, typer.Option(help="Backtest metrics JSON (DVC metrics).")
    ] = LAYOUT.backtest,
    weekly: Annotated[
        Path, typer.Option(help="Per-week figures CSV (DVC plots).")
    ] = LAYOUT.backtest_weekly,
) -> None:
    """Replay each CSM's weekly top-k list over the test period: precision, lead time, stability."""
    config = _config(params_path)
    from pipeline.stages.backtest import run_backtest

    try:
        result = run_backtest(config, interim, models, metrics, weekly)
    except ChurnError as err:
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
    metrics: MetricsInOption = LAYOUT.metrics,
    plots: PlotsInOption = LAYOUT.plots,
    backtest_path: Annotated[
        Path, typer.Option("--backtest", help="Backtest metrics from `churn backtest`.")
    ] = LAYOUT.backtest,
    feature_summary: Annotated[
        Path, typer.Option(help="Feature summary from `churn features`.")
    ] = LAYOUT.feature_summary,
    models: ModelsOption = LAYOUT.models,
    out: Annotated[
        Path, typer.Option(help="The leadership report (one self-contained HTML).")
    ] = LAYOUT.report,
) -> None:
    """Write the leadership report: drivers of churn, ARR at risk, model trust, trend, model card.

    Reads the lists, metrics and backtest the earlier stages wrote; computes no score again.
    """
    config = _config(params_path)
    from pipeline.stages.report import run_report

    try:
        context = run_report(
            config,
            lists_dir=lists or LAYOUT.lists_dir(config.base.as_of_date),
            metrics_path=metrics,
            plots_dir=plots,
            backtest_path=backtest_path,
            feature_summary_path=feature_summary,
            models_dir=models,
            out=out,
        )
    except ChurnError as err:
        _fail(err)
    log.info("report as of %s -> %s", context.as_of, out)


def _score(
    config: Config,
    *,
    as_of: str | None,
    interim: Path,
    model: str,
    reference: Path,
    out: Path | None,
    marks: Path | None,
    feature_state: Path | None = None,
):
    from pipeline.stages.score import run_score

    manifest = run_score(
        config,
        as_of=parse_day(as_of) if as_of is not None else None,
        interim_dir=interim,
        model_ref=model,
        reference_features=reference,
        out_dir=out,
        marks_path=marks,
        feature_state=feature_state,
    )
    log.info(
        "lists for %d CSMs as of %s, %d warnings",
        len(manifest.csms),
        manifest.as_of,
        len(manifest.warnings),
    )
    return manifest


@app.command()
def score(
    params_path: ParamsOption = DEFAULT_PARAMS,
    as_of: Annotated[
        str | None,
        typer.Option(help="Score at this date (YYYY-MM-DD); default: base.as_of_date."),
    ] = None,
    interim: InterimOption = LAYOUT.interim,
    model: ModelRefOption = str(LAYOUT.models),
    reference: ReferenceOption = LAYOUT.features,
    out: Annotated[
        Path | None,
        typer.Option(help="Output directory; default: reports/lists/<as-of>."),
    ] = None,
    marks: Annotated[
        Path | None,
        typer.Option(
            help="The CSMs' marks log to respect (churn mark); default: none, so the DVC stage "
            "depends only on tracked inputs. `churn weekly` reads data/marks/marks.parquet."
        ),
    ] = None,
    feature_state: FeatureStateOption = None,
) -> None:
    """Score every active account, explain it and write each CSM's ranked at-risk list."""
    config = _config(params_path)
    try:
        _score(
            config,
            as_of=as_of,
            interim=interim,
            model=model,
            reference=reference,
            out=out,
            marks=marks,
            feature_state=feature_state,
        )
    except ChurnError as err:
        _fail(err)


@app.command()
def mark(
    file: Annotated[
        Path,
        typer.Argument(
            help="The CSV the CSM edited: their list CSV with columns action, until, play, note "
            "added, or a file of account_id and those columns. Rows with no action are skipped."
        ),
    ],
    csm: Annotated[str, typer.Option("--csm", help="The CSM whose marks these are (csm_id).")],
    params_path: ParamsOption = DEFAULT_PARAMS,
    as_of: Annotated[
        str | None,
        typer.Option(
            help="The week of the list that was marked (YYYY-MM-DD); default: base.as_of_date."
        ),
    ] = None,
    lists: Annotated[
        Path | None,
        typer.Option(
            help="That week's lists (default: reports/lists/<as-of>): the accounts "
            "and their risk at the mark."
        ),
    ] = None,
    marks: Annotated[
        Path, typer.Option(help="The marks log to append to (never overwritten).")
    ] = LAYOUT.marks,
    recorded_at: Annotated[
        str | None,
        typer.Option(
            help="When the marks were made (ISO date-time, UTC if no zone); default: now. Lists "
            "dated after it honour them."
        ),
    ] = None,
) -> None:
    """Record a CSM's marks (addressed with a play, snoozed until a date, clear) for next
    week's list.

    Every row is checked before anything is recorded: only the CSM's own accounts, known
    actions, dates as YYYY-MM-DD; an error names the file, the column and the lines.
    """
    config = _config(params_path)
    from pipeline.lists.marks import record_marks

    try:
        week = parse_day(as_of) if as_of is not None else config.base.as_of_date
        stamp = _recorded_at(recorded_at)
        added = record_marks(
            file,
            csm_id=csm,
            list_as_of=week,
            lists_dir=lists or LAYOUT.lists_dir(week),
            marks_path=marks,
            recorded_at=stamp,
        )
    except ChurnError as err:
        _fail(err)
    counts = added["action"].value_counts().to_dict()
    log.info(
        "recorded %d marks of CSM %s for the list of %s (%s) -> %s",
        len(added),
        csm,
        week,
        ", ".join(f"{counts[a]} {a}" for a in sorted(counts)) or "none",
        marks,
    )


def _recorded_at(text: str | None):
    """--recorded-at as an aware UTC time (now when not given)."""
    from datetime import UTC, datetime

    if text is None:
        return datetime.now(UTC)
    try:
        stamp = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"--recorded-at {text!r}: not an ISO date-time") from None
    return stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp.astimezone(UTC)


def _emit(markdown: str, marker: str, write: Path | None) -> None:
    """Print generated Markdown, or replace its block in a doc (between the markers)."""
    if write is None:
        typer.echo(markdown, nl=False)
        return
    from pipeline.core.atomic import atomic_path

    begin, end = f"<!-- BEGIN GENERATED: {marker} -->\n", "<!-- END GENERATED -->"
    text = write.read_text(encoding="utf-8") if write.is_file() else ""
    if begin not in text or end not in text.split(begin, 1)[1]:
        raise ConfigError(f"{write} has no '{begin.strip()}' ... '{end}' block to regenerate")
    head, rest = text.split(begin, 1)
    tail = rest.split(end, 1)[1]
    with atomic_path(write) as tmp:
        tmp.write_text(head + begin + markdown + end + tail, encoding="utf-8")
    log.info("regenerated the %s block of %s", marker, write)


WriteDocOption = Annotated[
    Path | None,
    typer.Option(
        "--write",
        help="Regenerate the generated block of this doc (e.g. docs/features.md) instead of "
        "printing.",
    ),
]


@app.command()
def registry(params_path: ParamsOption = DEFAULT_PARAMS, write: WriteDocOption = None) -> None:
    """Print the feature registry (every feature, its meaning and play) as Markdown."""
    config = _config(params_path)
    from features.definitions import registry_for
    from features.registry import registry_markdown

    try:
        _emit(registry_markdown(registry_for(config)), "churn registry", write)
    except ChurnError as err:
        _fail(err)


@app.command()
def contract(write: WriteDocOption = None) -> None:
    """Print the data contract (tables, columns, rules) as Markdown."""
    from pipeline.data.contract import contract_markdown

    try:
        _emit(contract_markdown(), "churn contract", write)
    except ChurnError as err:
        _fail(err)


ChannelOption = Annotated[
    str,
    typer.Option(
        help="The delivery channel: email (SMTP) or webhook (a Slack-compatible URL from the "
        "environment variable deliver.webhook.url_env names)."
    ),
]


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
    channel: ChannelOption = "email",
) -> None:
    """Email each CSM their own list (HTML body, CSV attached) over SMTP, or post it to a
    webhook (--channel webhook: one Slack-compatible message per CSM with their top accounts).

    SMTP settings come from the deliver section of params.yaml, the login from the environment
    variables it names; the webhook URL from the variable deliver.webhook.url_env names.
    Exit code 1 when some CSM's delivery failed (the others still go out; a rerun sends only
    what is missing), 2 on a settings or manifest error (nothing sent).
    """
    config = _config(params_path)
    from pipeline.stages.deliver import run_deliver

    if outbox is not None and not dry_run:
        _fail(ConfigError("--outbox applies only with --dry-run"))
    try:
        result = run_deliver(
            config,
            lists or LAYOUT.lists_dir(config.base.as_of_date),
            dry_run=dry_run,
            outbox=outbox,
            log_path=log_file,
            resend=resend,
            channel=channel,
        )
    except ChurnError as err:
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
    interim: InterimOption = LAYOUT.interim,
    model: ModelRefOption = str(LAYOUT.models),
    reference: ReferenceOption = LAYOUT.features,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run", help="Write .eml files to reports/deliveries/<as-of>/outbox; send nothing."
        ),
    ] = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Deliver even when a required table is stale or ingest quarantined more than "
            "ingest.max_quarantine_share of a table (each reason is logged as a warning).",
        ),
    ] = False,
    channel: ChannelOption = "email",
    feature_state: FeatureStateOption = LAYOUT.feature_state,
) -> None:
    """The weekly job (for cron): ingest the fresh extract, score the week, write each CSM's
    list and email it, all at one as-of date.

    Lists go to reports/lists/<as-of>, the delivery log to reports/deliveries/<as-of>. A rerun
    the same week rescores and sends only what did not go out (or changed).

    Bad data holds the delivery back (unless --force): a required table whose latest row is
    older than score.stale_after_days, or a table with more than ingest.max_quarantine_share
    of its rows quarantined. The lists are still written, for a look; nothing is sent, and one
    line says why.

    Exit codes: 0 delivered; 1 some CSM's delivery failed (the others went out); 2 a settings,
    data or scoring error (nothing sent); 3 held back on stale or quarantined data (lists
    written, nothing sent).
    """
    config = _config(params_path)
    from pipeline.feature_engine.build import read_present_tables
    from pipeline.monitoring import delivery_holds, hold_message
    from pipeline.stages.deliver import run_deliver

    try:
        if as_of is not None:
            config = config.with_as_of(parse_day(as_of))
        lists = LAYOUT.lists_dir(config.base.as_of_date)
        if ingest_first:
            # Too many quarantined rows hold the delivery back below, where --force can
            # overrule it; ingest stopping here would leave nothing to look at or force.
            lenient = config.ingest.model_copy(update={"max_quarantine_share": 1.0})
            _ingest(config.model_copy(update={"ingest": lenient}), None, interim)
        manifest = _score(
            config,
            as_of=None,
            interim=interim,
            model=model,
            reference=reference,
            out=lists,
            marks=LAYOUT.marks,
            feature_state=feature_state,
        )
        holds = delivery_holds(
            manifest.warnings,
            read_present_tables(interim)[1],
            max_quarantine_share=config.ingest.max_quarantine_share,
        )
        if holds and not force:
            _console.print(
                escape(hold_message(holds)), style="bold red", highlight=False, soft_wrap=True
            )
            raise typer.Exit(code=HELD_EXIT_CODE)
        for reason in holds:
            log.warning("delivering despite bad data (--force): %s", reason)
        result = run_deliver(config, lists, dry_run=dry_run, channel=channel)
    except ChurnError as err:
        _fail(err)
    _report_delivery(result)
