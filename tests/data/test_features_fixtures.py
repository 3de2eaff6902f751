"""Feature values on the hand-made fixture, each worked out by hand from the documented semantics.

The semantics (features/base.py and the family modules in features/families/): a snapshot t is
the instant t 00:00 UTC; a feature reads rows strictly before t; the last w days are
[t - w days, t); trends compare that window with [t - 2w days, t - w days). The expected
values below are literals with the arithmetic in a comment; none was copied from the code's
output.

Main snapshot t = 2024-06-01. Its window edges: t - 30d = 2024-05-02, t - 60d = 2024-04-02,
t - 90d = 2024-03-03, t - 180d = 2023-12-04. The rows are in tests/feature_fixtures.py.
"""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest

from features.registry import build_registry
from tests.feature_fixtures import (
    ACCOUNTS,
    DATES,
    LATER_SNAPSHOT,
    MATURE,
    NO_USAGE,
    SETTINGS,
    SNAPSHOT,
    SUPPORT,
    YOUNG,
    compute_features,
    fixture_tables,
)

# Missing (NULL) is written None: the feature is undefined, which is not the same as 0.

# An account without tickets: counts are 0, ratios over no deadlines and medians are missing.
NO_TICKETS = {
    f"{name}_{w}d": value
    for w in SETTINGS.windows
    for name, value in {
        "tickets_opened": 0,
        "sla_breaches": 0,
        "first_response_breaches": 0,
        "resolution_breaches": 0,
        "sla_breach_rate": None,  # 0 breaches / 0 deadlines
        "weighted_sla_breaches": 0.0,
        "sla_breaches_trend": 0,  # 0 - 0
        "escalations": 0,
        "median_resolution_hours": None,  # no ticket resolved
    }.items()
} | {"tickets_open_past_sla": 0}

NO_NPS = {
    "nps_mean_30d": None,
    "nps_trend_30d": None,
    "nps_mean_90d": None,
    "nps_trend_90d": None,
    "latest_nps": None,
    "nps_detractor": None,  # unknown, not "not a detractor"
}

NO_SATISFACTION = {
    "csat_mean_30d": None,
    "ces_mean_30d": None,
    "csat_mean_90d": None,
    "ces_mean_90d": None,
    "latest_csat": None,
    "latest_ces": None,
}

