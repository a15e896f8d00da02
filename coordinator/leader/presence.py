"""Agent presence: hello, resync, gone, expiry.

Contract: an agent is in the scheduler from its hello until its registration
is deleted (its lease expired or was revoked), not while it is merely
disconnected. An agent whose session broke and that does not come back
within ``agent_grace`` has its lease revoked (its claims go with it: etcd
deletes them and the watch reports each as lost); a graceful (drained) end
revokes at once. An agent that comes back with a fresh lease has its old
lease revoked the same way. A resumed agent is resynced: what it should hold
is sent again, anything else it holds is revoked.

Invariant: a resync reads a mirror that holds every write etcd committed
before it began. The mirror lags etcd (the previous leader's last
completions); re-sending a started claim whose completion the mirror had
not seen yet made an agent run a finished task again. So a resumed Hello
waits: the leader writes a barrier (``etcd.barrier``) after it and resyncs
once the watch has delivered the barrier (docs/failover.md, "Resync after
a barrier").
"""

from __future__ import annotations

from dataclasses import replace

import structlog

from workhive.coordinator.etcd import EtcdError
from workhive.coordinator.leader.ports import Gone, Hello
from workhive.coordinator.leader.term import Term
from workhive.coordinator.model import TaskKey, TaskRef
from workhive.coordinator.scheduling import AgentJoined, AgentLeft, Event

log = structlog.get_logger("workhive.leader")


