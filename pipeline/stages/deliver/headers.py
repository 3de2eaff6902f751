"""Header-injection guards for email: values with no control characters, one strict address.

Used both when checking the sender settings (before anything is sent) and when building each
CSM's message, so a line break in a name or an address list in an email field is refused in
one way, with an error that names whose value it is.
"""

from __future__ import annotations

import re
from email import errors as email_errors
from email.headerregistry import Address

from pipeline.core.errors import DeliveryError

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def has_control_chars(value: str) -> bool:
    """True when the value holds a line break or another control character."""
    return _CONTROL.search(value) is not None


def header_safe(value: str, *, what: str, owner: str) -> str:
    """The value unchanged, or a DeliveryError if a line break could start a new header."""
    if has_control_chars(value):
        raise DeliveryError(
            f"{owner}: {what} {value!r} contains a line break or control character "
            "(refused: it would allow header injection)"
        )
    return value


def parse_address(name: str | None, email: str, *, what: str, owner: str) -> Address:
    """One address, strictly: a bare addr-spec (no display part, no list, no line breaks)."""
    header_safe(email, what=what, owner=owner)
    if name is not None:
        header_safe(name, what="name", owner=owner)
    try:
        address = Address(display_name=name or "", addr_spec=email.strip())
    except (ValueError, IndexError, email_errors.HeaderParseError) as err:
        raise DeliveryError(f"{owner}: {what} {email!r} is not an email address ({err})") from err
    if not address.username or not address.domain:
        raise DeliveryError(f"{owner}: {what} {email!r} is not an email address (user@domain)")
    return address