EXPECTED: dict[str, dict[str, dict[str, object]]] = {
    "usage": {
        # 30d [05-02, 06-01): M1 05-02T00:00Z (exactly t - 30d: in) dashboard x4; M2 05-20
        #   reports x3; M1 2024-06-01T00:30+02:00 = 05-31T22:30Z automation x2 (in).
        #   Out: M2 2024-05-31T23:30-02:00 = 06-01T01:30Z api x7, M2 06-01T00:00Z analytics x5
        #   (at/after t), and M3 05-01T23:59:59Z api x1 (t - 31d).
        # prev 30d [04-02, 05-02): M3 04-10 and 05-01 -> {M3}.
        # 90d [03-03, 06-01): the 30d rows + M3 04-10 dashboard x2 + M3 05-01 api x1.
        # prev 90d [12-04, 03-03): M3 02-15, M4 02-20 (deactivated later; active then).
        MATURE: {
            "active_users_30d": 2,  # M1, M2
            "active_user_share_30d": 0.2,  # 2 / 10 seats
            "distinct_modules_30d": 3,  # dashboard, reports, automation
            "advanced_usage_share_30d": 2 / 9,  # automation 2 / (4 + 3 + 2)
            "events_per_active_user_30d": 4.5,  # 9 / 2
            "active_users_trend_30d": 1.0,  # (2 - 1) / 1
            "active_users_90d": 3,  # M1, M2, M3
            "active_user_share_90d": 0.3,  # 3 / 10
            "distinct_modules_90d": 4,  # + api
            "advanced_usage_share_90d": 0.25,  # (2 automation + 1 api) / (9 + 2 + 1)
            "events_per_active_user_90d": 4.0,  # 12 / 3
            "active_users_trend_90d": 0.5,  # (3 - 2) / 2
            "stickiness_30d": 0.05,  # user-days M1 05-02, M1 05-31, M2 05-20 = 3 / (2 * 30)
            "days_since_last_activity": 1.0,  # last active day 05-31
            # days 05-02 (exactly t - 30d: in), 05-20, 05-31; 06-01 (at t) is out
            "active_days_30d": 3,
            "events_30d": 9,  # 4 + 3 + 2
            "events_trend_30d": 2.0,  # prev 30d: 04-10 x2 + 05-01 x1 = 3; (9 - 3) / 3
            "active_days_90d": 5,  # + 04-10, 05-01
            "events_90d": 12,  # 9 + 2 + 1
            "events_trend_90d": 5.0,  # prev 90d: 02-15 x1 + 02-20 x1 = 2; (12 - 2) / 2
        },
        NO_USAGE: {
            "active_users_30d": 0,
            "active_user_share_30d": 0.0,  # 0 / 5 seats
            "distinct_modules_30d": 0,
            "advanced_usage_share_30d": None,  # 0 / 0 events
            "events_per_active_user_30d": None,  # 0 / 0 users
            "active_users_trend_30d": 0.0,  # (0 - 0) / max(0, 1)
            "active_users_90d": 0,
            "active_user_share_90d": 0.0,
            "distinct_modules_90d": 0,
            "advanced_usage_share_90d": None,
            "events_per_active_user_90d": None,
            "active_users_trend_90d": 0.0,
            "stickiness_30d": None,  # 0 user-days / (0 * 30)
            "days_since_last_activity": 181.0,  # cap: 2 * 90 + 1
            "active_days_30d": 0,
            "events_30d": 0,
            "events_trend_30d": 0.0,  # (0 - 0) / max(0, 1)
            "active_days_90d": 0,
            "events_90d": 0,
            "events_trend_90d": 0.0,
        },
        # 30d: Y2 05-10 analytics x3, Y3 05-25 dashboard x1, Y2 05-25 reports x4,
        #   Y3 05-26 dashboard x1. prev 30d: Y1 04-23 dashboard x2. Y4 06-15 is after t.
        YOUNG: {
            "active_users_30d": 2,  # Y2, Y3
            "active_user_share_30d": 0.1,  # 2 / 20
            "distinct_modules_30d": 3,  # analytics, dashboard, reports
            "advanced_usage_share_30d": 3 / 9,  # analytics 3 / (3 + 1 + 4 + 1)
            "events_per_active_user_30d": 4.5,  # 9 / 2
            "active_users_trend_30d": 1.0,  # (2 - 1) / 1
            "active_users_90d": 3,  # Y1, Y2, Y3
            "active_user_share_90d": 0.15,  # 3 / 20
            "distinct_modules_90d": 3,
            "advanced_usage_share_90d": 3 / 11,  # 3 / (9 + 2)
            "events_per_active_user_90d": 11 / 3,
            "active_users_trend_90d": 3.0,  # (3 - 0) / max(0, 1)
            "stickiness_30d": 4 / 60,  # Y2 05-10, Y2 05-25, Y3 05-25, Y3 05-26 / (2 * 30)
            "days_since_last_activity": 6.0,  # 05-26 -> 06-01
            "active_days_30d": 3,  # 05-10, 05-25 (two users, one day), 05-26
            "events_30d": 9,  # 3 + 1 + 4 + 1
            "events_trend_30d": 3.5,  # prev 30d: 04-23 x2; (9 - 2) / 2
            "active_days_90d": 4,  # + 04-23
            "events_90d": 11,
            "events_trend_90d": 11.0,  # nothing in the prev 90d: (11 - 0) / max(0, 1)
        },
        # 30d: S1 05-15 api x10. 90d: + S2 03-10 dashboard x5. Nothing in either prev window.
        SUPPORT: {
            "active_users_30d": 1,
            "active_user_share_30d": 0.02,  # 1 / 50
            "distinct_modules_30d": 1,
            "advanced_usage_share_30d": 1.0,  # 10 / 10
            "events_per_active_user_30d": 10.0,
            "active_users_trend_30d": 1.0,  # (1 - 0) / max(0, 1)
            "active_users_90d": 2,
            "active_user_share_90d": 0.04,  # 2 / 50
            "distinct_modules_90d": 2,
            "advanced_usage_share_90d": 10 / 15,
            "events_per_active_user_90d": 7.5,  # 15 / 2
            "active_users_trend_90d": 2.0,  # (2 - 0) / max(0, 1)
            "stickiness_30d": 1 / 30,  # 1 user-day / (1 * 30)
            "days_since_last_activity": 17.0,  # 05-15 -> 06-01
            "active_days_30d": 1,  # 05-15
            "events_30d": 10,
            "events_trend_30d": 10.0,  # (10 - 0) / max(0, 1)
            "active_days_90d": 2,  # 03-10, 05-15
            "events_90d": 15,
            "events_trend_90d": 15.0,  # 2023-07-01 is before the prev 90d (from 12-04)
        },
    },
    "training": {
        # Completions before t: M4 2023-10-05 (80), M1 04-15T12:00 (90), M2 05-10T12:00 (70).
        # M3 completes 06-05 (after t); M5 enrolled, never completed.
        MATURE: {
            "trainings_completed_30d": 1,  # M2 05-10
            "trainings_completed_90d": 2,  # M1 04-15, M2 05-10
            "trained_user_share": 2 / 3,  # active in 90d: M1, M2, M3; trained by t: M1, M2
            "mean_training_score": 80.0,  # (80 + 90 + 70) / 3
            # admins with a login at t: M1 (trained), M5 (not completed); M4 deactivated 03-01
            "admins_trained": 1,
            "days_since_last_training": 21.5,  # 05-10T12:00 -> 06-01T00:00
        },
        NO_USAGE: {
            "trainings_completed_30d": 0,
            "trainings_completed_90d": 0,
            "trained_user_share": None,  # no active users
            "mean_training_score": None,
            "admins_trained": 0,  # N1 never trained
            "days_since_last_training": None,
        },
        # Y1 completed 05-20T06:00 (85); Y2 completes 06-10 (after t).
        YOUNG: {
            "trainings_completed_30d": 1,
            "trainings_completed_90d": 1,
            "trained_user_share": 1 / 3,  # active Y1, Y2, Y3; trained by t: Y1
            "mean_training_score": 85.0,
            "admins_trained": 1,  # Y1
            "days_since_last_training": 11.75,  # 05-20T06:00 -> 06-01T00:00 = 11 d 18 h
        },
        SUPPORT: {
            "trainings_completed_30d": 0,
            "trainings_completed_90d": 0,
            "trained_user_share": 0.0,  # 0 of 2 active users
            "mean_training_score": None,
            "admins_trained": 0,
            "days_since_last_training": None,
        },
    },
    "support": {
        MATURE: NO_TICKETS,
        NO_USAGE: NO_TICKETS,
        YOUNG: NO_TICKETS,
        # Deadlines (opened + SLA hours), breached when not met at or before them:
        #   T1 high:   response due 05-10T12 (answered 14:00: breach), resolution 05-12T08 (met)
        #   T2 urgent: response due 05-20T01 (never: breach), resolution 05-23T00 (open: breach)
        #   T3 normal: response due 05-31T22 (answered 06-01T09, after t: breach);
        #              resolution due 06-01T20 (>= t: not a deadline yet)
        #   T4 low:    response due 06-01T07, resolution 06-02T23 (both >= t: nothing yet)
        #   T5 high:   response due 04-20T13 (met), resolution 04-21T09 (resolved 04-25: breach)
        #   T6 normal: response due 02-01T13 (met), resolution 02-02T09 (resolved 02-05: breach)
        # Weights: low 1, normal 2, high 3, urgent 5.
        SUPPORT: {
            "tickets_opened_30d": 4,  # T1, T2, T3, T4
            "sla_breaches_30d": 4,  # response T1, T2, T3 + resolution T2
            "first_response_breaches_30d": 3,
            "resolution_breaches_30d": 1,
            "sla_breach_rate_30d": 0.8,  # 4 / (3 response + 2 resolution deadlines)
            "weighted_sla_breaches_30d": 15.0,  # 3 + 5 + 2 + 5
            "sla_breaches_trend_30d": 3,  # 4 - 1 (T5 resolution, 04-21, in [04-02, 05-02))
            "escalations_30d": 0,  # only T1 resolved in the window, not escalated
            "median_resolution_hours_30d": 24.0,  # T1: 05-10T08 -> 05-11T08
            "tickets_opened_90d": 5,  # + T5
            "sla_breaches_90d": 5,  # + T5 resolution
            "first_response_breaches_90d": 3,
            "resolution_breaches_90d": 2,
            "sla_breach_rate_90d": 5 / 7,  # 5 / (4 response + 3 resolution deadlines)
            "weighted_sla_breaches_90d": 18.0,  # 15 + 3
            "sla_breaches_trend_90d": 4,  # 5 - 1 (T6 resolution, 02-02, in [12-04, 03-03))
            # T5 (resolved 04-25); T2 and T3 are escalated but not resolved before t
            "escalations_90d": 1,
            "median_resolution_hours_90d": 72.0,  # median(24, 120)
            "tickets_open_past_sla": 1,  # T2; T3 and T4 are open but not yet due
        },
    },
    "onboarding": {
        # Created 2022-07-10; first activity: M1 07-15 (day 5), M2 08-20 (day 41); M3 and M4
        # start in 2024. Modules in the first 90 days: dashboard, reports.
        MATURE: {
            "tenure_days": 692,  # 2022-07-10 -> 2023-07-10 = 365, -> 2024-06-01 = 327
            "in_first_90_days": 0,
            "days_to_first_value": 5.0,
            "seats_activated_30d": 0.1,  # M1 / 10 seats now
            "seats_activated_60d": 0.2,  # M1, M2 / 10
            "seats_activated_90d": 0.2,
            "onboarding_modules": 2,
            "onboarding_trainings": 0,  # first training 2023-10-05, long after day 90
        },
        NO_USAGE: {
            "tenure_days": 458,  # 2023-03-01 -> 2024-03-01 = 366, -> 06-01 = 92
            "in_first_90_days": 0,
            "days_to_first_value": None,  # never used
            "seats_activated_30d": 0.0,
            "seats_activated_60d": 0.0,
            "seats_activated_90d": 0.0,
            "onboarding_modules": 0,
            "onboarding_trainings": 0,
        },
        # Created 2024-04-22T15:00Z, 40 days before t: only days 0..39 are seen. First activity:
        # Y1 04-23 (day 1), Y2 05-10 (day 18), Y3 05-25 (day 33), Y4 06-15 (day 54, after t).
        YOUNG: {
            "tenure_days": 40,  # 04-22 -> 05-01 = 9, -> 06-01 = 31
            "in_first_90_days": 1,
            "days_to_first_value": 1.0,
            "seats_activated_30d": 0.1,  # Y1, Y2 / 20
            "seats_activated_60d": 0.15,  # Y1, Y2, Y3 / 20; Y4's day 54 is after t
            "seats_activated_90d": 0.15,
            "onboarding_modules": 3,  # dashboard, analytics, reports
            "onboarding_trainings": 1,  # Y1 05-20; Y2 06-10 is after t
        },
        # Created 2023-06-01; S1 first active 2023-07-01 = day 30, which is not in the first
        # 30 days (days 0..29); S2 first active 2024-03-10.
        SUPPORT: {
            "tenure_days": 366,  # 2023-06-01 -> 2024-06-01 (29 Feb 2024 in between)
            "in_first_90_days": 0,
            "days_to_first_value": 30.0,
            "seats_activated_30d": 0.0,
            "seats_activated_60d": 0.02,  # S1 / 50
            "seats_activated_90d": 0.02,
            "onboarding_modules": 1,  # dashboard
            "onboarding_trainings": 0,
        },
    },
    "engagement": {
        # NPS before t: 01-20 9 (prev 90d), 04-15T00:00 10 and 6 (two answers at one instant;
        # prev 30d and 90d), 05-10T12:00 4 (30d). 07-01 0 is after t.
        # Touchpoints: 05-02T00:00 call (exactly t - 30d: in), 03-15 meeting, 03-02T23:00 qbr
        # (one hour before t - 90d: out), exec sponsor 01-15T10:00 and 06-01T00:00 (at t: out).
        MATURE: {
            "touchpoints_30d": 1,
            "touchpoints_90d": 2,
            "days_since_exec_contact": 137 + 14 / 24,  # 01-15T10:00 -> 06-01T00:00
            "qbr_last_quarter": 0,
            "nps_mean_30d": 4.0,
            "nps_trend_30d": -4.0,  # 4 - (10 + 6) / 2
            "nps_mean_90d": 20 / 3,  # mean of the answers (4 + 10 + 6) / 3
            "nps_trend_90d": 20 / 3 - 9,
            "latest_nps": 4.0,
            "nps_detractor": 1,  # 4 <= 6
        },
        NO_USAGE: {
            "touchpoints_30d": 0,
            "touchpoints_90d": 0,
            "days_since_exec_contact": None,
            "qbr_last_quarter": 0,
        }
        | NO_NPS,
        # qbr 05-05T10:00; one NPS answer 05-15 (9), nothing in the prev windows.
        YOUNG: {
            "touchpoints_30d": 1,
            "touchpoints_90d": 1,
            "days_since_exec_contact": None,  # never
            "qbr_last_quarter": 1,
            "nps_mean_30d": 9.0,
            "nps_trend_30d": None,  # no answers in the prev window
            "nps_mean_90d": 9.0,
            "nps_trend_90d": None,
            "latest_nps": 9.0,
            "nps_detractor": 0,
        },
        SUPPORT: {
            "touchpoints_30d": 1,
            "touchpoints_90d": 1,
            "days_since_exec_contact": 0.5,  # 05-31T12:00 -> 06-01T00:00
            "qbr_last_quarter": 0,
        }
        | NO_NPS,
    },
    "satisfaction": {
        # CSAT before t: 05-01T23:59:59 2 (one second before t - 30d: 90d only), 05-02T00:00 4
        # (exactly t - 30d: in), 05-20T10:00 5 and 2 (one instant). 06-01T00:00 1 is at t: out.
        # CES: 2023-12-01 7 (before t - 90d), 03-03T00:00 6 (exactly t - 90d: in), 05-10 2.
        MATURE: {
            "csat_mean_30d": 11 / 3,  # (4 + 5 + 2) / 3
            "ces_mean_30d": 2.0,
            "csat_mean_90d": 3.25,  # (2 + 4 + 5 + 2) / 4
            "ces_mean_90d": 4.0,  # (6 + 2) / 2
            "latest_csat": 3.5,  # the two answers at 05-20T10:00: (5 + 2) / 2
            "latest_ces": 2.0,  # 05-10
        },
        NO_USAGE: NO_SATISFACTION,
        # one CSAT answer 05-15 (80), no CES
        YOUNG: {
            "csat_mean_30d": 80.0,
            "ces_mean_30d": None,
            "csat_mean_90d": 80.0,
            "ces_mean_90d": None,
            "latest_csat": 80.0,
            "latest_ces": None,
        },
        # one CES answer 04-01 (5): in the last 90 days, not the last 30
        SUPPORT: NO_SATISFACTION | {"ces_mean_90d": 5.0, "latest_ces": 5.0},
    },
    "commercial": {
        # Current term K-M2 [2023-07-10, 2024-07-10), after K-M1 (10000).
        MATURE: {
            "arr": 12000.0,
            "seats": 10,
            "segment": "enterprise",
            "plan": "pro",
            "term_months": 12,  # 366 days / 30.4375 = 12.02
            "days_to_renewal": 39,  # 06-01 -> 07-01 = 30, -> 07-10 = 9
            "prior_renewals": 1,
            "arr_change_last_renewal": 0.2,  # 12000 / 10000 - 1
            "contract_id": "K-M2",
            "renewal_date": date(2024, 7, 10),
        },
        NO_USAGE: {
            "arr": 6000.0,
            "seats": 5,
            "segment": "smb",
            "plan": "starter",
            "term_months": 18,  # 2023-03-01 -> 2024-09-01 = 366 + 184 = 550 days / 30.4375
            "days_to_renewal": 92,  # 30 + 31 + 31
            "prior_renewals": 0,
            "arr_change_last_renewal": None,  # first term
            "contract_id": "K-N1",
            "renewal_date": date(2024, 9, 1),
        },
        YOUNG: {
            "arr": 30000.0,
            "seats": 20,
            "segment": "mid_market",
            "plan": "growth",
            "term_months": 24,  # 730 days / 30.4375 = 23.98
            "days_to_renewal": 690,  # 2024-06-01 -> 2025-06-01 = 365, -> 2026-04-22 = 325
            "prior_renewals": 0,
            "arr_change_last_renewal": None,
            "contract_id": "K-Y1",
            "renewal_date": date(2026, 4, 22),
        },
        SUPPORT: {
            "arr": 50000.0,
            "seats": 50,
            "segment": "enterprise",
            "plan": "enterprise",
            "term_months": 14,  # 2023-06-01 -> 2024-08-01 = 366 + 61 = 427 days / 30.4375
            "days_to_renewal": 61,  # 30 + 31
            "prior_renewals": 0,
            "arr_change_last_renewal": None,
            "contract_id": "K-S1",
            "renewal_date": date(2024, 8, 1),
        },
    },
    "label": {
        # as_of 2025-01-01, grace 30 days, horizon 365 days.
        MATURE: {"churned": 0},  # K-M3 starts on the renewal date 2024-07-10
        # renewal 2024-09-01; K-N2 starts 10-15, after 09-01 + 30 = 10-01, which is <= as_of
        NO_USAGE: {"churned": 1},
        YOUNG: {"churned": None},  # renewal 690 days away > 365: censored, not 0
        SUPPORT: {"churned": 0},  # K-S2 starts 08-20 <= 08-01 + 30 and runs past 08-01
    },
}

