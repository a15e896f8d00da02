"""The turn loop: the leader of one term (docs/leader.md).

One asyncio task owns the term (``term.Term``: the scheduler and the etcd
mirror). Inputs (watch batches, agent messages, client requests, timers,
``inputs``) land on one queue. A turn first awaits the previous turn's writes (their
rejections are its first events), then drains everything pending; plain
successes go to the scheduler at once and commit with the turn's claims
(docs/leader.md, "One txn per turn"), other reports commit first
(``completions``); small projects go to the scheduler at once and are stored
with their first claims (``submits``); the scheduler's commands go to the executor
(``executor``), whose writes run while the next inputs queue up. A
speculated success or submit that etcd refuses makes the next turn re-list (a fresh
snapshot; inputs wait for it). Agent presence lives in ``presence``, exact
plans in ``planning``.

Invariants: every leader write carries the election fence (a deposed leader
writes nothing and steps down: ``lost`` is set); a task is pushed to an
agent only after its claim committed, and claimed only once its parents'
completions committed (or in the same txn) or, chained, while they run on its
agent (docs/scheduling.md, "Chains run back to back"); a report is acknowledged only after it
committed; nothing a caller does with a future it was given (a cancel's)
reaches the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import structlog

from workhive.coordinator.etcd import (
    ClusterState,
    EtcdClient,
    Feed,
    Fence,
    ItemResult,
    Keyspace,
    LeaseKeeper,
    ProjectMeta,
    StandbyMirror,
    WatchBatch,
)
from workhive.coordinator.leader import restore, takeover
from workhive.coordinator.leader.clock import Clock
from workhive.coordinator.leader.completions import Completions, Speculated
from workhive.coordinator.leader.executor import CommandExecutor
from workhive.coordinator.leader.growth import Added, AddRequest, Grower
from workhive.coordinator.leader.inputs import EARLY, Ask, Cancel, Deferred, Input
from workhive.coordinator.leader.planning import Planning
from workhive.coordinator.leader.ports import AgentPort, Gone, Hello, Report
from workhive.coordinator.leader.presence import Presence
from workhive.coordinator.leader.progress import ProgressBoard
from workhive.coordinator.leader.submits import Pending, SubmitRequest, Submits
from workhive.coordinator.leader.term import Term
from workhive.coordinator.leader.writes import ClaimsStore, EtcdClaimsStore, NotLeading, Writer
from workhive.coordinator.metrics import Metrics
from workhive.coordinator.model import (
    AgentInfo,
    ProjectSpec,
    TaskKey,
    TaskRef,
    TaskState,
    TaskTiming,
)
from workhive.coordinator.scheduling import (
    Addition,
    ClaimLost,
    ClaimWanted,
    ClaimWithdrawn,
    Command,
    DeadlineTick,
    Event,
    ProjectCancelled,
    ProjectDeleted,
    ProjectSubmitted,
    SchedulerConfig,
    SchedulerMetrics,
    SchedulerState,
    StealTick,
)

log = structlog.get_logger("workhive.leader")

__all__ = ["LeaderDriver", "NotLeading"]


RETRY_DELAY = 0.05  # seconds before rejected commands are decided again
TICK = 0.25  # seconds between timer inputs (grace expiry)


class LeaderDriver:
    """Runs the scheduler for one leadership term (create a new one per term)."""

    def __init__(
        self,
        *,
        client: EtcdClient,
        keyspace: Keyspace,
        fence: Fence,
        keeper: LeaseKeeper,
        hub: AgentPort,
        metrics: Metrics,
        config: SchedulerConfig,
        agent_grace: float,
        plan_time_box: float = 2.0,
        clock: Clock | None = None,
        store: ClaimsStore | None = None,
    ) -> None:
        self.client = client
        self.ks = keyspace
        self.fence = fence
        self.config = config
        self.clock = clock or Clock()
        writer = Writer(store or EtcdClaimsStore(client, keyspace, keeper), fence, metrics)
        self.term = Term(fence, hub, writer, metrics, self.clock, config)
        self.planning = Planning(self.term, self._defer, plan_time_box)
        self.completions = Completions(self.term)
        self.submits = Submits(self.term, self.planning.plan_later)
        self.executor = CommandExecutor(
            self.term, self.planning.plan_later, self._confirm, self._stored
        )
        self.presence = Presence(self.term, agent_grace)
        self.progress = ProgressBoard()
        self.grower = Grower(self.term)
        self._inbox: asyncio.Queue[Input] = asyncio.Queue()
        self._feed: Feed | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._inflight: asyncio.Task[list[Event]] | None = None
        self._early: list[Input] = []  # agent/client inputs that came before the state
        self._refused = False  # a speculated completion was refused: re-list
        self._relisting = False  # waiting for the fresh state asked for
        self.ready = asyncio.Event()
        self.lost = asyncio.Event()
        self._applied = asyncio.Event()  # set (and replaced) when the mirror changed

    @property
    def mirror(self) -> ClusterState | None:
        """The term's cluster mirror (read-only outside the leader)."""
        return self.term.mirror

    @property
    def state(self) -> SchedulerState:
        return self.term.state

    # -- lifecycle -------------------------------------------------------------

    async def start(self, standby: StandbyMirror | None = None) -> None:
        """Start leading: take over ``standby``'s warm mirror (``takeover``:
        once it has seen a barrier written now), else snapshot the keyspace.
        A fence found lost sets ``lost`` and starts nothing."""
        loop = asyncio.get_running_loop()

        def push(item: Input) -> None:
            loop.call_soon_threadsafe(self._inbox.put_nowait, item)

        if standby is not None:
            try:
                if await takeover.take_over(self.term.writer, standby, push):
                    self._feed = standby.feed
            except NotLeading:
                self.lost.set()
                return
        if self._feed is None:
            self._feed = Feed(self.client, self.ks, on_reset=push, on_events=push)
        self._tasks = [
            asyncio.create_task(self._main(), name="leader-main"),
            asyncio.create_task(self._ticker(), name="leader-ticker"),
        ]

    async def stop(self) -> None:
        """Stop the loops first (nothing more is written), then release resources."""
        inflight = [self._inflight] if self._inflight is not None else []
        self.planning.cancel()
        for t in [*self._tasks, *inflight]:
            t.cancel()
        for t in [*self._tasks, *inflight]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self.submits.abandon()
        if self._feed is not None:
            feed, self._feed = self._feed, None
            await asyncio.to_thread(feed.cancel)
        self.term.writer.close()

    # -- inputs from the service layer (service.node_view.LeaderView) ------------

    def hello(self, hello: Hello) -> None:
        self._inbox.put_nowait(hello)

    def report(self, report: Report) -> None:
        self._inbox.put_nowait(report)

    def gone(self, gone: Gone) -> None:
        self._inbox.put_nowait(gone)

    def start_requested(self, agent_id: str, ref: TaskRef) -> None:
        self.presence.start_requested(agent_id, ref)

    def claim_wanted(self, agent_id: str, seq: int, wait: float) -> None:
        """A pull agent asks for a task (docs/scheduling.md, "Pull claims")."""
        self._inbox.put_nowait(Ask(agent_id, seq, wait))

    def drain(self, agent_id: str) -> None:
        """The agent stops taking work; when its session ends its lease is
        revoked at once, so queued claims are requeued without a grace wait."""
        log.info("agent draining", agent_id=agent_id)

    def cancel(self, project_id: str, reason: str) -> asyncio.Future[int]:
        """Queue the cancel of a project now; the future says how many tasks
        were unfinished. The cancel happens whether or not anyone waits: a
        caller that gives up only abandons the future (the loop completes it
        only if it is not done), it never reaches the loop."""
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._inbox.put_nowait(Cancel(project_id, reason, fut))
        return fut

    def add_tasks(self, addition: Addition, source: str = "<request>") -> asyncio.Future[Added]:
        """Queue a batch of new tasks (``leader.growth``); the future says
        what was committed or raises ``AddRefused``. Like a cancel, the batch
        is decided whether or not anyone waits."""
        fut: asyncio.Future[Added] = asyncio.get_running_loop().create_future()
        self._inbox.put_nowait(AddRequest(addition, source, fut))
        return fut

    def submit(self, spec: ProjectSpec) -> asyncio.Future[ProjectMeta]:
        """Queue a small project (``submits.fits``) to be stored with its first
        claims (``leader.submits``); the future gives its meta once committed,
        or raises ``ProjectExists``, ``FullProtocol`` or ``FenceLost``."""
        req = self.submits.request(spec)
        self._inbox.put_nowait(req)
        return req.done

    def registered(self, agent_id: str) -> AgentInfo | None:
        mirror = self.term.mirror
        return mirror.agents.get(agent_id) if mirror is not None else None

    def cluster(self) -> ClusterState | None:
        return self.term.mirror

    async def project_seen(self, project_id: str, wait: float) -> bool:
        """Whether the mirror shows ``project_id`` within ``wait`` seconds;
        woken by each watch batch the turn applies (no polling)."""
        deadline = asyncio.get_running_loop().time() + wait
        while True:
            mirror = self.term.mirror
            if mirror is not None and project_id in mirror.projects:
                return True
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._applied.wait(), left)

    def loads(self) -> dict[str, float]:
        return self.term.state.loads()

    def speed_factors(self) -> dict[str, float]:
        return self.term.state.speed_factors()

    def scheduler_metrics(self) -> SchedulerMetrics:
        return self.term.state.metrics(self.clock.wall())

    def task_timing(self, key: TaskKey) -> TaskTiming | None:
        """The scheduler's deadline, next retry and last failure of ``key``,
        and the progress its running attempt reported."""
        state = self.term.state
        if state.task_state(key) is None:
            return None
        p = self.progress.of(self.term.mirror, key)
        return TaskTiming(
            state.deadline_at(key),
            state.retry_at(key),
            state.last_failure(key),
            p.fraction if p else None,
            p.note if p else "",
        )

    def progress_reported(self, agent_id: str, ref: TaskRef, fraction: float, note: str) -> None:
        """A running task's progress (advisory, memory only: ``leader.progress``)."""
        self.progress.report(self.term.mirror, agent_id, ref, fraction, note)

    def _defer(self, events: tuple[Event, ...]) -> None:
        self._inbox.put_nowait(Deferred(events))

    # -- loops -------------------------------------------------------------------

    async def _ticker(self) -> None:
        mono = self.clock.monotonic
        next_steal = mono() + self.config.steal_interval
        next_gauges = mono()
        while True:
            await asyncio.sleep(TICK)
            if mono() >= next_gauges:
                spent = time.perf_counter()
                self._publish_gauges()
                # the load imbalance costs O(projects + agents): under ~2% of the time
                next_gauges = mono() + max(1.0, 50 * (time.perf_counter() - spent))
            if mono() >= next_steal:
                next_steal = mono() + self.config.steal_interval
                self._inbox.put_nowait(StealTick(self.clock.wall()))
            wake = self.term.state.next_wakeup()  # a task's deadline or end of backoff
            if wake is not None and self.clock.wall() >= wake:
                self._inbox.put_nowait(DeadlineTick(self.clock.wall()))
            self._inbox.put_nowait("grace")

    async def _main(self) -> None:
        try:
            while True:
                first = await self._inbox.get()
                await self._turn([first])
        except NotLeading:
            log.warning("fence lost: stepping down")
            self.lost.set()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("leader loop crashed: stepping down")
            self.lost.set()

    # -- one turn ------------------------------------------------------------------

    async def _turn(self, items: list[Input]) -> None:
        term = self.term
        # The previous turn's writes first: this turn decides on their outcome.
        events: list[Event] = await self._settle()
        now = self.clock.wall()
        if self._refused:
            self._refused = False
            self._relisting = True
            events = []  # decided on a state the refused completion made wrong
            log.warning("a completion the scheduler was told of was refused: re-listing")
            term.metrics.leader_relists.inc()
            if self._feed is not None:
                self._feed.relist()
        reports: list[Report] = []
        adds: list[AddRequest] = []
        submits: list[SubmitRequest] = []
        todo = deque(items)
        while not self._inbox.empty():  # all that is pending, also what came during the writes
            todo.append(self._inbox.get_nowait())
        while todo:
            item = todo.popleft()
            if isinstance(item, ClusterState):
                term.mirror = item
                self._mirror_changed()
                term.state = SchedulerState(self.config)
                self._relisting = False
                events.append(restore.restored(item, now))
                # Agents not connected yet are not marked absent: their streams
                # broke with the old leader, not with them. Alive ones come back
                # and resume their leases; a dead one's lease expires in one TTL
                # and etcd releases its claims.
                self.ready.set()
                todo.extend(self._early)  # what arrived before the state, in order
                self._early.clear()
            elif term.mirror is None or self._relisting:
                if isinstance(item, EARLY):
                    self._early.append(item)  # decided once the state is here
            elif isinstance(item, WatchBatch):
                events += self._watched(item, now)
            elif isinstance(item, Report):
                reports.append(item)
            elif isinstance(item, Hello):
                events += self.presence.hello(item, now)
            elif isinstance(item, Gone):
                await self.presence.gone(item)
            elif isinstance(item, Cancel):
                before = term.state.unfinished()
                events.append(ProjectCancelled(item.project_id, item.reason, now))
                if not item.done.done():  # its caller may have given up
                    item.done.set_result(before)
            elif isinstance(item, AddRequest):
                adds.append(item)
            elif isinstance(item, SubmitRequest):
                submits.append(item)
            elif isinstance(item, Ask):
                events.append(ClaimWanted(item.agent_id, item.seq, now))
                withdraw = ClaimWithdrawn(item.agent_id, item.seq, now + item.wait)
                asyncio.get_running_loop().call_later(item.wait, self._inbox.put_nowait, withdraw)
            elif isinstance(item, ClaimWithdrawn):
                events.append(replace(item, now=now))
            elif isinstance(item, StealTick | DeadlineTick):
                events.append(item)
            elif isinstance(item, Deferred):
                events += item.events
            elif item == "grace":
                await self.presence.expire()
        if term.mirror is None or self._relisting:
            return
        await self.presence.revoke_stale()  # before the barrier: its resyncs see them gone
        self.presence.resync_caught_up()
        await self.presence.write_barrier()
        # Plain successes go to the scheduler now and commit with the claims
        # they release (one txn: docs/leader.md, "One txn per turn"); the rest
        # (failures, spawns, reports the mirror cannot vouch for) commit first.
        speculated, reports = self.completions.in_order(
            *self.completions.speculate(reports, now), self._inbox.put_nowait, RETRY_DELAY
        )
        if reports:
            events += await self.completions.commit(reports, now)
        for add in adds:  # decided with no claim or start in flight
            events += await self.grower.add(add, now)
        events += [s.event for s in speculated]
        pending, submitted = self.submits.accept(submits, now)  # last: nothing else of theirs
        events += submitted
        if events:
            commands = term.state.handle(*events)
            self._inflight = asyncio.create_task(
                self._execute_then_wake(commands, speculated, pending)
            )

    def _confirm(self, speculated: Sequence[Speculated], results: Sequence[ItemResult]) -> None:
        if self.completions.confirm(speculated, results):
            self._refused = True

    def _stored(self, pending: Sequence[Pending], results: Sequence[ItemResult]) -> None:
        if self.submits.settle(pending, results):
            self._refused = True
        self._mirror_changed()

    async def _settle(self) -> list[Event]:
        """Wait for the turn in flight; its rejections become events now."""
        task, self._inflight = self._inflight, None
        return await task if task is not None else []

    async def _execute_then_wake(
        self,
        commands: list[Command],
        speculated: Sequence[Speculated] = (),
        pending: Sequence[Pending] = (),
    ) -> list[Event]:
        try:
            events = await self.executor.execute(commands, speculated, pending)
        except BaseException:
            self.submits.abandon()
            self._inbox.put_nowait("wake")  # the next turn re-raises it
            raise
        if events:  # rejections: a later turn retries them, not a tight loop
            asyncio.get_running_loop().call_later(RETRY_DELAY, self._inbox.put_nowait, "wake")
        return events

    def _mirror_changed(self) -> None:
        applied, self._applied = self._applied, asyncio.Event()
        applied.set()

    def _watched(self, batch: WatchBatch, now: float) -> list[Event]:
        term, mirror = self.term, self.term.view()
        changes = mirror.apply(batch.events)
        self._mirror_changed()
        events: list[Event] = []
        fresh = changes.new_projects
        for spec in restore.project_specs(mirror, set(fresh)) if fresh else ():
            if not term.state.knows(spec.id):
                log.info("project submitted", project=spec.id, tasks=len(spec.tasks))
                events.append(ProjectSubmitted(spec, now))
                self.planning.plan_later(spec.id)
                term.latencies.submitted(spec)
        for claim in changes.deleted_claims:
            self.progress.forget(claim)
            parked = self.executor.unpark(claim.key)
            if parked is not None:
                events.append(replace(parked, now=now))
            current = mirror.claims.get(claim.key)
            if current is not None and current.fence != claim.fence:
                continue  # an older claim's delete, echoed after the task was claimed again
            if term.state.task_agent(claim.key) != claim.agent:
                continue  # the scheduler moved on already (its own writes)
            result = mirror.results.get(claim.key)
            if result is not None:  # committed by an earlier leader
                done = restore.outcome(result, claim.agent, now)
                if done is not None:
                    events.append(done)
            else:
                term.metrics.claims_released.labels("lease_expired").inc()
                events.append(ClaimLost(claim.key, claim.agent, now))
        events += self.presence.left(changes.deleted_agents, now)
        for pid in sorted(changes.deleted_projects):
            log.info("project deleted", project=pid)
            events.append(ProjectDeleted(pid, now))
        return events

    # -- metrics -------------------------------------------------------------------------

    def _publish_gauges(self) -> None:
        """Tasks by state and load imbalance (sampled by the ticker)."""
        mirror = self.term.mirror
        if mirror is None:
            return
        for state in TaskState:
            self.term.metrics.tasks.labels(state.value).set(mirror.state_counts[state])
        self.term.metrics.load_imbalance.set(
            self.term.state.metrics(self.clock.wall()).load_imbalance
        )
