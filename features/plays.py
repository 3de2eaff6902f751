"""The CSM plays a feature points to: what to do when it drives an account's risk.

A feature names its play by key (`PLAYS["support"]`); the lists print the text next to the
reason, so one play reads the same for every feature that calls for it.
"""

from __future__ import annotations

PLAYS = {
    "adoption": "Run an adoption review: find inactive seats and show the team the modules they "
    "are not using yet.",
    "advanced": "Offer a workshop on the product modules the account has not adopted yet.",
    "enablement": "Schedule an enablement session and enrol untrained users in the basics course.",
    "admin_training": "Get the account's admins certified: they train everyone else.",
    "support": "Review open tickets with the support lead and agree a recovery plan for breached "
    "SLAs.",
    "escalation": "Call the sponsor about the escalations before they come up at renewal.",
    "onboarding": "Restart onboarding: a kickoff call, a success plan and a first-value milestone.",
    "sentiment": "Follow up on the survey answers: call detractors and close the loop.",
    "satisfaction": "Recover satisfaction: call the users who rated the service low, fix what "
    "they raised and tell them what changed.",
    "effort": "Remove friction: review the support journey and the tasks users find hard, and "
    "fix the worst step first.",
    "usage_review": "Review the change in this kind of usage with the account's team: what "
    "changed, and why.",
    "engagement": "Book a check-in; the account has gone quiet.",
    "exec": "Arrange an executive sponsor meeting.",
    "qbr": "Schedule the quarterly business review.",
    "renewal": "Start the renewal conversation now.",
    "none": "",
}


def advanced_play(modules: tuple[str, ...]) -> str:
    """The depth play, naming the advanced modules the data has (never one it does not)."""
    if not modules:
        return PLAYS["advanced"]
    names = ", ".join(m.replace("_", " ") for m in modules)
    return f"Offer a workshop on the advanced modules ({names})."
