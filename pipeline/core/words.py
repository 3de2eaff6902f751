"""Names as people read them: a segment or region key of the data turned into words.

The data's keys are identifiers ('mid_market', 'smb', 'emea'); a CSM's list, an email and the
leadership report all show them to people. The one mapping lives here, below every stage, so
the lists (pipeline.lists), the explanations (pipeline.modeling) and the report write a key
the same way without importing each other.
"""

from __future__ import annotations

import pandas as pd

#: Names a data key cannot spell the way a reader does (everything else: '_' -> ' ', capital).
GROUP_WORDS = {
    "smb": "SMB",
    "mid_market": "Mid-market",
    "na": "North America",
    "emea": "EMEA",
    "apac": "APAC",
    "latam": "Latin America",
}


def _missing(value: object) -> bool:
    return value is None or value is pd.NA or value != value


def group_name(value: object) -> str:
    """A segment or region key as words: 'mid_market' -> 'Mid-market', 'smb' -> 'SMB'.

    The data's keys are identifiers; a VP reads names. Known acronyms stay upper case, any
    other key has its underscores turned into spaces and its first letter capitalised, so a
    company's own segment ('strategic_accounts') reads 'Strategic accounts' without a mapping.
    Missing values read '(none)'.
    """
    if _missing(value):
        return "(none)"
    text = str(value)
    key = text.strip().lower()
    if key in GROUP_WORDS:
        return GROUP_WORDS[key]
    words = text.replace("_", " ").strip()
    return words[:1].upper() + words[1:] if words.islower() else words


def group_in_sentence(value: object) -> str:
    """The same name inside a sentence: 'typical for mid-market', 'typical for SMB'.

    `group_name` capitalises the first letter for a heading or a table cell; inside a
    sentence only names that are capitalised anyway (acronyms, 'North America', a company's
    own 'Key Accounts') keep their capitals. Missing values read '' (the caller decides what
    an unknown group is called).
    """
    if _missing(value):
        return ""
    name = group_name(value)
    key = str(value).strip().lower()
    # a mapped name whose second letter is lower case was capitalised for a heading only
    mapped_heading = key in GROUP_WORDS and len(name) > 1 and name[1].islower()
    generated = key not in GROUP_WORDS and str(value).replace("_", " ").strip().islower()
    if (mapped_heading and " " not in name) or generated:
        return name[:1].lower() + name[1:]
    return name


def format_money(value: float, currency: str) -> str:
    """An amount as a person writes it: '$11,819' in full, '$1.2M' from a million up.

    Whole units below a million (a CSM's account is a number they know to the unit); a
    portfolio total in millions with one decimal, because '$1,234,567' is read as 'about
    1.2 million' anyway. A negative amount gets a real minus sign before the symbol. Here, not
    in a stage, so the report and the webhook channel write amounts alike.
    """
    sign = "−" if value < 0 else ""
    magnitude = abs(value)
    if round(magnitude) >= 999_950:  # what would print as $1,000,000 or more
        return f"{sign}{currency}{magnitude / 1e6:,.1f}M"
    return f"{sign}{currency}{magnitude:,.0f}"
