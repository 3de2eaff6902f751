"""Every categorical value and name the demo company uses.

Values the data contract constrains (segments, user roles, ticket priorities, touchpoint kinds)
are the contract's own tuples, so the simulator cannot drift from what ingest accepts; the rest
(troubles, modules, regions, industries, courses, the words of names) are the demo company's
choices, free text to the contract. The order of every tuple is part of the simulation: the
generators draw indices into them (and the segment profiles follow SEGMENTS), so reordering one
changes the data; a test pins the order of the contract's tuples.
"""

from __future__ import annotations

from pipeline.data.contract import SEGMENTS, TICKET_PRIORITIES, TOUCHPOINT_KINDS, USER_ROLES

__all__ = [
    "COURSES",
    "FIRST_NAMES",
    "INDUSTRIES",
    "LAST_NAMES",
    "MODULES",
    "MODULE_EVENT_TYPES",
    "MODULE_TIERS",
    "NAME_SUFFIXES",
    "NAME_WORDS_A",
    "NAME_WORDS_B",
    "REGIONS",
    "SEGMENTS",
    "TICKET_PRIORITIES",
    "TOUCHPOINT_KINDS",
    "TROUBLES",
    "USER_ROLES",
]

#: The planted troubles; "none" first, so that index 0 means an untroubled account.
TROUBLES: tuple[str, ...] = (
    "none",
    "low_usage_depth",
    "low_training",
    "sla_breaches",
    "poor_onboarding",
    "low_sentiment",
    "no_exec_contact",
)
MODULES: tuple[str, ...] = (
    "dashboard",
    "reports",
    "workflows",
    "integrations",
    "automation",
    "analytics",
    "api",
)
#: Depth tier of each module: basic, core or advanced. Customers start basic and deepen.
MODULE_TIERS: dict[str, str] = {
    "dashboard": "basic",
    "reports": "basic",
    "workflows": "core",
    "integrations": "core",
    "automation": "advanced",
    "analytics": "advanced",
    "api": "advanced",
}
#: Two event types per module: the first is the everyday action, the second the rarer one.
MODULE_EVENT_TYPES: dict[str, tuple[str, str]] = {
    "dashboard": ("view", "share"),
    "reports": ("view", "export"),
    "workflows": ("run", "edit"),
    "integrations": ("sync", "configure"),
    "automation": ("trigger", "create_rule"),
    "analytics": ("query", "build_chart"),
    "api": ("call", "create_token"),
}
REGIONS: tuple[str, ...] = ("north_america", "emea", "apac", "latam")
INDUSTRIES: tuple[str, ...] = (
    "software",
    "financial_services",
    "healthcare",
    "retail",
    "manufacturing",
    "education",
    "public_sector",
    "media",
    "logistics",
    "professional_services",
)
#: The onboarding course first, then the advanced ones.
COURSES: tuple[str, ...] = (
    "platform_basics_101",
    "reporting_201",
    "workflow_design_201",
    "automation_301",
    "analytics_301",
)

# Words of account names ("Blue Logistics Inc") and of CSM names.
NAME_WORDS_A: tuple[str, ...] = (
    "Blue", "North", "Apex", "Silver", "Bright", "Summit", "Cedar", "Harbor", "Nova", "Atlas",
    "Crimson", "Granite", "Maple", "Vertex", "Pioneer", "Lumen", "Orbit", "Redwood", "Sterling",
    "Quantum", "Evergreen", "Falcon", "Beacon", "Cobalt", "Horizon", "Iron", "Juniper", "Keystone",
    "Meridian", "Oak",
)  # fmt: skip
NAME_WORDS_B: tuple[str, ...] = (
    "Logistics", "Health", "Analytics", "Foods", "Labs", "Systems", "Capital", "Retail",
    "Energy", "Media", "Robotics", "Learning", "Freight", "Insurance", "Pharma", "Studios",
    "Networks", "Partners", "Manufacturing", "Bank", "Travel", "Biotech", "Software", "Mobility",
    "Consulting",
)  # fmt: skip
NAME_SUFFIXES: tuple[str, ...] = ("Inc", "LLC", "Ltd", "GmbH", "Group", "Co", "SA", "BV")
FIRST_NAMES: tuple[str, ...] = (
    "Ana", "Ben", "Chloe", "David", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Kara",
    "Liam", "Maya", "Noah", "Olga", "Pablo", "Quinn", "Rosa", "Sam", "Tara", "Uma", "Victor",
    "Wen", "Ximena", "Yusuf", "Zoe", "Arjun", "Bea", "Carlos", "Dana",
)  # fmt: skip
LAST_NAMES: tuple[str, ...] = (
    "Silva", "Okafor", "Nguyen", "Schmidt", "Rossi", "Kim", "Garcia", "Novak", "Haddad", "Berg",
    "Tanaka", "Moreau", "Kowalski", "Patel", "Murphy", "Jensen", "Costa", "Ivanova", "Lopez",
    "Fischer", "Dubois", "Sato", "Ahmed", "Larsen", "Russo", "Young", "Ortiz", "Meyer", "Chen",
    "Walsh",
)  # fmt: skip