# Later snapshot t = 2024-09-01: the terms that changed, onboarding after day 90 for `young`,
# and labels whose outcome is not known by as_of. t - 90d = 2024-06-03.
EXPECTED_LATER: dict[str, dict[str, object]] = {
    MATURE: {
        "contract_id": "K-M3",  # K-M2 ended 07-10; now the renewal term
        "arr": 15000.0,
        "seats": 12,
        "prior_renewals": 2,  # K-M1, K-M2
        "arr_change_last_renewal": 0.25,  # 15000 / 12000 - 1
        "term_months": 12,  # 365 days / 30.4375 = 11.99
        "days_to_renewal": 312,  # 09-01 -> 2025-07-01 = 303, -> 07-10 = 9
        "seats_activated_60d": 2 / 12,  # M1, M2 over today's 12 seats
        "latest_nps": 0.0,  # 07-01 answer
        "nps_detractor": 1,
        "latest_csat": 1.0,  # 06-01T00:00, at the main snapshot: seen from the next day on
        "csat_mean_30d": None,  # nothing since 08-02
        "mean_training_score": 85.0,  # (80 + 90 + 70 + 100) / 4: M3 completed 06-05
        # Renewal 2025-07-10 is within 365 days, but 07-10 + 30 is after as_of and no
        # renewal is recorded: censored.
        "churned": None,
    },
    YOUNG: {
        "tenure_days": 132,  # 04-22 -> 05-01 = 9, + 31 + 30 + 31 + 31
        "in_first_90_days": 0,
        "seats_activated_30d": 0.1,  # unchanged: Y1, Y2 / 20
        "seats_activated_60d": 0.2,  # Y4's day 54 now seen: 4 / 20
        "seats_activated_90d": 0.2,
        "onboarding_trainings": 2,  # Y1 05-20, Y2 06-10, both before day 90 (07-21)
        "days_to_renewal": 598,  # 690 - 92
        "churned": None,  # still beyond the horizon
    },
    SUPPORT: {
        "contract_id": "K-S2",
        "arr": 40000.0,
        "seats": 40,
        "prior_renewals": 1,
        "arr_change_last_renewal": -0.2,  # 40000 / 50000 - 1
        "days_to_renewal": 353,  # 09-01 -> 2025-08-01 = 334, -> 08-20 = 19
        "tickets_open_past_sla": 1,  # T2 is still open
        "churned": None,  # renewal 2025-08-20 + 30 is after as_of
    },
}