class Presence:
    def __init__(self, term: Term, agent_grace: float) -> None:
        self.term = term
        self.agent_grace = agent_grace
        self._absent: dict[str, float] = {}  # agent id -> since when it has no session
        self._stale_leases: set[int] = set()
        self._unsynced: dict[str, Hello] = {}  # resumed, no barrier written after it yet
        self._syncing: list[tuple[int, dict[str, Hello]]] = []  # (barrier revision, hellos)

    def hello(self, hello: Hello, now: float) -> list[Event]:
        term, mirror = self.term, self.term.view()
        agent_id = hello.info.id
        self._absent.pop(agent_id, None)
        self._unsynced.pop(agent_id, None)  # this Hello's word is the newer
        for _, waiting in self._syncing:
            waiting.pop(agent_id, None)
        # registered in etcd: a Hello that came before the mirror is handled
        # in the turn that restores the state, before the scheduler knows it
        known = agent_id in term.state.agent_ids() or agent_id in mirror.agents
        if known and not hello.resumed:
            # It lost its lease: claims still on an old lease go with that lease
            # (etcd deletes them; the watch then reports each as lost).
            self._stale_leases |= {
                c.lease_id
                for c in mirror.claims.values()
                if c.agent == agent_id and c.lease_id and c.lease_id != hello.lease_id
            }
        elif known:
            self._unsynced[agent_id] = hello
        term.metrics.agents_connected.set(term.port.session_count())
        return [AgentJoined(replace(hello.info, lease_id=hello.lease_id), now)]

    async def write_barrier(self) -> None:
        """After resumed Hellos: write the barrier their resyncs wait for
        (a failed write is tried again on the next turn)."""
        if not self._unsynced:
            return
        try:
            revision = await self.term.writer.barrier()
        except EtcdError as exc:
            log.warning("barrier write failed: resyncs wait", error=str(exc))
            return
        self._syncing.append((revision, self._unsynced))
        self._unsynced = {}

    def resync_caught_up(self) -> None:
        """Resync the agents whose barrier the mirror has reached, if still
        registered and connected."""
        mirror = self.term.mirror
        if mirror is None:
            return
        while self._syncing and self._syncing[0][0] <= mirror.revision:
            for agent_id, hello in self._syncing.pop(0)[1].items():
                if agent_id in mirror.agents and self.term.port.connected(agent_id):
                    self._resync(hello)

    def _resync(self, hello: Hello) -> None:
        """After a reconnect: re-send what the agent should hold (a claim it
        holds under an older fence too: sent first, so a run in progress goes
        on under the current claim), revoke the rest, and grant again the
        starts of its started claims (a start request it sent before this
        leader's mirror was ready went unanswered)."""
        term, mirror = self.term, self.term.view()
        agent_id = hello.info.id
        held: dict[TaskKey, TaskRef] = {r.key: r for r in hello.held}
        # claims on an older lease of the agent's die with that lease (revoked
        # as stale, or expiring): never sent again
        mine = {
            k: c
            for k, c in mirror.claims.items()
            if c.agent == agent_id and c.lease_id == hello.lease_id
        }
        for key, claim in mine.items():
            ref = held.get(key)
            if (ref is None or ref.fence != claim.fence) and key in mirror.tasks:
                term.assign(claim)
        for key, ref in held.items():
            current = mine.get(key)
            if current is None or current.fence != ref.fence:
                term.port.revoke(agent_id, ref, "claim no longer held")
            elif current.started and key not in mirror.results:
                term.port.grant(current)

    def start_requested(self, agent_id: str, ref: TaskRef) -> None:
        """The agent asks to start a queued task. The scheduler grants starts
        itself when it frees a slot; here a grant already given is re-sent
        (the agent may have missed it across a reconnect, or asks again after
        one), and a claim that is no longer the agent's is taken back."""
        mirror = self.term.mirror
        if mirror is None:
            return  # not rebuilt yet: the resync on the agent's Hello answers it
        claim = mirror.claims.get(ref.key)
        if claim is None or claim.agent != agent_id or claim.fence != ref.fence:
            self.term.port.revoke(agent_id, ref, "claim no longer held")
        elif claim.started:
            self.term.port.grant(claim)

    async def gone(self, gone: Gone) -> None:
        term = self.term
        term.metrics.agents_connected.set(term.port.session_count())
        if term.port.connected(gone.agent_id):
            return  # a newer session replaced this one
        if gone.graceful:
            await self._revoke(gone.agent_id, gone.lease_id)
        else:
            self._absent.setdefault(gone.agent_id, term.clock.monotonic())

    def left(self, agents: tuple[str, ...], now: float) -> list[Event]:
        """Registrations deleted (leases expired or revoked)."""
        term = self.term
        events: list[Event] = []
        for agent_id in agents:
            term.metrics.lease_expirations.inc()
            self._absent.pop(agent_id, None)
            term.port.forget(agent_id)
            if agent_id in term.state.agent_ids():
                events.append(AgentLeft(agent_id, now))
        return events

    async def expire(self) -> None:
        """Revoke the leases of agents absent past the grace period, and of
        old leases of agents that came back with a fresh one."""
        term = self.term
        cutoff = term.clock.monotonic() - self.agent_grace
        for agent_id, since in list(self._absent.items()):
            if since <= cutoff and not term.port.connected(agent_id):
                del self._absent[agent_id]
                info = term.mirror.agents.get(agent_id) if term.mirror else None
                lease = info.lease_id if info else 0
                if lease and await self._renewed_since(lease, since):
                    # alive, heartbeating through another replica (it cannot
                    # reach this one: a partition, a slow link); if it dies
                    # now its lease runs out by itself
                    log.info("agent away but its lease is renewed elsewhere", agent=agent_id)
                    self._absent[agent_id] = term.clock.monotonic()
                    continue
                log.info("agent did not come back: revoking its lease", agent=agent_id)
                await self._revoke(agent_id, lease)

    async def _renewed_since(self, lease_id: int, since: float) -> bool:
        """Whether someone kept ``lease_id`` alive after ``since`` (monotonic):
        etcd reports more left than a lease last renewed before then can have
        (whole seconds, rounded down: a renewal just before never counts)."""
        try:
            left, granted = await self.term.writer.call(self.term.writer.store.lease_life, lease_id)
        except EtcdError:
            return False
        return left > 0 and left > granted - (self.term.clock.monotonic() - since)

    async def revoke_stale(self) -> None:
        """Revoke the old leases of agents back with a fresh one (a failed
        revoke is tried again on the next turn)."""
        if self._stale_leases:
            stale, self._stale_leases = self._stale_leases, set()
            for lease in stale:
                if not await self._revoke("(stale lease)", lease):
                    self._stale_leases.add(lease)

    async def _revoke(self, agent_id: str, lease_id: int) -> bool:
        """Revoke ``lease_id`` (0: nothing to do); False if etcd failed."""
        if lease_id:
            try:
                await self.term.writer.call(self.term.writer.store.revoke_lease, lease_id)
            except EtcdError as exc:
                log.warning("lease revoke failed", agent=agent_id, error=str(exc))
                return False
        return True
