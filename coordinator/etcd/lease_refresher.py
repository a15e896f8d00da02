"""Agent lease refreshes, coalesced: at most one etcd keepalive per lease per interval.

Agents heartbeat more often than their lease needs renewing (every second
against a 6 s TTL, so that a silent session is noticed fast). Sending each
heartbeat to etcd costs the coordinator a thread hop and a keepalive round
trip; a thousand agents made that most of an idle leader's CPU.

Contract: ``refresh(lease)`` returns the remaining TTL in seconds (0: the
lease is gone). Within ``min_interval`` of the last keepalive etcd answered
with a positive TTL, it answers from memory (that TTL minus the time since)
without a round trip. Invariant: a lease heartbeated at least every ``h``
seconds (``h <= min_interval``) is renewed by etcd at least every
``min_interval + h``; what is left of the TTL is the margin for a stalled
caller (the coordinator uses ``TTL / 4``: with 1 s heartbeats and a 6 s TTL
a keepalive every 2 s, 4 s of margin). A lease
found gone is not remembered (ids are never reused; etcd keeps answering 0),
and entries whose TTL ran out are pruned, so memory follows the live
agents. The clock is injected (monotonic seconds).

Batched (``heard`` + ``flush``): a heartbeat handler on a busy event loop
only marks its lease (``heard``: no I/O, the TTL from memory), and one
thread (``start``) sends every due keepalive in one round over the shared
stream every ``flush_every`` seconds. A thousand agents then cost a few
batched rounds a second instead of one thread hop per due heartbeat, which
queued behind a busy loop's GIL until leases expired (issue 17). The same
invariant holds with ``min_interval + flush_every + h``.

Across processes (``KeepaliveProcess``): a thread still needs its
process's GIL for every answer on the stream, and a busy loop lends it
once per switch interval (``bench.keepalive_convoy``), so the coordinator
keeps the flushing refresher in a process of its own. Its refresher
reports each round (``on_confirmed``) and the coordinator's copy only
answers heartbeats (``heard``), hands what it heard on (``take_heard``)
and remembers what the other process confirmed (``remember``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable

import structlog

from workhive.coordinator.etcd.errors import EtcdError
from workhive.coordinator.etcd.session import LeaseKeeper

log = structlog.get_logger("workhive.leases")

MAX_ROUND = 200
"""Most keepalives in one flush round (the rest wait for the next round)."""

__all__ = ["LeaseRefresher"]


class LeaseRefresher:
    """Coalesces keepalives of many leases over a :class:`LeaseKeeper`. Thread-safe."""

    def __init__(
        self,
        keeper: LeaseKeeper,
        min_interval: float,
        clock: Callable[[], float] = time.monotonic,
        on_confirmed: Callable[[float, dict[int, int]], None] | None = None,
    ) -> None:
        """``on_confirmed(when, ttls)``: called after each answered round
        (``when`` on ``clock``; a TTL of 0 means the lease is gone)."""
        if min_interval < 0:
            raise ValueError("min_interval must be >= 0")
        self.keeper = keeper
        self.min_interval = min_interval
        self.clock = clock
        self._lock = threading.Lock()
        self._confirmed: dict[int, tuple[float, int]] = {}  # lease -> (when, ttl then)
        self._prune_at = 1024  # entries past their interval are dropped beyond this size
        self._heard: set[int] = set()  # heartbeated since their last keepalive
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._owns_keeper = False
        self.on_confirmed = on_confirmed

    def cached(self, lease_id: int) -> int:
        """The remaining TTL if a keepalive is not due yet, else 0 (no I/O)."""
        now = self.clock()
        with self._lock:
            seen = self._confirmed.get(lease_id)
        if seen is not None and now - seen[0] < self.min_interval:
            return max(1, int(seen[1] - (now - seen[0])))
        return 0

    def last_keepalive(self, lease_id: int) -> float | None:
        """Seconds since etcd last confirmed ``lease_id`` through this refresher
        (``None``: not refreshed here recently). No I/O."""
        with self._lock:
            seen = self._confirmed.get(lease_id)
        return None if seen is None else max(0.0, self.clock() - seen[0])

    def refresh(self, lease_id: int) -> int:
        """Remaining TTL of ``lease_id`` after keeping it alive (0: gone);
        blocks on etcd only when a keepalive is due."""
        ttl = self.cached(lease_id)
        if ttl:
            return ttl
        ttl = self.keeper.refresh(lease_id)
        now = self.clock()
        with self._lock:
            if ttl > 0:
                self._confirmed[lease_id] = (now, ttl)
            else:
                self._confirmed.pop(lease_id, None)
            self._prune(now)
        return ttl

    def _prune(self, now: float) -> None:
        """Drop entries whose TTL ran out once the table doubled (lock held):
        a live agent's entry stays (``heard`` and ``live`` need it)."""
        if len(self._confirmed) > self._prune_at:
            self._confirmed = {k: v for k, v in self._confirmed.items() if now - v[0] < v[1]}
            self._prune_at = max(1024, 2 * len(self._confirmed))

    def live(self, window: float) -> list[int]:
        """Leases etcd confirmed within the last ``window`` seconds (their
        agents were heartbeating)."""
        now = self.clock()
        with self._lock:
            return [k for k, (when, _) in self._confirmed.items() if now - when < window]

    def heard(self, lease_id: int) -> int:
        """A heartbeat on ``lease_id``: marks it for the next :meth:`flush` and
        returns its remaining TTL from memory; 0 when etcd has not confirmed
        it here (or not within its TTL): the caller then asks etcd itself
        (:meth:`refresh`). No I/O."""
        now = self.clock()
        with self._lock:
            seen = self._confirmed.get(lease_id)
            left = seen[1] - (now - seen[0]) if seen is not None else 0.0
            if left <= 0:
                return 0
            self._heard.add(lease_id)
        return max(1, int(left))

    def mark(self, lease_ids: Iterable[int]) -> None:
        """Heartbeats heard elsewhere (another process's ``take_heard``): the
        leases go in the next due :meth:`flush`, confirmed here or not."""
        with self._lock:
            self._heard.update(lease_ids)

    def take_heard(self) -> list[int]:
        """The leases heard since the last call, handed to whoever flushes."""
        with self._lock:
            heard, self._heard = self._heard, set()
        return list(heard)

    def remember(self, answers: dict[int, tuple[float, int]]) -> None:
        """Keepalive answers obtained elsewhere: lease -> (when, on this
        clock; remaining TTL, 0 when gone). An older answer never wins."""
        with self._lock:
            for lease, (when, ttl) in answers.items():
                seen = self._confirmed.get(lease)
                if ttl <= 0:
                    self._confirmed.pop(lease, None)
                elif seen is None or seen[0] < when:
                    self._confirmed[lease] = (when, ttl)
            self._prune(self.clock())

    def flush(self) -> int:
        """Keep alive, in one round, every lease heard since its last keepalive
        whose keepalive is due (``min_interval`` old); returns how many were
        sent. A failed round marks them again for the next one."""
        now = self.clock()
        with self._lock:
            due = [
                lease
                for lease in self._heard
                if (s := self._confirmed.get(lease)) is None or now - s[0] >= self.min_interval
            ][:MAX_ROUND]
            self._heard.difference_update(due)
        try:
            self.refresh_all(due)
        except EtcdError as exc:
            log.warning("batched keepalive failed", leases=len(due), error=str(exc))
            with self._lock:
                self._heard.update(due)
        return len(due)

    @classmethod
    def started(
        cls,
        keeper: LeaseKeeper,
        ttl: float,
        on_confirmed: Callable[[float, dict[int, int]], None] | None = None,
    ) -> LeaseRefresher:
        """The refresher for agent leases of ``ttl`` seconds, flushing from
        its thread; it owns ``keeper`` (closed by ``stop``). A keepalive at
        most every TTL/4: the last is then at most TTL/4 + one heartbeat +
        one flush old, leaving over half the TTL for stalls."""
        r = cls(keeper, ttl / 4, on_confirmed=on_confirmed)
        r._owns_keeper = True
        r.start(flush_every=min(0.25, ttl / 16))
        return r

    def start(self, flush_every: float) -> None:
        """Flush from a thread of its own every ``flush_every`` seconds."""

        def run() -> None:
            while not self._stop.wait(flush_every):
                self.flush()

        self._thread = threading.Thread(target=run, name="workhive-keepalive", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        if self._owns_keeper:
            self.keeper.close()

    def refresh_all(self, lease_ids: list[int]) -> dict[int, int]:
        """Keep many leases alive in one round over the keeper's shared stream,
        remembering the answers like :meth:`refresh`."""
        if not lease_ids:
            return {}
        ttls = self.keeper.refresh_many(lease_ids)
        now = self.clock()
        self.remember({lease: (now, ttl) for lease, ttl in ttls.items()})
        if self.on_confirmed is not None:
            self.on_confirmed(now, ttls)
        return ttls
