"""Demo-data simulator: a synthetic B2B SaaS company with planted, learnable churn drivers.

Why a simulator: the pipeline needs raw tables that look like a real customer-success data
warehouse (accounts, contracts, users, product usage, trainings, support, NPS, CSM activity)
*and* a ground truth to check that the model recovers what was planted. Real data would give
the former but never the latter.

How it works, in one paragraph: every account gets a latent health that follows a slow
mean-reverting random walk over 30-day periods, and possibly one planted *trouble* (low usage
depth, low training, SLA breaches, poor onboarding, low sentiment, no executive contact). Six
latent *dimensions* (usage, training, support, sentiment, relationship, onboarding) are mostly
health plus a little account-specific texture, minus a large shift for the dimension hit by the
trouble and a smaller one for the others (a troubled account disengages as a whole). Every
observable table is drawn from its dimension at the time of the event, and every renewal
decision draws churn with a probability that is a sigmoid of the same dimensions averaged over
the 90 days before the decision, plus the segment, term, tenure and whether it is the first
renewal; nothing else. So the signal the model must find is in the data, in the window a
point-in-time feature builder looks at.

Why it is built to be learnable: the ground truth's ``true_churn_probability`` is the oracle a
model is measured against, so it must be the best prediction the data allows, not one that
knows hidden things. Hence (1) no noise term inside the probability: the only randomness of a
decision is the Bernoulli draw of the outcome; (2) the hidden, account-specific part of each
dimension is small next to what many observations share (health, troubles), because a small
account yields only a handful of tickets, NPS answers or CSM calls per quarter; (3) each
dimension drives its observables steeply enough to stand out of their sampling noise, and
stays visible (not floored at zero) under a trouble; (4) drivers a low-touch segment barely
shows (SMB support and CSM relationship) weigh little on that segment's churn.

The package, one job per module, each importing only the ones listed before it:
- `vocabulary`: categorical values and names (the contract's vocabularies, the demo's own);
- `config`: `SimulationConfig`, built from the typed config (defaults live there);
- `streams`: one independent random stream per purpose;
- `segments`: the business facts each segment differs in;
- `world`: the latent world (health, troubles, dimensions) and its clock;
- `contracts`: contract terms and the planted renewal decisions;
- `columns`: numpy codes and offsets to pandas columns;
- `people`: users and their hidden traits, trainings, CSMs;
- `service`: support tickets, CSM touchpoints, NPS;
- `entities`: `simulate_entities`, every table but usage plus the ground truth, as frames;
- `usage`: `iter_usage_event_chunks`, usage events chunk by chunk of accounts;
- `company`: `Company`, a simulated company in the contract's shape; the demo's;
- `attributes`: account attributes over time and the churn they plant;
- `minimal`: the `minimal` company (required tables plus attributes, no CSMs);
- `subscriptions`: monthly open-ended subscriptions and their monthly decisions;
- `event_log`: an account-level event log with event types and values;
- `plg`: the `plg_monthly` company (monthly billing, no users, CSAT, tickets without SLAs);
- `profiles`: `CompanyProfile`, one declaration per profile (the demo, plg_monthly, minimal,
  other_vocabulary): what it imitates, its export's tables, and the params it needs;
- `exports`: a profile's export (its own table, column and value names) and its schemas;
- `realism`: `realism_summary`, churn levels as a CS team reports them;
- `tables`: schemas, Arrow conversion, `write_simulation`;
- here: `run_simulate`, the stage's edge (config in, company written or switched off).

The demo (``simulate.profile: demo``) is the company described above; the other profiles
reuse its world (health, troubles, dimensions) and plant churn on what their own tables show
(see `profiles`).

Pure core (``simulate_entities``, ``iter_usage_event_chunks``, each profile's ``build``,
``realism_summary``) and I/O edges (``write_simulation``, ``run_simulate``). ``usage_events``
is generated and written chunk by chunk of accounts so that 100M rows need bounded memory.
"""

from __future__ import annotations

import logging
from pathlib import Path

from pipeline.core.atomic import atomic_path
from pipeline.core.config import Config
from pipeline.core.layout import DEMO_MARKER
from pipeline.stages.simulate.config import SimulationConfig
from pipeline.stages.simulate.entities import simulate_entities
from pipeline.stages.simulate.profiles import COMPANY_PROFILES, CompanyProfile, company_profile
from pipeline.stages.simulate.realism import realism_summary
from pipeline.stages.simulate.tables import (
    RAW_TABLE_SCHEMAS,
    RAW_TABLES,
    TRUTH_TABLE_SCHEMAS,
    check_separate_dirs,
    write_simulation,
)
from pipeline.stages.simulate.usage import iter_usage_event_chunks
from pipeline.stages.simulate.vocabulary import (
    MODULE_EVENT_TYPES,
    MODULE_TIERS,
    MODULES,
    SEGMENTS,
    TROUBLES,
)

logger = logging.getLogger(__name__)

__all__ = [
    "COMPANY_PROFILES",
    "MODULES",
    "MODULE_EVENT_TYPES",
    "MODULE_TIERS",
    "RAW_TABLES",
    "RAW_TABLE_SCHEMAS",
    "SEGMENTS",
    "TROUBLES",
    "TRUTH_TABLE_SCHEMAS",
    "CompanyProfile",
    "SimulationConfig",
    "company_profile",
    "iter_usage_event_chunks",
    "realism_summary",
    "run_simulate",
    "simulate_entities",
    "write_simulation",
]


def run_simulate(
    config: Config,
    *,
    raw_dir: Path,
    truth_dir: Path,
    n_accounts: int | None = None,
    seed: int | None = None,
    force: bool = False,
    progress: bool = False,
) -> dict[str, int] | None:
    """Generate the company params.yaml describes (simulate.profile), or switch the demo off.

    The demo is generated only while ingest.source is the demo directory (``raw_dir``), so that
    `dvc repro` on a user's own data never mixes demo rows into it. Otherwise (unless ``force``)
    both directories are replaced by one holding only a DEMO_MARKER file that says why (DVC
    still finds its outputs, and nobody mistakes stale demo rows for data), and None is
    returned. ``n_accounts`` and ``seed`` override the config (the CLI's options). Returns the
    rows written per table. Raises `ConfigError` for an invalid setting or for directories
    that overlap.
    """
    raw_dir, truth_dir = Path(raw_dir), Path(truth_dir)
    check_separate_dirs(raw_dir, truth_dir)
    source = config.ingest.source
    if not force and Path(source).resolve() != raw_dir.resolve():
        for target in (raw_dir, truth_dir):
            _write_demo_marker(target, source)
        logger.debug("demo switched off: ingest.source is %s, not %s", source, raw_dir)
        return None
    simulation = SimulationConfig.from_config(config, n_accounts=n_accounts, seed=seed)
    return write_simulation(simulation, raw_dir, truth_dir, progress=progress)


def _write_demo_marker(target: Path, source: str) -> None:
    """Replace ``target`` (atomically, as a whole) by a directory holding only the marker."""
    with atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / DEMO_MARKER).write_text(
            f"Demo data not generated: ingest.source in params.yaml is {source}.\n"
            "The pipeline reads that source, so the demo company stays off; run "
            "`churn simulate --force` to generate it anyway.\n"
        )
