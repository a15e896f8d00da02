"""A resumed agent is resynced from a mirror that holds every write etcd
committed before its Hello: the leader writes a barrier after the Hello and
resyncs once the watch has delivered it (docs/failover.md, "Resync after a
barrier"). Instruction lists as in ``test_executor``."""

from __future__ import annotations

import asyncio

from tests.unit.leader.test_executor import K, Rig, rig
from workhive.coordinator.etcd import EventType, KeyValue, WatchEvent, codec
from workhive.coordinator.leader.ports import Hello
from workhive.coordinator.leader.presence import Presence
from workhive.coordinator.model import AgentInfo, Claim, TaskRef
from workhive.coordinator.scheduling import AgentJoined

STARTED = Claim(K("x"), "a", 1, started=True, fence=20, mod_revision=21, lease_id=11)


def _resumed(*held: TaskRef) -> Hello:
    return Hello(AgentInfo("a"), 11, True, held)


def _barrier_echo(r: Rig) -> WatchEvent:
    """The watch delivering the store's last write (the barrier)."""
    rev = r.store.revision
    return WatchEvent(EventType.PUT, KeyValue(r.term.view().keyspace.barrier, b"7", rev, rev, 1))


def _completion_seen(r: Rig, claim: Claim, revision: int) -> WatchEvent:
    """The watch delivering a claim's deletion (its completion's txn)."""
    key = r.term.view().keyspace.claim(claim.key)
    prev = KeyValue(
        key, codec.encode_claim(claim.agent, claim.attempt, claim.started), claim.fence, 21, 1
    )
    return WatchEvent(EventType.DELETE, KeyValue(key, b"", 0, revision, 0), prev)


def _barrier_seen(r: Rig, presence: Presence) -> None:
    """The watch delivers the last barrier; the resyncs waiting for it run."""
    r.term.view().apply([_barrier_echo(r)])
    presence.resync_caught_up()


def _hello_then_sync(r: Rig, presence: Presence, hello: Hello) -> None:
    presence.hello(hello, 1000.0)
    asyncio.run(presence.write_barrier())


def test_a_resumed_agent_is_not_resynced_before_the_watch_delivered_the_barrier() -> None:
    r = rig("x", claims=[STARTED])
    presence = Presence(r.term, agent_grace=1.5)
    _hello_then_sync(r, presence, _resumed())
    presence.resync_caught_up()
    assert r.store.calls == [("barrier", [])]
    assert r.port.told == []


def test_a_resumed_agent_missing_its_started_claim_is_sent_it_once_the_barrier_is_seen() -> None:
    r = rig("x", claims=[STARTED])
    presence = Presence(r.term, agent_grace=1.5)
    _hello_then_sync(r, presence, _resumed())
    _barrier_seen(r, presence)
    assert r.port.told == [("assign", "a", "x", True)]


def test_a_completion_committed_before_the_barrier_is_not_sent_to_its_agent_again() -> None:
    # mixed soak, fault 653: a mirror lagging two committed completions resent
    # their started claims and the agents ran the finished tasks again
    r = rig("x", claims=[STARTED])
    presence = Presence(r.term, agent_grace=1.5)
    _hello_then_sync(r, presence, _resumed())
    r.term.view().apply([_completion_seen(r, STARTED, r.store.revision - 1), _barrier_echo(r)])
    presence.resync_caught_up()
    assert r.port.told == []


def test_a_resumed_agent_holding_a_started_claim_is_granted_its_start_again() -> None:
    # its start request may have come before this leader's mirror was ready
    r = rig("x", claims=[STARTED])
    r.term.state.handle(AgentJoined(AgentInfo("a", lease_id=11), 1000.0))
    presence = Presence(r.term, agent_grace=1.5)
    _hello_then_sync(r, presence, _resumed(TaskRef(K("x"), 20, 1)))
    _barrier_seen(r, presence)
    assert r.port.told == [("grant", "a", "x", None)]


