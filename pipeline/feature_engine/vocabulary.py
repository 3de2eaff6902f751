"""The data's vocabulary: the names in a company's data that decide which features exist.

Which modules count as advanced, which event types are counted, whether usage events carry a
value, which account attributes become features: params may pin each, and what they leave open
comes from the data before the as-of date, so nothing depends on the demo's names. The
vocabulary is resolved once, where the training features are built; it travels with the
feature table (Parquet metadata) into the model's training info, and scoring, the backtest and
the report read it from the model. A model's features therefore mean the same thing every week,
even when next week's data would resolve to other names.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from typing import TypeVar

import pandas as pd

from features.base import DeclarationSettings
from pipeline.core.config import Config
from pipeline.data.contract import interim_path

log = logging.getLogger(__name__)

METADATA_KEY = b"churn.vocabulary"
INFO_KEY = "vocabulary"
#: More attributes than this are not features: the most widely held are kept (and named).
MAX_ATTRIBUTES = 50

S = TypeVar("S", bound=DeclarationSettings)


@dataclass(frozen=True)
class Vocabulary:
    """The data-dependent part of the feature settings."""

    advanced_modules: tuple[str, ...] = ()
    event_types: tuple[str, ...] = ()
    usage_value: bool = False
    attributes: tuple[tuple[str, str], ...] = ()

    def apply(self, settings: S) -> S:
        """`settings` with this vocabulary in place of the params' (or the defaults)."""
        return replace(
            settings,
            advanced_modules=self.advanced_modules,
            event_types=self.event_types,
            usage_value=self.usage_value,
            attributes=self.attributes,
        )

    def as_dict(self) -> dict:
        return {
            "advanced_modules": list(self.advanced_modules),
            "event_types": list(self.event_types),
            "usage_value": self.usage_value,
            "attributes": {name: kind for name, kind in self.attributes},
        }

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, payload: dict) -> Vocabulary:
        return cls(
            advanced_modules=tuple(payload.get("advanced_modules", ())),
            event_types=tuple(payload.get("event_types", ())),
            usage_value=bool(payload.get("usage_value", False)),
            attributes=tuple(sorted(dict(payload.get("attributes", {})).items())),
        )

    @classmethod
    def from_info(cls, info: dict) -> Vocabulary | None:
        """The vocabulary a model was trained with (None for a model from before it existed)."""
        payload = info.get(INFO_KEY)
        return None if payload is None else cls.from_dict(payload)


def parquet_pattern(interim_dir: Path, table: str) -> str:
    """The glob DuckDB reads an interim table from (a folder of parts, or one file)."""
    source = interim_path(Path(interim_dir), table)
    return str(source / "*.parquet") if source.is_dir() else str(source)


def scan(sql: str, params: list) -> pd.DataFrame:
    """A one-off DuckDB query in UTC: metadata scans of interim tables, whatever the engine."""
    import duckdb

    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        return con.execute(sql, params).df()
    finally:
        con.close()


def instant(as_of: date) -> str:
    """The as-of date as the UTC instant DuckDB compares stamps with."""
    return str(pd.Timestamp(as_of, tz="UTC"))


def event_type_counts(interim_dir: Path, as_of: date) -> pd.DataFrame:
    """Events per event type before `as_of` (types that are empty are not a type)."""
    return scan(
        "SELECT event_type, SUM(count) AS events FROM read_parquet(?) "
        "WHERE occurred_at < CAST(? AS TIMESTAMPTZ) AND event_type IS NOT NULL "
        "GROUP BY event_type ORDER BY events DESC, event_type",
        [parquet_pattern(interim_dir, "usage_events"), instant(as_of)],
    )


def usage_value_present(interim_dir: Path, as_of: date) -> bool:
    """Whether any usage event before `as_of` carries a value."""
    found = scan(
        "SELECT COUNT(value) AS n FROM read_parquet(?) WHERE occurred_at < CAST(? AS TIMESTAMPTZ)",
        [parquet_pattern(interim_dir, "usage_events"), instant(as_of)],
    )
    return bool(found["n"].iloc[0])


def attribute_profile(interim_dir: Path, as_of: date) -> pd.DataFrame:
    """Per attribute before `as_of`: accounts holding it, values, and values that are numbers."""
    return scan(
        "SELECT attribute, COUNT(DISTINCT account_id) AS accounts, COUNT(value) AS values, "
        "COUNT(TRY_CAST(value AS DOUBLE)) AS numbers FROM read_parquet(?) "
        "WHERE valid_from < CAST(? AS TIMESTAMPTZ) GROUP BY attribute ORDER BY attribute",
        [parquet_pattern(interim_dir, "account_attributes"), instant(as_of)],
    )


