"""The leader driver: the only code that turns scheduler commands into etcd
transactions and agent messages while this replica leads.

One asyncio task owns the ``SchedulerState`` and the etcd mirror. Inputs
(watch batches, agent messages, timers) land on one queue; each turn drains
everything pending, commits completions as one batch, feeds the resulting
events to the scheduler, and executes its commands grouped by kind, one
batched fenced txn per kind (group commit). etcd calls run on a small
writer pool; a turn awaits all of its writes before the next turn decides.

Invariants: every leader write carries the election fence (a deposed leader
writes nothing); a task is pushed to an agent only after its claim committed;
a completion is acknowledged only after it committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import structlog

from workhive.coordinator.etcd import (
    ClaimRequest,
    Claims,
    ClusterState,
    Completion,
    EtcdClient,
    EtcdError,
    Feed,
    Fence,
    Finish,
    InvalidArgument,
    ItemResult,
    Keyspace,
    LeaseKeeper,
    Outcome,
    StandbyMirror,
    Steal,
    Store,
    TaskRecord,
    WatchBatch,
)
from workhive.coordinator.leader import restore
from workhive.coordinator.metrics import Metrics
from workhive.coordinator.model import Claim, TaskKey, TaskResult, TaskState
from workhive.coordinator.scheduling import (
    AgentJoined,
    AgentLeft,
    AssignRejected,
    AssignTask,
    CancelTask,
    ClaimLost,
    Command,
    Event,
    MarkTaskFailed,
    PlannerConfig,
    PlanUpdated,
    ProjectCancelled,
    ProjectFinished,
    ProjectSubmitted,
    RequestReplan,
    RequeueTask,
    SchedulerConfig,
    SchedulerState,
    StartRejected,
    StartTask,
    StealRejected,
    StealTask,
    StealTick,
    TaskFailed,
    TaskSucceeded,
    plan_project,
)
from workhive.coordinator.service.agent_hub import AgentConn, AgentHub
from workhive.v1 import common_pb2

log = structlog.get_logger("workhive.leader")
T = TypeVar("T")


class NotLeading(Exception):
    """The fence failed: this replica must stop leading now."""


@dataclass(frozen=True)
class Report:
    """An agent's completion or failure of a task it holds."""

    agent_id: str
    lease_id: int
    ref: common_pb2.TaskRef
    ok: bool
    reason: str = ""
    retryable: bool = True
    duration: float = 0.0
    output_tail: str = ""


@dataclass(frozen=True)
class Hello:
    conn: AgentConn
    resumed: bool
    held: tuple[common_pb2.TaskRef, ...]


@dataclass(frozen=True)
class Gone:
    conn: AgentConn
    graceful: bool


@dataclass(frozen=True)
class Cancel:
    project_id: str
    reason: str
    done: asyncio.Future[int]


@dataclass(frozen=True)
class Deferred:
    """Scheduler events postponed to a later turn."""

    events: tuple[Event, ...]


Input = WatchBatch | ClusterState | Report | Hello | Gone | Cancel | StealTick | Deferred | str

MAX_PLANS = 2  # exact plans per project (the first, and one re-plan)
RETRY_DELAY = 0.05  # seconds before rejected commands are decided again
LEASE_ROUNDS = 4  # txn attempts while agent leases named in it keep expiring


