"""Progress that running tasks report (``Task.progress`` in the agent SDK).

Contract: the board keeps, per task, the latest ``(fraction, note)`` reported
under the claim that holds it now; a report from an agent that does not
hold the task's current claim (another agent, an older fence) is ignored,
and a reading for a task whose claim is gone (finished, requeued) is empty:
the driver forgets a report when the watch deletes its claim, so the board
holds at most one entry per live claim.
Progress is advisory and lives in the leader's memory only: it is not in
etcd, and a new leader shows none until the task reports again.
"""

from __future__ import annotations

import math

from workhive.coordinator.etcd import ClusterState
from workhive.coordinator.model import Claim, TaskKey, TaskProgress, TaskRef

MAX_NOTE_CHARS = 256
"""Longer notes are cut to this many characters."""


class ProgressBoard:
    """The latest progress per running task (see the module docstring)."""

    def __init__(self) -> None:
        self._latest: dict[TaskKey, TaskProgress] = {}

    def report(
        self, mirror: ClusterState | None, agent_id: str, ref: TaskRef, fraction: float, note: str
    ) -> bool:
        """Record a report; False (ignored) unless ``agent_id`` holds ``ref``'s claim."""
        claim = mirror.claims.get(ref.key) if mirror is not None else None
        if claim is None or claim.agent != agent_id or claim.fence != ref.fence:
            return False
        clamped = 0.0 if math.isnan(fraction) else min(1.0, max(0.0, fraction))
        self._latest[ref.key] = TaskProgress(ref.fence, clamped, note[:MAX_NOTE_CHARS])
        return True

    def forget(self, claim: Claim) -> None:
        """``claim`` was deleted: drop the report made under it."""
        p = self._latest.get(claim.key)
        if p is not None and p.fence == claim.fence:
            del self._latest[claim.key]

    def latest(self) -> dict[TaskKey, TaskProgress]:
        """A copy of every report held (the claim check is the reader's: a
        report counts only while a claim with its fence holds the task)."""
        return dict(self._latest)

    def of(self, mirror: ClusterState | None, key: TaskKey) -> TaskProgress | None:
        """The task's progress under its current claim, if it reported any."""
        p = self._latest.get(key)
        if p is None:
            return None
        claim = mirror.claims.get(key) if mirror is not None else None
        if claim is None or claim.fence != p.fence:
            del self._latest[key]  # its claim ended: the report is history
            return None
        return p
