"""The email channel's settings: sender and SMTP server, from the typed `deliver` section.

`pipeline.core.config` has already checked keys, types and ranges. What it cannot check is
checked here, as a `ConfigError` before anything is sent: that the from and reply-to addresses
are single email addresses, that the sender name cannot inject a header, that there is a host
to send to, and (only when sending for real) that the login the settings name is in the
environment and would not cross the network unencrypted.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from pipeline.core.config import DeliverSection
from pipeline.core.errors import ConfigError, DeliveryError
from pipeline.stages.deliver.headers import has_control_chars, parse_address

Security = Literal["starttls", "ssl", "none"]


@dataclass(frozen=True)
class SenderSettings:
    """Who the lists come from and what to do with an empty list.

    The fields, their order and their values are part of every Message-ID (see
    `email.build_list_message`): changing them makes a rerun send every list again.
    """

    from_address: str
    from_name: str | None = None
    reply_to: str | None = None
    empty_list: str = "note"


@dataclass(frozen=True)
class SmtpSettings:
    """Where to send. Credentials are named by environment variable, never stored here."""

    host: str
    port: int
    security: Security = "starttls"
    timeout_seconds: float = 30.0
    username_env: str | None = None
    password_env: str | None = None


def _text(value: str | None) -> str | None:
    """An optional text setting; an empty string in params.yaml means "not set", like null."""
    return value or None


def delivery_settings(deliver: DeliverSection) -> tuple[SenderSettings, SmtpSettings]:
    """Sender and SMTP settings from `config.deliver`, with the checks the schema cannot do."""
    from_address = _text(deliver.from_address)
    if from_address is None:
        raise ConfigError("deliver.from_address is required (the address the lists come from)")
    from_name = _text(deliver.from_name)
    reply_to = _text(deliver.reply_to)
    for key, value in (("from_address", from_address), ("reply_to", reply_to)):
        if value is not None:
            try:
                parse_address(None, value, what=f"deliver.{key}", owner="params.yaml")
            except DeliveryError as err:
                raise ConfigError(str(err)) from err
    if from_name is not None and has_control_chars(from_name):
        raise ConfigError(f"deliver.from_name {from_name!r} contains a line break or control char")
    host = _text(deliver.host)
    if host is None:
        raise ConfigError("deliver.host is required (the SMTP server)")
    sender = SenderSettings(from_address, from_name, reply_to, deliver.empty_list)
    smtp = SmtpSettings(
        host=host,
        port=deliver.smtp_port,
        security=deliver.security,
        timeout_seconds=float(deliver.timeout_seconds),
        username_env=_text(deliver.username_env),
        password_env=_text(deliver.password_env),
    )
    return sender, smtp


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def smtp_credentials(smtp: SmtpSettings, environ: Mapping[str, str]) -> tuple[str, str] | None:
    """Username and password from the environment variables the settings name; None = no login.

    A named variable that is unset is an error rather than a silent unauthenticated attempt:
    cron jobs start with a bare environment, and the fix should be obvious from the message.
    """
    if smtp.username_env is None:
        if smtp.password_env is not None:
            raise ConfigError("deliver.password_env is set but deliver.username_env is not")
        return None
    if smtp.password_env is None:
        raise ConfigError("deliver.username_env is set but deliver.password_env is not")
    missing = [name for name in (smtp.username_env, smtp.password_env) if not environ.get(name)]
    if missing:
        raise ConfigError(
            f"environment variable(s) {', '.join(missing)} not set: they hold the SMTP login "
            "named by deliver.username_env/password_env (set them, or set both to null to send "
            "without login)"
        )
    if smtp.security == "none" and not is_loopback(smtp.host):
        raise ConfigError(
            f"refusing to send SMTP credentials unencrypted to {smtp.host}: set deliver.security "
            "to starttls or ssl"
        )
    return environ[smtp.username_env], environ[smtp.password_env]
