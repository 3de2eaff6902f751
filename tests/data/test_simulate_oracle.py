"""The point-in-time oracle: exact where the snapshot knows everything, blind to what comes
after the snapshot, unbiased for the decisions' true probability, reproducible to the byte."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from pipeline.modeling.oracle import attach_oracle, attach_pit_oracle
from pipeline.stages.simulate import SimulationConfig
from pipeline.stages.simulate import oracle as oracle_module
from pipeline.stages.simulate.attributes import attribute_decisions, simulate_attributes
from pipeline.stages.simulate.contracts import demo_decisions, simulate_contracts
from pipeline.stages.simulate.oracle import (
    DecisionSchedule,
    pit_oracle,
    pit_probabilities,
    snapshot_days,
    snapshot_grid,
)
from pipeline.stages.simulate.subscriptions import MONTHLY_DECISIONS, simulate_subscriptions
from pipeline.stages.simulate.world import PERIOD_DAYS, build_world

CONFIG = SimulationConfig(n_accounts=800, seed=5)


@pytest.fixture(scope="module")
def demo():
    world = build_world(CONFIG)
    contracts = simulate_contracts(CONFIG, world, demo_decisions)
    return world, contracts, DecisionSchedule.of_contracts(world, contracts)


def _pit(world, decide, schedule, decision, snapshot, n_paths=64, config=CONFIG):
    return pit_probabilities(
        world,
        decide,
        schedule,
        decision,
        snapshot,
        trouble_share=config.trouble_share,
        logit_shift=config.churn_logit_shift,
        n_paths=n_paths,
        seed=config.seed,
    )


def test_on_the_decision_day_it_is_the_decisions_own_probability(demo):
    """A snapshot on the decision day knows the whole window: nothing is left to draw."""
    world, contracts, schedule = demo
    every = np.arange(schedule.size)
    got = _pit(world, demo_decisions, schedule, every, schedule.decision_day, n_paths=3)
    true = contracts.probability[contracts.decided]
    assert np.abs(got - true).max() <= 1e-6


def test_the_other_companies_decision_models_are_exact_on_the_decision_day():
    config = replace(CONFIG, n_accounts=300)
    world = build_world(config)
    subs = simulate_subscriptions(config, world)
    schedule = DecisionSchedule.of_subscriptions(config, world, subs)
    got = _pit(world, MONTHLY_DECISIONS, schedule, np.arange(schedule.size), subs.decision_day)
    assert np.abs(got - subs.probability).max() <= 1e-6
    decide = attribute_decisions(simulate_attributes(config, world))
    contracts = simulate_contracts(config, world, decide)
    schedule = DecisionSchedule.of_contracts(world, contracts)
    got = _pit(world, decide, schedule, np.arange(schedule.size), schedule.decision_day)
    assert np.abs(got - contracts.probability[contracts.decided]).max() <= 1e-6


def test_it_uses_nothing_after_the_snapshot(demo):
    """Rewrite the world after day t (health of later periods, troubles starting from t on):
    the oracle at t must not move by a single bit, while the decisions themselves do."""
    world, _, schedule = demo
    t = int(np.median(schedule.decision_day))
    pending = np.flatnonzero((schedule.term_start < t) & (schedule.decision_day > t + 60))
    assert pending.size > 100
    snapshot = np.full(pending.size, t)
    before = _pit(world, demo_decisions, schedule, pending, snapshot)

    rng = np.random.default_rng(0)
    health = world.health.copy()
    later = np.arange(health.shape[1]) > (t - 1) // PERIOD_DAYS
    health[:, later] = rng.normal(-2.0, 1.0, (health.shape[0], later.sum())).astype(np.float32)
    not_started = world.trouble_onset_day > t - 1
    trouble = np.where(not_started, 3, world.trouble).astype(np.int8)  # all start at t + 10
    onset = np.where(not_started, t + 10, world.trouble_onset_day)
    rewritten = replace(world, health=health, trouble=trouble, trouble_onset_day=onset)
    after = _pit(rewritten, demo_decisions, schedule, pending, snapshot)
    assert np.array_equal(before, after)

    acct, day = schedule.account[pending], schedule.decision_day[pending]
    args = (schedule.tenure[pending], schedule.term[pending], schedule.first_term[pending])
    true_before, _ = demo_decisions(world, acct, day, *args)
    true_after, _ = demo_decisions(rewritten, acct, day, *args)
    assert np.abs(true_before - true_after).mean() > 0.1, "the rewrite must matter to the truth"


def test_it_is_unbiased_and_no_better_than_the_full_information_oracle(demo):
    """E[true probability | snapshot] = PIT probability: over many snapshots the means agree
    (law of total expectation), and knowing less it cannot rank renewals better than the
    probability the decisions were drawn with."""
    from sklearn.metrics import roc_auc_score

    world, contracts, schedule = demo
    decision, snapshot = snapshot_grid(
        schedule, snapshot_days(CONFIG.start_date, world.n_days, "monthly")
    )
    far = schedule.decision_day[decision] - snapshot > 60  # something left to draw
    decision, snapshot = decision[far], snapshot[far]
    pit = _pit(world, demo_decisions, schedule, decision, snapshot)
    true = contracts.probability[contracts.decided][decision]
    churned = contracts.churned[contracts.decided][decision]
    assert abs(pit.mean() - true.mean()) < 0.005, (pit.mean(), true.mean())
    assert roc_auc_score(churned, pit) < roc_auc_score(churned, true)
    assert roc_auc_score(churned, pit) > 0.7, "it must still know much (slow health walk)"


def test_snapshot_grid_keeps_each_renewals_own_term():
    schedule = DecisionSchedule(
        account=np.array([0, 0, 1]),
        term_start=np.array([0, 40, 10]),
        decision_day=np.array([40, 100, 10]),
        tenure=np.array([40, 100, 10]),
        term=np.array([1, 2, 1]),
        first_term=np.array([True, False, True]),
    )
    decision, day = snapshot_grid(schedule, np.array([0, 10, 20, 40, 50, 100, 130]))
    # start < snapshot <= decision: (10, 20, 40) for the first, (50, 100) for the second, none
    # for a term that starts and ends on day 10
    assert decision.tolist() == [0, 0, 0, 1, 1]
    assert day.tolist() == [10, 20, 40, 50, 100]
    with pytest.raises(ValueError, match="cadence"):
        snapshot_days(CONFIG.start_date, 100, "daily")


def test_the_same_config_gives_the_same_bytes_whatever_the_chunk(demo, monkeypatch):
    world, _, schedule = demo
    ids = np.char.add("A", np.arange(world.n_accounts).astype(str))
    first = pit_oracle(CONFIG, world, demo_decisions, schedule, ids, n_paths=20)
    monkeypatch.setattr(oracle_module, "_CHUNK_ROWS", 997)
    second = pit_oracle(CONFIG, world, demo_decisions, schedule, ids, n_paths=20)
    pd.testing.assert_frame_equal(first, second)
    assert first["pit_churn_probability"].between(0, 1).all()
    assert (first["snapshot_date"] <= first["renewal_date"]).all()


def test_oracles_join_on_the_test_rows_keys_and_leave_unknown_rows_empty():
    day = pd.Timestamp("2025-03-01").date()
    renewal = pd.Timestamp("2025-06-01").date()
    test = pd.DataFrame(
        {
            "account_id": pd.array(["a", "b", "c"], dtype="string"),
            "snapshot_date": pd.to_datetime([day, day, day]),
            "renewal_date": [renewal, renewal, renewal],
        },
        index=[7, 8, 9],
    )
    pit = pd.DataFrame(
        {
            "account_id": ["a", "b", "b"],
            "snapshot_date": [day, day, pd.Timestamp("2025-04-01").date()],
            "renewal_date": [renewal, renewal, renewal],
            "pit_churn_probability": [0.1, 0.2, 0.3],
        }
    )
    got = attach_pit_oracle(test, pit)
    assert got.index.tolist() == [7, 8, 9]
    assert got.iloc[:2].tolist() == [0.1, 0.2] and np.isnan(got.iloc[2])
    truth = pd.DataFrame(
        {"account_id": ["c"], "decision_date": [renewal], "true_churn_probability": [0.9]}
    )
    full = attach_oracle(test, truth)
    assert np.isnan(full.iloc[0]) and full.iloc[2] == 0.9
