"""Planning: exact plans for small projects, off the event loop.

Contract: a project small enough (``PlannerConfig.max_tasks``) is planned with
CP-SAT, time-boxed, in a worker thread, at most ``MAX_PLANS`` times (the
first plan and one re-plan after the scheduler dropped it); the result
reaches the scheduler as ``PlanUpdated`` through the turn loop's inbox, and
the scheduler follows it until reality drifts. Planning never blocks a turn.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from workhive.coordinator.leader import restore
from workhive.coordinator.leader.term import Term
from workhive.coordinator.scheduling import (
    Event,
    PlannerConfig,
    PlanUpdated,
    plan_project,
    starts_at_once,
)

MAX_PLANS = 2  # exact plans per project (the first, and one re-plan)


class Planning:
    def __init__(
        self, term: Term, deliver: Callable[[tuple[Event, ...]], None], time_box: float
    ) -> None:
        self.term = term
        self.deliver = deliver
        self.config = PlannerConfig(time_box=time_box, workers=1)
        self._plans: dict[str, int] = {}  # project -> plans computed (bounded)
        self._running: set[asyncio.Task[None]] = set()

    def plan_later(self, project_id: str) -> None:
        if self.config.time_box <= 0 or self._plans.get(project_id, 0) >= MAX_PLANS:
            return
        term, mirror = self.term, self.term.view()
        specs = restore.project_specs(mirror, {project_id})
        agents = [a for a in mirror.agents.values() if term.port.connected(a.id)]
        if not specs or not agents or len(specs[0].tasks) > self.config.max_tasks:
            return
        if starts_at_once(specs[0], agents):
            return  # a plan would start every task at once too: nothing to gain
        self._plans[project_id] = self._plans.get(project_id, 0) + 1

        async def plan() -> None:
            loop = asyncio.get_running_loop()
            result = await loop.run_in_executor(
                None, plan_project, specs[0], agents, None, self.config
            )
            if result is not None:
                self.deliver((PlanUpdated(project_id, result, term.clock.wall()),))

        task = asyncio.create_task(plan())
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    def cancel(self) -> None:
        for t in self._running:
            t.cancel()
