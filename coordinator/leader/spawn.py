"""Completions that spawn tasks (docs/scheduling.md, "Tasks that spawn tasks").

Contract: the children are checked like an ``AddTasks`` batch
(``scheduling.growth.check_addition``) and committed with the completion in
one fenced txn (``etcd.grow.complete_and_grow``): a rejected completion
(stale fence, lease gone) spawns nothing, and a repeated one (a report sent
again after a lost ack) spawns once: it finds its own result already there
and is acknowledged without writing. Children refused by the check (or by
the edge, ``Report.refusal``) refuse the completion: the agent hears the
reason (INVALID_PROJECT), the task is handed back (ready again, no attempt
spent) and nothing is added.
"""

from __future__ import annotations

from workhive.coordinator.etcd import Completion, Growth, Outcome, grown
from workhive.coordinator.leader.ports import Report
from workhive.coordinator.leader.term import Term
from workhive.coordinator.leader.writes import NotLeading
from workhive.coordinator.model import TaskKey, TaskResult, TaskSpec, TaskState
from workhive.coordinator.scheduling import (
    Event,
    ProjectError,
    TaskFailed,
    TasksAdded,
    TaskSucceeded,
    check_addition,
)

STALE = "claim moved or expired (stale fence)"


class Spawner:
    def __init__(self, term: Term) -> None:
        self.term = term

    async def commit(self, r: Report, now: float) -> list[Event]:
        term, mirror, state = self.term, self.term.view(), self.term.state
        key = r.ref.key
        prev = mirror.results.get(key)
        if prev is not None and (prev.agent, prev.attempt) == (r.agent_id, r.ref.attempt):
            term.port.ack(r.agent_id, r.ref)  # a repeat: spawned once, with the first
            return []
        add = r.children
        if r.refusal or add is None:
            return await self._refuse(r, r.refusal or "no new tasks", now)

        def spec_of(tid: str) -> TaskSpec | None:
            rec = mirror.tasks.get(TaskKey(key.project, tid))
            return rec.spec if rec is not None else None

        # an agent never starts what is chained after a success that adds
        # tasks: those may still be blocked by the new ones
        chained = state.chained_after(key)

        def state_of(tid: str) -> TaskState | None:
            if tid in chained:
                return TaskState.PENDING
            return state.task_state(TaskKey(key.project, tid))

        try:
            check_addition(add, spec_of, state_of, f"<new tasks of {key.task}>")
        except ProjectError as exc:
            return await self._refuse(r, str(exc), now)
        rec, meta = mirror.tasks.get(key), mirror.projects.get(key.project)
        if rec is None or meta is None:
            term.port.reject(r.agent_id, r.ref, STALE)
            return []
        blocked = add.blocked_deps()
        g = Growth(
            meta,
            add.tasks,
            tuple(mirror.tasks[TaskKey(key.project, x)] for x in blocked),
            tuple(tuple(ns) for ns in blocked.values()),
        )
        result = TaskResult(
            key,
            TaskState.SUCCEEDED,
            agent=r.agent_id,
            attempt=r.ref.attempt,
            duration=r.duration,
            output_tail=r.output_tail,
            finished_at=now,
            result_json=r.result_json,
        )
        comp = Completion(key, r.ref.fence, r.lease_id, result)
        res = await term.writer.call(term.writer.store.complete_spawning, comp, rec, g, term.fence)
        if res.outcome is Outcome.NOT_LEADER:
            raise NotLeading()
        if not res.ok:
            term.metrics.completions_rejected.inc()
            term.port.reject(r.agent_id, r.ref, STALE)
            return []
        mirror.fold_result(result, res.revision)
        new_meta, records = grown(g, res.revision)
        mirror.fold_meta(new_meta)
        for record in records:
            mirror.fold_task(record)
        term.port.ack(r.agent_id, r.ref)
        return [TasksAdded(add, now), TaskSucceeded(key, r.agent_id, r.duration, now)]

    async def _refuse(self, r: Report, reason: str, now: float) -> list[Event]:
        """Refuse the completion, naming ``reason``; hand the task back."""
        term, mirror = self.term, self.term.view()
        claim = mirror.claims.get(r.ref.key)
        events: list[Event] = []
        if claim is not None and claim.fence == r.ref.fence and claim.agent == r.agent_id:
            res = (await term.writer.fenced(term.writer.store.release, [claim]))[0]
            if res.ok:
                mirror.fold_release(claim.key, res.revision)
                events.append(
                    TaskFailed(claim.key, r.agent_id, f"refused: {reason}", True, now, spent=False)
                )
        term.port.reject(r.agent_id, r.ref, f"new tasks refused: {reason}", invalid=True)
        return events