class LeaderDriver:
    """Runs the scheduler for one leadership term (create a new one per term)."""

    def __init__(
        self,
        *,
        client: EtcdClient,
        keyspace: Keyspace,
        fence: Fence,
        keeper: LeaseKeeper,
        hub: AgentHub,
        metrics: Metrics,
        config: SchedulerConfig,
        agent_grace: float,
        plan_time_box: float = 2.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.ks = keyspace
        self.fence = fence
        self.keeper = keeper
        self.hub = hub
        self.metrics = metrics
        self.config = config
        self.agent_grace = agent_grace
        self.clock = clock
        self.claims = Claims(client, keyspace)
        self.store = Store(client, keyspace)
        self.state = SchedulerState(config)
        self.mirror: ClusterState | None = None
        self._inbox: asyncio.Queue[Input] = asyncio.Queue()
        # Two writers: a turn may commit claims and starts concurrently; turns
        # themselves never overlap, so decisions stay ordered.
        self._writer = ThreadPoolExecutor(2, thread_name_prefix="leader-writer")
        self._feed: Feed | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._absent: dict[str, float] = {}  # agent id -> since when it has no session
        self._ready_at: dict[TaskKey, float] = {}
        self._stale_leases: set[int] = set()
        self._stolen_at: dict[TaskKey, float] = {}
        self._children: defaultdict[TaskKey, list[str]] = defaultdict(list)
        self.planner = PlannerConfig(time_box=plan_time_box, workers=1)
        self._plans: dict[str, int] = {}  # project -> plans computed (bounded)
        self._planning: set[asyncio.Task[None]] = set()
        self._inflight: asyncio.Task[list[Event]] | None = None
        # assignments refused because another agent's claim still exists:
        # retried (AssignRejected) once that claim is gone
        self._parked: dict[TaskKey, AssignRejected] = {}
        self._early: list[Input] = []  # agent/client inputs that came before the state
        self.ready = asyncio.Event()
        self.lost = asyncio.Event()

    # -- lifecycle -------------------------------------------------------------

    async def start(self, standby: StandbyMirror | None = None) -> None:
        """Start leading: take over ``standby``'s warm mirror (once it has seen
        this term's election key), else snapshot the keyspace now."""
        loop = asyncio.get_running_loop()

        def push(item: Input) -> None:
            loop.call_soon_threadsafe(self._inbox.put_nowait, item)

        if standby is not None:
            self._feed = standby.feed
            standby.hand_over(push, min_revision=self.fence.term)
        else:
            self._feed = Feed(self.client, self.ks, on_reset=push, on_events=push)
        self._tasks = [
            asyncio.create_task(self._main(), name="leader-main"),
            asyncio.create_task(self._ticker(), name="leader-ticker"),
        ]

    async def stop(self) -> None:
        """Stop the loops first (nothing more is written), then release resources."""
        inflight = [self._inflight] if self._inflight is not None else []
        for t in [*self._tasks, *self._planning, *inflight]:
            t.cancel()
        for t in [*self._tasks, *inflight]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        if self._feed is not None:
            feed, self._feed = self._feed, None
            await asyncio.to_thread(feed.cancel)
        self._writer.shutdown(wait=False, cancel_futures=True)

    # -- inputs from the gRPC layer ---------------------------------------------

    def hello(self, conn: AgentConn, resumed: bool, held: Sequence[common_pb2.TaskRef]) -> None:
        self._inbox.put_nowait(Hello(conn, resumed, tuple(held)))

    def report(self, report: Report) -> None:
        self._inbox.put_nowait(report)

    def gone(self, conn: AgentConn, graceful: bool) -> None:
        self._inbox.put_nowait(Gone(conn, graceful))

    def start_requested(self, agent_id: str, ref: common_pb2.TaskRef) -> None:
        """The agent asks to start a queued task. The scheduler grants starts
        itself when it frees a slot; here a grant already given is re-sent
        (the agent may have missed it across a reconnect)."""
        claim = (
            self.mirror.claims.get(TaskKey(ref.project_id, ref.task_id)) if self.mirror else None
        )
        if claim is not None and claim.agent == agent_id and claim.started:
            self.hub.grant(claim)

    def drain(self, conn: AgentConn) -> None:
        """The agent stops taking work; when its session ends its lease is
        revoked at once, so queued claims are requeued without a grace wait."""
        log.info("agent draining", agent_id=conn.info.id)

    def cancel(self, project_id: str, reason: str) -> asyncio.Future[int]:
        """Queue the cancel of a project now; the future says how many tasks
        were unfinished. The cancel happens whether or not anyone waits: a
        caller that gives up only abandons the future (the loop completes it
        only if it is not done), it never reaches the loop."""
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._inbox.put_nowait(Cancel(project_id, reason, fut))
        return fut

    # -- loops -------------------------------------------------------------------

    async def _ticker(self) -> None:
        next_steal = time.monotonic() + self.config.steal_interval
        next_gauges = time.monotonic()
        while True:
            await asyncio.sleep(0.25)
            if time.monotonic() >= next_gauges:
                spent = time.perf_counter()
                self._publish_gauges()
                # gauges cost O(tasks): keep them under ~2% of the loop's time
                next_gauges = time.monotonic() + max(1.0, 50 * (time.perf_counter() - spent))
            if time.monotonic() >= next_steal:
                next_steal = time.monotonic() + self.config.steal_interval
                self._inbox.put_nowait(StealTick(self.clock()))
            self._inbox.put_nowait("grace")

    async def _main(self) -> None:
        try:
            while True:
                items = [await self._inbox.get()]
                while not self._inbox.empty():
                    items.append(self._inbox.get_nowait())
                await self._turn(items)
        except NotLeading:
            log.warning("fence lost: stepping down")
            self.lost.set()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("leader loop crashed: stepping down")
            self.lost.set()

    async def _io(self, fn: Callable[..., T], *args: Any) -> T:
        started = time.perf_counter()
        result = await asyncio.get_running_loop().run_in_executor(self._writer, fn, *args)
        self.metrics.etcd_txn_latency.observe(time.perf_counter() - started)
        return result

    # -- one turn ------------------------------------------------------------------

    async def _turn(self, items: list[Input]) -> None:
        now = self.clock()
        events: list[Event] = []
        reports: list[Report] = []
        todo = deque(items)
        while todo:
            item = todo.popleft()
            if isinstance(item, ClusterState):
                events += await self._settle()  # nothing in flight across a re-list
                self.mirror = item
                self.state = SchedulerState(self.config)
                events.append(restore.restored(item, now))
                # Agents not connected yet are not marked absent: their streams
                # broke with the old leader, not with them. Alive ones come back
                # and resume their leases; a dead one's lease expires in one TTL
                # and etcd releases its claims.
                self.ready.set()
                todo.extend(self._early)  # what arrived before the state, in order
                self._early.clear()
            elif self.mirror is None:
                if isinstance(item, Report | Hello | Gone | Cancel):
                    self._early.append(item)  # decided once the state is here
                continue
            elif isinstance(item, WatchBatch):
                events += self._watched(item, now)
            elif isinstance(item, Report):
                reports.append(item)
            elif isinstance(item, Hello):
                events += self._hello(item, now)
            elif isinstance(item, Gone):
                await self._gone(item)
            elif isinstance(item, Cancel):
                before = self.state.unfinished()
                events.append(ProjectCancelled(item.project_id, item.reason, now))
                if not item.done.done():  # its caller may have given up
                    item.done.set_result(before)
            elif isinstance(item, StealTick):
                events.append(item)
            elif isinstance(item, Deferred):
                events += item.events
            elif item == "grace":
                await self._expire_absent()
        if self._stale_leases:
            stale, self._stale_leases = self._stale_leases, set()
            for lease in stale:
                await self._revoke_agent("(stale lease)", lease)
        # Pipeline: these completions commit while the previous turn's claims
        # and starts are still in flight (different tasks, independent txns);
        # the scheduler then sees both outcomes, in order.
        commit = asyncio.create_task(self._commit_reports(reports, now)) if reports else None
        try:
            events += await self._settle()
        finally:
            if commit is not None:
                events += await commit
        if events:
            commands = self.state.handle(*events)
            self._inflight = asyncio.create_task(self._execute_then_wake(commands))

    async def _settle(self) -> list[Event]:
        """Wait for the turn in flight; its rejections become events now."""
        task, self._inflight = self._inflight, None
        return await task if task is not None else []

    async def _execute_then_wake(self, commands: list[Command]) -> list[Event]:
        try:
            events = await self._execute(commands, self.clock())
        except BaseException:
            self._inbox.put_nowait("wake")  # the next turn re-raises it
            raise
        if events:  # rejections: a later turn retries them, not a tight loop
            asyncio.get_running_loop().call_later(RETRY_DELAY, self._inbox.put_nowait, "wake")
        return events

    # -- watch -------------------------------------------------------------------------

    def _watched(self, batch: WatchBatch, now: float) -> list[Event]:
        assert self.mirror is not None
        self.mirror.apply(batch.events)
        events: list[Event] = []
        fresh = restore.new_projects(batch, self.ks)
        for spec in restore.project_specs(self.mirror, fresh) if fresh else ():
            if (
                self.state.project_outcome(spec.id) is None
                and spec.id not in self.state.project_ids()
            ):
                log.info("project submitted", project=spec.id, tasks=len(spec.tasks))
                events.append(ProjectSubmitted(spec, now))
                self._plan_later(spec.id)
                for t in spec.tasks:
                    if not t.depends_on:
                        self._ready_at[TaskKey(spec.id, t.id)] = time.monotonic()
                    for d in t.depends_on:
                        self._children[TaskKey(spec.id, d)].append(t.id)
        for claim in restore.deleted_claims(batch, self.ks):
            parked = self._parked.pop(claim.key, None)
            if parked is not None:
                events.append(replace(parked, now=now))
            if claim.key in self.mirror.results:
                continue
            if self.state.task_agent(claim.key) == claim.agent:
                self.metrics.claims_released.labels("lease_expired").inc()
                events.append(ClaimLost(claim.key, claim.agent, now))
        for agent_id in restore.deleted_agents(batch, self.ks):
            self.metrics.lease_expirations.inc()
            self._absent.pop(agent_id, None)
            self.hub.forget(agent_id)
            if agent_id in self.state.agent_ids():
                events.append(AgentLeft(agent_id, now))
        return events

    # -- agents --------------------------------------------------------------------------

    def _hello(self, hello: Hello, now: float) -> list[Event]:
        assert self.mirror is not None
        conn = hello.conn
        agent_id = conn.info.id
        self._absent.pop(agent_id, None)
        events: list[Event] = []
        known = agent_id in self.state.agent_ids()
        if known and not hello.resumed:
            # It lost its lease: claims still on an old lease go with that lease
            # (etcd deletes them; the watch then reports each as lost).
            self._stale_leases |= {
                c.lease_id
                for c in self.mirror.claims.values()
                if c.agent == agent_id and c.lease_id and c.lease_id != conn.lease_id
            }
        elif known:
            self._resync(conn, hello.held)
        events.append(AgentJoined(replace(conn.info, lease_id=conn.lease_id), now))
        self.metrics.agents_connected.set(len(self.hub.conns))
        return events

    def _resync(self, conn: AgentConn, held: Sequence[common_pb2.TaskRef]) -> None:
        """After a reconnect: re-send what the agent should hold, revoke the rest."""
        assert self.mirror is not None
        agent_id = conn.info.id
        held_keys = {TaskKey(r.project_id, r.task_id): r for r in held}
        mine = {k: c for k, c in self.mirror.claims.items() if c.agent == agent_id}
        for key, claim in mine.items():
            if key not in held_keys and key in self.mirror.tasks:
                self.hub.assign(claim, self.mirror.tasks[key].spec, self.fence.term)
        for key, ref in held_keys.items():
            current = mine.get(key)
            if current is None or current.fence != ref.fence:
                self.hub.revoke_ref(agent_id, ref, "claim no longer held")

    async def _gone(self, gone: Gone) -> None:
        agent_id = gone.conn.info.id
        self.metrics.agents_connected.set(len(self.hub.conns))
        if self.hub.connected(agent_id):
            return  # a newer session replaced this one
        if gone.graceful:
            await self._revoke_agent(agent_id, gone.conn.lease_id)
        else:
            self._absent.setdefault(agent_id, time.monotonic())

    async def _expire_absent(self) -> None:
        cutoff = time.monotonic() - self.agent_grace
        for agent_id, since in list(self._absent.items()):
            if since <= cutoff and not self.hub.connected(agent_id):
                del self._absent[agent_id]
                info = self.mirror.agents.get(agent_id) if self.mirror else None
                lease = info.lease_id if info else 0
                log.info("agent did not come back: revoking its lease", agent=agent_id)
                await self._revoke_agent(agent_id, lease)

    async def _revoke_agent(self, agent_id: str, lease_id: int) -> None:
        if lease_id:
            try:
                await self._io(self.keeper.revoke, lease_id)
            except EtcdError as exc:
                log.warning("lease revoke failed", agent=agent_id, error=str(exc))

    # -- completions ---------------------------------------------------------------------

    async def _commit_reports(self, reports: list[Report], now: float) -> list[Event]:
        assert self.mirror is not None
        events: list[Event] = []
        done = [r for r in reports if r.ok or not r.retryable]
        failed = [r for r in reports if not r.ok and r.retryable]
        if done:
            comps = [
                Completion(
                    key=TaskKey(r.ref.project_id, r.ref.task_id),
                    fence=r.ref.fence,
                    lease_id=r.lease_id,
                    result=TaskResult(
                        key=TaskKey(r.ref.project_id, r.ref.task_id),
                        state=TaskState.SUCCEEDED if r.ok else TaskState.FAILED,
                        agent=r.agent_id,
                        attempt=r.ref.attempt,
                        reason=r.reason,
                        duration=r.duration,
                        output_tail=r.output_tail,
                        finished_at=now,
                    ),
                )
                for r in done
            ]
            results = await self._io(
                functools.partial(self.claims.complete, comps, known=self.mirror.tasks)
            )
            for r, c, res in zip(done, comps, results, strict=True):
                if res.ok:
                    self.mirror.note_delete(self.ks.claim(c.key), res.revision)
                    self.mirror.results[c.key] = c.result
                    self.hub.ack(r.agent_id, r.ref)
                    if r.ok:
                        events.append(TaskSucceeded(c.key, r.agent_id, r.duration, now))
                        self._note_ready_children(c.key)
                    else:
                        events.append(TaskFailed(c.key, r.agent_id, r.reason, False, now))
                else:
                    self.metrics.completions_rejected.inc()
                    self.hub.reject(r.agent_id, r.ref, "claim moved or expired (stale fence)")
        if failed:
            # A retryable failure: give the claim back, then the scheduler requeues.
            claims = []
            for r in failed:
                key = TaskKey(r.ref.project_id, r.ref.task_id)
                claim = self.mirror.claims.get(key)
                if claim is None or claim.fence != r.ref.fence or claim.agent != r.agent_id:
                    self.hub.reject(r.agent_id, r.ref, "claim moved or expired (stale fence)")
                    continue
                claims.append((r, claim))
            results = await self._fenced(self.claims.release, [c for _, c in claims])
            for (r, claim), res in zip(claims, results, strict=True):
                if res.ok:
                    self.mirror.note_delete(self.ks.claim(claim.key), res.revision)
                    self.hub.ack(r.agent_id, r.ref)
                    events.append(TaskFailed(claim.key, r.agent_id, r.reason, True, now))
                else:
                    self.hub.reject(r.agent_id, r.ref, "claim moved or expired (stale fence)")
        return events

    # -- commands ------------------------------------------------------------------------

    async def _fenced(
        self, fn: Callable[..., list[ItemResult]], items: Sequence[Any]
    ) -> list[ItemResult]:
        if not items:
            return []
        results = await self._io(fn, list(items), self.fence)
        if any(r.outcome is Outcome.NOT_LEADER for r in results):
            raise NotLeading()
        return results

    async def _fenced_on_leases(
        self,
        fn: Callable[..., list[ItemResult]],
        items: Sequence[Any],
        lease_of: Callable[[Any], int],
    ) -> list[ItemResult]:
        """``_fenced`` for writes that attach keys to agent leases. etcd refuses a
        whole txn naming a lease that just expired: find the dead leases, answer
        CONFLICT for their items, and commit the rest (the agent's departure
        reaches the scheduler through the watch). Leases may keep dying while
        this runs (a fleet reconnecting after a takeover): a few rounds, then
        every item left is a CONFLICT the scheduler decides again."""
        results: dict[int, ItemResult] = {}
        todo = list(enumerate(items))
        for _ in range(LEASE_ROUNDS):
            try:
                done = await self._fenced(fn, [i for _, i in todo]) if todo else []
            except InvalidArgument as exc:
                if "lease not found" not in str(exc):
                    raise
            else:
                results.update((n, r) for (n, _), r in zip(todo, done, strict=True))
                todo = []
                break
            dead = {
                lease
                for lease in {lease_of(i) for _, i in todo}
                if await self._io(self.client.lease_ttl, lease) <= 0
            }
            log.info("claims named expired agent leases", leases=[f"{x:x}" for x in dead])
            gone = [(n, i) for n, i in todo if lease_of(i) in dead]
            results.update((n, ItemResult(Outcome.CONFLICT)) for n, _ in gone)
            todo = [(n, i) for n, i in todo if lease_of(i) not in dead]
        results.update((n, ItemResult(Outcome.CONFLICT)) for n, _ in todo)
        return [results[n] for n in range(len(items))]

    def _record(self, key: TaskKey) -> TaskRecord | None:
        assert self.mirror is not None
        return self.mirror.tasks.get(key)

    def _lease_of(self, agent_id: str) -> int:
        conn = self.hub.conns.get(agent_id)
        if conn is not None:
            return conn.lease_id
        info = self.mirror.agents.get(agent_id) if self.mirror else None
        return info.lease_id if info else 0

    async def _execute(self, commands: list[Command], now: float) -> list[Event]:
        assert self.mirror is not None
        by_kind: dict[type, list[Any]] = defaultdict(list)
        for c in commands:
            by_kind[type(c)].append(c)
        events: list[Event] = []
        # Requeues first: a task requeued and re-assigned in the same turn must be
        # claimed with its new attempt number.
        await self._requeue(by_kind[RequeueTask])
        # New claims and start confirmations touch different tasks: commit both at once.
        assigned, started = await asyncio.gather(
            self._assign(by_kind[AssignTask], now), self._start(by_kind[StartTask], now)
        )
        events += assigned + started
        events += await self._steal(by_kind[StealTask], now)
        await self._finish(by_kind[MarkTaskFailed], by_kind[CancelTask])
        for rp in by_kind[RequestReplan]:
            log.info("plan dropped", project=rp.project_id, reason=rp.reason)
            self._plan_later(rp.project_id)
        for pf in by_kind[ProjectFinished]:
            log.info("project finished", project=pf.project_id, outcome=pf.outcome)
        return events

    async def _assign(self, cmds: list[AssignTask], now: float) -> list[Event]:
        assert self.mirror is not None
        reqs: list[tuple[AssignTask, ClaimRequest]] = []
        events: list[Event] = []
        for c in cmds:
            rec = self._record(c.key)
            lease = self._lease_of(c.agent_id)
            if rec is None or not lease:
                events.append(AssignRejected(c.key, c.agent_id, now))
                continue
            reqs.append((c, ClaimRequest(rec, c.agent_id, lease, started=c.start_now)))
        results = await self._fenced_on_leases(
            self.claims.create, [r for _, r in reqs], lambda r: int(r.lease_id)
        )
        for (c, req), res in zip(reqs, results, strict=True):
            if res.ok and res.claim is not None:
                self._fold_claim(res.claim, req.lease_id)
                if req.record.state is TaskState.PENDING:
                    self.mirror.tasks[c.key] = replace(
                        req.record, state=TaskState.READY, mod_revision=res.revision
                    )
                    self.mirror.mods[self.ks.task(c.key)] = res.revision
                self.metrics.assignments.labels("claimed").inc()
                self.hub.assign(res.claim, req.record.spec, self.fence.term)
                if c.start_now:
                    self._started(c.key)
            else:
                self.metrics.assignments.labels("conflict").inc()
                self.metrics.claim_conflicts.inc()
                rejected = AssignRejected(c.key, c.agent_id, now)
                holder = self.mirror.claims.get(c.key)
                if holder is not None and holder.agent != c.agent_id:
                    self._parked[c.key] = rejected  # retried once that claim is gone
                else:
                    events.append(rejected)
                    await self._refresh_record(c.key)
        return events

    async def _refresh_record(self, key: TaskKey) -> None:
        """Re-read a task record after a conflict (the mirror may lag)."""
        assert self.mirror is not None
        try:
            rec = await self._io(self.store.task_record, key)
        except EtcdError:
            return
        if rec is not None:
            self.mirror.tasks[key] = rec
            self.mirror.mods[self.ks.task(key)] = rec.mod_revision

    def _plan_later(self, project_id: str) -> None:
        """Plan a small project exactly (CP-SAT, time-boxed) off the event loop;
        the scheduler follows the plan once ``PlanUpdated`` arrives and drops it
        when reality drifts. At most MAX_PLANS per project."""
        if self.planner.time_box <= 0 or self._plans.get(project_id, 0) >= MAX_PLANS:
            return
        assert self.mirror is not None
        specs = restore.project_specs(self.mirror, {project_id})
        agents = [a for a in self.mirror.agents.values() if self.hub.connected(a.id)]
        if not specs or not agents or len(specs[0].tasks) > self.planner.max_tasks:
            return
        self._plans[project_id] = self._plans.get(project_id, 0) + 1

        async def plan() -> None:
            loop = asyncio.get_running_loop()
            result = await loop.run_in_executor(
                None, plan_project, specs[0], agents, None, self.planner
            )
            if result is not None:
                self._inbox.put_nowait(Deferred((PlanUpdated(project_id, result, self.clock()),)))

        task = asyncio.create_task(plan())
        self._planning.add(task)
        task.add_done_callback(self._planning.discard)

    def _fold_claim(self, claim: Claim, lease_id: int) -> None:
        assert self.mirror is not None
        self.mirror.claims[claim.key] = replace(claim, lease_id=lease_id)
        self.mirror.mods[self.ks.claim(claim.key)] = claim.mod_revision

    def _note_ready_children(self, key: TaskKey) -> None:
        """Children whose parents all succeeded are ready now (for latency)."""
        assert self.mirror is not None
        results = self.mirror.results
        for child in self._children.get(key, ()):
            ck = TaskKey(key.project, child)
            rec = self.mirror.tasks.get(ck)
            if rec is not None and all(
                (r := results.get(TaskKey(key.project, d))) is not None
                and r.state is TaskState.SUCCEEDED
                for d in rec.spec.depends_on
            ):
                self._ready_at[ck] = time.monotonic()

    def _started(self, key: TaskKey) -> None:
        """The start of ``key`` was granted: record the latencies it closes."""
        now = time.monotonic()
        since = self._ready_at.pop(key, None)
        if since is not None:
            self.metrics.assignment_latency.observe(now - since)
        stolen = self._stolen_at.pop(key, None)
        if stolen is not None:
            self.metrics.redistribution_latency.observe(now - stolen)

    async def _start(self, cmds: list[StartTask], now: float) -> list[Event]:
        assert self.mirror is not None
        todo = [(c, self.mirror.claims.get(c.key)) for c in cmds]
        events: list[Event] = [
            StartRejected(c.key, c.agent_id, now)
            for c, claim in todo
            if claim is None or claim.agent != c.agent_id
        ]
        todo = [(c, cl) for c, cl in todo if cl is not None and cl.agent == c.agent_id]
        results = await self._fenced(self.claims.start, [cl for _, cl in todo])
        for (c, _), res in zip(todo, results, strict=True):
            if res.ok and res.claim is not None:
                self._fold_claim(res.claim, res.claim.lease_id)
                self.hub.grant(res.claim)
                self._started(c.key)
            else:
                events.append(StartRejected(c.key, c.agent_id, now))
        return events

    async def _steal(self, cmds: list[StealTask], now: float) -> list[Event]:
        assert self.mirror is not None
        decided = time.monotonic()
        moves: list[tuple[StealTask, Claim, Steal]] = []
        events: list[Event] = []
        for c in cmds:
            claim = self.mirror.claims.get(c.key)
            lease = self._lease_of(c.to_agent)
            if claim is None or claim.agent != c.from_agent or claim.started or not lease:
                events.append(StealRejected(c.key, c.from_agent, c.to_agent, now))
                continue
            moves.append((c, claim, Steal(claim, c.to_agent, lease)))
        results = await self._fenced_on_leases(
            self.claims.steal, [m for _, _, m in moves], lambda m: int(m.lease_id)
        )
        starts: list[tuple[StealTask, Claim]] = []
        moved = 0
        for (c, old, _), res in zip(moves, results, strict=True):
            if res.ok and res.claim is not None:
                moved += 1
                self._stolen_at[c.key] = decided
                self._fold_claim(res.claim, res.claim.lease_id)
                self.metrics.steals.labels("moved").inc()
                self.metrics.last_steal_time.set(time.time())
                self.hub.revoke(old, f"stolen by {c.to_agent}")
                if c.start_now:
                    starts.append((c, res.claim))
                else:
                    self.hub.assign(res.claim, self.mirror.tasks[c.key].spec, self.fence.term)
            else:
                self.metrics.steals.labels("rejected").inc()
                events.append(StealRejected(c.key, c.from_agent, c.to_agent, now))
        if moved:
            self.metrics.steal_size.observe(moved)
        if starts:
            started = await self._fenced(self.claims.start, [cl for _, cl in starts])
            for (c, _), res in zip(starts, started, strict=True):
                if res.ok and res.claim is not None:
                    self._fold_claim(res.claim, res.claim.lease_id)
                    self.hub.assign(res.claim, self.mirror.tasks[c.key].spec, self.fence.term)
                    self._started(c.key)
                else:
                    events.append(StartRejected(c.key, c.to_agent, now))
        return events

    async def _requeue(self, cmds: list[RequeueTask], retry: bool = True) -> None:
        assert self.mirror is not None
        todo = [(c, r) for c in cmds if (r := self._record(c.key)) is not None]
        recs = [r for _, r in todo]
        attempts = [c.attempt for c, _ in todo]
        results = await self._fenced(
            functools.partial(self.claims.requeue, attempts=attempts), recs
        )
        again: list[RequeueTask] = []
        for (cmd, rec), res in zip(todo, results, strict=True):
            if res.ok:
                self.mirror.tasks[rec.key] = replace(
                    rec, state=TaskState.READY, attempt=cmd.attempt, mod_revision=res.revision
                )
                self.mirror.mods[self.ks.task(rec.key)] = res.revision
                self._ready_at[rec.key] = time.monotonic()
            elif retry:
                await self._refresh_record(rec.key)
                again.append(cmd)
            else:
                log.warning("requeue conflict", task=str(rec.key))
        if again:
            await self._requeue(again, retry=False)

    async def _finish(self, failed: list[MarkTaskFailed], cancelled: list[CancelTask]) -> None:
        assert self.mirror is not None
        items: list[Finish] = []
        revoke: list[tuple[Claim, str]] = []
        for state, key, reason in [
            *((TaskState.FAILED, c.key, c.reason) for c in failed),
            *((TaskState.CANCELLED, c.key, c.reason) for c in cancelled),
        ]:
            rec = self._record(key)
            if rec is None or rec.state.terminal or key in self.mirror.results:
                continue
            claim = self.mirror.claims.get(key)
            items.append(Finish(rec, state, reason, claim))
            if claim is not None:
                revoke.append((claim, reason))
        results = await self._fenced(self.claims.finish, items)
        for f, res in zip(items, results, strict=True):
            if res.ok:
                self.mirror.tasks[f.record.key] = replace(
                    f.record, state=f.state, mod_revision=res.revision
                )
                self.mirror.results[f.record.key] = TaskResult(
                    f.record.key, f.state, reason=f.reason
                )
                if f.claim is not None:
                    self.mirror.note_delete(self.ks.claim(f.record.key), res.revision)
        for claim, reason in revoke:
            self.hub.revoke(claim, reason)

    # -- metrics -------------------------------------------------------------------------

    def _publish_gauges(self) -> None:
        """Tasks by state and load imbalance (sampled by the ticker)."""
        if self.mirror is None:
            return
        counts = Counter(
            st.value for k in self.mirror.tasks if (st := self.mirror.state_of(k)) is not None
        )
        for state in TaskState:
            self.metrics.tasks.labels(state.value).set(counts.get(state.value, 0))
        self.metrics.load_imbalance.set(self.state.metrics(self.clock()).load_imbalance)
