"""The delivery channels there are, by name: each builds itself from the settings.

Adding a channel is a module implementing `channel.Channel` and one line here. A factory gets
the whole typed config and picks what it needs (its part of `deliver`; the webhook also reads
`report.currency`, so amounts read the same as on the leadership page).
"""

from __future__ import annotations

from collections.abc import Callable

from pipeline.core.config import Config
from pipeline.core.errors import ConfigError
from pipeline.stages.deliver.channel import Channel
from pipeline.stages.deliver.email import EmailChannel
from pipeline.stages.deliver.webhook import WebhookChannel

DEFAULT_CHANNEL = "email"

CHANNELS: dict[str, Callable[[Config], Channel]] = {
    "email": lambda config: EmailChannel.from_config(config.deliver),
    "webhook": WebhookChannel.from_config,
}


def make_channel(name: str, config: Config) -> Channel:
    """The named channel with its settings checked (ConfigError before anything is sent)."""
    factory = CHANNELS.get(name)
    if factory is None:
        raise ConfigError(f"unknown delivery channel {name!r}; known: {sorted(CHANNELS)}")
    return factory(config)
