"""What the dashboard learns by comparing successive snapshots.

etcd holds the present, not the past: this replica's dashboard remembers,
from the moment it started (docs/dashboard.md, "History"):

- leader changes (time, id, term), as it saw them;
- when each claim was first seen started (a running task's bar in the
  Gantt chart starts there; a finished task's bar comes from its result);
- steals: an unstarted claim whose agent changed between two snapshots at
  the same attempt (a steal and completion within one refresh is missed);
- per task, the claims it had (agent, attempt, fence) in order;
- a bounded time series of the cluster's figures.

Contract: :meth:`Tracker.observe` is called with snapshots in order, from one
thread at a time (the dashboard's single worker); readers use that thread
too. Every collection is bounded.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from workhive.coordinator.dashboard.snapshot import Snapshot
from workhive.coordinator.model import TaskKey, TaskState

SERIES_POINTS = 600  # ten minutes at one point a second
STEALS_KEPT = 5000
LEADERS_KEPT = 200
TASKS_WITH_HISTORY = 200_000
EVENTS_PER_TASK = 20


@dataclass(frozen=True)
class Steal:
    """An observed move of an unstarted claim from one agent to another."""

    at: float
    key: TaskKey
    from_agent: str
    to_agent: str


class Tracker:
    """History kept by one replica's dashboard (see module docstring)."""

    def __init__(self) -> None:
        self.leaders: deque[dict[str, Any]] = deque(maxlen=LEADERS_KEPT)
        self.started_at: dict[TaskKey, float] = {}
        self.steals: deque[Steal] = deque(maxlen=STEALS_KEPT)
        self.steals_seen = 0
        self.series: deque[dict[str, float]] = deque(maxlen=SERIES_POINTS)
        self.history: OrderedDict[TaskKey, list[dict[str, Any]]] = OrderedDict()
        self._claims: dict[TaskKey, tuple[str, int, bool, int]] = {}
        self._done: int | None = None
        self._last_at = 0.0

    def _event(self, key: TaskKey, ev: dict[str, Any]) -> None:
        events = self.history.get(key)
        if events is None:
            events = self.history[key] = []
            if len(self.history) > TASKS_WITH_HISTORY:
                self.history.popitem(last=False)
        if len(events) < EVENTS_PER_TASK:
            events.append(ev)

    def observe(self, snap: Snapshot, counts: Mapping[str, Mapping[str, int]]) -> dict[str, float]:
        """Fold ``snap`` in; ``counts`` = per-project state counts. Returns the
        new time-series point."""
        now = snap.taken_at
        leader = snap.leader
        if leader is not None and (not self.leaders or self.leaders[-1]["term"] != leader.term):
            self.leaders.append({"at": now, "id": leader.id, "term": leader.term})
        seen: dict[TaskKey, tuple[str, int, bool, int]] = {}
        for key, c in snap.claims.items():
            cur = (c.agent, c.attempt, c.started, c.fence)
            seen[key] = cur
            old = self._claims.get(key)
            if old == cur:
                continue
            if old is not None and old[0] != c.agent and old[1] == c.attempt and not old[2]:
                self.steals.append(Steal(now, key, old[0], c.agent))
                self.steals_seen += 1
                self._event(key, {"at": now, "event": "stolen", "from": old[0], "to": c.agent})
            if old is None or old[0] != c.agent or old[1] != c.attempt:
                self._event(
                    key,
                    {
                        "at": now,
                        "event": "claimed",
                        "agent": c.agent,
                        "attempt": c.attempt,
                        "fence": c.fence,
                    },
                )
            if c.started and key not in self.started_at:
                self.started_at[key] = now
                self._event(key, {"at": now, "event": "started", "agent": c.agent})
        for key in self._claims.keys() - seen.keys():
            self.started_at.pop(key, None)
            res = snap.results.get(key)
            self._event(
                key,
                {
                    "at": now,
                    "event": res.state.value if res else "released",
                    "agent": res.agent if res else self._claims[key][0],
                },
            )
        self._claims = seen
        return self._point(snap, counts, now)

    def _point(
        self, snap: Snapshot, counts: Mapping[str, Mapping[str, int]], now: float
    ) -> dict[str, float]:
        total = {s.value: 0 for s in TaskState}
        for c in counts.values():
            for k, v in c.items():
                total[k] = total.get(k, 0) + v
        done = total["succeeded"] + total["failed"] + total["cancelled"]
        rate = 0.0
        if self._done is not None and now > self._last_at:
            rate = max(0, done - self._done) / (now - self._last_at)
        self._done, self._last_at = done, now
        slots = sum(a.slots for a in snap.agents.values())
        m = snap.metrics
        point = {
            "t": now,
            "running": float(total["running"]),
            "queued": float(total["assigned"]),
            "ready": float(total["ready"]),
            "done": float(done),
            "throughput": rate,
            "utilization": m.get("agent_utilization", total["running"] / slots if slots else 0.0),
            "steals": m.get("total_steals", float(self.steals_seen)),
            "load_imbalance": m.get("load_imbalance", 0.0),
            "redistribution_latency": m.get("redistribution_latency_seconds", 0.0),
            "contention": m.get("lock_contention_rate", 0.0),
            "critical_path_progress": m.get("critical_path_progress", 0.0),
        }
        self.series.append(point)
        return point
