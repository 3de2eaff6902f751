"""The feature registry: every feature declared once, with what a person needs to read it.

The registry drives the feature table (which columns exist, in which order), the reason codes
on the CSM lists (plain-language description, unit, the play that addresses it) and the
leadership report (families). Windowed features are declared once per window from params, so
`active_users_30d` and `active_users_90d` share one declaration.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

Family = Literal["usage", "training", "support", "onboarding", "engagement", "commercial"]
Direction = Literal["higher_is_riskier", "lower_is_riskier", "neither"]
Dtype = Literal["float", "int", "bool", "category"]

FAMILIES: dict[str, dict[str, object]] = {
    "usage": {
        "title": "Product usage depth",
        "tables": ("usage_events",),
    },
    "training": {
        "title": "User training coverage",
        "tables": ("trainings", "users"),
    },
    "support": {
        "title": "Support and SLA breaches",
        "tables": ("support_tickets",),
    },
    "onboarding": {
        "title": "First 90 days",
        "tables": ("usage_events",),
    },
    "engagement": {
        "title": "Sentiment and engagement",
        "tables": ("nps_responses", "csm_touchpoints"),
    },
    "commercial": {
        "title": "Contract and commercial",
        "tables": ("contracts",),
    },
}


@dataclass(frozen=True)
class Feature:
    """One model feature.

    `direction` is the risk direction: for `higher_is_riskier`, a larger value means more churn
    risk. `monotone` marks the directions that are business facts (more SLA breaches never
    means less risk), which training may enforce as monotone constraints. `actionable` is False
    for what a CSM cannot change (segment, tenure); lists show those drivers apart. `table` is
    `tables` lists the optional input tables the feature needs (empty: always available).
    """

    name: str
    family: str
    description: str
    unit: str
    dtype: Dtype
    direction: Direction
    actionable: bool
    play: str
    monotone: bool = False
    tables: tuple[str, ...] = ()
    window_days: int | None = None

    def describe(self, value: object) -> str:
        """The feature and a value in plain words, e.g. '4 SLA breaches in the last 90 days'."""
        return f"{self.description}: {_format(value, self.unit)}"


def _format(value: object, unit: str) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "none recorded"
    if unit == "share" and isinstance(value, (int, float)):
        return f"{value:.0%}"
    if isinstance(value, float):
        return f"{value:,.1f} {unit}".strip()
    return f"{value} {unit}".strip()


PLAYS = {
    "adoption": "Run an adoption review: find inactive seats and show the team the modules they "
    "are not using yet.",
    "advanced": "Offer a workshop on the advanced modules (automation, analytics, API).",
    "enablement": "Schedule an enablement session and enrol untrained users in the basics course.",
    "admin_training": "Get the account's admins certified: they train everyone else.",
    "support": "Review open tickets with the support lead and agree a recovery plan for breached "
    "SLAs.",
    "escalation": "Call the sponsor about the escalations before they come up at renewal.",
    "onboarding": "Restart onboarding: a kickoff call, a success plan and a first-value milestone.",
    "sentiment": "Follow up on the survey answers: call detractors and close the loop.",
    "engagement": "Book a check-in; the account has gone quiet.",
    "exec": "Arrange an executive sponsor meeting.",
    "qbr": "Schedule the quarterly business review.",
    "renewal": "Start the renewal conversation now.",
    "none": "",
}


def _windowed(windows: Iterable[int]) -> list[Feature]:
    out: list[Feature] = []
    for w in windows:
        out += [
            Feature(
                f"active_users_{w}d",
                "usage",
                f"Active users in the last {w} days",
                "users",
                "int",
                "lower_is_riskier",
                True,
                PLAYS["adoption"],
                window_days=w,
            ),
            Feature(
                f"active_user_share_{w}d",
                "usage",
                f"Active users as a share of purchased seats, last {w} days",
                "share",
                "float",
                "lower_is_riskier",
                True,
                PLAYS["adoption"],
                window_days=w,
            ),
            Feature(
                f"distinct_modules_{w}d",
                "usage",
                f"Product modules used in the last {w} days",
                "modules",
                "int",
                "lower_is_riskier",
                True,
                PLAYS["advanced"],
                window_days=w,
            ),
            Feature(
                f"advanced_usage_share_{w}d",
                "usage",
                f"Share of usage in advanced modules, last {w} days",
                "share",
                "float",
                "lower_is_riskier",
                True,
                PLAYS["advanced"],
                window_days=w,
            ),
            Feature(
                f"events_per_active_user_{w}d",
                "usage",
                f"Events per active user in the last {w} days",
                "events",
                "float",
                "lower_is_riskier",
                True,
                PLAYS["adoption"],
                window_days=w,
            ),
            Feature(
                f"active_users_trend_{w}d",
                "usage",
                f"Change in active users, last {w} days against the {w} before",
                "share",
                "float",
                "lower_is_riskier",
                True,
                PLAYS["adoption"],
                window_days=w,
            ),
            Feature(
                f"trainings_completed_{w}d",
                "training",
                f"Trainings completed in the last {w} days",
                "trainings",
                "int",
                "lower_is_riskier",
                True,
                PLAYS["enablement"],
                tables=("trainings",),
                window_days=w,
            ),
            Feature(
                f"tickets_opened_{w}d",
                "support",
                f"Support tickets opened in the last {w} days",
                "tickets",
                "int",
                "higher_is_riskier",
                False,
                PLAYS["support"],
                tables=("support_tickets",),
                window_days=w,
            ),
            Feature(
                f"sla_breaches_{w}d",
                "support",
                f"SLA breaches (first response or resolution) in the last {w} days",
                "breaches",
                "int",
                "higher_is_riskier",
                True,
                PLAYS["support"],
                monotone=True,
                tables=("support_tickets",),
                window_days=w,
            ),
            Feature(
                f"first_response_breaches_{w}d",
                "support",
                f"First-response SLA breaches in the last {w} days",
                "breaches",
                "int",
                "higher_is_riskier",
                True,
                PLAYS["support"],
                monotone=True,
                tables=("support_tickets",),
                window_days=w,
            ),
            Feature(
                f"resolution_breaches_{w}d",
                "support",
                f"Resolution SLA breaches in the last {w} days",
                "breaches",
                "int",
                "higher_is_riskier",
                True,
                PLAYS["support"],
                monotone=True,
                tables=("support_tickets",),
                window_days=w,
            ),
            Feature(
                f"sla_breach_rate_{w}d",
                "support",
                f"Share of SLA deadlines missed in the last {w} days",
                "share",
                "float",
                "higher_is_riskier",
                True,
                PLAYS["support"],
                monotone=True,
                tables=("support_tickets",),
                window_days=w,
            ),
            Feature(
                f"weighted_sla_breaches_{w}d",
                "support",
                f"SLA breaches weighted by priority, last {w} days",
                "points",
                "float",
                "higher_is_riskier",
                True,
                PLAYS["support"],
                monotone=True,
                tables=("support_tickets",),
                window_days=w,
            ),
            Feature(
                f"sla_breaches_trend_{w}d",
                "support",
                f"Change in SLA breaches, last {w} days against the {w} before",
                "breaches",
                "int",
                "higher_is_riskier",
                True,
                PLAYS["support"],
                tables=("support_tickets",),
                window_days=w,
            ),
            Feature(
                f"escalations_{w}d",
                "support",
                f"Escalated tickets (closed) in the last {w} days",
                "tickets",
                "int",
                "higher_is_riskier",
                True,
                PLAYS["escalation"],
                monotone=True,
                tables=("support_tickets",),
                window_days=w,
            ),
            Feature(
                f"median_resolution_hours_{w}d",
                "support",
                f"Median time to resolve tickets, last {w} days",
                "hours",
                "float",
                "higher_is_riskier",
                True,
                PLAYS["support"],
                tables=("support_tickets",),
                window_days=w,
            ),
            Feature(
                f"touchpoints_{w}d",
                "engagement",
                f"CSM touchpoints in the last {w} days",
                "touchpoints",
                "int",
                "lower_is_riskier",
                True,
                PLAYS["engagement"],
                tables=("csm_touchpoints",),
                window_days=w,
            ),
            Feature(
                f"nps_mean_{w}d",
                "engagement",
                f"Mean NPS answer in the last {w} days",
                "points",
                "float",
                "lower_is_riskier",
                True,
                PLAYS["sentiment"],
                tables=("nps_responses",),
                window_days=w,
            ),
            Feature(
                f"nps_trend_{w}d",
                "engagement",
                f"Change in mean NPS, last {w} days against the {w} before",
                "points",
                "float",
                "lower_is_riskier",
                True,
                PLAYS["sentiment"],
                tables=("nps_responses",),
                window_days=w,
            ),
        ]
    return out


def _fixed() -> list[Feature]:
    return [
        Feature(
            "stickiness_30d",
            "usage",
            "Daily over monthly active users (30 days)",
            "share",
            "float",
            "lower_is_riskier",
            True,
            PLAYS["adoption"],
        ),
        Feature(
            "days_since_last_activity",
            "usage",
            "Days since anyone used the product",
            "days",
            "float",
            "higher_is_riskier",
            True,
            PLAYS["engagement"],
        ),
        Feature(
            "trained_user_share",
            "training",
            "Share of active users who completed a training",
            "share",
            "float",
            "lower_is_riskier",
            True,
            PLAYS["enablement"],
            monotone=True,
            tables=("trainings",),
        ),
        Feature(
            "mean_training_score",
            "training",
            "Mean assessment score of completed trainings",
            "points",
            "float",
            "lower_is_riskier",
            True,
            PLAYS["enablement"],
            tables=("trainings",),
        ),
        Feature(
            "admins_trained",
            "training",
            "Admins who completed a training",
            "admins",
            "int",
            "lower_is_riskier",
            True,
            PLAYS["admin_training"],
            tables=("trainings", "users"),
        ),
        Feature(
            "days_since_last_training",
            "training",
            "Days since a user last completed a training",
            "days",
            "float",
            "higher_is_riskier",
            True,
            PLAYS["enablement"],
            tables=("trainings",),
        ),
        Feature(
            "tickets_open_past_sla",
            "support",
            "Tickets open past their resolution SLA now",
            "tickets",
            "int",
            "higher_is_riskier",
            True,
            PLAYS["support"],
            monotone=True,
            tables=("support_tickets",),
        ),
        Feature(
            "tenure_days",
            "onboarding",
            "Days as a customer",
            "days",
            "int",
            "neither",
            False,
            PLAYS["none"],
        ),
        Feature(
            "in_first_90_days",
            "onboarding",
            "In the first 90 days as a customer",
            "",
            "bool",
            "neither",
            False,
            PLAYS["onboarding"],
        ),
        Feature(
            "days_to_first_value",
            "onboarding",
            "Days from start to first product use",
            "days",
            "float",
            "higher_is_riskier",
            True,
            PLAYS["onboarding"],
        ),
        Feature(
            "seats_activated_30d",
            "onboarding",
            "Share of seats active within the first 30 days",
            "share",
            "float",
            "lower_is_riskier",
            True,
            PLAYS["onboarding"],
        ),
        Feature(
            "seats_activated_60d",
            "onboarding",
            "Share of seats active within the first 60 days",
            "share",
            "float",
            "lower_is_riskier",
            True,
            PLAYS["onboarding"],
        ),
        Feature(
            "seats_activated_90d",
            "onboarding",
            "Share of seats active within the first 90 days",
            "share",
            "float",
            "lower_is_riskier",
            True,
            PLAYS["onboarding"],
        ),
        Feature(
            "onboarding_modules",
            "onboarding",
            "Modules used in the first 90 days",
            "modules",
            "int",
            "lower_is_riskier",
            True,
            PLAYS["onboarding"],
        ),
        Feature(
            "onboarding_trainings",
            "onboarding",
            "Trainings completed in the first 90 days",
            "trainings",
            "int",
            "lower_is_riskier",
            True,
            PLAYS["onboarding"],
            tables=("trainings",),
        ),
        Feature(
            "latest_nps",
            "engagement",
            "Latest NPS answer",
            "points",
            "float",
            "lower_is_riskier",
            True,
            PLAYS["sentiment"],
            tables=("nps_responses",),
        ),
        Feature(
            "nps_detractor",
            "engagement",
            "Latest NPS answer is a detractor (0-6)",
            "",
            "bool",
            "higher_is_riskier",
            True,
            PLAYS["sentiment"],
            tables=("nps_responses",),
        ),
        Feature(
            "days_since_exec_contact",
            "engagement",
            "Days since the last executive-sponsor contact",
            "days",
            "float",
            "higher_is_riskier",
            True,
            PLAYS["exec"],
            tables=("csm_touchpoints",),
        ),
        Feature(
            "qbr_last_quarter",
            "engagement",
            "QBR held in the last 90 days",
            "",
            "bool",
            "lower_is_riskier",
            True,
            PLAYS["qbr"],
            tables=("csm_touchpoints",),
        ),
        Feature(
            "arr",
            "commercial",
            "Annual recurring revenue",
            "ARR",
            "float",
            "neither",
            False,
            PLAYS["none"],
        ),
        Feature(
            "seats",
            "commercial",
            "Purchased seats",
            "seats",
            "int",
            "neither",
            False,
            PLAYS["none"],
        ),
        Feature(
            "segment",
            "commercial",
            "Customer segment",
            "",
            "category",
            "neither",
            False,
            PLAYS["none"],
        ),
        Feature("plan", "commercial", "Plan", "", "category", "neither", False, PLAYS["none"]),
        Feature(
            "term_months",
            "commercial",
            "Length of the current term",
            "months",
            "int",
            "neither",
            False,
            PLAYS["none"],
        ),
        Feature(
            "days_to_renewal",
            "commercial",
            "Days until the renewal date",
            "days",
            "int",
            "neither",
            False,
            PLAYS["renewal"],
        ),
        Feature(
            "prior_renewals",
            "commercial",
            "Renewals so far",
            "renewals",
            "int",
            "lower_is_riskier",
            False,
            PLAYS["none"],
        ),
        Feature(
            "arr_change_last_renewal",
            "commercial",
            "ARR change at the last renewal",
            "share",
            "float",
            "lower_is_riskier",
            False,
            PLAYS["renewal"],
        ),
    ]


def build_registry(windows: Iterable[int]) -> list[Feature]:
    """All features for the given windows, in a stable order (the feature table's columns)."""
    windows = sorted(set(int(w) for w in windows))
    if not windows or windows[0] <= 0:
        raise ValueError(f"feature windows must be positive days, got {windows}")
    features = _windowed(windows) + _fixed()
    order = list(FAMILIES)
    features.sort(key=lambda f: order.index(f.family))  # stable: keeps declaration order inside
    names = [f.name for f in features]
    assert len(names) == len(set(names)), "duplicate feature names in the registry"
    return features


def available(features: list[Feature], tables_present: set[str]) -> list[Feature]:
    """The features whose input tables exist."""
    return [f for f in features if set(f.tables) <= tables_present]


def registry_markdown(features: list[Feature]) -> str:
    """The registry as a Markdown table per family, generated so the docs cannot drift."""
    lines: list[str] = []
    for family, meta in FAMILIES.items():
        members = [f for f in features if f.family == family]
        if not members:
            continue
        lines += [f"### {meta['title']} (`{family}`)", ""]
        lines += ["| feature | meaning | unit | more risk when | CSM can act | needs | play |"]
        lines += ["|---|---|---|---|---|---|---|"]
        for f in members:
            risk = {
                "higher_is_riskier": "higher",
                "lower_is_riskier": "lower",
                "neither": "-",
            }[f.direction]
            if f.monotone:
                risk += " (monotone)"
            needs = ", ".join(f"`{t}`" for t in f.tables) or "required tables"
            lines.append(
                f"| `{f.name}` | {f.description} | {f.unit or '-'} | {risk} | "
                f"{'yes' if f.actionable else 'no'} | {needs} | {f.play or '-'} |"
            )
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
