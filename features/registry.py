"""The feature registry: the families in a fixed order, and every feature they declare.

The registry drives the feature table (which columns exist, in which order), the reason codes
on the CSM lists (plain-language description, unit, the play that addresses it) and the
leadership report (families). Each feature is declared once, with its SQL, in its family's
module under `features/families/`; windowed features once per window, so `active_users_30d`
and `active_users_90d` share one declaration. Adding a family is one new module plus its place
in `_ORDER` below.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType

from features.base import DeclarationSettings, Direction, Dtype, Feature, FeatureFamily
from features.families import (
    attributes,
    commercial,
    engagement,
    onboarding,
    satisfaction,
    support,
    training,
    usage,
)
from features.plays import PLAYS

__all__ = [
    "FAMILIES",
    "PLAYS",
    "Direction",
    "Dtype",
    "Feature",
    "FeatureFamily",
    "available",
    "build_registry",
    "registry_markdown",
]

# The order of the feature table's columns, the report's families and the registry doc.
_ORDER = (usage, training, support, onboarding, engagement, satisfaction, commercial, attributes)

FAMILIES: Mapping[str, FeatureFamily] = MappingProxyType(
    {module.FAMILY.name: module.FAMILY for module in _ORDER}
)


def build_registry(
    windows: Iterable[int], *, settings: DeclarationSettings | None = None
) -> list[Feature]:
    """All features for the given windows, in a stable order (the feature table's columns).

    `settings` carries the named constants that shape some features (onboarding days,
    activation checkpoints, stickiness and QBR windows, the detractor score); without it they
    take their defaults, which give the names the trained model knows. Pass the settings the
    feature table is built with, or the registry and the definitions disagree.
    """
    windows = tuple(sorted(set(int(w) for w in windows)))
    if not windows or windows[0] <= 0:
        raise ValueError(f"feature windows must be positive days, got {list(windows)}")
    if settings is None:
        settings = DeclarationSettings(windows=windows)
    elif tuple(sorted(set(settings.windows))) != windows:
        raise ValueError(f"windows {list(windows)} differ from the settings' {settings.windows}")
    features = [f for family in FAMILIES.values() for f in family.features(settings)]
    names = [f.name for f in features]
    assert len(names) == len(set(names)), "duplicate feature names in the registry"
    return features


def available(features: list[Feature], tables_present: set[str]) -> list[Feature]:
    """The features whose input tables exist."""
    return [f for f in features if set(f.tables) <= tables_present]


_RISK = {"higher_is_riskier": "higher", "lower_is_riskier": "lower", "neither": "-"}


def registry_markdown(features: list[Feature]) -> str:
    """The registry as a Markdown table per family, generated so the docs cannot drift."""
    lines: list[str] = []
    for name, family in FAMILIES.items():
        members = [f for f in features if f.family == name]
        if not members:
            continue
        lines += [f"### {family.title} (`{name}`)", ""]
        lines += ["| feature | meaning | unit | more risk when | CSM can act | needs | play |"]
        lines += ["|---|---|---|---|---|---|---|"]
        for f in members:
            risk = _RISK[f.direction] + (" (monotone)" if f.monotone else "")
            needs = ", ".join(f"`{t}`" for t in f.tables) or "required tables"
            lines.append(
                f"| `{f.name}` | {f.description} | {f.unit or '-'} | {risk} | "
                f"{'yes' if f.actionable else 'no'} | {needs} | {f.play or '-'} |"
            )
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
