"""Account attributes that change over time (firmographics, channel, discount...), as of t.

`account_attributes` holds one row per value from the moment it held (`valid_from`). The value
at t is the one of the row with the latest `valid_from` strictly before t; a value recorded
from t on is not seen. Each row's span ends where the account's next value for the attribute
begins; the spans are built once and every snapshot picks the span it falls in. Which
attributes become features, and whether as numbers or categories, is `settings.attributes`.
"""

from __future__ import annotations

from features.base import DeclarationSettings, Feature, FeatureFamily, FeatureSettings, Statement
from features.names import attribute_feature_names
from features.plays import PLAYS
from features.sql import epoch, quote, quote_list

TABLE = "account_attributes"


def _views(settings: FeatureSettings, tables: frozenset[str]) -> list[Statement]:
    if TABLE not in tables or not settings.attributes:
        return []
    kinds = dict(settings.attributes)
    names = attribute_feature_names(kinds)
    # Rows sharing an instant (not expected: the contract's key has valid_from) are ordered by
    # value, so the largest value's span is the one that holds; the others' spans are empty.
    spans = Statement(
        "attribute_spans",
        f"""
        SELECT account_id, attribute, value, valid_epoch,
               LEAD(valid_epoch) OVER (
                   PARTITION BY account_id, attribute
                   ORDER BY valid_epoch, value NULLS FIRST
               ) AS next_epoch
        FROM (
            SELECT account_id, attribute, value, {epoch("valid_from")} AS valid_epoch
            FROM {TABLE}
            WHERE attribute IN ({quote_list(tuple(sorted(kinds)))})
        ) AS a
        """,
        materialize=True,
        static=True,
    )
    columns = []
    for attribute, name in names.items():
        value = "p.value" if kinds[attribute] == "category" else "TRY_CAST(p.value AS DOUBLE)"
        of_attribute = f"p.attribute = {quote(attribute)}"
        columns.append(f"MAX(CASE WHEN {of_attribute} THEN {value} END) AS {name}")
    values = Statement(
        "f_attributes",
        f"""
        SELECT s.account_id, s.snapshot_date, {", ".join(columns)}
        FROM snap AS s
        LEFT JOIN attribute_spans AS p
          ON p.account_id = s.account_id
         AND p.valid_epoch < s.snap_epoch
         AND (p.next_epoch IS NULL OR p.next_epoch >= s.snap_epoch)
        GROUP BY s.account_id, s.snapshot_date
        """,
        alias="attr",
    )
    return [spans, values]


def _fixed(settings: DeclarationSettings) -> list[Feature]:
    kinds = dict(settings.attributes)
    return [
        Feature(
            name=name,
            family="attributes",
            description=f"Account attribute '{attribute}'",
            unit="",
            dtype="float" if kinds[attribute] == "number" else "category",
            direction="neither",
            actionable=False,
            play=PLAYS["none"],
            tables=(TABLE,),
            sql=f"attr.{name}",
        )
        for attribute, name in attribute_feature_names(kinds).items()
    ]


FAMILY = FeatureFamily(
    name="attributes",
    title="Account attributes",
    tables=(TABLE,),
    views=_views,
    fixed=_fixed,
)
