"""Completions: agents' reports committed as one batch per turn.

Contract (rule 4, docs/etcd-layer.md): a success or a final failure commits
only if the claim still exists with the fence and lease the agent was given;
a retryable failure gives the claim back (the scheduler then requeues).
The agent is acknowledged only after the write committed and rejected
(stale fence) otherwise; the scheduler hears only of committed outcomes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from workhive.coordinator.etcd import Completion, ItemResult
from workhive.coordinator.leader.ports import Report
from workhive.coordinator.leader.spawn import Spawner
from workhive.coordinator.leader.term import Term
from workhive.coordinator.model import Claim, TaskKey, TaskResult, TaskState
from workhive.coordinator.scheduling import Event, TaskFailed, TaskSucceeded

STALE = "claim moved or expired (stale fence)"


@dataclass(frozen=True, slots=True)
class Speculated:
    """A success handed to the scheduler before its write: the report, the
    completion to commit, and the event the scheduler was given."""

    report: Report
    completion: Completion
    event: TaskSucceeded


def _completion(r: Report, now: float) -> Completion:
    return Completion(
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

    def in_order(
        self,
        spec: list[Speculated],
        rest: list[Report],
        again: Callable[[Report], None],
        delay: float,
    ) -> tuple[list[Speculated], list[Report]]:
        """``speculate``'s split, less the successes that must not be decided
        yet: a task's success never commits before a dependency's. A chained
        task (docs/scheduling.md, "Chains run back to back") ran right after
        the dependencies its claim names (``after``) and reports behind them.
        Its success goes ahead when each of them has committed, or is
        speculated earlier in this batch: the executor commits them in one
        group (``etcd.handoff``: all or nothing). Otherwise it is handed to
        ``again``: for the next turn (which starts after this one's writes)
        if one of them is reported in this batch, else after ``delay``
        seconds. A claim revoked meanwhile (the dependency ended otherwise)
        leaves the report to be refused as stale."""
        mirror = self.term.view()
        speculated = {s.completion.key.task for s in spec}
        reported = {r.ref.key.task for r in rest if r.ok} | speculated
        kept: list[Speculated] = []
        left: list[Report] = []
        passed: set[str] = set()
        for report, spec_ in [(s.report, s) for s in spec] + [(r, None) for r in rest]:
            key = report.ref.key
            claim = mirror.claims.get(key)
            after = claim.after if report.ok and claim is not None else ()
            pending = set(mirror.unfinished(key.project, after))
            if pending and not (spec_ is not None and pending <= passed):
                if pending & reported:
                    again(report)
                else:
                    asyncio.get_running_loop().call_later(delay, again, report)
                continue
            if spec_ is not None:
                kept.append(spec_)
                passed.add(key.task)
            else:
                left.append(report)
        return kept, left

    def speculate(self, reports: list[Report], now: float) -> tuple[list[Speculated], list[Report]]:
        """Split off the successes the scheduler may hear of before they commit:
        no children, the claim in the mirror is the one the agent reports
        under (agent, fence, lease), the record is known and no result is.
        Their ``TaskSucceeded`` events are returned with them; the executor
        commits them together with the claims they release (``confirm``
        answers the agents). Everything else is left for ``commit``."""
        mirror = self.term.view()
        spec: list[Speculated] = []
        rest: list[Report] = []
        seen: set[TaskKey] = set()
        for r in reports:
            key = r.ref.key
            claim = mirror.claims.get(key)
            rec = mirror.tasks.get(key)
            if (
                r.ok
                and r.children is None
                and not r.refusal
                and key not in seen
                and claim is not None
                and claim.agent == r.agent_id
                and claim.fence == r.ref.fence
                and claim.attempt == r.ref.attempt
                and claim.lease_id == r.lease_id
                and rec is not None
                and rec.mod_revision > 0
                and key not in mirror.results
            ):
                seen.add(key)
                c = _completion(r, now)
                spec.append(Speculated(r, c, TaskSucceeded(key, r.agent_id, r.duration, now)))
            else:
                rest.append(r)
        return spec, rest

    def confirm(self, spec: Sequence[Speculated], results: Sequence[ItemResult]) -> int:
        """Answer the agents of speculated completions once their writes are
        decided; returns how many were refused (the scheduler was told of
        them: the caller must rebuild its state from etcd)."""
        refused = 0
        for s, res in zip(spec, results, strict=True):
            if self._settled(s.report, s.completion, res):
                continue
            refused += 1
        return refused

    def _settled(self, r: Report, c: Completion, res: ItemResult) -> bool:
        """Fold a committed outcome and ack it, or reject a refused one."""
        term, mirror = self.term, self.term.view()
        if not res.ok:
            term.metrics.completions_rejected.inc()
            term.port.reject(r.agent_id, r.ref, STALE)
            return False
        # exact when this write stored both (not when the same completion
        # had been committed before: that one's result is held as stored)
        if res.record is not None:
            mirror.fold_task(res.record, exact=True)
        mirror.fold_result(c.result, res.revision, exact=res.record is not None)
        term.port.ack(r.agent_id, r.ref)
        if r.ok:
            term.latencies.succeeded(c.key, mirror)
        return True

    async def _finished(self, done: list[Report], now: float) -> list[Event]:
        term, mirror = self.term, self.term.view()
        comps = [_completion(r, now) for r in done]
        results = await term.writer.fenced(term.writer.store.complete, comps, known=mirror.tasks)
        events: list[Event] = []
        for r, c, res in zip(done, comps, results, strict=True):
            if not self._settled(r, c, res):
                continue
            if r.ok:
                events.append(TaskSucceeded(c.key, r.agent_id, r.duration, now))
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