def test_a_resumed_agent_is_resynced_when_its_hello_came_before_the_state_was_rebuilt() -> None:
    # A new leader folds the Hellos that arrived before its mirror into the turn
    # that restores the state: the agent is registered in etcd but not yet in the
    # scheduler. A started claim whose Assign was lost with the old leader must
    # still reach it (mixed soak, fault 391: the project waited on it for 60 s).
    r = rig("x", claims=[STARTED])
    assert "a" not in r.term.state.agent_ids()
    presence = Presence(r.term, agent_grace=1.5)
    _hello_then_sync(r, presence, _resumed())
    _barrier_seen(r, presence)
    assert r.port.told == [("assign", "a", "x", True)]


def test_a_claim_held_under_an_older_fence_is_sent_again_before_the_old_is_taken_back() -> None:
    # the agent carries a run in progress over to the newer claim, then
    # ignores the revoke of the older one
    r = rig("x", claims=[STARTED])
    presence = Presence(r.term, agent_grace=1.5)
    _hello_then_sync(r, presence, _resumed(TaskRef(K("x"), 15, 1)))
    _barrier_seen(r, presence)
    assert r.port.told == [("assign", "a", "x", True), ("revoke", "a", "x", "claim no longer held")]


def test_a_newer_hello_replaces_one_still_waiting_for_its_barrier() -> None:
    r = rig("x", claims=[STARTED])
    presence = Presence(r.term, agent_grace=1.5)
    _hello_then_sync(r, presence, _resumed())
    _hello_then_sync(r, presence, _resumed(TaskRef(K("x"), 20, 1)))
    _barrier_seen(r, presence)
    assert r.port.told == [("grant", "a", "x", None)]


def test_an_agent_back_with_a_fresh_lease_is_not_resynced_on_its_older_resumed_hello() -> None:
    # its claims went with its old lease; resending them would run them on a
    # claim etcd is about to delete
    r = rig("x", claims=[STARTED])
    presence = Presence(r.term, agent_grace=1.5)
    presence.hello(_resumed(), 1000.0)
    _hello_then_sync(r, presence, Hello(AgentInfo("a"), 99, False, ()))
    _barrier_seen(r, presence)
    assert r.port.told == []


def test_claims_on_an_older_lease_of_the_agent_are_not_sent_again() -> None:
    # they die with that lease (revoked as stale, or expiring)
    old = Claim(K("x"), "a", 1, started=True, fence=20, mod_revision=21, lease_id=9)
    r = rig("x", claims=[old])
    presence = Presence(r.term, agent_grace=1.5)
    _hello_then_sync(r, presence, _resumed())
    _barrier_seen(r, presence)
    assert r.port.told == []


def test_a_barrier_whose_outcome_was_lost_keeps_the_resync_waiting_for_the_next() -> None:
    # read back, a lost barrier must never pass for an earlier one
    r = rig("x", claims=[STARTED])
    presence = Presence(r.term, agent_grace=1.5)
    r.store.barrier_unknown = True
    _hello_then_sync(r, presence, _resumed())
    presence.resync_caught_up()
    assert r.port.told == []
    r.store.barrier_unknown = False
    asyncio.run(presence.write_barrier())
    _barrier_seen(r, presence)
    assert r.port.told == [("assign", "a", "x", True)]


def test_an_agent_that_left_before_the_barrier_was_seen_is_not_resynced() -> None:
    r = rig("x", claims=[STARTED])
    presence = Presence(r.term, agent_grace=1.5)
    _hello_then_sync(r, presence, _resumed())
    del r.port.sessions["a"]
    _barrier_seen(r, presence)
    assert r.port.told == []


def test_one_barrier_serves_every_hello_of_a_turn() -> None:
    r = rig("x", claims=[STARTED])
    presence = Presence(r.term, agent_grace=1.5)
    presence.hello(_resumed(), 1000.0)
    presence.hello(Hello(AgentInfo("b"), 12, True, ()), 1000.0)
    asyncio.run(presence.write_barrier())
    assert r.store.calls == [("barrier", [])]
