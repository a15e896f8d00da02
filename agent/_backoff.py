"""Capped exponential backoff with full jitter (the clock-free part of reconnecting)."""

from __future__ import annotations

import random
from collections.abc import Callable


class Backoff:
    """Delays for consecutive failed attempts: ``uniform(0, min(cap, base * 2**n))``.

    The random source is injectable so tests are deterministic. ``reset()``
    after a success. Full jitter ("Exponential Backoff And Jitter", AWS) keeps
    a thousand agents that lost the same leader from reconnecting in lockstep;
    ``floor`` keeps a minimum gap so a tight loop can never spin. The 1 s cap
    bounds how long an agent sleeps past the moment a new leader is elected
    (its lease stays alive meanwhile through unary heartbeats); a thousand
    agents spread over it cost a coordinator a thousand cheap refusals a second.
    """

    def __init__(
        self,
        *,
        base: float = 0.1,
        cap: float = 1.0,
        floor: float = 0.02,
        rand: Callable[[], float] = random.random,
    ) -> None:
        if base <= 0 or cap < base or floor < 0:
            raise ValueError("need 0 < base <= cap and floor >= 0")
        self.base = base
        self.cap = cap
        self.floor = floor
        self._rand = rand
        self.failures = 0

    def next_delay(self) -> float:
        """The delay before the next attempt; counts one more failure."""
        ceiling = min(self.cap, self.base * float(1 << min(self.failures, 30)))
        self.failures += 1
        return max(self.floor, ceiling * float(self._rand()))

    def reset(self) -> None:
        self.failures = 0
