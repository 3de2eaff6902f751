"""Report stage: one self-contained HTML page for leadership (`reports/leadership.html`).

The page answers four questions a VP of customer success asks: what drives churn, where the
risk is, whether the model can be trusted, and how the risk moves week over week; a model card
closes it. It computes nothing a second time: probabilities, expected ARR at risk and SHAP
values come from the score stage's lists, quality figures from the evaluate and backtest
stages. Every headline number is wrapped in a `data-metric` marker holding the exact source
value, so a test can hold the page to its source files.

The package, one job per module:
- `inputs`: read and check what the earlier stages wrote (the I/O of the stage's inputs);
- `analysis`: pure frame functions (importance, risk by group, portfolio, trend, trust);
- `words`: number formatting and every sentence built from data, the model card's facts;
- `figures`: every figure, returned as a matplotlib Figure;
- `context`: `build_report`, which puts numbers, words and figures into the template's context;
- `page`: PNG data URIs and the Jinja template (`templates/leadership.html.j2`);
- here: `run_report`, the stage's edge (config in, page written atomically).
"""

from __future__ import annotations

import logging
from pathlib import Path

from pipeline.core.atomic import atomic_path
from pipeline.core.config import Config
from pipeline.core.errors import ReportError
from pipeline.feature_engine.build import declared_registry
from pipeline.feature_engine.vocabulary import Vocabulary
from pipeline.stages.report.analysis import (
    COHORT_FIRST_90,
    COHORT_LATER,
    driver_importance,
    effect_direction,
    family_importance,
    largest_at_risk,
    risk_by,
    trust_metrics,
    with_cohort,
)
from pipeline.stages.report.context import EmbeddedFigure, ReportContext, build_report
from pipeline.stages.report.figures import swarm_offsets
from pipeline.stages.report.inputs import (
    ACCOUNT_COLUMNS,
    ListOutputs,
    ReportInputs,
    check_lists,
    load_inputs,
    read_lists,
    training_info,
)
from pipeline.stages.report.page import render_html
from pipeline.stages.report.words import known_limits, lower_first

__all__ = [
    "ACCOUNT_COLUMNS",
    "COHORT_FIRST_90",
    "COHORT_LATER",
    "EmbeddedFigure",
    "ListOutputs",
    "ReportContext",
    "ReportError",
    "ReportInputs",
    "build_report",
    "check_lists",
    "driver_importance",
    "effect_direction",
    "family_importance",
    "known_limits",
    "largest_at_risk",
    "load_inputs",
    "lower_first",
    "read_lists",
    "render_html",
    "risk_by",
    "run_report",
    "swarm_offsets",
    "trust_metrics",
    "with_cohort",
]

log = logging.getLogger(__name__)


def run_report(
    config: Config,
    *,
    lists_dir: Path,
    metrics_path: Path,
    plots_dir: Path,
    backtest_path: Path,
    feature_summary_path: Path,
    models_dir: Path,
    out: Path,
) -> ReportContext:
    """The report stage's edge: read the inputs, build the page, write it atomically.

    Reads `report` (how much the page shows), the feature declarations (the signals' plain
    names),
    the label rule (`features.label_horizon_days`, `base.renewal_grace_days`) for the model
    card and `evaluate.capacity_per_csm` for the trust section: the keys dvc.yaml lists.
    """
    inputs = load_inputs(
        lists_dir=lists_dir,
        metrics_path=metrics_path,
        plots_dir=plots_dir,
        backtest_path=backtest_path,
        feature_summary_path=feature_summary_path,
        models_dir=models_dir,
        # the registry the model was trained on (its vocabulary: modules, event types...)
        registry=declared_registry(config, Vocabulary.from_info(training_info(Path(models_dir)))),
        label_horizon_days=config.features.label_horizon_days,
        renewal_grace_days=config.base.renewal_grace_days,
        capacity_per_csm=config.evaluate.capacity_per_csm,
    )
    context = build_report(inputs, config.report)
    html = render_html(context)
    with atomic_path(Path(out)) as tmp:
        tmp.write_text(html, encoding="utf-8")
    log.info("report: %d figures, %d KB -> %s", len(context.figures), len(html) // 1024, out)
    return context
