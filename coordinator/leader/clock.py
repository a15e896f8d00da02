"""The leader's one clock, injected (tests pass a fake one).

``wall()`` stamps scheduler events and results (seconds since the epoch);
``monotonic()`` measures intervals (grace periods, latencies, the ticker).
Every decision in ``leader/`` reads time through a :class:`Clock` (only the
latency histograms time etcd calls with ``perf_counter``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Clock:
    wall: Callable[[], float] = time.time
    monotonic: Callable[[], float] = time.monotonic
