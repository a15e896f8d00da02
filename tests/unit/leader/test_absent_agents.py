"""An agent whose session broke and that did not come back within the grace
has its lease revoked (its claims go back to the queue at once), unless etcd
shows the lease renewed since the break: the agent is alive, heartbeating
through another replica, and its claims stay."""

from __future__ import annotations

import asyncio

from tests.unit.leader.test_executor import rig
from workhive.coordinator.leader.clock import Clock
from workhive.coordinator.leader.ports import Gone
from workhive.coordinator.leader.presence import Presence

GRACE = 1.5


def _away_for(seconds: float, left: int, granted: int = 6) -> list[tuple[str, list[str]]]:
    """Agent ``a`` (lease 11) away ``seconds``; etcd then says ``left`` of ``granted``."""
    r = rig("x")
    now = [100.0]
    r.term.clock = Clock(wall=lambda: 1000.0, monotonic=lambda: now[0])
    del r.port.sessions["a"]  # its session is gone
    presence = Presence(r.term, agent_grace=GRACE)
    asyncio.run(presence.gone(Gone("a", 11, graceful=False)))
    now[0] += seconds
    r.store.lives[11] = (left, granted)
    asyncio.run(presence.expire())
    return r.store.calls


def test_an_agent_gone_past_the_grace_whose_lease_ran_down_is_revoked() -> None:
    # renewed last before the break: 6 - 2 s = at most 4 s left
    assert _away_for(2.0, left=4) == [("lease life", ["11"]), ("revoke lease", ["11"])]


def test_an_agent_gone_past_the_grace_whose_lease_was_renewed_since_keeps_it() -> None:
    assert _away_for(2.0, left=5) == [("lease life", ["11"])]


def test_an_agent_within_the_grace_is_left_alone() -> None:
    assert _away_for(GRACE / 2, left=1) == []
