"""What the turn loop takes in (``driver.LeaderDriver``): watch batches, a
fresh mirror, agent messages, client requests, timers. Data only."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from workhive.coordinator.etcd import ClusterState, WatchBatch
from workhive.coordinator.leader.growth import AddRequest
from workhive.coordinator.leader.ports import Gone, Hello, Report
from workhive.coordinator.leader.submits import SubmitRequest
from workhive.coordinator.scheduling import ClaimWithdrawn, DeadlineTick, Event, StealTick


@dataclass(frozen=True)
class Cancel:
    project_id: str
    reason: str
    done: asyncio.Future[int]


@dataclass(frozen=True)
class Ask:
    """A pull agent's request ``seq``; ``wait`` seconds until it is withdrawn."""

    agent_id: str
    seq: int
    wait: float


@dataclass(frozen=True)
class Deferred:
    """Scheduler events postponed to a later turn."""

    events: tuple[Event, ...]


Input = (
    WatchBatch
    | ClusterState
    | Report
    | Hello
    | Gone
    | Cancel
    | AddRequest
    | SubmitRequest
    | Ask
    | ClaimWithdrawn
    | StealTick
    | DeadlineTick
    | Deferred
    | str
)

EARLY = (Report, Hello, Gone, Cancel, AddRequest, SubmitRequest, Ask)
"""Inputs that wait for the mirror when they come before it (or during a re-list)."""
