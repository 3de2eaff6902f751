"""The page itself: figures as embedded PNGs, and the Jinja template rendered to one string.

The page is static and self-contained: no JavaScript, no external URL (a Content-Security-
Policy forbids loading anything but the embedded images), and every data-supplied string
escaped by Jinja's autoescape. Rendering is deterministic (PNG metadata carries no software
or date stamp), so the same inputs give the same bytes.
"""

from __future__ import annotations

import base64
import io
from typing import TYPE_CHECKING

import pandas as pd
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from matplotlib.figure import Figure

from pipeline.stages.report.words import (
    DEFAULT_CURRENCY,
    format_value,
    group_name,
    lower_first,
    none_if_nan,
    signed_money,
)

if TYPE_CHECKING:
    from pipeline.stages.report.context import ReportContext

TEMPLATE = "leadership.html.j2"  # in this package's templates/


def figure_data_uri(fig: Figure) -> str:
    """The figure as a base64 PNG data URI, so the page carries its images inside itself.

    No 'Software' stamp in the PNG metadata: it names the matplotlib version, and the page's
    bytes should change only when its content does.
    """
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _text(value: object) -> str:
    """A cell's text: empty for every kind of missing value (None, pd.NA, NaN)."""
    return "" if value is None or value is pd.NA or value != value else str(value)


def environment(currency: str = DEFAULT_CURRENCY) -> Environment:
    """The Jinja environment: autoescape on, undefined names an error, the number filters.

    Amounts are written with the `report.currency` symbol; segment and region keys as words.
    """
    env = Environment(
        loader=PackageLoader("pipeline.stages.report", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["money"] = lambda v: format_value(none_if_nan(v), "money", currency)
    env.filters["signed_money"] = lambda v: signed_money(v, currency)
    env.filters["group"] = group_name
    env.filters["share"] = lambda v: format_value(none_if_nan(v), "share")
    env.filters["ratio"] = lambda v: format_value(none_if_nan(v), "ratio")
    env.filters["count"] = lambda v: format_value(none_if_nan(v), "count")
    env.filters["lower_first"] = lower_first
    env.filters["text"] = _text
    return env


def render_html(context: ReportContext) -> str:
    """The page as one HTML string (all data-supplied text escaped by the template engine)."""
    return environment(context.currency).get_template(TEMPLATE).render(report=context)
