"""Independent random streams, one per purpose, all derived from the simulation's seed.

Why streams rather than one generator: adding or removing draws in one table (a new column of
tickets, say) must not shift the random numbers of every table generated after it, or a small
change to the simulator would rewrite the whole demo. Each stream is seeded with
``[seed, stream number, *extra]``; the numbers are fixed forever, so new streams get new ones.
"""

from __future__ import annotations

import numpy as np

_STREAMS: dict[str, int] = {
    "world": 1,
    "contracts": 2,
    "users": 3,
    "user_traits": 4,
    "trainings": 5,
    "tickets": 6,
    "nps": 7,
    "touchpoints": 8,
    "names": 9,
    "usage": 10,
    "csms": 11,
    # the company profiles' own (the demo never draws from them)
    "assignment": 12,
    "attributes": 13,
    "subscriptions": 14,
    "event_log": 15,
    "plg_tickets": 16,
    "csat": 17,
    "plg_csms": 18,
    # the point-in-time oracle's paths (extra 0: health, 1: troubles), a truth table only
    "pit_oracle": 19,
}


def random_stream(seed: int, stream: str, *extra: int) -> np.random.Generator:
    """The generator of ``stream`` (``extra``: e.g. the chunk number of a chunked stream)."""
    return np.random.default_rng([int(seed), _STREAMS[stream], *extra])
