"""Adding tasks to a running project, inside the turn loop
(docs/scheduling.md, "Growing a project").

Contract: a batch is validated against the scheduler's view of the whole
project (``scheduling.growth.check_addition``: states as the scheduler
holds them, so a task it has just assigned counts as started) and then
committed in one fenced etcd txn (``etcd.grow``); only then is the mirror
updated and the scheduler told (``TasksAdded``). Any refusal (a rule, a
cancelled project, the txn's compares) writes nothing and reaches the caller
through the request's future as :class:`AddRefused`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import structlog

from workhive.coordinator.etcd import Growth, GrowthTooLarge, grown
from workhive.coordinator.leader.term import Term
from workhive.coordinator.leader.writes import NotLeading
from workhive.coordinator.model import TaskKey, TaskSpec, TaskState
from workhive.coordinator.scheduling import (
    Addition,
    Event,
    ProjectError,
    TasksAdded,
    check_addition,
)

log = structlog.get_logger("workhive.leader")


class AddRefused(Exception):
    """A batch was refused; ``kind`` is ``invalid``, ``unknown`` or ``conflict``."""

    def __init__(self, message: str, kind: str = "invalid") -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True, slots=True)
class Added:
    """A committed batch: at ``revision``, the project now has ``task_count`` tasks."""

    project_id: str
    revision: int
    added: int
    task_count: int


@dataclass(frozen=True)
class AddRequest:
    addition: Addition
    source: str
    done: asyncio.Future[Added]


class Grower:
    """Validates and commits batches for the turn loop (see module docstring)."""

    def __init__(self, term: Term) -> None:
        self.term = term

    async def add(self, req: AddRequest, now: float) -> list[Event]:
        try:
            added = await self._add(req.addition, req.source)
        except NotLeading:
            if not req.done.done():
                req.done.set_exception(NotLeading())
            raise
        except (AddRefused, ProjectError, GrowthTooLarge) as exc:
            if not req.done.done():
                req.done.set_exception(exc if isinstance(exc, AddRefused) else AddRefused(str(exc)))
            return []
        if not req.done.done():
            req.done.set_result(added)
        log.info("tasks added", project=added.project_id, added=added.added)
        return [TasksAdded(req.addition, now)]

    async def _add(self, add: Addition, source: str) -> Added:
        term, mirror, state = self.term, self.term.view(), self.term.state
        pid = add.project_id
        meta = mirror.projects.get(pid)
        if meta is None or not state.knows(pid):
            raise AddRefused(f"no project {pid!r}", "unknown")
        if state.project_outcome(pid) == "cancelled":
            raise AddRefused(f"{source}: project {pid!r} is cancelled: nothing can be added")

        def spec_of(tid: str) -> TaskSpec | None:
            rec = mirror.tasks.get(TaskKey(pid, tid))
            return rec.spec if rec is not None else None

        def state_of(tid: str) -> TaskState | None:
            return state.task_state(TaskKey(pid, tid))

        check_addition(add, spec_of, state_of, source)
        blocked = add.blocked_deps()
        g = Growth(
            meta,
            add.tasks,
            tuple(mirror.tasks[TaskKey(pid, x)] for x in blocked),
            tuple(tuple(ns) for ns in blocked.values()),
        )
        res = (await term.writer.fenced(term.writer.store.grow, [g]))[0]
        if not res.ok:
            raise AddRefused(
                f"{source}: project {pid!r} changed while the batch was written "
                "(a blocked task was claimed meanwhile?): nothing written, retry",
                "conflict",
            )
        new_meta, records = grown(g, res.revision)
        mirror.fold_meta(new_meta)
        for rec in records:
            mirror.fold_task(rec)
        return Added(pid, res.revision, len(add.tasks), new_meta.task_count)
