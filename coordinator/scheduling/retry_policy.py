"""Retry backoff: when a failed attempt may run again (docs/scheduling.md,
"Deadlines and backoff").

Contract: ``backoff_delay(policy, key, attempt)`` is the number of seconds a
task waits after its attempt ``attempt`` (1-based) failed, before the next
attempt becomes ready: exponential, ``base * 2 ** (attempt - 1)`` capped at
``cap``, with "equal jitter" (half fixed, half spread) so that many tasks
failing together do not come back together. The jitter is deterministic: it
is derived from a hash of the task key and the attempt, so the same events
give the same commands (the scheduling core has no clock and no randomness).
``None`` (no ``retry_backoff``) is 0: retried at once, as before.

``RetryWaits`` holds the tasks waiting out their backoff and releases them
once the time passed in by an event reaches their ``ready_at``.
"""

from __future__ import annotations

import hashlib
import heapq

from workhive.coordinator.model import RetryBackoff, TaskKey

__all__ = ["RetryWaits", "backoff_delay", "jitter_fraction"]

_MAX_EXP = 64  # 2 ** 64 * base is past any cap: stop doubling there


def jitter_fraction(key: TaskKey, attempt: int) -> float:
    """A number in [0, 1) fixed by ``key`` and ``attempt`` (blake2b)."""
    digest = hashlib.blake2b(f"{key}#{attempt}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def backoff_delay(policy: RetryBackoff | None, key: TaskKey, attempt: int) -> float:
    """Seconds to wait after attempt ``attempt`` of ``key`` failed."""
    if policy is None or policy.base <= 0 or policy.cap <= 0:
        return 0.0
    full = min(policy.cap, policy.base * 2.0 ** min(max(attempt, 1) - 1, _MAX_EXP))
    return full / 2 + full / 2 * jitter_fraction(key, attempt)


class RetryWaits:
    """Tasks waiting out a backoff: ``key -> (ready_at, attempt)``.

    Invariant: a key is held at most once (holding it again replaces the
    earlier wait); ``due(now)`` returns each held key whose ``ready_at`` is
    ``<= now`` exactly once, earliest first (ties by key), and forgets it.
    """

    __slots__ = ("_heap", "_held")

    def __init__(self) -> None:
        self._held: dict[TaskKey, tuple[float, int]] = {}
        self._heap: list[tuple[float, str, str, int]] = []

    def hold(self, key: TaskKey, ready_at: float, attempt: int) -> None:
        """Keep ``key`` (about to run ``attempt``) back until ``ready_at``."""
        self._held[key] = (ready_at, attempt)
        heapq.heappush(self._heap, (ready_at, key.project, key.task, attempt))

    def drop(self, key: TaskKey) -> None:
        """Forget ``key`` (cancelled, deleted, restored)."""
        self._held.pop(key, None)

    def clear(self) -> None:
        self._held.clear()
        self._heap.clear()

    def ready_at(self, key: TaskKey) -> float | None:
        """When ``key`` becomes ready again, or ``None`` when not held."""
        held = self._held.get(key)
        return held[0] if held else None

    def next_at(self) -> float | None:
        """The earliest ``ready_at`` of any held key."""
        self._skip_stale()
        return self._heap[0][0] if self._heap else None

    def due(self, now: float) -> list[tuple[TaskKey, int]]:
        """The keys (and the attempt each waits to run) ready at ``now``."""
        out: list[tuple[TaskKey, int]] = []
        while True:
            self._skip_stale()
            if not self._heap or self._heap[0][0] > now:
                return out
            _, project, task, attempt = heapq.heappop(self._heap)
            key = TaskKey(project, task)
            del self._held[key]
            out.append((key, attempt))

    def __len__(self) -> int:
        return len(self._held)

    def _skip_stale(self) -> None:
        h = self._heap
        while h:
            ready_at, project, task, attempt = h[0]
            if self._held.get(TaskKey(project, task)) == (ready_at, attempt):
                return
            heapq.heappop(h)
