"""Per-project task counts as a client sees them, kept while the mirror changes.

A client sees a task's effective state (result > claim > record,
``types.effective_state``), except that a PENDING task whose dependencies
all SUCCEEDED shows as READY: the leader records that lazily, when it claims
the task. :class:`ProjectTally` keeps, per project, how many tasks show each
state and the sum of their estimates, so a project's status costs O(1)
instead of a scan of its tasks (a 10,000-task project's status took ~50 ms
of the leader's event loop per poll).

It is driven by ``ClusterState``'s mutators only: ``record_changed`` when a
task record is held, replaced or dropped, ``state_changed`` when a task's
effective state changes. Invariant: ``counts(pid)`` always equals the counter
of the client states computed from scratch over the project's tasks
(``tests/unit/leader/test_project_tally.py`` checks it after every step of
random histories).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

from workhive.coordinator.etcd.types import TaskRecord
from workhive.coordinator.model import TaskKey, TaskState


def _estimate(rec: TaskRecord | None) -> float:
    return (rec.spec.estimate or 0.0) if rec is not None else 0.0


class ProjectTally:
    """Client-state counts and estimated work per project (see module docstring).

    ``states`` is the mirror's own map of effective states, read, never written.
    """

    def __init__(self, states: Mapping[TaskKey, TaskState]) -> None:
        self._states = states
        self._children: dict[TaskKey, set[TaskKey]] = {}  # dependency -> tasks waiting on it
        self._unmet: dict[TaskKey, int] = {}  # dependencies not SUCCEEDED (absent ones count)
        self._shown: dict[TaskKey, TaskState] = {}
        self._counts: dict[str, Counter[TaskState]] = {}
        self._work: dict[str, float] = {}

    def counts(self, project_id: str) -> Counter[TaskState]:
        """Tasks of the project by the state a client sees (read-only)."""
        return self._counts.get(project_id) or Counter()

    def work(self, project_id: str) -> float:
        """The sum of the project's task estimates, seconds (0 for none)."""
        return self._work.get(project_id, 0.0)

    def record_changed(self, old: TaskRecord | None, new: TaskRecord | None) -> None:
        """A task record is now ``new`` (None: dropped); ``old`` is the one held before."""
        rec = new or old
        if rec is None:
            return
        key, pid = rec.key, rec.key.project
        work = _estimate(new) - _estimate(old)
        if work:
            self._work[pid] = self._work.get(pid, 0.0) + work
        if new is None:
            self._unlink(key, self._deps(old))
            self._unmet.pop(key, None)
            return
        # most rewrites change the state alone: no dependency sets built for them
        if old is None or old.spec.depends_on != new.spec.depends_on:
            old_deps, new_deps = self._deps(old), self._deps(new)
            self._unlink(key, old_deps - new_deps)
            for d in new_deps - old_deps:
                self._children.setdefault(d, set()).add(key)
            done = TaskState.SUCCEEDED
            self._unmet[key] = sum(1 for d in new_deps if self._states.get(d) is not done)
            self._show(key)

    def state_changed(self, key: TaskKey, old: TaskState | None, new: TaskState | None) -> None:
        """The effective state of ``key`` went from ``old`` to ``new`` (None: not held)."""
        was, now = old is TaskState.SUCCEEDED, new is TaskState.SUCCEEDED
        if was != now:
            step = -1 if now else 1
            for child in self._children.get(key, ()):
                if child in self._unmet:
                    self._unmet[child] += step
                    self._show(child)
        self._show(key)

    @staticmethod
    def _deps(rec: TaskRecord | None) -> set[TaskKey]:
        if rec is None:
            return set()
        return {TaskKey(rec.key.project, d) for d in rec.spec.depends_on}

    def _unlink(self, key: TaskKey, deps: set[TaskKey]) -> None:
        for d in deps:
            waiting = self._children.get(d)
            if waiting is not None:
                waiting.discard(key)
                if not waiting:
                    del self._children[d]

    def _show(self, key: TaskKey) -> None:
        state = self._states.get(key)
        if state is TaskState.PENDING and self._unmet.get(key, 1) == 0:
            state = TaskState.READY
        before = self._shown.get(key)
        if state is before:
            return
        counts = self._counts.setdefault(key.project, Counter())
        if before is not None:
            counts[before] -= 1
            if not counts[before]:
                del counts[before]
        if state is None:
            del self._shown[key]
        else:
            self._shown[key] = state
            counts[state] += 1
        if not counts:  # the project's last task is gone
            del self._counts[key.project]
            self._work.pop(key.project, None)
