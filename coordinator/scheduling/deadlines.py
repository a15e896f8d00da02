"""Per-task deadlines: a task running past its ``timeout`` is revoked
(docs/scheduling.md, "Deadlines and backoff").

Contract: the scheduler arms a deadline ``started_at + timeout`` when a task
with a ``timeout`` starts; an event whose ``now`` is at or past it makes the
scheduler emit ``RevokeTask`` (the leader deletes the claim, fenced, and tells
the agent to stop) and count the attempt as failed with reason
``DEADLINE_EXCEEDED``: retried after its backoff or failed for good once
``max_attempts`` are spent. ``DeadlineTick`` carries nothing but the time:
the leader sends one when the earliest deadline or retry time
(``SchedulerState.next_wakeup``) has come.

``Deadlines`` is a lazy heap: an entry counts only while the task is still
running the same attempt started at the same time (the caller checks with
the ``(attempt, started_at)`` it gets back), so stopping a task needs no call.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

from workhive.coordinator.model import TaskKey
from workhive.coordinator.scheduling.retry_policy import RetryWaits

__all__ = ["DEADLINE_EXCEEDED", "DeadlineTick", "Deadlines", "RevokeTask", "TaskTimers"]

DEADLINE_EXCEEDED = "deadline exceeded"


@dataclass(frozen=True, slots=True)
class DeadlineTick:
    """Time passed: expire deadlines and backoffs due at ``now``."""

    now: float


@dataclass(frozen=True, slots=True)
class RevokeTask:
    """Delete the claim of ``agent_id`` on ``key`` (attempt ``attempt``) and
    tell the agent to stop it; its later report is refused by the fence. The
    ``RequeueTask`` or ``MarkTaskFailed`` for the same key follows."""

    key: TaskKey
    agent_id: str
    attempt: int
    reason: str


class Deadlines:
    """Armed deadlines, earliest first."""

    __slots__ = ("_heap",)

    def __init__(self) -> None:
        self._heap: list[tuple[float, str, str, int, float]] = []

    def arm(self, key: TaskKey, attempt: int, started_at: float, timeout: float | None) -> None:
        """Start the clock of ``key``'s ``attempt`` (no ``timeout``: nothing)."""
        if timeout is not None:
            heapq.heappush(
                self._heap, (started_at + timeout, key.project, key.task, attempt, started_at)
            )

    def clear(self) -> None:
        self._heap.clear()

    def next_at(self) -> float | None:
        """The earliest armed deadline (perhaps of a task already stopped)."""
        return self._heap[0][0] if self._heap else None

    def due(self, now: float) -> list[tuple[TaskKey, int, float]]:
        """``(key, attempt, started_at)`` of every deadline ``<= now``, earliest
        first, each returned once."""
        out: list[tuple[TaskKey, int, float]] = []
        h = self._heap
        while h and h[0][0] <= now:
            _, project, task, attempt, started_at = heapq.heappop(h)
            out.append((TaskKey(project, task), attempt, started_at))
        return out


class TaskTimers:
    """What ``SchedulerState`` keeps of its tasks' clocks: the deadlines of
    running attempts, the retries waiting out a backoff, and the reason of
    each task's last failed attempt (shown in status). Reset with the state."""

    __slots__ = ("deadlines", "last_failure", "waits")

    def __init__(self) -> None:
        self.deadlines = Deadlines()
        self.waits = RetryWaits()
        self.last_failure: dict[TaskKey, str] = {}

    def next_wakeup(self) -> float | None:
        """The earliest deadline or end of a backoff."""
        times = [x for x in (self.deadlines.next_at(), self.waits.next_at()) if x is not None]
        return min(times) if times else None

    def forget(self, project_id: str) -> None:
        """Drop a deleted project's failure reasons (its stale heap entries
        are skipped when due)."""
        for key in [k for k in self.last_failure if k.project == project_id]:
            del self.last_failure[key]
