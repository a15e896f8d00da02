"""The connection thread: dial, follow redirects, read coordinator messages.

Contract: one thread owns the ``AgentService.Session`` stream. It dials the
configured addresses in turn (ones that recently went silent last), follows
a follower's redirect to the leader (at most ``MAX_REDIRECTS`` in a row
without backoff; to a silent address too, the dial then cut short), asks
that follower to relay the session when the leader it named is out of reach
(``UNREACHABLE``; docs/failover.md, "Agents that cannot reach the leader"),
dials a session just abandoned for silence once more at once (a healed link
resumes it), and otherwise reconnects with capped jittered backoff. A session
resumes the agent's lease when the coordinator still has it; a Welcome that
did not resume means the lease was lost, and queued tasks are dropped.
Repeated credential refusals raise :class:`CredentialsRefused`, which stops
the agent. Handler ``cancel`` hooks run outside the lock.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc

import workhive
from workhive.v1 import agent_pb2, agent_pb2_grpc, common_pb2

from . import _convert as cv
from ._held import QUEUED, RUNNABLE, START_PENDING, WAITING, HeldTasks
from ._leader import (
    LeaderHint,
    error_reason,
    leader_from_error,
    status_details,
    status_name,
)
from ._session import Session
from ._types import ConnectionState, CredentialsRefused, TaskKey

MAX_REDIRECTS = 3
"""Consecutive redirects followed without backoff before going back to the list."""
REFUSED = ("UNAUTHENTICATED", "PERMISSION_DENIED")
"""Session ends that mean "these credentials will not do"."""
REFUSED_WORK = common_pb2.INVALID_PROJECT  # a completion refused for its new tasks
UNREACHABLE = ("UNAVAILABLE", "DEADLINE_EXCEEDED", "CANCELLED")
"""Ends of an unwelcomed dial that mean "no answer from there" (CANCELLED: this
agent gave up on a silent dial)."""
RELAY_METADATA = ("workhive-relay", "1")


@dataclass(frozen=True, slots=True)
class SessionEnd:
    """How one session attempt ended."""

    welcomed: bool
    redirect: LeaderHint | None = None
    code: str = ""
    detail: str = ""
    reason: str = ""  # the ErrorInfo reason of a coordinator's answer ('' if none came)


class Connection(HeldTasks):
    """The connection thread's loop and the coordinator messages it handles."""

    def _connection_loop(self) -> None:
        index = 0
        hint: LeaderHint | None = None
        via = ""  # the replica whose redirect ``hint`` is
        relay = ""  # the replica asked to relay (the leader it named was out of reach)
        redirects = 0
        refusals = 0
        while not self._closed and not self._finished:
            address = hint.address if hint else self._next_address(index)
            end = self._run_session(address, relay=address == relay)
            if self._done():
                return
            refusals = refusals + 1 if end.code in REFUSED else 0
            if refusals >= max(2, len(self.coordinators)):
                raise CredentialsRefused(
                    f"the coordinators refused this agent's credentials ({end.code}: "
                    f"{end.detail}); check --token/--token-file and the agent id"
                )
            if end.welcomed:
                redirects = 0
            with self._lock:
                redial, self._redial = self._redial, None
            if redial is not None:
                hint, via = LeaderHint(redial, ""), ""
                self._log.info("dialling a silent coordinator again", address=redial)
                continue
            if (
                end.redirect is not None
                and end.redirect.address != address
                and redirects < MAX_REDIRECTS
            ):
                redirects += 1
                hint, via = end.redirect, address
                self.counters.redirects += 1
                self._log.info("following leader", leader=end.redirect.address, via=address)
                continue
            if via and not end.welcomed and end.code in UNREACHABLE and not end.reason:
                # the leader answers the followers but not us (it said nothing,
                # not even "no leader yet"): one of them relays
                relay, hint, via = via, LeaderHint(via, ""), ""
                self.counters.relays += 1
                self._log.info("leader out of reach: asking for a relay", leader=address, via=relay)
                continue
            hint = None
            via = relay = ""
            redirects = 0
            index += 1
            delay = self._backoff.next_delay()
            self._log.info("reconnecting", after=round(delay, 3), last=address, code=end.code)
            self.counters.reconnects += 1
            self._sleep(delay)

    def _next_address(self, index: int) -> str:
        """The index-th configured address, skipping silent ones when possible."""
        n = len(self.coordinators)
        for k in range(n):
            candidate = self.coordinators[(index + k) % n]
            if not self._suspect(candidate):
                return candidate
        return self.coordinators[index % n]

    def _run_session(self, address: str, relay: bool = False) -> SessionEnd:
        """Dial ``address`` (asking it to relay to the leader when ``relay``)
        and serve the session until it ends."""
        session = Session(address)
        channel = self._make_channel(address)
        with self._lock:
            if self._closed or self._finished:
                channel.close()
                return SessionEnd(welcomed=False)
            self._attempt = session
            session.last_heard = self._clock()
            session.send(
                cv.hello(
                    agent_id=self.agent_id,
                    capabilities=self.capabilities,
                    slots=self.slots,
                    prefetch=self.prefetch,
                    resume_lease_id=self._lease_id,
                    sdk_version=workhive.__version__,
                    pull=self.pull,
                    held=[
                        *(h.task.key for h in self._held.values()),
                        *(o.key for o in self._unacked.values()),
                    ],
                )
            )
        try:
            stub = agent_pb2_grpc.AgentServiceStub(channel)
            metadata = (*self._metadata, RELAY_METADATA) if relay else self._metadata
            call = stub.Session(session.requests(), metadata=metadata)
            session.call = call
            for msg in call:
                session.last_heard = self._clock()
                batch = msg.batch.messages if msg.WhichOneof("kind") == "batch" else (msg,)
                for one in batch:
                    hint = self._on_message(session, one)
                    if hint is not None:
                        return SessionEnd(welcomed=session.welcomed, redirect=hint, code="REDIRECT")
            return SessionEnd(welcomed=session.welcomed, code="END")
        except grpc.RpcError as err:
            hint = leader_from_error(err)
            code = status_name(err)
            if not self._closed:
                self._log.info(
                    "session ended",
                    address=address,
                    code=code,
                    detail=status_details(err),
                    leader=hint.address if hint else None,
                )
            return SessionEnd(
                welcomed=session.welcomed,
                redirect=hint,
                code=code,
                detail=status_details(err),
                reason=error_reason(err),
            )
        finally:
            with self._lock:
                if self._session is session:
                    self._session = None
                    self._state = ConnectionState.SUSPENDED
                    self._disconnected_since = self._clock()
                if self._attempt is session:
                    self._attempt = None
            session.close()
            channel.close()

    # ------------------------------------------------------ coordinator input

    def _on_message(self, session: Session, msg: agent_pb2.CoordinatorMessage) -> LeaderHint | None:
        kind = msg.WhichOneof("kind")
        cancel: list[TaskKey] = []
        with self._lock:
            if kind == "welcome":
                self._on_welcome(session, msg.welcome)
            elif kind == "redirect":
                if msg.redirect.leader.address:
                    return LeaderHint(msg.redirect.leader.address, msg.redirect.leader.leader_id)
                self._log.warning("redirect without a leader address", address=session.address)
            elif kind == "assign":
                self._on_assign(msg.assign)
            elif kind == "start_granted":
                self._on_granted(cv.key_from_proto(msg.start_granted.task))
            elif kind == "start_refused":
                self._on_taken_back(
                    cv.key_from_proto(msg.start_refused.task), msg.start_refused.reason, cancel
                )
            elif kind == "revoke":
                self._on_taken_back(cv.key_from_proto(msg.revoke.task), msg.revoke.reason, cancel)
            elif kind == "completion_ack":
                ack = msg.completion_ack
                for ref in (ack.task, *ack.more):
                    key = cv.key_from_proto(ref)
                    if self._take_unacked(key) is not None:
                        self.counters.completions_acked += 1
                        self._answered(key, True)
            elif kind == "completion_rejected":
                rej = msg.completion_rejected
                key = cv.key_from_proto(rej.task)
                rejected = self._take_unacked(key)
                self.counters.completions_rejected += 1
                reason = common_pb2.ErrorReason.Name(rej.reason)
                if rejected is not None and rejected.succeeded and rej.reason != REFUSED_WORK:
                    self._keep_orphan(rejected)  # refused work (bad new tasks) may run again
                self._answered(key, False, rej.message)
                self._exec_log.record("rejected", key, reason=reason)
                self._log.warning(
                    "completion rejected: dropping it",
                    project=key.project_id,
                    task=key.task_id,
                    fence=key.fence,
                    reason=reason,
                    message=rej.message,
                )
            elif kind == "claim_empty":
                self._claim_empty(msg.claim_empty.seq)
            elif kind == "heartbeat_ack":
                self._lease_renewed(msg.heartbeat_ack.seq, msg.heartbeat_ack.ttl_seconds)
            elif kind == "drain_request":
                self._log.info(
                    "drain requested by the coordinator", reason=msg.drain_request.reason
                )
                self._drain_requested = True
            else:
                self._log.warning("unknown coordinator message", kind=kind)
        cancel_fn = getattr(self._handler, "cancel", None)
        if callable(cancel_fn):
            for key in cancel:
                cancel_fn(key)
        return None

    def _on_welcome(self, session: Session, w: agent_pb2.Welcome) -> None:
        again = self._lease_id != 0  # a session after an earlier one
        lost = again and not w.resumed
        if lost:
            self.counters.lease_losses += 1
            self._state = ConnectionState.LOST
            self._log.warning("lease lost: dropping queued tasks", old_lease=self._lease_id)
            for key, h in list(self._held.items()):
                if h.state in (QUEUED, START_PENDING, WAITING, RUNNABLE):  # claims went with it
                    del self._held[key]
                    self._dropped(h.task.key, "lease lost")
        elif again:
            # A start granted before the break may have been taken back while
            # the agent was away (its claim moved on, another agent runs it):
            # ask again rather than run it on an old word (docs/agent.md).
            for h in self._held.values():
                if h.state == RUNNABLE:
                    h.state = START_PENDING
        self._lease_id = w.lease_id
        self._ttl = w.ttl_seconds
        self._lease_until = self._clock() + w.ttl_seconds
        if w.heartbeat_interval_ms:
            self._hb_interval = w.heartbeat_interval_ms / 1000.0
        elif w.ttl_seconds:
            self._hb_interval = w.ttl_seconds / 3.0
        session.welcomed = True
        self._session = session
        self._address = session.address
        self._state = ConnectionState.CONNECTED
        self._disconnected_since = None
        self._backoff.reset()
        self._log.info(
            "welcomed",
            address=session.address,
            lease_id=w.lease_id,
            resumed=w.resumed,
            coordinator=w.coordinator_id,
        )
        for o in self._unacked.values():
            session.send(cv.outcome(o))
        for h in sorted(self._held.values(), key=lambda h: h.order):
            if h.state == START_PENDING:
                session.send(cv.start_request(h.task.key))
        if self._draining:
            session.send(cv.drain(return_queue=True))
        self._pump()
        self._hb_wake.set()
        self._welcomed()
