"""Segment profiles: the business facts SMB, mid-market and enterprise accounts differ in.

DOMAIN.md: segments differ in ARR, seats, contract length, churn rate and CSM portfolio size,
and in how much service and CSM contact they get. Every generator that needs one of these facts
looks it up here, by the account's index into SEGMENTS, so a segment is described in one place.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PROFILES", "SegmentProfile"]


@dataclass(frozen=True)
class SegmentProfile:
    """What a segment's accounts look like; medians and rates are of an average account."""

    seats_median: float
    seats_sigma: float
    seats_max: int
    price_per_seat: float  # ARR per seat and year, median
    price_sigma: float
    term_months: tuple[int, ...]
    term_probs: tuple[float, ...]
    plans: tuple[str, ...]
    plan_probs: tuple[float, ...]
    annual_churn: float  # baseline annual logo churn of an average account
    portfolio: int  # live accounts per CSM
    tickets_per_month: float
    priority_probs: tuple[float, float, float, float]
    sla_first_response_hours: tuple[float, float, float, float]  # low, normal, high, urgent
    sla_resolution_hours: tuple[float, float, float, float]
    touch_rates: tuple[float, float, float, float]  # per month: call, meeting, qbr, exec_sponsor
    kickoff_meetings: float  # extra meetings in the first 60 days


#: One profile per segment, in the order of SEGMENTS (smb, mid_market, enterprise).
PROFILES: tuple[SegmentProfile, ...] = (
    SegmentProfile(  # smb: many, small, heavy-tailed ARR, partly monthly
        seats_median=7,
        seats_sigma=0.8,
        seats_max=80,
        price_per_seat=540.0,
        price_sigma=0.35,
        term_months=(1, 12),
        term_probs=(0.45, 0.55),
        plans=("starter", "growth"),
        plan_probs=(0.75, 0.25),
        annual_churn=0.15,
        portfolio=300,
        tickets_per_month=0.5,
        priority_probs=(0.35, 0.45, 0.15, 0.05),
        sla_first_response_hours=(48.0, 24.0, 8.0, 4.0),
        sla_resolution_hours=(240.0, 120.0, 48.0, 24.0),
        touch_rates=(0.25, 0.05, 0.02, 0.02),
        kickoff_meetings=0.6,
    ),
    SegmentProfile(  # mid-market: annual
        seats_median=35,
        seats_sigma=0.5,
        seats_max=400,
        price_per_seat=900.0,
        price_sigma=0.3,
        term_months=(12,),
        term_probs=(1.0,),
        plans=("growth", "enterprise"),
        plan_probs=(0.7, 0.3),
        annual_churn=0.07,
        portfolio=80,
        tickets_per_month=1.5,
        priority_probs=(0.3, 0.45, 0.18, 0.07),
        sla_first_response_hours=(24.0, 12.0, 4.0, 2.0),
        sla_resolution_hours=(168.0, 72.0, 24.0, 12.0),
        touch_rates=(1.0, 0.35, 0.3, 0.25),
        kickoff_meetings=1.5,
    ),
    SegmentProfile(  # enterprise: annual or multi-year, high ARR
        seats_median=140,
        seats_sigma=0.55,
        seats_max=1500,
        price_per_seat=1250.0,
        price_sigma=0.3,
        term_months=(12, 24, 36),
        term_probs=(0.65, 0.22, 0.13),
        plans=("enterprise",),
        plan_probs=(1.0,),
        annual_churn=0.058,
        portfolio=22,
        tickets_per_month=3.5,
        priority_probs=(0.25, 0.45, 0.2, 0.1),
        sla_first_response_hours=(12.0, 8.0, 2.0, 1.0),
        sla_resolution_hours=(120.0, 48.0, 16.0, 8.0),
        touch_rates=(2.5, 0.9, 0.34, 0.6),
        kickoff_meetings=3.0,
    ),
)
