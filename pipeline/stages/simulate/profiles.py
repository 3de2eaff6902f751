"""Company profiles: simulated companies whose exports do not look like the demo's.

The demo writes every table of the data contract under the contract's own names, which is the
one shape a real company never has. A profile is a company shaped like a real export: its own
tables (some of the contract's are missing), its own table and column names, its own category
values, and churn planted on what those tables show. Each profile is one declaration: what it
imitates and the raw tables it writes (``doc``), the contract columns each export table has
(``tables``, in the export's column order, plus export-only columns the params leave unmapped),
the generator (``build``), and ``params``: the nested ``params.yaml`` overrides the pipeline
needs to run on it, the same ones a user with such an export would write (a mapping merges key
by key into params.yaml; anything else replaces). The export's names are the inverse of those
params (`exports`), so the two cannot disagree.

`simulate.profile` in params.yaml picks the profile the simulate stage writes; the tests run
`dvc repro` on each, and docs/your-data.md points here for worked examples.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import pyarrow as pa

from pipeline.data.contract import TABLES
from pipeline.stages.simulate.company import Company, demo_company, with_unassigned_accounts
from pipeline.stages.simulate.config import SimulationConfig
from pipeline.stages.simulate.event_log import EVENT_TYPES
from pipeline.stages.simulate.minimal import minimal_company
from pipeline.stages.simulate.plg import SLA_POLICY, plg_company

__all__ = [
    "COMPANY_PROFILES",
    "DEMO",
    "MINIMAL",
    "OTHER_VOCABULARY",
    "PLG_MONTHLY",
    "CompanyProfile",
    "company_profile",
]

_TIMESTAMP = pa.timestamp("us", tz="UTC")


@dataclass(frozen=True)
class CompanyProfile:
    """One simulated company's shape: what it imitates, its export, and the params it needs.

    ``tables`` maps each contract table the export has to the contract columns it holds, in
    the export's order; ``extra_columns`` adds export-only columns (their Arrow types), which
    the params leave unmapped, so ingest ignores them. ``params`` are nested params.yaml
    overrides; the export's table, column and value names are their inverse.
    """

    name: str
    doc: str
    tables: Mapping[str, tuple[str, ...]]
    build: Callable[[SimulationConfig], Company] = field(repr=False)
    params: Mapping[str, Any] = field(default_factory=dict)
    extra_columns: Mapping[str, Mapping[str, pa.DataType]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for table, columns in self.tables.items():
            unknown = set(columns) - set(TABLES[table].column_names)
            assert not unknown, f"{self.name}: {table} has no contract columns {unknown}"

    def with_params(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """``params`` (a parsed params.yaml) with this profile's overrides merged in: a new
        dict, nothing shared with either."""
        return _merged(params, self.params)

    @property
    def raw_tables(self) -> dict[str, str]:
        """The file (or part folder) name of each contract table in the raw directory."""
        table_map = self.params.get("ingest", {}).get("table_map", {})
        return {table: table_map.get(table, table) for table in self.tables}


def _merged(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(dict(base))
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _contract_columns(table: str, *, without: tuple[str, ...] = ()) -> tuple[str, ...]:
    return tuple(c for c in TABLES[table].column_names if c not in without)


def _other_vocabulary_company(config: SimulationConfig) -> Company:
    """The demo company, with some accounts unassigned (no CSM, or one who left)."""
    return with_unassigned_accounts(
        demo_company(config), config, no_csm_share=0.06, unknown_csm_share=0.02
    )


_DEMO_TABLES = (
    "csms",
    "accounts",
    "contracts",
    "users",
    "usage_events",
    "trainings",
    "support_tickets",
    "nps_responses",
    "csm_touchpoints",
)

DEMO = CompanyProfile(
    name="demo",
    doc=(
        "The demo: every table the data contract had before satisfaction_responses and "
        "account_attributes (csms, accounts, contracts, users, usage_events, trainings, "
        "support_tickets, nps_responses, csm_touchpoints), under the contract's own table, "
        "column and value names, usage_events without a value. It imitates no export: it is "
        "the contract itself, and params.yaml is written for it (no overrides)."
    ),
    tables={
        table: _contract_columns(table, without=("value",) if table == "usage_events" else ())
        for table in _DEMO_TABLES
    },
    build=demo_company,
)

PLG_MONTHLY = CompanyProfile(
    name="plg_monthly",
    doc=(
        "A product-led SaaS on monthly billing, exported from a Stripe-like billing system, a "
        "product-analytics tool and a Zendesk-like help desk. Raw tables: customers (no segment, "
        "no signup date; small customers have no CSM, some name a CSM who left), subscriptions "
        "(one open-ended monthly subscription per customer: cancel_at empty while it runs, else "
        "the billing date ending the period in which the customer cancelled; canceled_at, the "
        "click, is left unmapped; arr is 12 x the monthly price), events (account-level: no "
        "user ids, product areas dashboards, notebooks, alerts, exports, connectors, "
        "workspace_admin, actions view/create/share/export/invite/error, minutes as the value), "
        "tickets (no SLA targets: the help desk's policy by priority is in the params), "
        "csat_responses (CSAT 1-5, after tickets and from an in-app pulse) and csms. No users, "
        "trainings, NPS or CSM touchpoints. Churn is decided monthly, on usage volume, active "
        "days and event mix, tickets and errors, CSAT and onboarding."
    ),
    tables={
        "csms": _contract_columns("csms"),
        "accounts": ("account_id", "account_name", "region", "csm_id"),
        "contracts": _contract_columns("contracts"),
        "usage_events": ("account_id", "occurred_at", "module", "event_type", "count", "value"),
        "support_tickets": (
            "ticket_id",
            "account_id",
            "priority",
            "opened_at",
            "first_response_at",
            "resolved_at",
            "escalated",
        ),
        "satisfaction_responses": _contract_columns("satisfaction_responses"),
    },
    extra_columns={"contracts": {"canceled_at": _TIMESTAMP}},
    build=plg_company,
    params={
        "ingest": {
            "table_map": {
                "accounts": "customers",
                "contracts": "subscriptions",
                "usage_events": "events",
                "support_tickets": "tickets",
                "satisfaction_responses": "csat_responses",
            },
            "column_map": {
                "accounts": {"customer_id": "account_id", "company": "account_name"},
                "contracts": {
                    "subscription_id": "contract_id",
                    "customer_id": "account_id",
                    "started_on": "start_date",
                    "cancel_at": "end_date",
                    "quantity": "seats",
                },
                "usage_events": {
                    "customer_id": "account_id",
                    "timestamp": "occurred_at",
                    "product_area": "module",
                    "action": "event_type",
                    "events": "count",
                    "minutes": "value",
                },
                "support_tickets": {
                    "id": "ticket_id",
                    "organization_id": "account_id",
                    "created_at": "opened_at",
                    "first_reply_at": "first_response_at",
                    "solved_at": "resolved_at",
                },
                "satisfaction_responses": {
                    "organization_id": "account_id",
                    "requester_id": "user_id",
                    "created_at": "responded_at",
                    "rating": "score",
                },
            },
            "value_map": {"satisfaction_responses": {"survey": {"CSAT": "csat"}}},
            "segment_tiers": {"by": "seats", "mid_market": 10, "enterprise": 50},
            "sla_policy": SLA_POLICY,
            "billing_period_months": 1,
        },
        "features": {
            # monthly terms: a label looks at the next billing date, not a year ahead, and
            # weekly snapshots see each billing decision from four or five weeks out
            "label_horizon_days": 35,
            "snapshot_cadence": "weekly",
            "advanced_modules": None,
            "event_types": list(EVENT_TYPES),
        },
        # a few hundred customers cancel a handful a month: four months each (of weekly rows)
        # hold the churned rows early stopping and calibration need, and leave years to train
        "train": {"test_months": 4, "valid_months": 4},
        # a warning two months ahead of a monthly renewal cannot exist
        "backtest": {"lead_days": 14},
    },
)

MINIMAL = CompanyProfile(
    name="minimal",
    doc=(
        "The least a company can export: the required tables (accounts with id, segment and "
        "signup date; contracts without a plan; usage_events with user ids but no event types "
        "and no users table) plus account_attributes (employees, a number that changes over "
        "time; acquisition channel, a category; discount_pct, a number; plan_tier, a category "
        "that changes with upgrades and downgrades), in the contract's names. No csms table "
        "and no csm_id column: every account is unassigned. Churn depends on usage, onboarding "
        "and the attributes."
    ),
    tables={
        "accounts": ("account_id", "segment", "created_at"),
        "contracts": _contract_columns("contracts", without=("plan",)),
        "usage_events": ("account_id", "user_id", "occurred_at", "module", "count"),
        "account_attributes": _contract_columns("account_attributes"),
    },
    build=minimal_company,
    params={
        "features": {
            "advanced_modules": None,
            "attributes": {
                "employees": "number",
                "channel": "category",
                "discount_pct": "number",
                "plan_tier": "category",
            },
        },
    },
)

OTHER_VOCABULARY = CompanyProfile(
    name="other_vocabulary",
    doc=(
        "A sales-led company whose CRM and help desk speak their own vocabulary: every table "
        "the demo has, renamed where such systems differ. Raw tables: csms; accounts "
        "(company_name, owner_id for the CSM, segments SMB/Mid-Market/Enterprise; some accounts "
        "have no owner, a few an owner who left); contracts; users (roles "
        "Admin/Standard/Read-only); usage_events; trainings; tickets (severity P1-P4 instead "
        "of a priority); nps_responses; activities (the CSM touchpoints, activity_type "
        "Call/Onsite/Business Review/Executive Sync). Churn as in the demo: the same company "
        "in other words."
    ),
    tables=DEMO.tables,
    build=_other_vocabulary_company,
    params={
        "ingest": {
            "table_map": {"support_tickets": "tickets", "csm_touchpoints": "activities"},
            "column_map": {
                "accounts": {"owner_id": "csm_id", "company_name": "account_name"},
                "support_tickets": {"severity": "priority"},
                "csm_touchpoints": {"activity_type": "kind"},
            },
            "value_map": {
                "accounts": {
                    "segment": {
                        "SMB": "smb",
                        "Mid-Market": "mid_market",
                        "Enterprise": "enterprise",
                    }
                },
                "users": {"role": {"Admin": "admin", "Standard": "member", "Read-only": "viewer"}},
                "support_tickets": {
                    "priority": {"P1": "urgent", "P2": "high", "P3": "normal", "P4": "low"}
                },
                "csm_touchpoints": {
                    "kind": {
                        "Call": "call",
                        "Onsite": "meeting",
                        "Business Review": "qbr",
                        "Executive Sync": "exec_sponsor",
                    }
                },
            },
        },
    },
)

#: Every profile by name, in the order of `simulate.profile`'s choices.
COMPANY_PROFILES: Mapping[str, CompanyProfile] = MappingProxyType(
    {p.name: p for p in (DEMO, PLG_MONTHLY, MINIMAL, OTHER_VOCABULARY)}
)


def company_profile(name: str) -> CompanyProfile:
    """The profile ``name`` (config has already checked it is one)."""
    return COMPANY_PROFILES[name]