@pytest.fixture(scope="module")
def features(tmp_path_factory) -> pd.DataFrame:
    return compute_features(fixture_tables(), tmp_path_factory.mktemp("features"), DATES)


def _row(features: pd.DataFrame, account: str, day: date) -> pd.Series:
    rows = features[(features["account_id"] == account) & (features["snapshot_date"] == day)]
    assert len(rows) == 1, f"{len(rows)} rows for {account} at {day}"
    return rows.iloc[0]


def _mismatches(row: pd.Series, expected: dict[str, object]) -> list[str]:
    wrong = []
    for name, want in expected.items():
        got = row[name]
        if want is None:
            ok = pd.isna(got)
        elif isinstance(want, (str, date)):
            ok = got == want
        else:
            ok = not pd.isna(got) and got == pytest.approx(want, rel=1e-9, abs=1e-12)
        if not ok:
            wrong.append(f"{name}: expected {want!r}, got {got!r}")
    return wrong


def test_every_feature_has_a_hand_computed_value():
    """A feature added to a family without its value here fails, whichever family it is in."""
    names = {f.name for f in build_registry(SETTINGS.windows, settings=SETTINGS)}
    names |= {"contract_id", "renewal_date", "churned"}
    for account in ACCOUNTS:
        covered = [name for family in EXPECTED.values() for name in family[account]]
        assert len(covered) == len(set(covered)), account
        assert set(covered) == names, account


