"""Reading `params.yaml`: one section per stage plus a shared `base` section.

Entry points read their own section here and pass plain values into the core functions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import yaml

DEFAULT_PARAMS = Path("params.yaml")


class ConfigError(ValueError):
    """params.yaml is missing, malformed, or lacks a setting a stage needs."""


def load_params(path: Path = DEFAULT_PARAMS) -> dict[str, Any]:
    """The whole params file as a dict."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"params file {path} not found (run from the repository root)")
    try:
        params = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {err}") from err
    if not isinstance(params, dict):
        raise ConfigError(f"{path} must hold a mapping of sections")
    return params


def section(params: dict[str, Any], name: str) -> dict[str, Any]:
    """One stage's section; a clear error names the missing section."""
    value = params.get(name)
    if not isinstance(value, dict):
        raise ConfigError(f"params.yaml has no '{name}' section")
    return value


def setting(params: dict[str, Any], dotted: str) -> Any:
    """A required setting by dotted name, e.g. 'base.as_of_date'."""
    node: Any = params
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise ConfigError(f"params.yaml lacks '{dotted}'")
        node = node[part]
    return node


def as_of_timestamp(params: dict[str, Any]) -> pd.Timestamp:
    """base.as_of_date as a UTC instant (midnight): the data's exclusive end."""
    raw = setting(params, "base.as_of_date")
    if raw is None:
        raise ConfigError(
            "base.as_of_date is empty: set it to the date your data was extracted (YYYY-MM-DD)"
        )
    try:
        stamp = pd.Timestamp(str(raw))
    except ValueError as err:
        raise ConfigError(f"base.as_of_date {raw!r} is not a date (YYYY-MM-DD)") from err
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
