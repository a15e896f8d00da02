"""The heartbeat thread: keep the lease alive and notice a silent coordinator.

Contract: every ``Welcome.heartbeat_interval_ms`` (woken early on a welcome
or a drain) it sends ``Heartbeat`` with the running tasks on the session; while
the stream is down it refreshes the lease through the unary ``Heartbeat`` RPC
on any replica, in turn. It never waits on task code: sends never block and
handlers run outside every lock. A stream the coordinator stopped answering
is abandoned (``_check_silence``) and its address shunned for a lease TTL.
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


class Heartbeats(ProgressReports):
    """The heartbeat thread's loop."""

    def _heartbeat_loop(self) -> None:
        while not self._closed:
            self._hb_wake.wait(self._hb_interval)
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
            if session is not None:
                session.send(cv.heartbeat(seq, running))
                self.counters.heartbeats_sent += 1
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

    def _fallback_heartbeat(self, lease: int, seq: int) -> None:
        """Keep the lease alive through any replica while the stream is down:
        the next one in turn that has not gone silent on us (the one that did,
        a cut-off leader, would spend a heartbeat interval timing out while
        the lease runs down)."""
        n = len(self.coordinators)
        turn = next(
            (
                k
                for k in range(n)
                if not self._suspect(self.coordinators[(self._fallback_index + k) % n])
            ),
            0,
        )
        self._fallback_index += turn
        address = self.coordinators[self._fallback_index % n]
        channel = self._fallback_channels.get(address)
        if channel is None:
            channel = self._fallback_channels[address] = self._make_channel(address)
        stub = agent_pb2_grpc.AgentServiceStub(channel)
        try:
            stub.Heartbeat(
                agent_pb2.HeartbeatRequest(agent_id=self.agent_id, lease_id=lease, seq=seq),
                timeout=min(UNARY_TIMEOUT, max(0.2, self._hb_interval)),
                metadata=self._metadata,
            )
            self.counters.fallback_heartbeats += 1
        except grpc.RpcError as err:
            self._fallback_index += 1
            code = status_name(err)
            self._log.debug("fallback heartbeat failed", address=address, code=code)
