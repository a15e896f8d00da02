"""Completions: agents' reports committed as one batch per turn.

Contract (rule 4, docs/etcd-layer.md): a success or a final failure commits
only if the claim still exists with the fence and lease the agent was given;
a retryable failure gives the claim back (the scheduler then requeues).
The agent is acknowledged only after the write committed and rejected
(stale fence) otherwise; the scheduler hears only of committed outcomes.
"""

from __future__ import annotations

from workhive.coordinator.etcd import Completion
from workhive.coordinator.leader.ports import Report
from workhive.coordinator.leader.spawn import Spawner
from workhive.coordinator.leader.term import Term
from workhive.coordinator.model import Claim, TaskResult, TaskState
from workhive.coordinator.scheduling import Event, TaskFailed, TaskSucceeded

STALE = "claim moved or expired (stale fence)"


class Completions:
    def __init__(self, term: Term) -> None:
        self.term = term
        self.spawner = Spawner(term)

    async def commit(self, reports: list[Report], now: float) -> list[Event]:
        spawning = [r for r in reports if r.ok and (r.children is not None or r.refusal)]
        reports = [r for r in reports if not (r.ok and (r.children is not None or r.refusal))]
        done = [r for r in reports if r.ok or not r.retryable]
        failed = [r for r in reports if not r.ok and r.retryable]
        events: list[Event] = []
        if done:
            events += await self._finished(done, now)
        if failed:
            events += await self._given_back(failed, now)
        for r in spawning:  # one txn each: completion and children together
            events += await self.spawner.commit(r, now)
        return events

    async def _finished(self, done: list[Report], now: float) -> list[Event]:
        term, mirror = self.term, self.term.view()
        comps = [
            Completion(
                key=r.ref.key,
                fence=r.ref.fence,
                lease_id=r.lease_id,
                result=TaskResult(
                    key=r.ref.key,
                    state=TaskState.SUCCEEDED if r.ok else TaskState.FAILED,
                    agent=r.agent_id,
                    attempt=r.ref.attempt,
                    reason=r.reason,
                    duration=r.duration,
                    output_tail=r.output_tail,
                    finished_at=now,
                    result_json=r.result_json if r.ok else "",
                ),
            )
            for r in done
        ]
        results = await term.writer.call(term.writer.store.complete, comps, mirror.tasks)
        events: list[Event] = []
        for r, c, res in zip(done, comps, results, strict=True):
            if not res.ok:
                term.metrics.completions_rejected.inc()
                term.port.reject(r.agent_id, r.ref, STALE)
                continue
            mirror.fold_result(c.result, res.revision)
            term.port.ack(r.agent_id, r.ref)
            if r.ok:
                events.append(TaskSucceeded(c.key, r.agent_id, r.duration, now))
                term.latencies.succeeded(c.key, mirror)
            else:
                events.append(TaskFailed(c.key, r.agent_id, r.reason, False, now))
        return events

    async def _given_back(self, failed: list[Report], now: float) -> list[Event]:
        term, mirror = self.term, self.term.view()
        claims: list[tuple[Report, Claim]] = []
        for r in failed:
            claim = mirror.claims.get(r.ref.key)
            if claim is None or claim.fence != r.ref.fence or claim.agent != r.agent_id:
                term.port.reject(r.agent_id, r.ref, STALE)
                continue
            claims.append((r, claim))
        results = await term.writer.fenced(term.writer.store.release, [c for _, c in claims])
        events: list[Event] = []
        for (r, claim), res in zip(claims, results, strict=True):
            if res.ok:
                mirror.fold_release(claim.key, res.revision)
                term.port.ack(r.agent_id, r.ref)
                events.append(
                    TaskFailed(claim.key, r.agent_id, r.reason, True, now, spent=not r.released)
                )
            else:
                term.port.reject(r.agent_id, r.ref, STALE)
        return events
