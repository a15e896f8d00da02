"""The held-task table of an agent and its transitions (docs/agent.md, "Task lifecycle").

Contract: a task this agent holds is in exactly one state -- ``queued``
(assigned, may be stolen), ``start_pending`` (StartRequest sent),
``waiting`` (chained: started, but dependencies held here have not
succeeded yet), ``runnable`` (start granted, waiting for a worker) or
``running``. A waiting task becomes runnable only once each dependency it
waits for has succeeded *here* (a success that adds tasks does not count:
the leader may block the waiting task behind them); its results join the
task's inputs. A finished
run waits in ``_unacked`` until the coordinator acks or rejects it; a
successful run whose claim was gone is kept (bounded) in ``_orphans``.
Invariant: a task is never run twice by this agent: an assignment for a task
running or finished here under an older claim carries the run or its result
over to the newer claim. A message naming a claim (fence) that is not the one
held is ignored. Every method here runs with ``_lock`` held.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace

from workhive.v1 import agent_pb2

from . import _convert as cv
from ._base import AgentBase
from ._types import Outcome, Task, TaskKey

MAX_ORPHANS = 256
"""Successful results whose claim was gone, kept in case the task comes back."""

MAX_DONE_HERE = 1024
"""Recent successes here that chained tasks may follow (task -> result JSON)."""

QUEUED = "queued"  # assigned, not started; may be stolen
START_PENDING = "start_pending"  # StartRequest sent, waiting for StartGranted
WAITING = "waiting"  # chained: started, waiting for dependencies to succeed here
RUNNABLE = "runnable"  # start granted, waiting for a free worker
RUNNING = "running"


@dataclass(eq=False)
class Held:
    """One held task: its claim (``task.fence``), state and arrival order."""

    task: Task
    state: str
    seq: int
    revoked: bool = False
    after: set[str] = field(default_factory=set)  # WAITING: dependencies not yet done here

    @property
    def order(self) -> tuple[int, int]:
        return (-self.task.priority, self.seq)


def fence_matches(ref: TaskKey, fence: int) -> bool:
    """True when ``ref`` names the claim ``fence`` (fence 0: any claim)."""
    return ref.fence == 0 or ref.fence == fence


class HeldTasks(AgentBase):
    """The held-task table's transitions (see module docstring)."""

    def held(self) -> dict[str, list[TaskKey]]:
        """Snapshot of the tasks this agent holds, by state."""
        with self._lock:
            out: dict[str, list[TaskKey]] = {}
            for h in self._held.values():
                out.setdefault(h.state, []).append(h.task.key)
            return out

    def _on_assign(self, a: agent_pb2.Assign) -> None:
        """Take an assignment; a task is never run twice by this agent.

        A task already running or finished here under an older claim (its
        lease expired, or a new leader re-claimed it) carries on under the
        newer claim: the run in progress, or the result awaiting its ack, is
        reported under the new fence instead of running the task again.
        """
        task = cv.task_from_assign(a)
        tid = (task.project_id, task.task_id)
        existing = self._held.get(tid)
        if existing is not None:
            if existing.task.fence == task.fence:
                if existing.state == WAITING:  # sent again: fewer may be left to wait for
                    existing.after &= set(a.after)
                    self._follow(existing)
                elif a.started and existing.state in (QUEUED, START_PENDING):
                    existing.state = RUNNABLE
                    self._work.notify_all()
                return
            if existing.state in (RUNNABLE, RUNNING):
                if task.fence > existing.task.fence:
                    self._log.warning(
                        "task re-claimed while it runs here: the run goes on under the new claim",
                        task=task.task_id,
                        fence=task.fence,
                        old_fence=existing.task.fence,
                    )
                    existing.task = replace(existing.task, fence=task.fence, attempt=task.attempt)
                    existing.revoked = False
                    if not a.started and self._session is not None:
                        self._session.send(cv.start_request(existing.task.key))
                return
        finished = self._unacked.get(tid) or self._orphans.pop(tid, None)
        if finished is not None and task.fence >= finished.key.fence:
            self._report_again(finished, task, a.started)
            return
        if self._draining and not a.started:
            self._dropped(task.key, "draining")
            return
        if self._draining and a.after:  # chained: nothing more starts here
            self._hand_back(task.key, "draining")
            return
        self._seq += 1
        h = Held(task, RUNNABLE if a.started else QUEUED, self._seq)
        self._held[tid] = h
        if a.started and a.after:
            h.state, h.after = WAITING, set(a.after)
            self._follow(h)
        elif a.started:
            self._work.notify_all()
        self._pump()

    def _follow(self, h: Held) -> None:
        """A waiting task: drop the dependencies that succeeded here, adding
        their results to its inputs; runnable once none is left."""
        inputs = dict(h.task.inputs)
        for dep in list(h.after):
            done = self._done_here.get((h.task.project_id, dep))
            if done is not None:
                h.after.discard(dep)
                if done:
                    inputs[dep] = json.loads(done)
        h.task = replace(h.task, inputs=inputs)
        if not h.after:
            h.state = RUNNABLE
            self._work.notify_all()

    def _succeeded_here(self, outcome: Outcome) -> None:
        """Note a success chained tasks may follow, and let them follow it."""
        if not outcome.succeeded or outcome.new_tasks_json:
            return
        pid, tid = outcome.key.project_id, outcome.key.task_id
        self._done_here[(pid, tid)] = outcome.result_json
        while len(self._done_here) > MAX_DONE_HERE:
            self._done_here.pop(next(iter(self._done_here)))
        for h in self._held.values():
            if h.state == WAITING and h.task.project_id == pid and tid in h.after:
                self._follow(h)

    def _hand_back(self, key: TaskKey, reason: str) -> None:
        """Give a started claim back unrun (``TaskFailed.released``: no attempt
        spent), reported like an outcome until the coordinator answers."""
        self._dropped(key, reason)
        outcome = Outcome(key, succeeded=False, duration_seconds=0.0, reason=reason, released=True)
        self._unacked[(key.project_id, key.task_id)] = outcome
        if self._session is not None:
            self._session.send(cv.outcome(outcome))

    def _report_again(self, finished: Outcome, task: Task, started: bool) -> None:
        """An assignment for a task whose run already finished here: report the
        result (under the assignment's claim) instead of running it again."""
        outcome = replace(finished, key=task.key)
        self._unacked[(task.project_id, task.task_id)] = outcome
        self._log.info(
            "assign for a task already finished here: reporting its result",
            task=task.task_id,
            fence=task.fence,
            old_fence=finished.key.fence,
        )
        if self._session is not None:
            if not started:
                self._session.send(cv.start_request(task.key))
            self._session.send(cv.outcome(outcome))

    def _on_granted(self, key: TaskKey) -> None:
        h = self._held.get(key.id)
        waiting = h is not None and h.state in (QUEUED, START_PENDING)
        if h is None or not waiting or not fence_matches(key, h.task.fence):
            self._log.debug("start granted for a task not waiting for it", task=key.task_id)
            return
        h.state = RUNNABLE
        self._work.notify_all()

    def _on_taken_back(self, key: TaskKey, reason: str, cancel: list[TaskKey]) -> None:
        h = self._held.get(key.id)
        if h is None or not fence_matches(key, h.task.fence):
            return
        if h.state == RUNNING:
            h.revoked = True
            cancel.append(h.task.key)
            self._log.warning("running task revoked", task=key.task_id, reason=reason)
            return
        del self._held[key.id]
        self._dropped(h.task.key, reason or "refused")
        self._pump()
        self._work.notify_all()

    def _take_unacked(self, key: TaskKey) -> Outcome | None:
        """Remove and return the outcome awaiting an answer for this claim."""
        o = self._unacked.get(key.id)
        if o is None or not fence_matches(key, o.key.fence):
            return None
        return self._unacked.pop(key.id)

    def _keep_orphan(self, outcome: Outcome) -> None:
        """A successful run whose claim was gone when it reported (the lease
        expired under it): kept, bounded, so that if the task is claimed for
        this agent again its result is reported instead of running it twice."""
        self._orphans[outcome.key.id] = outcome
        while len(self._orphans) > MAX_ORPHANS:
            self._orphans.pop(next(iter(self._orphans)))

    def _dropped(self, key: TaskKey, reason: str) -> None:
        self.counters.dropped += 1
        self._exec_log.record("dropped", key, reason=reason)
        self._log.info("task dropped", project=key.project_id, task=key.task_id, reason=reason)

    def _pump(self) -> None:
        """Ask to start queued tasks while slots are free (lock held)."""
        if self._session is None or self._draining or self._finished:
            return
        active = sum(1 for h in self._held.values() if h.state != QUEUED)
        free = self.slots - active
        if free <= 0:
            return
        queued = sorted(
            (h for h in self._held.values() if h.state == QUEUED), key=lambda h: h.order
        )
        for h in queued[:free]:
            h.state = START_PENDING
            self._session.send(cv.start_request(h.task.key))
