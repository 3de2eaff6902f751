"""The CSM plays: what to do when a feature drives an account's risk.

A feature names its play by key (`PLAYS["support"]`): the registry's text is the generic play
for that kind of risk, shown in docs/features.md. A list row then gets the play written for
the account (`write_play`): the same kind of play, in the channel the account's size calls for
and with its own numbers. A CSM with a book of 60 accounts cannot act on "review adoption" 60
times; "send the in-app campaign to the 14 inactive seats" (a small account, tech touch) and
"review adoption with the executive sponsor: 120 of 300 seats inactive" (a large one) say
what to do on Monday.

Tiers: "low", "mid" and "high" ARR within the scored book (the caller derives them from the
book's ARR quantiles, never from segment names). Low-ARR accounts get digital, one-to-many
plays; high-ARR accounts bring in the executive sponsor; the rest are CSM-led.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

Tier = Literal["low", "mid", "high"]
TIERS: tuple[Tier, ...] = ("low", "mid", "high")

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

_ADVANCED_PREFIX = "Offer a workshop on the advanced modules ("


def advanced_play(modules: tuple[str, ...]) -> str:
    """The depth play, naming the advanced modules the data has (never one it does not)."""
    if not modules:
        return PLAYS["advanced"]
    return f"{_ADVANCED_PREFIX}{_module_names(modules)})."


def _module_names(modules: tuple[str, ...]) -> str:
    return ", ".join(m.replace("_", " ") for m in modules)


def play_key(play: str) -> str | None:
    """The key of a registry play text (`PLAYS`, or `advanced_play`'s), None for any other.

    Features carry their play as text (what the registry doc prints); the key says which kind
    of play it is, so `write_play` can write it for the account.
    """
    if play.startswith(_ADVANCED_PREFIX):
        return "advanced"
    for key, text in PLAYS.items():
        if text == play:
            return key
    return None


def named_modules(play: str) -> str:
    """The advanced modules an `advanced_play` text names ('reporting, automation'), or ''."""
    if play.startswith(_ADVANCED_PREFIX) and play.endswith(")."):
        return play[len(_ADVANCED_PREFIX) : -2]
    return ""


def _n(facts: Mapping[str, float | None], name: str) -> int | None:
    """A fact as a whole number, None when unknown."""
    value = facts.get(name)
    if value is None or value != value:
        return None
    return round(float(value))


def _plural(count: int, word: str, plural: str | None = None) -> str:
    return f"{count:,} {word}" if count == 1 else f"{count:,} {plural or word + 's'}"


def write_play(key: str, tier: Tier, facts: Mapping[str, float | None], default: str) -> str:
    """The play of kind `key` written for one account: its tier's channel and its numbers.

    `facts` holds what is known of the account (any may be missing or None): seats,
    inactive_seats, untrained_users, window (days), breaches, open_past_sla, escalations,
    modules_used, days_to_renewal, tenure_days, onboarding_days, days_since_exec_contact,
    touchpoints. `default` (the registry's text) is returned for a kind with nothing more
    specific to say, so every play a feature declares keeps working.
    """
    writer = _WRITERS.get(key)
    text = writer(tier, facts, default) if writer is not None else None
    return text or default


def _reactivate(tier: Tier, facts, default: str) -> str:
    seats = _n(facts, "seats")
    paid = f"the {_plural(seats, 'paid seat')}" if seats else "the paid seats"
    if tier == "low":
        return "Email the admin a re-activation guide with a link to book a setup call."
    if tier == "high":
        return (
            f"Meet the admin and the executive sponsor to relaunch: agree who uses {paid}, by when."
        )
    return f"Call the admin this week to re-activate {paid}: who should use it, and by when."


def _adoption(tier: Tier, facts, default: str) -> str | None:
    inactive, seats = _n(facts, "inactive_seats"), _n(facts, "seats")
    if not inactive or not seats:
        return None
    share = f"{inactive:,} of {seats:,} seats inactive"
    if tier == "low":
        return f"Send the in-app adoption campaign to the {_plural(inactive, 'inactive seat')}."
    if tier == "high":
        return f"Review adoption with the executive sponsor ({share}) and agree a target."
    return f"Run an adoption review with the admin ({share}): who should be using it?"


def _advanced(tier: Tier, facts, default: str) -> str:
    modules = named_modules(default)
    used, window = _n(facts, "modules_used"), _n(facts, "window")
    unused = f" ({modules})" if modules else ""
    uses = (
        f"; they use {_plural(used, 'module')} in {window} days"
        if used is not None and window
        else ""
    )
    if tier == "low":
        return f"Send the guides and webinar invite for the modules they do not use yet{unused}."
    who = " with the sponsor's team" if tier == "high" else ""
    return f"Run a workshop{who} on the modules they do not use yet{unused}{uses}."


def _enablement(tier: Tier, facts, default: str) -> str | None:
    untrained = _n(facts, "untrained_users")
    if not untrained:
        return None
    users = _plural(untrained, "untrained active user")
    if tier == "low":
        return f"Send the {users} the self-paced basics course."
    if tier == "high":
        return f"Agree an enablement plan with the sponsor: enrol the {users} in the basics course."
    return f"Enrol the {users} in the basics course and book an enablement session."


def _admin_training(tier: Tier, facts, default: str) -> str | None:
    if tier == "low":
        return "Invite the account's admins to the self-paced admin certification."
    return None


def _support(tier: Tier, facts, default: str) -> str | None:
    breaches, window = _n(facts, "breaches"), _n(facts, "window")
    open_past = _n(facts, "open_past_sla")
    if breaches and window:
        what = f"the {_plural(breaches, 'SLA breach', 'SLA breaches')} of the last {window} days"
    elif open_past:
        what = f"the {_plural(open_past, 'ticket')} open past their SLA"
    else:
        return None
    if tier == "low":
        return f"Have support review {what} and email the admin the fix plan."
    if tier == "high":
        return f"Review {what} with the support lead; take the recovery plan to the sponsor."
    return f"Review {what} with the support lead and agree a recovery plan."


def _escalation(tier: Tier, facts, default: str) -> str | None:
    count = _n(facts, "escalations")
    escalations = f"the {_plural(count, 'escalation')}" if count else "the escalations"
    if tier == "low":
        return f"Check that {escalations} ended to the customer's satisfaction; email the admin."
    if tier == "high":
        return f"Have your executive call their sponsor about {escalations} before the renewal."
    return f"Call the sponsor about {escalations} before they come up at renewal."


def _onboarding(tier: Tier, facts, default: str) -> str | None:
    tenure, days = _n(facts, "tenure_days"), _n(facts, "onboarding_days")
    if tenure is None or not days or tenure >= days:
        if tier == "low":
            return "Restart onboarding: send the onboarding email sequence and offer a setup call."
        if tier == "high":
            return (
                "Re-run onboarding with the sponsor's team: a success plan and a first-value date."
            )
        return None
    recovery = f"Onboarding recovery (day {tenure + 1} of {days})"
    if tier == "low":
        return f"{recovery}: send the onboarding sequence and offer a setup call."
    if tier == "high":
        return f"{recovery}: a kickoff with the sponsor, a success plan and a first-value date."
    return f"{recovery}: a kickoff call, a success plan and a first-value milestone."


def _sentiment(tier: Tier, facts, default: str) -> str | None:
    if tier == "low":
        return "Email the survey follow-up and ask detractors what would change their score."
    if tier == "high":
        return "Call the detractors with the executive sponsor and close the loop."
    return None


def _feedback(tier: Tier, facts, default: str) -> str:
    window = _n(facts, "window")
    silent = f"no survey answer in {window} days" if window else "no survey answer on record"
    if tier == "low":
        return f"Send a two-question pulse survey to the account's users ({silent})."
    if tier == "high":
        return f"Ask the sponsor and the admin how it is going, on a call ({silent})."
    return f"Ask the admin for feedback on a call ({silent}) and log what they say."


def _usage_review(tier: Tier, facts, default: str) -> str | None:
    if tier == "low":
        return "Send the admin their usage report and ask what changed."
    if tier == "high":
        return "Review the change in usage with the sponsor's team: what changed, and why."
    return None


def _engagement(tier: Tier, facts, default: str) -> str:
    touchpoints, window = _n(facts, "touchpoints"), _n(facts, "window")
    quiet = (
        f"no CSM touchpoint in {window} days"
        if touchpoints == 0 and window
        else "the account has gone quiet"
    )
    if tier == "low":
        return f"Send a check-in email with a link to book time ({quiet})."
    if tier == "high":
        return f"Book a check-in with the sponsor: {quiet}."
    return f"Book a check-in call: {quiet}."


def _exec(tier: Tier, facts, default: str) -> str:
    days = _n(facts, "days_since_exec_contact")
    since = f": last contact {days:,} days ago" if days is not None else ": none on record"
    if tier == "low":
        return f"Email the sponsor a one-page value summary{since}."
    return f"Arrange an executive sponsor meeting{since}."


def _qbr(tier: Tier, facts, default: str) -> str | None:
    if tier == "low":
        return "Send the quarterly value summary by email and offer a review call."
    return None


def _renewal(tier: Tier, facts, default: str) -> str | None:
    days = _n(facts, "days_to_renewal")
    when = f": renews in {_plural(days, 'day')}" if days is not None else ""
    if tier == "low":
        return f"Send the renewal reminder and offer a call{when}."
    if tier == "high":
        return f"Start the renewal conversation with the executive sponsor now{when}."
    return f"Start the renewal conversation now{when}."


_WRITERS = {
    "reactivate": _reactivate,
    "adoption": _adoption,
    "advanced": _advanced,
    "enablement": _enablement,
    "admin_training": _admin_training,
    "support": _support,
    "escalation": _escalation,
    "onboarding": _onboarding,
    "sentiment": _sentiment,
    "engagement": _engagement,
    "feedback": _feedback,
    "usage_review": _usage_review,
    "exec": _exec,
    "qbr": _qbr,
    "renewal": _renewal,
}
