"""The heartbeat thread: keep the lease alive and notice a silent coordinator.

Contract: every ``Welcome.heartbeat_interval_ms`` (woken early on a welcome
or a drain) it sends ``Heartbeat`` with the running tasks on the session; while
the stream is down it refreshes the lease through the unary ``Heartbeat`` RPC
on any replica, in turn. It never waits on task code: sends never block and
handlers run outside every lock. A stream the coordinator stopped answering
is abandoned (``_check_silence``) and its address shunned for a lease TTL.

The lease is renewed elsewhere before it runs out: every answer says how
many seconds the lease had left when the coordinator answered, so it lasts
at least until the heartbeat's send time plus that. When that is less than
``RENEW_ELSEWHERE`` of the TTL away, the session's coordinator is not getting
its keepalives through (cut from etcd, a slow link, a stalled loop), and the
unary ``Heartbeat`` goes to another replica too, while the session stays.
"""

from __future__ import annotations

import grpc

from workhive.v1 import agent_pb2, agent_pb2_grpc

from . import _convert as cv
from ._base import SILENT_DIAL, SUSPECT_DIAL
from ._held import RUNNABLE, RUNNING
from ._leader import status_name
from ._progress import ProgressReports

UNARY_TIMEOUT = 2.0
"""Deadline of unary RPCs (the fallback Heartbeat), capped by the heartbeat interval."""
RENEW_ELSEWHERE = 0.25
"""Fraction of the lease TTL left below which the lease is renewed through
another replica too. A healthy session keeps over a third of it: the leader
renews every TTL/4 (plus a flush and a heartbeat interval), and the answer's
whole seconds lose at most one."""
SENT_KEPT = 32  # heartbeat send times remembered (answers to older ones are ignored)


class Heartbeats(ProgressReports):
    """The heartbeat thread's loop."""

    def _heartbeat_loop(self) -> None:
        while not self._closed:
            self._hb_wake.wait(self._next_wait())
            self._hb_wake.clear()
            if self._done():
                return
            with self._lock:
                session = self._session
                lease = self._lease_id
                self._hb_seq += 1
                seq = self._hb_seq
                running = [
                    h.task.key for h in self._held.values() if h.state in (RUNNABLE, RUNNING)
                ]
                self._hb_sent[seq] = self._clock()
                self._hb_sent.pop(seq - SENT_KEPT, None)
                running_down = self._lease_until - self._clock() < RENEW_ELSEWHERE * self._ttl
            if session is not None:
                session.send(cv.heartbeat(seq, running))
                self.counters.heartbeats_sent += 1
                if running_down and lease:
                    self._fallback_heartbeat(lease, seq, avoid=session.address)
            elif lease and not self._finished:
                self._fallback_heartbeat(lease, seq)
            self._flush_progress()
            self._check_silence()

    def _check_silence(self) -> None:
        """Abandon a stream the coordinator stopped answering (a paused or
        partitioned process keeps TCP open, so gRPC alone notices late): no
        Welcome within SILENT_DIAL seconds (SUSPECT_DIAL for an address that
        recently went silent), or no message (heartbeats are acknowledged)
        for half the lease TTL. The address becomes suspect for a lease TTL
        (the list's other addresses go first; a dial to it is cut short) and
        a welcomed session is dialled again once at once: a link that healed
        (a short partition) resumes the session before the leader's grace for
        a broken stream runs out. Meanwhile the unary heartbeat keeps the
        lease alive."""
        with self._lock:
            attempt = self._attempt
            ttl = self._ttl
        if attempt is None:
            return
        if attempt.welcomed:
            limit = max(ttl / 2.0, 3 * self._hb_interval)
        else:
            limit = SUSPECT_DIAL if self._suspect(attempt.address) else SILENT_DIAL
        if self._clock() - attempt.last_heard > limit:
            with self._lock:
                self._silent_until[attempt.address] = self._clock() + max(ttl, SILENT_DIAL)
                if attempt.welcomed:
                    self._redial = attempt.address
            self._log.warning(
                "coordinator silent: abandoning the session",
                address=attempt.address,
                silent_for=round(self._clock() - attempt.last_heard, 2),
            )
            attempt.close()

    def _next_wait(self) -> float:
        """A heartbeat interval, or less to wake when the lease by the answers
        reaches ``RENEW_ELSEWHERE`` of its TTL (once: not when it is past)."""
        with self._lock:
            renew_in = self._lease_until - RENEW_ELSEWHERE * self._ttl - self._clock()
            wait = self._hb_interval
            if self._session is not None and 0 < renew_in < wait:
                wait = renew_in
        return wait

    def _fallback_heartbeat(self, lease: int, seq: int, avoid: str = "") -> None:
        """Keep the lease alive through any replica but ``avoid`` (the
        session's, when it is not renewing the lease): the next one in turn
        that has not gone silent on us (the one that did, a cut-off leader,
        would spend a heartbeat interval timing out while the lease runs
        down)."""
        n = len(self.coordinators)
        turn = next(
            (
                k
                for k in range(n)
                if (a := self.coordinators[(self._fallback_index + k) % n]) != avoid
                and not self._suspect(a)
            ),
            0 if not avoid else None,
        )
        if turn is None:
            return  # no other replica to ask
        self._fallback_index += turn
        address = self.coordinators[self._fallback_index % n]
        channel = self._fallback_channels.get(address)
        if channel is None:
            channel = self._fallback_channels[address] = self._make_channel(address)
        stub = agent_pb2_grpc.AgentServiceStub(channel)
        try:
            ack = stub.Heartbeat(
                agent_pb2.HeartbeatRequest(agent_id=self.agent_id, lease_id=lease, seq=seq),
                timeout=min(UNARY_TIMEOUT, max(0.2, self._hb_interval)),
                metadata=self._metadata,
            )
            with self._lock:
                self._lease_renewed(seq, ack.ttl_seconds)
            self.counters.fallback_heartbeats += 1
            if avoid:
                self.counters.renewed_elsewhere += 1
        except grpc.RpcError as err:
            self._fallback_index += 1
            code = status_name(err)
            self._log.debug("fallback heartbeat failed", address=address, code=code)
