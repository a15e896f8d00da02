"""An agent asking to start a task (after a reconnect, say) is answered from
the leader's mirror: a grant re-sent for its started claim, the claim taken
back when it is no longer the agent's, nothing for one still queued."""

from __future__ import annotations

from tests.unit.leader.test_executor import K, rig
from workhive.coordinator.leader.presence import Presence
from workhive.coordinator.model import Claim, TaskRef

STARTED = Claim(K("x"), "a", 1, started=True, fence=20, mod_revision=21, lease_id=11)


def _ask(claims: list[Claim], agent: str, fence: int) -> list[tuple[str, str, str, object]]:
    r = rig("x", claims=claims)
    Presence(r.term, agent_grace=1.5).start_requested(agent, TaskRef(K("x"), fence, 1))
    return r.port.told


def test_a_start_asked_again_for_a_started_claim_is_granted_again() -> None:
    assert _ask([STARTED], "a", 20) == [("grant", "a", "x", None)]


def test_a_start_asked_for_a_claim_that_moved_to_another_agent_is_taken_back() -> None:
    moved = Claim(K("x"), "b", 2, started=True, fence=30, mod_revision=30, lease_id=12)
    assert _ask([moved], "a", 20) == [("revoke", "a", "x", "claim no longer held")]


def test_a_start_asked_for_a_claim_that_is_gone_is_taken_back() -> None:
    assert _ask([], "a", 20) == [("revoke", "a", "x", "claim no longer held")]


def test_a_start_asked_under_an_older_claim_of_the_same_agent_is_taken_back() -> None:
    assert _ask([STARTED], "a", 15) == [("revoke", "a", "x", "claim no longer held")]


def test_a_start_asked_for_a_queued_claim_waits_for_the_scheduler() -> None:
    queued = Claim(K("x"), "a", 1, fence=20, mod_revision=20, lease_id=11)
    assert _ask([queued], "a", 20) == []
