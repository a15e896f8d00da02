"""One coordinator replica: serves gRPC, campaigns, leads when elected.

Lifecycle: connect to etcd, start the gRPC server (health SERVING: it can
serve agents and clients, leader or not), observe who leads, campaign. When
elected, a ``LeaderDriver`` rebuilds state from etcd and runs the loops; when
the session is lost, the driver stops before anything else and the replica
campaigns again with a fresh lease.

Shutdown (SIGTERM): health NOT_SERVING, stop the leader loops, resign (delete
the election key, so a follower leads at once), then stop the server with a
grace period.

Fast failover (``fast_failover``): a follower keeps a health stream open to
the leader; when it breaks and the leader's address refuses connections (the
process is gone), the follower revokes the dead leader's lease instead of
waiting for it to expire. Fencing keeps a wrong guess safe: a revoked leader
can write nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import socket
from typing import TypeVar

import grpc
import structlog
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer

from workhive.coordinator.etcd import (
    Election,
    EtcdClient,
    EtcdError,
    FenceLost,
    Keyspace,
    LeaseKeeper,
    LeaseLost,
    ProjectMeta,
    Session,
    SessionState,
    StandbyMirror,
    Store,
    SubmitConflict,
    observe,
    submit_project,
)
from workhive.coordinator.etcd.keepalive_process import KeepaliveProcess
from workhive.coordinator.etcd.retention import compact as compact_history
from workhive.coordinator.etcd.retention import delete_project
from workhive.coordinator.leader.driver import LeaderDriver
from workhive.coordinator.leader.retention import RetentionLoop
from workhive.coordinator.leader.submits import FullProtocol, fits
from workhive.coordinator.logs import configure_logging
from workhive.coordinator.metrics import Metrics
from workhive.coordinator.model import AgentInfo, LeaderInfo, ProjectSpec
from workhive.coordinator.scheduling import SchedulerConfig
from workhive.coordinator.service.agent_hub import AgentHub
from workhive.coordinator.service.agent_service import AgentServicer
from workhive.coordinator.service.client_service import ClientServicer
from workhive.coordinator.service.security import (
    build_health_server,
    connect_etcd,
    peer_channel,
    peer_health_channel,
    server_credentials,
    server_interceptors,
)
from workhive.coordinator.service.server import SERVICES, build_server, set_serving
from workhive.coordinator.settings import Settings
from workhive.coordinator.state_reads import ReadFn, StateReads

T = TypeVar("T")
log = structlog.get_logger("workhive.coordinator")


def scheduler_config(s: Settings) -> SchedulerConfig:
    return SchedulerConfig(
        policy=s.policy,
        stealing_enabled=s.stealing_enabled,
        steal_interval=s.steal_interval,
        steal_threshold=s.steal_threshold,
        max_steal_batch=s.max_steal_batch,
        priority_threshold=s.priority_threshold,
        predictive_stealing=s.predictive_stealing,
        max_predictive_load_ms=float(s.max_predictive_load_ms),
        start_ahead=s.start_ahead,
        agent_speeds=s.agent_speeds,
        chain_ahead=s.chain_ahead,
    )


class CoordinatorNode:
    """A coordinator replica (see module docstring)."""

    def __init__(self, settings: Settings, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.id = settings.coordinator_id or f"{socket.gethostname()}-{os.getpid()}"
        self.address = settings.advertise or settings.listen
        self.ks = Keyspace(settings.prefix)
        self.hub = AgentHub()
        self.driver: LeaderDriver | None = None
        self.leader_info: LeaderInfo | None = None
        self.leader_changes = 0
        self.port = 0
        self._client: EtcdClient | None = None
        self._keeper: LeaseKeeper | None = None
        self.refresher: KeepaliveProcess | None = None  # read by the dashboard too
        self.standby: StandbyMirror | None = None  # the warm mirror while following
        self._election: Election | None = None
        self._session: Session | None = None
        self._stopping = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.reads = StateReads(self.ks, self.leading, lambda: self.standby, lambda: self.client)

    # -- helpers for the services -------------------------------------------------

    @property
    def client(self) -> EtcdClient:
        assert self._client is not None
        return self._client

    @property
    def keeper(self) -> LeaseKeeper:
        assert self._keeper is not None
        return self._keeper

    async def refresh_lease(self, lease_id: int) -> int | None:
        """Remaining TTL of an agent lease: 0 when gone, ``None`` when etcd did
        not answer (the agent must not be dropped for it). From memory, the
        keepalive process renewing it (``KeepaliveProcess``); etcd is asked
        now only for a lease not confirmed (or overdue) there."""
        if lease_id <= 0:
            return 0
        assert self.refresher is not None
        if ttl := self.refresher.heard(lease_id):
            return ttl
        try:
            return await asyncio.to_thread(self.refresher.refresh, lease_id)
        except EtcdError:
            self.metrics.keepalive_failures.inc()
            return None

    async def agent_lease(self, resume: int) -> tuple[int, bool]:
        """The agent's lease: ``resume`` if it is alive, else a fresh one."""
        if resume:  # asked of etcd itself: a lease revoked a moment ago must not resume
            try:
                alive = await asyncio.to_thread(self.keeper.refresh, resume) > 0
            except EtcdError:
                alive = False
            if alive:
                return resume, True
        lease = await asyncio.to_thread(self.keeper.grant, self.settings.agent_lease_ttl)
        return lease, False

    async def register_agent(self, info: AgentInfo, lease: int) -> None:
        await asyncio.to_thread(Store(self.client, self.ks).register_agent, info, lease)

    # -- the servicers' view (service.node_view.NodeView) ---------------------------

    @property
    def agent_lease_ttl(self) -> int:
        return self.settings.agent_lease_ttl

    @property
    def heartbeat_interval_ms(self) -> int:
        return self.settings.heartbeat_interval_ms

    def leading(self) -> LeaderDriver | None:
        return self.driver

    @property
    def etcd_targets(self) -> str:
        return ", ".join(self.client.targets)

    async def etcd_problem(self) -> str:
        return await self.reads.etcd_problem(self.etcd_targets)

    async def read_state(self, fn: ReadFn[T]) -> T:
        return await self.reads.read(fn)

    async def submit(self, spec: ProjectSpec) -> ProjectMeta:
        """A small project through the leader's turn, stored with its first
        claims (``leader.submits``); others, and those it sends back, by the
        full protocol in one or more txns of their own (``etcd.submit``)."""
        driver = self.driver
        if driver is None:
            raise SubmitConflict("this replica no longer leads")
        if fits(spec):
            with contextlib.suppress(FullProtocol):
                return await driver.submit(spec)
        return await asyncio.to_thread(
            submit_project, self.client, self.ks, spec, fence=driver.fence, keeper=self.keeper
        )

    async def delete_project(self, pid: str, compact: bool) -> int:
        """Delete a project in one fenced txn (0: no such project); with
        ``compact``, compact etcd's history up to the delete."""
        driver = self.driver
        if driver is None:
            raise FenceLost()
        revision = await asyncio.to_thread(delete_project, self.client, self.ks, pid, driver.fence)
        if revision and compact:
            await asyncio.to_thread(compact_history, self.client, revision)
        return revision

    async def registered_lease(self, agent_id: str) -> int | None:
        try:
            kv = await asyncio.to_thread(self.client.get, self.ks.agent(agent_id))
        except EtcdError as exc:
            log.warning("lease ownership unknown: etcd", agent_id=agent_id, error=str(exc))
            return None
        return kv.lease if kv is not None else 0

    def stop(self) -> None:
        """Ask the replica to shut down (thread-safe)."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)

    # -- main ----------------------------------------------------------------------------

    async def run(self, ready: asyncio.Event | None = None) -> None:
        """Serve until ``stop()``; then shut down in the documented order."""
        self._loop = asyncio.get_running_loop()
        s = self.settings
        self._client = connect_etcd(s)
        await asyncio.to_thread(self._client.wait_ready, 30.0)
        # keepalives on connections of their own, the agents' batched apart from the
        # election's, in a process of their own that also covers the loop's stalls:
        # docs/failover.md, "Event-loop stalls"
        self._keeper = LeaseKeeper(self._client, own_connection=True)
        self.refresher = KeepaliveProcess(
            LeaseKeeper(self._client, own_connection=True),
            float(s.agent_lease_ttl),
            connect=functools.partial(connect_etcd, s),
            setup=functools.partial(configure_logging, s.log_format, s.log_level),
        )
        self.refresher.start(self._loop)
        server, health, self.port = build_server(
            AgentServicer(self, dial=lambda address: peer_channel(s, address)),
            ClientServicer(self),
            s.listen,
            credentials=server_credentials(s),
            interceptors=server_interceptors(s),
        )
        if not s.advertise and self.address.endswith(":0"):
            self.address = f"{self.address.rsplit(':', 1)[0]}:{self.port}"
        await server.start()
        health_server = (
            await build_health_server(health, s.health_listen) if s.health_listen else None
        )
        await set_serving(health, True)
        if s.metrics_port:
            self.metrics.serve(s.metrics_port)
        observer = observe(self._client, self.ks, self._leader_seen)
        tasks = [
            asyncio.create_task(self._campaign_loop(), name="campaign"),
            asyncio.create_task(self._fast_failover_loop(), name="fast-failover"),
            asyncio.create_task(self._readiness_loop(health), name="readiness"),
        ]
        # beats go on until the keepalive child stops: silence would read to it
        # as a stalled loop and it would renew the leases it knew meanwhile
        beat = asyncio.create_task(self.refresher.beating(), name="keepalive-beat")
        log.info("coordinator serving", id=self.id, listen=s.listen, address=self.address)
        if ready is not None:
            ready.set()
        try:
            await self._stopping.wait()
        finally:
            log.info("shutting down", id=self.id)
            await health.enter_graceful_shutdown()
            for t in tasks:
                t.cancel()
            await self._step_down()
            if self.standby is not None:
                standby, self.standby = self.standby, None
                await asyncio.to_thread(standby.cancel)
            if self._election is not None and self._election.is_leader:
                with contextlib.suppress(EtcdError):
                    await asyncio.to_thread(self._election.resign)
            if self._session is not None:
                with contextlib.suppress(EtcdError):
                    await asyncio.to_thread(self._session.close)
            self.hub.close_all()
            await server.stop(s.shutdown_grace)
            if health_server is not None:
                await health_server[0].stop(None)
            observer.cancel()
            beat.cancel()
            self.refresher.stop()
            self._keeper.close()
            self.reads.close()
            self._client.close()
            log.info("stopped", id=self.id)

    async def _readiness_loop(self, health: HealthServicer) -> None:
        """Readiness = "can serve": the workhive services are SERVING while etcd
        answers, leader or not; the overall service ("") stays SERVING (liveness)."""
        serving = True
        while True:
            await asyncio.sleep(1.0)
            try:
                await asyncio.wait_for(asyncio.to_thread(self.client.revision), 3.0)
                ok = True
            except (EtcdError, TimeoutError):
                ok = False
            if ok != serving:
                serving = ok
                log.warning("readiness changed", serving=ok)
                await set_serving(health, ok, services=SERVICES[1:])

    def _leader_seen(self, info: LeaderInfo | None) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._set_leader, info)

    def _set_leader(self, info: LeaderInfo | None) -> None:
        if info is not None and (self.leader_info is None or info.term != self.leader_info.term):
            self.leader_changes += 1
        self.leader_info = info

    async def _campaign_loop(self) -> None:
        """Campaign, lead, and campaign again, for as long as the replica runs.

        Nothing that goes wrong in one round (etcd errors, a crashed driver)
        ends the loop: the round's session is closed and a new one starts.
        """
        while not self._stopping.is_set():
            session: Session | None = None
            try:
                session = await self._campaign_round()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception("campaign round failed; starting over", error=str(exc))
                await self._step_down()
                await asyncio.sleep(0.5)
            if session is not None and not self._stopping.is_set():
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(session.close)

    async def _campaign_round(self) -> Session | None:
        assert self._client is not None
        loop = asyncio.get_running_loop()
        lost = asyncio.Event()
        try:
            session = await asyncio.to_thread(
                Session, self._client, ttl=self.settings.election_ttl, keeper=self._keeper
            )
        except EtcdError as exc:
            log.warning("cannot open an etcd session", error=str(exc))
            await asyncio.sleep(0.5)
            return None
        self._session = session

        def on_state(state: SessionState) -> None:
            if state is SessionState.LOST:
                loop.call_soon_threadsafe(lost.set)

        session.add_listener(on_state)
        election = Election(
            self._client, session, self.ks, candidate_id=self.id, address=self.address
        )
        self._election = election
        self.metrics.elections.inc()
        if self.settings.warm_standby and self.standby is None:
            self.standby = StandbyMirror(self._client, self.ks)
        try:
            await asyncio.to_thread(election.campaign)
        except (LeaseLost, EtcdError) as exc:
            log.warning("campaign ended without leadership", error=str(exc))
            return session
        if not lost.is_set() and not self._stopping.is_set():
            await self._lead(election, lost)
        return session

    async def _lead(self, election: Election, lost: asyncio.Event) -> None:
        assert self._client is not None and self._keeper is not None
        driver = LeaderDriver(
            client=self._client,
            keyspace=self.ks,
            fence=election.fence,
            keeper=self._keeper,
            hub=self.hub,
            metrics=self.metrics,
            config=scheduler_config(self.settings),
            agent_grace=self.settings.agent_grace,
            plan_time_box=self.settings.plan_time_box,
        )
        self.leader_info = election.info()
        self.driver = driver
        self.metrics.is_leader.set(1)
        self.metrics.leader_transitions.inc()
        log.info("leading", id=self.id, term=election.term)
        standby, self.standby = self.standby, None
        await driver.start(standby)
        retention = None
        if self.settings.retention_seconds > 0:
            loop = RetentionLoop(
                self.settings.retention_seconds,
                driver.cluster,
                lambda pid: self.delete_project(pid, compact=True),
                driver.clock,
            )
            retention = asyncio.create_task(loop.run())
        waits = [
            asyncio.create_task(lost.wait()),
            asyncio.create_task(driver.lost.wait()),
            asyncio.create_task(self._stopping.wait()),
        ]
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for w in [*waits, *([retention] if retention else [])]:
            w.cancel()
        if not self._stopping.is_set():
            log.warning("lost leadership", id=self.id, term=election.term)
            await self._step_down()

    async def _step_down(self) -> None:
        """Stop the leader loops first; then no agent session stays open here."""
        driver, self.driver = self.driver, None
        if driver is None:
            return
        self.metrics.is_leader.set(0)
        await driver.stop()
        self.hub.close_all()

    # -- fast failover ------------------------------------------------------------------

    async def _fast_failover_loop(self) -> None:
        while True:
            try:
                await self._watch_leader_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("fast-failover check failed")
                await asyncio.sleep(0.5)

    async def _watch_leader_once(self) -> None:
        """Hold a health stream to the leader; when it breaks and the leader's
        address refuses connections, revoke the dead leader's lease."""
        await asyncio.sleep(0.05)
        leader = self.leader_info
        if not self.settings.fast_failover or leader is None or self.driver is not None:
            return
        if leader.id == self.id:
            return
        try:
            async with peer_health_channel(self.settings, leader.address) as channel:
                stub = health_pb2_grpc.HealthStub(channel)
                async for _ in stub.Watch(health_pb2.HealthCheckRequest(service="")):
                    if self.leader_info != leader:
                        break
        except grpc.aio.AioRpcError:
            pass
        if self.leader_info != leader:
            return
        if await _refuses_connections(leader.address):
            await self._revoke_leader(leader)
        else:
            await asyncio.sleep(0.25)

    async def _revoke_leader(self, leader: LeaderInfo) -> None:
        assert self._client is not None
        client = self._client

        def revoke() -> bool:
            _, kvs = client.get_prefix(self.ks.election_prefix)
            for kv in kvs:
                if kv.create_revision == leader.term and kv.lease:
                    return client.lease_revoke(kv.lease)
            return False

        try:
            if await asyncio.to_thread(revoke):
                log.warning("leader is gone: revoked its lease", leader=leader.id, term=leader.term)
        except EtcdError as exc:
            log.warning("could not revoke the dead leader's lease", error=str(exc))


async def _refuses_connections(address: str) -> bool:
    host, _, port = address.rpartition(":")
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), 0.5)
    except ConnectionRefusedError:
        return True
    except (OSError, TimeoutError, ValueError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return False
