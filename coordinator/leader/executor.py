"""The command executor: the scheduler's commands as fenced etcd writes and
agent messages.

Contract: ``execute(commands)`` groups the commands by kind and writes each
kind as one batch (group commit), in an order that keeps them consistent:
requeues first (a task requeued and re-assigned in one turn is claimed at
its new attempt), then new claims and start confirmations together
(different tasks), then steals, then failures and cancels. An agent hears of
a task only after its write committed (rule 3, docs/etcd-layer.md); every
write the store refuses comes back as the scheduler's rejection event
(``AssignRejected``, ``StartRejected``, ``StealRejected``), decided again in
a later turn. An assignment refused because another agent's claim still
exists is parked until that claim is deleted (``unpark``).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import structlog

from workhive.coordinator.etcd import (
    ClaimRequest,
    EtcdError,
    Finish,
    ItemResult,
    Steal,
    TaskRecord,
)
from workhive.coordinator.leader.completions import Speculated
from workhive.coordinator.leader.revoke import revoke_overdue
from workhive.coordinator.leader.submits import Pending, Submits
from workhive.coordinator.leader.term import Term
from workhive.coordinator.model import Claim, TaskKey, TaskRef, TaskResult, TaskState
from workhive.coordinator.scheduling import (
    AssignRejected,
    AssignTask,
    CancelTask,
    ClaimUnanswered,
    Command,
    Event,
    MarkTaskFailed,
    ProjectFinished,
    RequestReplan,
    RequeueTask,
    RevokeTask,
    StartRejected,
    StartTask,
    StealRejected,
    StealTask,
)

log = structlog.get_logger("workhive.leader")


def _lease(r: ClaimRequest) -> int:
    return int(r.lease_id)


class CommandExecutor:
    """Executes one turn's commands (see module docstring)."""

    def __init__(
        self,
        term: Term,
        replan: Callable[[str], None],
        confirm: Callable[[Sequence[Speculated], Sequence[ItemResult]], None] = lambda s, r: None,
        stored: Callable[[Sequence[Pending], Sequence[ItemResult]], None] = lambda p, r: None,
    ) -> None:
        self.term = term
        self.replan = replan
        self.confirm = confirm
        self.stored = stored
        self._parked: dict[TaskKey, AssignRejected] = {}

    def unpark(self, key: TaskKey) -> AssignRejected | None:
        """The claim on ``key`` is gone: the assignment it blocked, to retry."""
        return self._parked.pop(key, None)

    async def execute(
        self,
        commands: list[Command],
        completing: Sequence[Speculated] = (),
        submitted: Sequence[Pending] = (),
    ) -> list[Event]:
        """Write ``commands``; ``completing`` are successes the scheduler was
        told of before they committed: they commit with the turn's claims (a
        claim on a task they release only in the same txn) and are handed to
        ``confirm`` before any assignment is pushed (a child's inputs are its
        parents' results). ``submitted`` are projects the scheduler was told
        of before their write: each is stored with its tasks' claims
        (``leader.submits``) and handed to ``stored`` before any is pushed."""
        now = self.term.clock.wall()
        by_kind: dict[type, list[Any]] = defaultdict(list)
        for c in commands:
            by_kind[type(c)].append(c)
        events: list[Event] = []
        await revoke_overdue(self.term, by_kind[RevokeTask])  # claims gone before requeues
        await self._requeue(by_kind[RequeueTask])
        assigned, started = await asyncio.gather(
            self._assign(by_kind[AssignTask], now, completing, submitted),
            self._start(by_kind[StartTask], now),
        )
        events += assigned + started
        events += await self._steal(by_kind[StealTask], now)
        await self._finish(by_kind[MarkTaskFailed], by_kind[CancelTask])
        for cu in by_kind[ClaimUnanswered]:
            self.term.port.claim_empty(cu.agent_id, cu.seq)
        for rp in by_kind[RequestReplan]:
            log.info("plan dropped", project=rp.project_id, reason=rp.reason)
            self.replan(rp.project_id)
        for pf in by_kind[ProjectFinished]:
            log.info("project finished", project=pf.project_id, outcome=pf.outcome)
        return events

    async def _assign(
        self,
        cmds: list[AssignTask],
        now: float,
        completing: Sequence[Speculated] = (),
        submitted: Sequence[Pending] = (),
    ) -> list[Event]:
        term, mirror = self.term, self.term.view()
        unwritten = Submits.records(submitted)
        reqs: list[tuple[AssignTask, ClaimRequest]] = []
        events: list[Event] = []
        for c in cmds:
            rec = mirror.tasks.get(c.key) or unwritten.get(c.key)
            lease = term.lease_of(c.agent_id)
            if rec is None or not lease:
                events.append(AssignRejected(c.key, c.agent_id, now))
                continue
            reqs.append((c, ClaimRequest(rec, c.agent_id, lease, c.start_now, c.after)))
        fresh = [i for i, (_, r) in enumerate(reqs) if r.record.key in unwritten]
        rest = [i for i, (_, r) in enumerate(reqs) if r.record.key not in unwritten]
        stored, made = await asyncio.gather(
            self._stored_with_claims(submitted, [reqs[i][1] for i in fresh]),
            self._claim([reqs[i][1] for i in rest], completing),
        )
        results = dict(zip(fresh + rest, stored + made, strict=True))
        for i, (c, req) in enumerate(reqs):
            res = results[i]
            if res.ok and res.claim is not None:
                mirror.fold_claim(res.claim, exact=True)
                if req.record.state is TaskState.PENDING and not c.after:
                    mirror.fold_task(
                        replace(req.record, state=TaskState.READY, mod_revision=res.revision),
                        exact=True,
                    )
                term.metrics.assignments.labels("chained" if c.after else "claimed").inc()
                term.assign(res.claim)
                if c.start_now:
                    term.latencies.started(c.key)
            else:
                term.metrics.assignments.labels("conflict").inc()
                term.metrics.claim_conflicts.inc()
                rejected = AssignRejected(c.key, c.agent_id, now)
                holder = mirror.claims.get(c.key)
                if holder is not None and holder.agent != c.agent_id:
                    self._parked[c.key] = rejected  # retried once that claim is gone
                else:
                    events.append(rejected)
                    await self._refresh_record(c.key)
        return events

    async def _stored_with_claims(
        self, submitted: Sequence[Pending], reqs: list[ClaimRequest]
    ) -> list[ItemResult]:
        """Store the pending projects with their claims, fold them in and
        answer their callers (``stored``); the claims' results."""
        if not submitted:
            return []
        writer = self.term.writer
        subs = [p.submission for p in submitted]
        done, made = await writer.submit_and_create(subs, reqs, _lease)
        self.stored(submitted, done)
        return made

    async def _claim(
        self, reqs: list[ClaimRequest], completing: Sequence[Speculated]
    ) -> list[ItemResult]:
        """Create claims, committing the speculated completions with them."""
        writer = self.term.writer
        if completing:
            done, results = await writer.complete_and_create(
                [s.completion for s in completing], self.term.view().tasks, reqs, _lease
            )
            self.confirm(completing, done)
            return results
        return await writer.fenced_on_leases(writer.store.create, reqs, _lease)

    async def _refresh_record(self, key: TaskKey) -> None:
        """Re-read a task record after a conflict (the mirror may lag)."""
        try:
            rec = await self.term.writer.call(self.term.writer.store.task_record, key)
        except EtcdError:
            return
        if rec is not None:
            self.term.view().fold_task(rec)

    async def _start(self, cmds: list[StartTask], now: float) -> list[Event]:
        term, mirror = self.term, self.term.view()
        todo = [(c, mirror.claims.get(c.key)) for c in cmds]
        events: list[Event] = [
            StartRejected(c.key, c.agent_id, now)
            for c, claim in todo
            if claim is None or claim.agent != c.agent_id
        ]
        mine = [(c, cl) for c, cl in todo if cl is not None and cl.agent == c.agent_id]
        results = await term.writer.fenced(term.writer.store.start, [cl for _, cl in mine])
        for (c, _), res in zip(mine, results, strict=True):
            if res.ok and res.claim is not None:
                mirror.fold_claim(res.claim, exact=True)
                term.port.grant(res.claim)
                term.latencies.started(c.key)
            else:
                events.append(StartRejected(c.key, c.agent_id, now))
        return events

    async def _steal(self, cmds: list[StealTask], now: float) -> list[Event]:
        term, mirror = self.term, self.term.view()
        decided = term.clock.monotonic()
        moves: list[tuple[StealTask, Claim, Steal]] = []
        events: list[Event] = []
        for c in cmds:
            claim = mirror.claims.get(c.key)
            lease = term.lease_of(c.to_agent)
            if claim is None or claim.agent != c.from_agent or claim.started or not lease:
                events.append(StealRejected(c.key, c.from_agent, c.to_agent, now))
                continue
            moves.append((c, claim, Steal(claim, c.to_agent, lease)))
        results = await term.writer.fenced_on_leases(
            term.writer.store.steal, [m for _, _, m in moves], lambda m: int(m.lease_id)
        )
        starts: list[tuple[StealTask, Claim]] = []
        moved = 0
        for (c, old, _), res in zip(moves, results, strict=True):
            if res.ok and res.claim is not None:
                moved += 1
                term.latencies.stolen(c.key, decided)
                mirror.fold_claim(res.claim, exact=True)
                term.metrics.steals.labels("moved").inc()
                term.metrics.last_steal_time.set(term.clock.wall())
                term.port.revoke(old.agent, TaskRef.of(old), f"stolen by {c.to_agent}")
                if c.start_now:
                    starts.append((c, res.claim))
                else:
                    term.assign(res.claim)
            else:
                term.metrics.steals.labels("rejected").inc()
                events.append(StealRejected(c.key, c.from_agent, c.to_agent, now))
        if moved:
            term.metrics.steal_size.observe(moved)
        if starts:
            started = await term.writer.fenced(term.writer.store.start, [cl for _, cl in starts])
            for (c, _), res in zip(starts, started, strict=True):
                if res.ok and res.claim is not None:
                    mirror.fold_claim(res.claim, exact=True)
                    term.assign(res.claim)
                    term.latencies.started(c.key)
                else:
                    events.append(StartRejected(c.key, c.to_agent, now))
        return events

    async def _requeue(self, cmds: list[RequeueTask], retry: bool = True) -> None:
        """READY again at the attempt the scheduler decided (it alone decides
        whether a task is retried or failed for good)."""
        term, mirror = self.term, self.term.view()
        todo: list[tuple[RequeueTask, TaskRecord]] = [
            (c, r) for c in cmds if (r := mirror.tasks.get(c.key)) is not None
        ]
        results = await term.writer.fenced(
            term.writer.store.requeue, [r for _, r in todo], attempts=[c.attempt for c, _ in todo]
        )
        again: list[RequeueTask] = []
        for (cmd, rec), res in zip(todo, results, strict=True):
            if res.ok:
                mirror.fold_task(
                    replace(
                        rec, state=TaskState.READY, attempt=cmd.attempt, mod_revision=res.revision
                    )
                )
                term.latencies.ready(rec.key)
            elif retry:
                await self._refresh_record(rec.key)
                again.append(cmd)
            else:
                log.warning("requeue conflict", task=str(rec.key))
        if again:
            await self._requeue(again, retry=False)

    async def _finish(self, failed: list[MarkTaskFailed], cancelled: list[CancelTask]) -> None:
        term, mirror = self.term, self.term.view()
        items: list[Finish] = []
        for state, key, reason in [
            *((TaskState.FAILED, c.key, c.reason) for c in failed),
            *((TaskState.CANCELLED, c.key, c.reason) for c in cancelled),
        ]:
            rec = mirror.tasks.get(key)
            if rec is None or rec.state.terminal or key in mirror.results:
                continue
            items.append(Finish(rec, state, reason, mirror.claims.get(key)))
        results = await term.writer.fenced(term.writer.store.finish, items)
        for f, res in zip(items, results, strict=True):
            if res.ok:
                mirror.fold_task(replace(f.record, state=f.state, mod_revision=res.revision))
                mirror.fold_result(TaskResult(f.record.key, f.state, reason=f.reason), res.revision)
        for f in items:
            if f.claim is not None:
                term.port.revoke(f.claim.agent, TaskRef.of(f.claim), f.reason)
