"""The `minimal` company: only the required tables plus account attributes, and no CSMs.

The demo's world, contracts, users and product usage, with two differences that matter: churn
is planted on what this company's tables show (usage, onboarding as early usage shows it, and
the attributes of `attributes`), and its export has no users, tickets, trainings, surveys or
CSM tables (the users exist, so the event log names them, but no table lists them).
"""

from __future__ import annotations

import numpy as np

from pipeline.stages.simulate.attributes import (
    attribute_decisions,
    attribute_frame,
    simulate_attributes,
)
from pipeline.stages.simulate.company import Company, company_from_entities
from pipeline.stages.simulate.config import SimulationConfig
from pipeline.stages.simulate.entities import simulate_entities
from pipeline.stages.simulate.usage import iter_usage_event_chunks
from pipeline.stages.simulate.world import DAY_US, build_world


def minimal_company(config: SimulationConfig) -> Company:
    """The minimal company: accounts, contracts, usage events and account attributes (the
    other frames are simulated for the usage generator and left out of the export)."""
    world = build_world(config)
    history = simulate_attributes(config, world)
    entities = simulate_entities(config, world=world, decide=attribute_decisions(history))
    truth = entities["truth_accounts"]
    churned_at = truth["churned_at"].dt.tz_convert(None).to_numpy("datetime64[us]")
    start = np.datetime64(config.start_date, "us")
    end_us = np.where(
        np.isnat(churned_at), world.n_days * DAY_US, (churned_at - start).astype(np.int64)
    )
    attributes = attribute_frame(history, entities["accounts"]["account_id"], end_us, config)
    company = company_from_entities(entities, iter_usage_event_chunks(config, entities))
    return Company(
        tables={**company.tables, "account_attributes": attributes},
        usage_events=company.usage_events,
        truth=company.truth,
    )
