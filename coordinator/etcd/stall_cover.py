"""Agent leases survive the coordinator's own event-loop stalls.

Agents heartbeat over gRPC into the coordinator's event loop, which renews
their leases (``LeaseRefresher``). A turn that holds the loop for seconds (a
100k-task submit: decoding, analysis, planning) would let those leases expire
although every agent is alive and heartbeating, and their work would be
requeued. ``StallCover`` watches the loop from a thread of its own:

- the loop calls :meth:`beat` every ``beat_every`` seconds (a small task);
- :meth:`poll` (the thread's step, every ``check_every`` s) sees the loop
  stalled when the last beat is older than ``stall_after`` and then renews,
  in one round, every lease etcd confirmed within ``window`` seconds before
  the stall began (agents that were heartbeating), at most once per
  ``min_interval``.

Invariant: only leases that were alive and renewed when the loop stopped are
covered, and only for ``max_stall`` seconds of one stall (a loop that never
comes back must not keep dead agents' leases alive). A lease whose agent
died during the stall lives at most ``max_stall`` + its TTL. The clock is
injected; tests call :meth:`poll` directly. The coordinator runs the cover
in its keepalive process (``KeepaliveProcess``), where the loop's beats
arrive over a pipe and a stopped coordinator is told apart by ``running``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import structlog

from workhive.coordinator.etcd.errors import EtcdError
from workhive.coordinator.etcd.lease_refresher import LeaseRefresher

log = structlog.get_logger("workhive.leases")


class StallCover:
    """Renews heartbeating agents' leases while the event loop is stalled."""

    def __init__(
        self,
        refresher: LeaseRefresher,
        *,
        ttl: float,
        stall_after: float = 1.0,
        check_every: float = 0.25,
        max_stall: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        running: Callable[[], bool] = lambda: True,
    ) -> None:
        """``running``: whether the loop's process is still running (from
        another process: a SIGSTOPped coordinator is not a busy one, and its
        leases are not covered)."""
        self.refresher = refresher
        self.running = running
        self.window = ttl  # a lease confirmed within one TTL before the stall was alive
        self.min_interval = refresher.min_interval
        self.stall_after = stall_after
        self.check_every = check_every
        self.max_stall = max_stall
        self.clock = clock
        self._last_beat = clock()
        self._covering: list[int] | None = None  # leases of the current stall
        self._last_round = 0.0
        self.rounds = 0  # keepalive rounds sent during stalls (metrics, tests)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def beat(self) -> None:
        """The loop is alive (called from the loop)."""
        self._last_beat = self.clock()

    def poll(self) -> None:
        """One check: renew the covered leases if the loop is stalled."""
        now = self.clock()
        stalled_for = now - self._last_beat
        if stalled_for < self.stall_after:
            if self._covering is not None:
                log.info("event loop back: lease cover ends", stalled=round(stalled_for, 2))
            self._covering = None
            return
        if stalled_for > self.max_stall or not self.running():
            return
        if self._covering is None:
            self._covering = self.refresher.live(self.window + stalled_for)
            log.warning(
                "event loop stalled: keeping agent leases alive from a thread",
                leases=len(self._covering),
                stalled=round(stalled_for, 2),
            )
        if now - self._last_round < self.min_interval or not self._covering:
            return
        self._last_round = now
        try:
            ttls = self.refresher.refresh_all(self._covering)
        except EtcdError as exc:
            log.warning("stall cover: keepalive failed", error=str(exc))
            return
        self.rounds += 1
        self._covering = [lease for lease, ttl in ttls.items() if ttl > 0]

    def start(self) -> None:
        def run() -> None:
            while not self._stop.wait(self.check_every):
                self.poll()

        self._thread = threading.Thread(target=run, name="workhive-stall-cover", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