def test_one_row_per_account_with_a_term_active_at_t(features):
    at = {day: set(features.loc[features["snapshot_date"] == day, "account_id"]) for day in DATES}
    assert at[SNAPSHOT] == set(ACCOUNTS)
    # K-N1 ends on 2024-09-01, the snapshot date: the term whose renewal is decided at t is
    # still the current term there (days_to_renewal 0), so no_usage keeps its row
    assert at[LATER_SNAPSHOT] == {MATURE, YOUNG, SUPPORT, NO_USAGE}
    later = features.set_index(["account_id", "snapshot_date"]).loc[(NO_USAGE, LATER_SNAPSHOT)]
    assert later["days_to_renewal"] == 0


@pytest.mark.parametrize(
    ("family", "account"),
    [(family, account) for family in EXPECTED for account in ACCOUNTS],
)
def test_features_at_snapshot(features, family, account):
    wrong = _mismatches(_row(features, account, SNAPSHOT), EXPECTED[family][account])
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("account", list(EXPECTED_LATER))
def test_features_at_later_snapshot(features, account):
    wrong = _mismatches(_row(features, account, LATER_SNAPSHOT), EXPECTED_LATER[account])
    assert not wrong, "\n".join(wrong)


def test_censored_labels_are_missing_never_zero(features):
    labels = features.set_index(["account_id", "snapshot_date"])["churned"]
    assert str(labels.dtype) == "Float64"
    censored = [(YOUNG, SNAPSHOT), (MATURE, LATER_SNAPSHOT), (YOUNG, LATER_SNAPSHOT)]
    censored.append((SUPPORT, LATER_SNAPSHOT))
    assert labels.loc[censored].isna().all()
    # mature, no_usage and support at 2024-06-01, and no_usage at 2024-09-01: K-N2 starts
    # 2024-10-15, 44 days after K-N1 ends (past the 30-day grace), known before as-of
    assert labels.notna().sum() == 4
    assert labels.loc[(NO_USAGE, LATER_SNAPSHOT)] == 1
