"""Feature names from the data's own vocabulary: event types and account attribute names.

A customer's event types ("Report exported", "api-call") and attribute names become part of
feature names and SQL column names, so they are turned into slugs: lowercase ASCII letters,
digits and single underscores, at most `MAX_SLUG_CHARS` long. Two values with the same slug
("API call", "api-call") get `_2`, `_3`... in the order of the values themselves, so a name
never depends on the order in which the vocabulary was listed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MAX_SLUG_CHARS = 40
# A value with no letter or digit at all ("???", "日本") still needs a name.
_EMPTY_SLUG = "other"


def slug(value: str) -> str:
    """`value` lowercased, every run of other characters as one "_", trimmed, at most 40 chars."""
    text = re.sub(r"[^a-z0-9]+", "_", str(value).lower()).strip("_")
    return text[:MAX_SLUG_CHARS].rstrip("_") or _EMPTY_SLUG


def unique_slugs(values: Iterable[str]) -> dict[str, str]:
    """{value: its slug} in the order of the values as text, made unique with `_2`, `_3`...
    (each within 40 chars).

    Plain slugs are reserved first, so a suffixed slug never takes the plain slug of another
    value; among values sharing a slug, the smallest (as text) keeps the plain one.
    """
    distinct = sorted(set(values))
    taken = {slug(v) for v in distinct}
    out: dict[str, str] = {}
    for value in distinct:
        base = slug(value)
        if base not in out.values():
            out[value] = base
            continue
        n = 2
        while (candidate := _suffixed(base, n)) in taken:
            n += 1
        out[value] = candidate
        taken.add(candidate)
    return out


def _suffixed(base: str, n: int) -> str:
    suffix = f"_{n}"
    return base[: MAX_SLUG_CHARS - len(suffix)].rstrip("_") + suffix


def event_type_slug(event_type: str) -> str:
    """The slug of one event type, before it is made unique among the others."""
    return slug(event_type)


def event_type_columns(event_types: Iterable[str]) -> dict[str, str]:
    """{event type: the column that counts its events}, e.g. "events_type_report_exported";
    each window's feature is that name with `_{w}d` appended."""
    return {t: f"events_type_{s}" for t, s in unique_slugs(event_types).items()}


def event_type_feature_names(event_types: Iterable[str], window: int) -> dict[str, str]:
    """{event type: the name of its count feature for `window` days}, e.g.
    {"Report exported": "events_type_report_exported_30d"}."""
    return {t: f"{column}_{window}d" for t, column in event_type_columns(event_types).items()}


def attribute_feature_names(attributes: Iterable[str]) -> dict[str, str]:
    """{attribute name: its feature name}, e.g. {"Employees": "attr_employees"}."""
    return {a: f"attr_{s}" for a, s in unique_slugs(attributes).items()}