def resolve_event_types(
    configured: tuple[str, ...] | None, counts: pd.DataFrame, top: int
) -> tuple[tuple[str, ...], list[str]]:
    """(event types to count, warnings): the params' list, else the `top` most frequent."""
    types = counts["event_type"].astype(str).tolist()
    if configured is None:
        return tuple(types[:top]), []
    present = set(types)
    absent = [t for t in configured if t not in present]
    warnings = []
    if absent:
        warnings.append(
            f"features.event_types names types usage_events does not have: {absent} "
            f"(types in the data: {types[:12]}{'...' if len(types) > 12 else ''})"
        )
    return tuple(t for t in configured if t in present), warnings


def resolve_attributes(
    configured: dict[str, str] | None, profile: pd.DataFrame
) -> tuple[tuple[tuple[str, str], ...], list[str]]:
    """(attributes as (name, kind), warnings): the params', else every attribute in the data.

    A derived attribute is a number when each of its values parses as one, else a category.
    """
    names = profile["attribute"].astype(str).tolist()
    if configured is not None:
        absent = sorted(set(configured) - set(names))
        warnings = (
            [f"features.attributes names attributes account_attributes does not have: {absent}"]
            if absent
            else []
        )
        kept = {n: k for n, k in configured.items() if n in set(names)}
        return tuple(sorted(kept.items())), warnings
    warnings = []
    chosen = profile
    if len(profile) > MAX_ATTRIBUTES:
        chosen = profile.sort_values(["accounts", "attribute"], ascending=[False, True]).head(
            MAX_ATTRIBUTES
        )
        dropped = sorted(set(names) - set(chosen["attribute"].astype(str)))
        warnings.append(
            f"account_attributes has {len(names)} attributes; the {MAX_ATTRIBUTES} held by the "
            f"most accounts are features, not {dropped[:10]}{'...' if len(dropped) > 10 else ''}"
            " (pin them with features.attributes)"
        )
    derived = tuple(
        sorted(
            (
                str(row.attribute),
                "number" if row.values > 0 and row.numbers == row.values else "category",
            )
            for row in chosen.itertuples()
        )
    )
    return derived, warnings


def _as_ingested(names: tuple[str, ...] | None) -> tuple[str, ...] | None:
    """Names from params as ingest stored them (categories are normalised: "API call" is
    api_call in the data), so a pinned name matches its rows."""
    if names is None:
        return None
    from pipeline.data.validate import normalise_category

    return tuple(normalise_category(pd.Series(list(names), dtype="string")).tolist())


def resolve_vocabulary(
    config: Config, interim_dir: Path, tables_present: set[str], as_of: date
) -> tuple[Vocabulary, list[str]]:
    """The vocabulary of the data before `as_of`, with params where they pin it."""
    from pipeline.feature_engine.build import module_adoption, resolve_advanced_modules

    cfg = config.features
    modules, warnings = resolve_advanced_modules(
        _as_ingested(None if cfg.advanced_modules is None else tuple(cfg.advanced_modules)),
        module_adoption(interim_dir, as_of),
    )
    event_types, more = resolve_event_types(
        _as_ingested(cfg.event_types),
        event_type_counts(interim_dir, as_of),
        cfg.top_event_types,
    )
    warnings += more
    attributes: tuple[tuple[str, str], ...] = ()
    if "account_attributes" in tables_present:
        pinned = None
        if cfg.attributes is not None:
            names = _as_ingested(tuple(cfg.attributes)) or ()
            pinned = dict(zip(names, cfg.attributes.values(), strict=True))
        attributes, more = resolve_attributes(
            pinned,
            attribute_profile(interim_dir, as_of),
        )
        warnings += more
    elif cfg.attributes:
        warnings.append(
            f"features.attributes names {sorted(cfg.attributes)} but there is no "
            "account_attributes table"
        )
    vocabulary = Vocabulary(
        advanced_modules=modules,
        event_types=event_types,
        usage_value=usage_value_present(interim_dir, as_of),
        attributes=attributes,
    )
    return vocabulary, warnings


def table_vocabulary(features_path: Path) -> Vocabulary | None:
    """The vocabulary a feature table was built with (its Parquet metadata), if recorded."""
    import pyarrow.parquet as pq

    metadata = pq.read_schema(Path(features_path)).metadata or {}
    raw = metadata.get(METADATA_KEY)
    return None if raw is None else Vocabulary.from_dict(json.loads(raw))
