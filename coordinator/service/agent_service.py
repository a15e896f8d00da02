"""``AgentService``: agent sessions, heartbeats and leader discovery.

Any replica refreshes an agent's lease (unary ``Heartbeat``, or heartbeats on
a session), so agents keep their claims through a leader failover. Sessions
are the leader's: a follower answers FAILED_PRECONDITION with the leader's id
and address (UNAVAILABLE while nobody leads), or, when the agent asks for it
because it cannot reach the leader, relays the session to it
(``agent_relay.py``). This module only translates between the wire and the
leader driver; it holds no scheduling logic.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import grpc
import structlog

from workhive.coordinator.leader.ports import Gone, Hello, Report
from workhive.coordinator.model import AgentInfo, LeaderInfo
from workhive.coordinator.results import ResultError, check_result
from workhive.coordinator.scheduling import ProjectError
from workhive.coordinator.scheduling.growth import addition_from_dicts
from workhive.coordinator.service.agent_hub import AgentConn, ref_from_proto
from workhive.coordinator.service.agent_relay import Dial, relay, relayed_by, wants_relay
from workhive.coordinator.service.convert import leader_to_proto
from workhive.coordinator.service.errors import error_status, no_leader, not_leader
from workhive.coordinator.service.node_view import LeaderView, NodeView
from workhive.v1 import agent_pb2, agent_pb2_grpc, common_pb2

log = structlog.get_logger("workhive.agents")
Ctx = grpc.aio.ServicerContext[Any, Any]

AGENT_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._:@+-]{0,127}$")
MAX_SLOTS = 1024
MAX_CAPABILITIES = 64
HELLO_TIMEOUT = 10.0
MAX_TAIL = 64 * 1024
MAX_CLAIM_WAIT_MS = 300_000  # a pull request waits at most 5 minutes


def _bad(message: str) -> grpc.Status:
    return error_status(grpc.StatusCode.INVALID_ARGUMENT, "PROTOCOL_VIOLATION", message)


def _check_hello(h: agent_pb2.Hello) -> str | None:
    if not AGENT_ID.match(h.agent_id):
        return f"invalid agent_id {h.agent_id!r}: 1-128 of [A-Za-z0-9._:@+-], no '/'"
    if not 1 <= h.slots <= MAX_SLOTS:
        return f"slots must be within 1..{MAX_SLOTS} (got {h.slots})"
    if h.prefetch > MAX_SLOTS:
        return f"prefetch must be at most {MAX_SLOTS} (got {h.prefetch})"
    if len(h.capabilities) > MAX_CAPABILITIES or any(not AGENT_ID.match(c) for c in h.capabilities):
        return "capabilities: at most 64 names of [A-Za-z0-9._:@+-]"
    return None


def completion_report(agent: str, lease_id: int, c: agent_pb2.TaskCompleted) -> Report:
    """A completion as the leader hears it. A result that cannot be stored
    (over 64 KiB, not JSON) becomes a retryable failure naming the problem:
    nothing of it is committed and the task is ready again."""
    ref = ref_from_proto(c.task)
    try:
        result = check_result(c.result_json, ref.key.task)
    except ResultError as exc:
        return Report(agent, lease_id, ref, ok=False, reason=str(exc), retryable=True)
    children, refusal = None, ""
    if c.new_tasks_json:
        source = f"<new tasks of {ref.key.task}>"
        try:
            children = addition_from_dicts(ref.key.project, json.loads(c.new_tasks_json), source)
        except (ProjectError, ValueError, RecursionError) as exc:
            refusal = str(exc)
    return Report(
        agent,
        lease_id,
        ref,
        ok=True,
        duration=c.duration_seconds,
        output_tail=c.output_tail[-MAX_TAIL:],
        result_json=result,
        children=children,
        refusal=refusal,
    )


class AgentServicer(agent_pb2_grpc.AgentServiceServicer):
    """Translates agent sessions into leader-driver inputs and back."""

    def __init__(self, node: NodeView, dial: Dial | None = None) -> None:
        """``dial`` opens a channel to another replica (for relayed sessions;
        without it this replica never relays)."""
        self.node = node
        self._dial = dial
        self._owners: dict[int, str] = {}  # lease -> agent id, as seen in etcd or the mirror

    async def _owns(self, agent_id: str, lease_id: int) -> bool | None:
        """True if ``lease_id`` carries ``agent_id``'s registration: an agent
        may only resume or refresh its own lease (else it could complete
        another agent's claims, which are fenced on that lease). ``None``: etcd
        did not answer, so nobody knows; the caller must not treat that as
        "not yours" (an agent refused its resume takes a fresh lease, and the
        old one, with the claims it still runs, is revoked)."""
        if lease_id <= 0:
            return False
        owner = self._owners.get(lease_id)
        if owner is not None:
            return owner == agent_id
        known = self._registered(agent_id)
        if known is None or known.lease_id != lease_id:
            held = await self.node.registered_lease(agent_id)
            if held is None:
                return None
            if held != lease_id:
                shown = f"{held:x}" if held else "none"
                log.info(
                    "lease not the agent's", agent_id=agent_id, lease=f"{lease_id:x}", held=shown
                )
                return False
        if len(self._owners) >= 100_000:
            self._owners.clear()
        self._owners[lease_id] = agent_id
        return True

    def _in_use(self, agent_id: str, resume: int) -> grpc.Status | None:
        """A second process with a connected agent's id is refused while the
        first one's session and lease live (two processes under one id would
        take each other's claims). The agent itself reconnecting resumes its
        lease and takes its session over; once the first lease has ended (the
        process died or paused past its TTL) the id is free again."""
        conn = self.node.hub.conns.get(agent_id)
        registered = self._registered(agent_id)
        if conn is None or registered is None or registered.lease_id != conn.lease_id:
            return None
        if resume == conn.lease_id:
            return None
        return error_status(
            grpc.StatusCode.ALREADY_EXISTS,
            "AGENT_ID_IN_USE",
            f"agent id {agent_id!r} is connected from another session (lease "
            f"{conn.lease_id:x}): give each agent process its own --id",
        )

    def _leader_elsewhere(self) -> LeaderInfo | None:
        """The leader to send an agent to: None when unknown, or when it is
        this replica (it won but does not lead yet, or just stopped)."""
        leader = self.node.leader_info
        return None if leader is None or leader.id == self.node.id else leader

    def _registered(self, agent_id: str) -> AgentInfo | None:
        """The agent's registration as the leader's mirror holds it (None: unknown)."""
        leader = self.node.leading()
        return leader.registered(agent_id) if leader is not None else None

    async def GetLeader(
        self, request: agent_pb2.GetLeaderRequest, context: Ctx
    ) -> common_pb2.LeaderInfo:
        leader = self.node.leader_info
        if leader is None:
            await context.abort_with_status(no_leader())
        return leader_to_proto(leader)

    async def Heartbeat(
        self, request: agent_pb2.HeartbeatRequest, context: Ctx
    ) -> agent_pb2.HeartbeatAck:
        owned = AGENT_ID.match(request.agent_id) is not None and await self._owns(
            request.agent_id, request.lease_id
        )
        ttl: int | None = 0  # not this agent's lease: as good as expired
        if owned is None:
            ttl = None  # unknown: etcd did not answer
        elif owned:
            ttl = await self.node.refresh_lease(request.lease_id)
        if ttl is None:
            await context.abort_with_status(
                error_status(grpc.StatusCode.UNAVAILABLE, "ETCD_UNAVAILABLE", "etcd did not answer")
            )
        if ttl <= 0:
            await context.abort_with_status(
                error_status(
                    grpc.StatusCode.NOT_FOUND,
                    "UNKNOWN_AGENT",
                    f"lease {request.lease_id:x} of agent {request.agent_id!r} has expired",
                )
            )
        return agent_pb2.HeartbeatAck(seq=request.seq, ttl_seconds=ttl)

    async def Session(
        self,
        request_iterator: AsyncIterator[agent_pb2.AgentMessage],
        context: Ctx,
    ) -> AsyncIterator[agent_pb2.CoordinatorMessage]:
        try:
            first = await asyncio.wait_for(anext(request_iterator), HELLO_TIMEOUT)
        except (StopAsyncIteration, TimeoutError):
            await context.abort_with_status(_bad("the session must open with a Hello"))
        if first.WhichOneof("kind") != "hello":
            await context.abort_with_status(_bad("the first message must be a Hello"))
        hello = first.hello
        problem = _check_hello(hello)
        if problem:
            await context.abort_with_status(_bad(problem))
        driver = self.node.leading()
        if driver is None:
            leader = self._leader_elsewhere()
            if leader and leader.address and self._dial is not None and wants_relay(context):
                log.info("relaying agent session", agent_id=hello.agent_id, leader=leader.id)
                self.node.metrics.relayed_sessions.inc()
                async for relayed in relay(
                    first,
                    request_iterator,
                    context,
                    leader_address=leader.address,
                    dial=self._dial,
                    via=self.node.id,
                ):
                    yield relayed
                return
            await context.abort_with_status(not_leader(leader) if leader else no_leader())
        resume = hello.resume_lease_id
        owns = await self._owns(hello.agent_id, resume) if resume else False
        if resume and owns is None:
            await context.abort_with_status(
                error_status(
                    grpc.StatusCode.UNAVAILABLE,
                    "ETCD_UNAVAILABLE",
                    "cannot check the lease to resume now (etcd did not answer): retry",
                )
            )
        if resume and not owns:
            log.warning("resume refused: not this agent's lease", agent_id=hello.agent_id)
            resume = 0
        in_use = self._in_use(hello.agent_id, resume)
        if in_use:
            log.warning("agent id in use: session refused", agent_id=hello.agent_id)
            await context.abort_with_status(in_use)
        lease, resumed = await self.node.agent_lease(resume)
        self._owners[lease] = hello.agent_id
        info = AgentInfo(
            id=hello.agent_id,
            capabilities=frozenset(hello.capabilities),
            slots=hello.slots,
            prefetch=0 if hello.pull else hello.prefetch or 1,
            lease_id=lease,
            pull=hello.pull,
            chains=hello.chains and not hello.pull,
        )
        if self._registered(info.id) != info:  # a resumed agent is usually registered as is
            await self.node.register_agent(info, lease)
        conn = AgentConn(info, lease, batches=hello.batches, ack_batches=hello.ack_batches)
        self.node.hub.attach(conn)
        if self.node.leading() is not driver:
            # the term ended while the lease was checked: stepping down closed
            # the sessions it had, not this one, which would stay open on a
            # replica that does not lead (heartbeats keep the lease and the
            # claims it holds alive, and no work ever comes)
            self.node.hub.detach(conn)
            leader = self._leader_elsewhere()
            await context.abort_with_status(not_leader(leader) if leader else no_leader())
        # the driver hears of the agent before the Welcome is written: on a slow
        # link that write can take seconds, and an agent the driver thinks gone
        # has its lease revoked meanwhile (its messages queue behind the Welcome)
        driver.hello(Hello(info, lease, resumed, tuple(ref_from_proto(r) for r in hello.held)))
        log.info(
            "agent connected",
            agent_id=info.id,
            lease=f"{lease:x}",
            resumed=resumed,
            via=relayed_by(context) or None,
        )
        welcome = agent_pb2.Welcome(
            lease_id=lease,
            ttl_seconds=self.node.agent_lease_ttl,
            heartbeat_interval_ms=self.node.heartbeat_interval_ms,
            coordinator_id=self.node.id,
            leader=leader_to_proto(self.node.leader_info),
            resumed=resumed,
        )
        reader = asyncio.create_task(self._read(conn, request_iterator, driver))
        graceful = False
        sent = self.node.metrics.agent_messages.labels("out")
        sent_writes = self.node.metrics.agent_stream_writes.labels("out")
        try:
            yield agent_pb2.CoordinatorMessage(welcome=welcome)
            while True:
                msg = await conn.outbox.get()
                if msg is None:
                    break
                write, closed = conn.next_write(msg)
                sent_writes.inc()
                sent.inc(len(write.batch.messages) if write.HasField("batch") else 1)
                yield write
                if closed:
                    break
        finally:
            reader.cancel()
            try:
                graceful = await reader
            except (asyncio.CancelledError, Exception):
                graceful = conn.draining
            if self.node.hub.detach(conn):
                driver.gone(Gone(info.id, lease, graceful))
            log.info("agent session closed", agent_id=info.id, graceful=graceful)

    async def _read(
        self,
        conn: AgentConn,
        requests: AsyncIterator[agent_pb2.AgentMessage],
        driver: LeaderView,
    ) -> bool:
        """Consume the agent's messages; returns True when it drained cleanly."""
        received = self.node.metrics.agent_messages.labels("in")
        received_writes = self.node.metrics.agent_stream_writes.labels("in")
        try:
            async for msg in requests:
                received_writes.inc()
                batch = msg.batch.messages if msg.WhichOneof("kind") == "batch" else (msg,)
                received.inc(len(batch))
                for one in batch:
                    if not await self._handle(conn, one, driver):
                        return False
        except grpc.aio.AioRpcError:
            return False
        conn.close()
        return conn.draining

    async def _handle(
        self, conn: AgentConn, msg: agent_pb2.AgentMessage, driver: LeaderView
    ) -> bool:
        """Act on one agent message; False when the session must end now."""
        agent = conn.info.id
        kind = msg.WhichOneof("kind")
        if kind == "heartbeat":
            ttl = await self.node.refresh_lease(conn.lease_id)
            if ttl is None:
                return True  # etcd did not answer: no ack; the next heartbeat retries
            conn.push(
                agent_pb2.CoordinatorMessage(
                    heartbeat_ack=agent_pb2.HeartbeatAck(
                        seq=msg.heartbeat.seq, ttl_seconds=max(ttl, 0)
                    )
                )
            )
            if ttl <= 0:
                conn.close()
                return False
        elif kind == "completed":
            driver.report(completion_report(agent, conn.lease_id, msg.completed))
        elif kind == "failed":
            f = msg.failed
            driver.report(
                Report(
                    agent,
                    conn.lease_id,
                    ref_from_proto(f.task),
                    ok=False,
                    reason=f.reason[:4096] or f"exit code {f.exit_code}",
                    retryable=f.retryable or f.released,
                    released=f.released,
                    duration=f.duration_seconds,
                    output_tail=f.output_tail[-MAX_TAIL:],
                )
            )
        elif kind == "claim":
            wait = min(msg.claim.wait_ms, MAX_CLAIM_WAIT_MS) / 1000.0
            driver.claim_wanted(agent, msg.claim.seq, wait)
        elif kind == "start":
            driver.start_requested(agent, ref_from_proto(msg.start.task))
        elif kind == "progress":
            p = msg.progress
            driver.progress_reported(agent, ref_from_proto(p.task), p.fraction, p.note)
        elif kind == "drain":
            conn.draining = True
            driver.drain(agent)
        elif kind == "hello":
            conn.close()
            return False
        return True
