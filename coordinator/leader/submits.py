"""Small projects submitted through the turn and stored with their first
claims (docs/leader.md, "Submit and claim in one txn").

Contract: a project that fits one txn (:func:`fits`) is not written by the
submit call itself: it joins the turn loop's inputs, the scheduler hears of
it at once (``ProjectSubmitted``), and the executor writes it together with
the claims the scheduler made for its tasks in that turn, one all-or-nothing
item per project (``etcd.submit_and_claim``): one durable commit between the
submit and the first task's start, where the full protocol takes two and a
watch echo. The project enters the mirror only once it committed, and only
then is the caller answered (with the commit's revision).

A project the mirror holds already is refused at once (``ProjectExists``:
nothing written). One that could collide (known to the scheduler, twice in
one turn, keys of a killed submit left in etcd) is sent back to the full
protocol (:class:`FullProtocol`, ``etcd.submit_project``), which says why or
clears the leftovers. So is one whose write is refused: its claims were
refused with it (same item), and since the scheduler was told of a project
etcd does not hold, the driver re-lists (a fresh snapshot), as after a
refused speculated completion. A caller that gave up before its turn came
(a cancelled future) is skipped: nothing is written for it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from workhive.coordinator.etcd import (
    FenceLost,
    ItemResult,
    ProjectExists,
    ProjectMeta,
    Submission,
    TaskRecord,
    submission,
)
from workhive.coordinator.leader.term import Term
from workhive.coordinator.model import ProjectSpec, TaskKey
from workhive.coordinator.scheduling import Event, ProjectSubmitted

MAX_TASKS = 40
"""Tasks of a project stored with its claims: with one claim each, the item
stays within etcd's default 128 operations a txn."""
MAX_PAYLOAD_BYTES = 512 * 1024
"""Bytes of task payloads (JSON) a project so stored may have: far below the
1.5 MiB etcd takes in one request (a payload may have 64 KiB)."""


def fits(spec: ProjectSpec) -> bool:
    """Whether ``spec`` is small enough to be stored with its claims."""
    if not 0 < len(spec.tasks) <= MAX_TASKS:
        return False
    payload = sum(len(json.dumps(t.payload)) for t in spec.tasks if t.payload is not None)
    return payload <= MAX_PAYLOAD_BYTES


class FullProtocol(Exception):
    """This submit must take the full protocol (``etcd.submit_project``)."""


@dataclass(frozen=True)
class SubmitRequest:
    spec: ProjectSpec
    done: asyncio.Future[ProjectMeta]


@dataclass(frozen=True, slots=True)
class Pending:
    """A project the scheduler was told of before its write."""

    request: SubmitRequest
    submission: Submission


class Submits:
    """Accepts submits for the turn and settles them after their write."""

    def __init__(self, term: Term, plan_later: Callable[[str], None]) -> None:
        self.term = term
        self.plan_later = plan_later
        self._waiting: set[asyncio.Future[ProjectMeta]] = set()

    def request(self, spec: ProjectSpec) -> SubmitRequest:
        """A request whose future the turn resolves (or :meth:`abandon`)."""
        req = SubmitRequest(spec, asyncio.get_running_loop().create_future())
        self._waiting.add(req.done)
        req.done.add_done_callback(self._waiting.discard)
        return req

    def accept(
        self, reqs: Sequence[SubmitRequest], now: float
    ) -> tuple[list[Pending], list[Event]]:
        """The requests the scheduler is told of now, and its events; the
        others are answered (see module docstring)."""
        term, mirror = self.term, self.term.view()
        pending: list[Pending] = []
        events: list[Event] = []
        taken: set[str] = set()
        for req in reqs:
            pid = req.spec.id
            if req.done.done():
                continue  # its caller gave up: nothing is written
            if pid in mirror.projects:
                req.done.set_exception(ProjectExists(f"project {pid!r} already exists"))
            elif pid in taken or term.state.knows(pid) or pid in mirror.staged:
                req.done.set_exception(FullProtocol())
            else:
                taken.add(pid)
                pending.append(Pending(req, submission(req.spec, term.clock.wall)))
                events.append(ProjectSubmitted(req.spec, now))
                term.latencies.submitted(req.spec)
        return pending, events

    @staticmethod
    def records(pending: Sequence[Pending]) -> Mapping[TaskKey, TaskRecord]:
        """The task records the pending projects will store."""
        return {r.key: r for p in pending for r in p.submission.records}

    def settle(self, pending: Sequence[Pending], results: Sequence[ItemResult]) -> bool:
        """Fold the stored projects into the mirror and answer their callers;
        True when one was refused (the scheduler must be rebuilt)."""
        mirror = self.term.view()
        refused = False
        for p, res in zip(pending, results, strict=True):
            if not res.ok:
                refused = True
                if not p.request.done.done():
                    p.request.done.set_exception(FullProtocol())
                continue
            meta, records = p.submission.stored(res.revision)
            mirror.fold_meta(meta)
            for rec in records:
                mirror.fold_task(rec, exact=True)
            self.plan_later(meta.id)
            if not p.request.done.done():
                p.request.done.set_result(meta)
        return refused

    def abandon(self) -> None:
        """The term ended: every caller still waiting hears it (``FenceLost``;
        a write in flight may still have committed, as with any lost leader)."""
        for fut in list(self._waiting):
            if not fut.done():
                fut.set_exception(FenceLost("this replica no longer leads"))
