"""``ClientService``: submit, status, task lookup, watch and cancel.

Reads are served by every replica from etcd (the leader answers from its
mirror); submit and cancel are leader-only and redirect otherwise.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import grpc
import structlog

from workhive.coordinator.etcd import (
    ClusterState,
    EtcdError,
    FenceLost,
    InvalidArgument,
    ProjectExists,
    SubmitConflict,
)
from workhive.coordinator.leader.growth import AddRefused
from workhive.coordinator.leader.writes import NotLeading
from workhive.coordinator.model import TaskKey, TaskState, TaskTiming
from workhive.coordinator.service.convert import (
    addition_from_proto,
    leader_to_proto,
    project_from_proto,
    state_to_proto,
)
from workhive.coordinator.service.errors import error_status, no_leader, not_leader
from workhive.coordinator.service.node_view import LeaderView, NodeView
from workhive.coordinator.task_schema import ProjectError
from workhive.v1 import client_pb2, client_pb2_grpc

log = structlog.get_logger("workhive.clients")
Ctx = grpc.aio.ServicerContext[Any, Any]
T = TypeVar("T")
STATUS_MAX_AGE = 0.25  # seconds a status answer may be reused (at least)
MAX_ID_CHARS = 200  # the loader's limit for project and task ids
SEEN_WAIT = 2.0  # seconds a submit waits for the leader to see the project
STATUS_CACHE_ENTRIES = 128  # answers kept at most (keyed by client input: bounded)


def effective_states(cs: ClusterState, pid: str) -> dict[TaskKey, TaskState]:
    """Task states as a client sees them; a pending task whose parents all
    succeeded is ready (the leader records that lazily, when it claims)."""
    states: dict[TaskKey, TaskState] = {}
    keys = sorted(cs.task_keys(pid), key=lambda k: k.task)  # no scan of other projects
    for k in keys:
        st = cs.state_of(k)
        if st is not None:
            states[k] = st
    for k in keys:
        if states.get(k) is TaskState.PENDING:
            deps = cs.tasks[k].spec.depends_on
            if all(states.get(TaskKey(pid, d)) is TaskState.SUCCEEDED for d in deps):
                states[k] = TaskState.READY
    return states


def task_status(
    cs: ClusterState,
    key: TaskKey,
    state: TaskState,
    *,
    with_result: bool = False,
    timing: TaskTiming | None = None,
) -> client_pb2.TaskStatus:
    """One task as the client sees it; ``timing`` (the leader's scheduler:
    deadline, next retry, last failure) is known on the leader only."""
    rec = cs.tasks[key]
    claim = cs.claims.get(key)
    result = cs.results.get(key)
    return client_pb2.TaskStatus(
        project_id=key.project,
        task_id=key.task,
        state=state_to_proto(state),
        agent_id=(result.agent if result else claim.agent if claim else ""),
        attempt=(result.attempt if result and result.attempt else rec.attempt),
        reason=result.reason if result else "",
        finished_at=result.finished_at if result else 0.0,
        result_json=result.result_json if result and with_result else "",
        output_tail=result.output_tail if result and with_result else "",
        deadline_at=(timing.deadline_at or 0.0) if timing else 0.0,
        retry_at=(timing.retry_at or 0.0) if timing else 0.0,
        last_failure=timing.last_failure if timing else "",
        progress=timing.progress if timing and timing.progress is not None else None,
        progress_note=timing.progress_note if timing else "",
    )


async def _check_ids(context: Ctx, **ids: str) -> None:
    """Refuse ids longer than any stored id can be (INVALID_ARGUMENT, not echoed whole)."""
    for name, value in ids.items():
        if len(value) > MAX_ID_CHARS:
            await context.abort_with_status(
                error_status(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    "INVALID_PROJECT",
                    f"{name}: {len(value)} characters, limit {MAX_ID_CHARS}",
                )
            )


class ClientServicer(client_pb2_grpc.ClientServiceServicer):
    def __init__(self, node: NodeView) -> None:
        self.node = node
        # (project id, include_tasks, leader term) -> (reuse until, answer)
        self._status_cache: dict[
            tuple[str, bool, int], tuple[float, client_pb2.GetStatusResponse]
        ] = {}

    @staticmethod
    def _timing(key: TaskKey, driver: LeaderView | None) -> TaskTiming | None:
        """The leader's deadline / retry / last failure of ``key`` (``None`` on a follower)."""
        return driver.task_timing(key) if driver is not None else None

    async def _read(self, context: Ctx, fn: Callable[[ClusterState, LeaderView | None], T]) -> T:
        """``fn`` over this replica's view (``NodeView.read_state``); an etcd
        read that fails aborts the call UNAVAILABLE / ETCD_UNAVAILABLE (retry
        elsewhere)."""
        try:
            return await self.node.read_state(fn)
        except EtcdError as exc:
            await context.abort_with_status(
                error_status(
                    grpc.StatusCode.UNAVAILABLE,
                    "ETCD_UNAVAILABLE",
                    f"coordinator {self.node.id} cannot read etcd at "
                    f"{self.node.etcd_targets}: {type(exc).__name__}",
                )
            )
            raise  # unreachable: abort raises

    async def _leader_only(self, context: Ctx) -> LeaderView:
        driver = self.node.leading()
        if driver is None:
            leader = self.node.leader_info
            if leader is not None and leader.id != self.node.id:
                await context.abort_with_status(not_leader(leader))
            await context.abort_with_status(no_leader())
        return driver

    async def SubmitProject(
        self, request: client_pb2.SubmitProjectRequest, context: Ctx
    ) -> client_pb2.SubmitProjectResponse:
        driver = await self._leader_only(context)
        try:
            spec = project_from_proto(request.project, source="<submit>")
        except ProjectError as exc:
            await context.abort_with_status(
                error_status(grpc.StatusCode.INVALID_ARGUMENT, "INVALID_PROJECT", str(exc))
            )
        try:
            meta = await self.node.submit(spec)
        except ProjectExists:
            await context.abort_with_status(
                error_status(
                    grpc.StatusCode.ALREADY_EXISTS,
                    "PROJECT_EXISTS",
                    f"project {spec.id!r} already exists",
                )
            )
        except SubmitConflict as exc:
            await context.abort_with_status(error_status(grpc.StatusCode.ABORTED, "", str(exc)))
        except FenceLost:
            await context.abort_with_status(no_leader())
        except InvalidArgument as exc:  # etcd refused the write itself (e.g. too large)
            await context.abort_with_status(
                error_status(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    "INVALID_PROJECT",
                    f"project {spec.id!r} not stored: {exc}",
                )
            )
        except EtcdError as exc:
            await context.abort_with_status(
                error_status(
                    grpc.StatusCode.UNAVAILABLE,
                    "ETCD_UNAVAILABLE",
                    f"project {spec.id!r} not stored: etcd at "
                    f"{self.node.etcd_targets}: {type(exc).__name__}",
                )
            )
        log.info("project stored", project=spec.id, tasks=len(spec.tasks))
        # what the caller does next (add tasks, read status) finds the project
        await driver.project_seen(spec.id, SEEN_WAIT)
        return client_pb2.SubmitProjectResponse(
            project_id=spec.id, revision=meta.mod_revision, task_count=len(spec.tasks)
        )

    async def GetStatus(
        self, request: client_pb2.GetStatusRequest, context: Ctx
    ) -> client_pb2.GetStatusResponse:
        """Project counts come from the mirror's tally (no scan); with
        ``include_tasks`` every task is listed (O(tasks)). An answer is reused
        for STATUS_MAX_AGE seconds, or ten times what computing it took, so
        polling clients cannot take more than ~10% of the leader's loop. The
        cache is keyed by the leader's term too: an answer computed under
        another leader (on a follower, from a snapshot, which can take
        seconds) is never served after a takeover."""
        await _check_ids(context, project_id=request.project_id)
        leader = self.node.leader_info
        key = (request.project_id, request.include_tasks, leader.term if leader else 0)
        cached = self._status_cache.get(key)
        now = time.monotonic()
        if cached is not None and now < cached[0]:
            return cached[1]
        resp = await self._status(request, context)
        spent = time.monotonic() - now
        if not request.project_id or resp.projects:  # never cache answers for unknown ids
            if len(self._status_cache) >= STATUS_CACHE_ENTRIES:
                self._status_cache = {k: v for k, v in self._status_cache.items() if v[0] > now}
                while len(self._status_cache) >= STATUS_CACHE_ENTRIES:
                    self._status_cache.pop(next(iter(self._status_cache)))
            self._status_cache[key] = (now + max(STATUS_MAX_AGE, 10 * spent), resp)
        return resp

    async def _status(
        self, request: client_pb2.GetStatusRequest, context: Ctx
    ) -> client_pb2.GetStatusResponse:
        stale_reason = await self.node.etcd_problem()
        resp = await self._read(context, lambda cs, driver: self._answer(request, cs, driver))
        resp.stale_reason = stale_reason
        resp.stale = bool(stale_reason)
        return resp

    def _answer(
        self, request: client_pb2.GetStatusRequest, cs: ClusterState, driver: LeaderView | None
    ) -> client_pb2.GetStatusResponse:
        resp = client_pb2.GetStatusResponse(leader=leader_to_proto(self.node.leader_info))
        pids = [request.project_id] if request.project_id else sorted(cs.projects)
        for pid in pids:
            meta = cs.projects.get(pid)
            if meta is None:
                continue
            counts = cs.tally.counts(pid)  # kept as the mirror changes: no scan
            ps = client_pb2.ProjectStatus(
                project_id=pid,
                counts={s.value: n for s, n in counts.items()},
                finished=bool(counts) and all(s.terminal for s in counts),
                submitted_at=meta.submitted_at,
            )
            ps.total_work_seconds = cs.tally.work(pid)
            if request.include_tasks:
                states = effective_states(cs, pid)
                ps.tasks.extend(
                    task_status(cs, k, s, timing=self._timing(k, driver))
                    for k, s in sorted(states.items(), key=lambda i: i[0].task)
                )
            resp.projects.append(ps)
        running: Counter[str] = Counter()
        queued: Counter[str] = Counter()
        for claim in cs.claims.values():
            (running if claim.started else queued)[claim.agent] += 1
        loads = driver.loads() if driver is not None else {}
        speeds = driver.speed_factors() if driver is not None else {}
        for agent_id, info in sorted(cs.agents.items()):
            resp.agents.append(
                client_pb2.AgentStatus(
                    agent_id=agent_id,
                    capabilities=sorted(info.capabilities),
                    slots=info.slots,
                    running=running[agent_id],
                    queued=queued[agent_id],
                    load_seconds=loads.get(agent_id, 0.0),
                    speed_factor=speeds.get(agent_id, 0.0),
                    connected=self.node.hub.connected(agent_id) if driver else True,
                )
            )
        resp.metrics.update(self._metrics(driver))
        return resp

    def _metrics(self, driver: LeaderView | None) -> dict[str, float]:
        out = {"leader_changes": float(max(0, self.node.leader_changes - 1))}
        if driver is None:
            return out
        m = driver.scheduler_metrics()
        out.update(
            total_steals=float(m.total_steals),
            average_steal_size=m.average_steal_size,
            load_imbalance=m.load_imbalance,
            redistribution_latency_seconds=m.redistribution_latency,
            last_steal_time=m.last_steal_time or 0.0,
            parallelization_efficiency=m.parallelization_efficiency,
            lock_contention_rate=m.lock_contention_rate,
            agent_utilization=m.utilization,
            critical_path_progress=m.critical_path_progress,
            assignments=float(m.assignments),
        )
        return out

    async def GetTask(
        self, request: client_pb2.GetTaskRequest, context: Ctx
    ) -> client_pb2.TaskStatus:
        await _check_ids(context, project_id=request.project_id, task_id=request.task_id)
        key = TaskKey(request.project_id, request.task_id)

        def answer(cs: ClusterState, driver: LeaderView | None) -> client_pb2.TaskStatus:
            if key not in cs.tasks:
                return client_pb2.TaskStatus(
                    project_id=key.project, task_id=key.task, state=state_to_proto(None)
                )
            states = effective_states(cs, key.project)
            timing = self._timing(key, driver)
            return task_status(cs, key, states[key], with_result=True, timing=timing)

        return await self._read(context, answer)

    async def WatchProject(
        self, request: client_pb2.WatchProjectRequest, context: Ctx
    ) -> AsyncIterator[client_pb2.ProjectEvent]:
        pid = request.project_id
        await _check_ids(context, project_id=pid)
        seen: dict[TaskKey, TaskState] = {}

        def changes(
            cs: ClusterState, driver: LeaderView | None
        ) -> tuple[bool, list[client_pb2.ProjectEvent], bool]:
            """(project known, an event per task whose state changed, finished)"""
            if pid not in cs.projects:
                return False, [], False
            states = effective_states(cs, pid)
            finished = bool(states) and all(s.terminal for s in states.values())
            events = []
            for key, st in sorted(states.items(), key=lambda i: i[0].task):
                if seen.get(key) is not st:
                    seen[key] = st
                    events.append(
                        client_pb2.ProjectEvent(
                            project_id=pid,
                            task=task_status(cs, key, st, timing=self._timing(key, driver)),
                            revision=cs.revision,
                            project_finished=finished,
                        )
                    )
            return True, events, finished

        while True:
            known, events, finished = await self._read(context, changes)
            if not known:
                await context.abort_with_status(
                    error_status(
                        grpc.StatusCode.NOT_FOUND, "UNKNOWN_PROJECT", f"no project {pid!r}"
                    )
                )
            for event in events:
                yield event
            if finished:
                return
            await asyncio.sleep(0.2)

    async def AddTasks(
        self, request: client_pb2.AddTasksRequest, context: Ctx
    ) -> client_pb2.AddTasksResponse:
        await _check_ids(context, project_id=request.project_id)
        driver = await self._leader_only(context)
        source = f"<add {request.project_id}>"
        try:
            addition = addition_from_proto(request.project_id, request.tasks, source)
        except ProjectError as exc:
            await context.abort_with_status(
                error_status(grpc.StatusCode.INVALID_ARGUMENT, "INVALID_PROJECT", str(exc))
            )
        try:
            # queued before any await and shielded, like a cancel
            added = await asyncio.shield(driver.add_tasks(addition, source))
        except AddRefused as exc:
            code, reason = {
                "unknown": (grpc.StatusCode.NOT_FOUND, "UNKNOWN_PROJECT"),
                "conflict": (grpc.StatusCode.ABORTED, ""),
            }.get(exc.kind, (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_PROJECT"))
            await context.abort_with_status(error_status(code, reason, str(exc)))
        except NotLeading:
            await context.abort_with_status(no_leader())
        except EtcdError as exc:
            await context.abort_with_status(
                error_status(
                    grpc.StatusCode.UNAVAILABLE,
                    "ETCD_UNAVAILABLE",
                    f"tasks not added: etcd: {type(exc).__name__}",
                )
            )
        return client_pb2.AddTasksResponse(
            project_id=added.project_id,
            revision=added.revision,
            added=added.added,
            task_count=added.task_count,
        )

    async def CancelProject(
        self, request: client_pb2.CancelProjectRequest, context: Ctx
    ) -> client_pb2.CancelProjectResponse:
        await _check_ids(context, project_id=request.project_id)
        driver = await self._leader_only(context)
        mirror = driver.cluster()
        if mirror is None or request.project_id not in mirror.projects:
            await context.abort_with_status(
                error_status(
                    grpc.StatusCode.NOT_FOUND,
                    "UNKNOWN_PROJECT",
                    f"no project {request.project_id!r}",
                )
            )
        counts = mirror.tally.counts(request.project_id)
        before = sum(n for s, n in counts.items() if not s.terminal)
        # queued before any await, and shielded: a caller whose deadline
        # expires abandons the answer, not the cancel
        await asyncio.shield(
            driver.cancel(request.project_id, request.reason or "cancelled by user")
        )
        return client_pb2.CancelProjectResponse(cancelled=before)

    async def DeleteProject(
        self, request: client_pb2.DeleteProjectRequest, context: Ctx
    ) -> client_pb2.DeleteProjectResponse:
        """Delete a finished project (refused while any task is unfinished)."""
        pid = request.project_id
        await _check_ids(context, project_id=pid)
        driver = await self._leader_only(context)
        mirror = driver.cluster()
        if mirror is None or pid not in mirror.projects:
            await context.abort_with_status(
                error_status(grpc.StatusCode.NOT_FOUND, "UNKNOWN_PROJECT", f"no project {pid!r}")
            )
        counts = mirror.tally.counts(pid)
        tasks = sum(counts.values())
        unfinished = sum(n for s, n in counts.items() if not s.terminal)
        if unfinished:
            await context.abort_with_status(
                error_status(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    "PROJECT_RUNNING",
                    f"project {pid!r} has {unfinished} unfinished tasks: "
                    f"cancel it first (workhive cancel {pid})",
                )
            )
        try:
            revision = await asyncio.shield(self.node.delete_project(pid, request.compact))
        except FenceLost:
            await context.abort_with_status(no_leader())
        except EtcdError as exc:
            await context.abort_with_status(
                error_status(
                    grpc.StatusCode.UNAVAILABLE,
                    "ETCD_UNAVAILABLE",
                    f"project {pid!r} not deleted: etcd at {self.node.etcd_targets}: "
                    f"{type(exc).__name__}",
                )
            )
        if not revision:
            await context.abort_with_status(
                error_status(grpc.StatusCode.NOT_FOUND, "UNKNOWN_PROJECT", f"no project {pid!r}")
            )
        log.info("project deleted", project=pid, tasks=tasks, revision=revision)
        return client_pb2.DeleteProjectResponse(tasks=tasks, revision=revision)

    async def DrainAgent(
        self, request: client_pb2.DrainAgentRequest, context: Ctx
    ) -> client_pb2.DrainAgentResponse:
        """Ask a connected agent to drain (it hands its queue back, finishes
        what runs, reports and exits, as on SIGTERM)."""
        await self._leader_only(context)
        aid = request.agent_id
        if len(aid) > MAX_ID_CHARS or not self.node.hub.drain(aid, request.reason or "operator"):
            await context.abort_with_status(
                error_status(
                    grpc.StatusCode.NOT_FOUND,
                    "UNKNOWN_AGENT",
                    f"no agent {aid[:80]!r} is connected to the leader",
                )
            )
        log.info("agent asked to drain", agent_id=aid, reason=request.reason)
        return client_pb2.DrainAgentResponse()
