"""The delivery channels there are, by name: each builds itself from the `deliver` settings.

Adding a channel is a module implementing `channel.Channel` and one line here.
"""

from __future__ import annotations

from collections.abc import Callable

from pipeline.core.config import DeliverSection
from pipeline.core.errors import ConfigError
from pipeline.stages.deliver.channel import Channel
from pipeline.stages.deliver.email import EmailChannel

DEFAULT_CHANNEL = "email"

CHANNELS: dict[str, Callable[[DeliverSection], Channel]] = {
    "email": EmailChannel.from_config,
}


def make_channel(name: str, deliver: DeliverSection) -> Channel:
    """The named channel with its settings checked (ConfigError before anything is sent)."""
    factory = CHANNELS.get(name)
    if factory is None:
        raise ConfigError(f"unknown delivery channel {name!r}; known: {sorted(CHANNELS)}")
    return factory(deliver)
