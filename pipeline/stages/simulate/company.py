"""`Company`: a simulated company in the data contract's shape, before its export renames it.

Every profile's generator returns one: its whole tables under the contract's table names, with
the contract's column names and values (plus any export-only column the profile writes, such
as a cancellation date the params leave unmapped), its usage events as a generator of chunks
(they do not fit in memory at scale), and its ground truth. Which of these columns a profile's
export has, and under which names and values, is the profile's business (`profiles`,
`exports`). Here: the demo company, and the reassignment that leaves some accounts without a
known CSM.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from pipeline.stages.simulate.columns import str_column
from pipeline.stages.simulate.config import SimulationConfig
from pipeline.stages.simulate.entities import simulate_entities
from pipeline.stages.simulate.streams import random_stream
from pipeline.stages.simulate.usage import iter_usage_event_chunks

#: The ground-truth tables every company has (see `tables.TRUTH_TABLE_SCHEMAS`).
TRUTH_TABLES = ("renewal_decisions", "accounts", "pit_oracle")


@dataclass(frozen=True)
class Company:
    """A simulated company: contract-shaped tables, usage chunks (one pass) and the truth."""

    tables: Mapping[str, pd.DataFrame]
    usage_events: Iterator[pd.DataFrame]
    truth: Mapping[str, pd.DataFrame]


def company_from_entities(
    entities: Mapping[str, pd.DataFrame], usage_events: Iterator[pd.DataFrame]
) -> Company:
    """A `Company` from `simulate_entities`' frames (truth under ``truth_<name>``)."""
    return Company(
        tables={k: v for k, v in entities.items() if not k.startswith("truth_")},
        usage_events=usage_events,
        truth={name: entities[f"truth_{name}"] for name in TRUTH_TABLES},
    )


def demo_company(config: SimulationConfig) -> Company:
    """The demo company: every table the demo has ever written, exactly as it wrote them."""
    entities = simulate_entities(config)
    return company_from_entities(entities, iter_usage_event_chunks(config, entities))


def with_unassigned_accounts(
    company: Company,
    config: SimulationConfig,
    *,
    no_csm_share: float,
    unknown_csm_share: float,
    departed_csms: int = 3,
) -> Company:
    """The company with some accounts' owner blanked and some owned by CSMs who left.

    ``no_csm_share`` of the accounts get no csm_id (nobody was assigned); ``unknown_csm_share``
    get the id of one of ``departed_csms`` CSMs missing from the csms table (they left, the
    CRM still names them). Both kinds land on the unassigned list; churn does not change (no
    decision depends on who the CSM is).
    """
    accounts = company.tables["accounts"]
    rng = random_stream(config.seed, "assignment")
    u = rng.random(len(accounts))
    departed = rng.integers(0, departed_csms, len(accounts))
    n_known = len(company.tables["csms"])
    departed_ids = [f"CSM{n_known + 1 + k:03d}" for k in range(departed_csms)]
    owner = accounts["csm_id"].to_numpy(dtype=object, na_value=None).copy()
    owner[u < no_csm_share] = None
    unknown = (u >= no_csm_share) & (u < no_csm_share + unknown_csm_share)
    owner[unknown] = np.asarray(departed_ids, dtype=object)[departed[unknown]]
    accounts = accounts.assign(csm_id=str_column(owner))
    return replace(company, tables={**company.tables, "accounts": accounts})
