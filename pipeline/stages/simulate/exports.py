"""A profile's export: contract-shaped frames renamed into the profile's own tables, columns
and values, with the Parquet schema each raw file is written with.

The names come from inverting the profile's ingest params (``table_map``, ``column_map``,
``value_map``): what ingest maps from, the export writes. So the params a profile declares are
exactly the ones that bring its export back onto the contract. Types are the contract's, every
column nullable (a raw export promises no NOT NULL; see `tables`).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import pyarrow as pa

from pipeline.data.contract import TABLES, arrow_schema
from pipeline.stages.simulate.profiles import CompanyProfile


def _ingest(profile: CompanyProfile) -> Mapping:
    return profile.params.get("ingest", {})


def column_names(profile: CompanyProfile, table: str) -> dict[str, str]:
    """{contract column: export column} of ``table``, in the export's order (extra columns
    under their own name)."""
    renamed = {v: k for k, v in _ingest(profile).get("column_map", {}).get(table, {}).items()}
    names = {column: renamed.get(column, column) for column in profile.tables[table]}
    names.update({column: column for column in profile.extra_columns.get(table, {})})
    return names


def export_values(profile: CompanyProfile, table: str) -> dict[str, dict[str, str]]:
    """{contract column: {contract value: export value}}: the inverse of the value_map."""
    out = {}
    for column, mapping in _ingest(profile).get("value_map", {}).get(table, {}).items():
        inverse = {contract: theirs for theirs, contract in mapping.items()}
        assert len(inverse) == len(mapping), f"{profile.name}: {table}.{column} maps many to one"
        out[column] = inverse
    return out


def export_schema(profile: CompanyProfile, table: str) -> pa.Schema:
    """The Parquet schema of ``table``'s raw file: the contract's types under the export's
    names, every column nullable."""
    contract = arrow_schema(TABLES[table])
    extra = profile.extra_columns.get(table, {})
    fields = []
    for column, name in column_names(profile, table).items():
        kind = extra[column] if column in extra else contract.field(column).type
        fields.append(pa.field(name, kind, nullable=True))
    return pa.schema(fields)


def export_frame(profile: CompanyProfile, table: str, frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` (contract names and values) as the profile exports ``table``: its columns, in
    its order, under its names, with its values."""
    names = column_names(profile, table)
    out = frame[list(names)]
    values = export_values(profile, table)
    if values:
        out = out.assign(**{column: _relabel(out[column], m) for column, m in values.items()})
    if any(c != n for c, n in names.items()):
        out = out.rename(columns=names)
    return out


def _relabel(column: pd.Series, mapping: Mapping[str, str]) -> pd.Series:
    """Values replaced by ``mapping`` (others, and missing ones, kept)."""
    codes, uniques = pd.factorize(column)
    labels = np.array([mapping.get(u, u) for u in uniques], dtype=object)
    relabelled = np.where(codes >= 0, labels[np.maximum(codes, 0)] if labels.size else None, None)
    return pd.Series(relabelled, index=column.index, dtype=column.dtype)
