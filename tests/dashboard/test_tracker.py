"""What the dashboard learns from successive snapshots."""

from __future__ import annotations

from tests.dashboard._fakes import chain_state, claim, snap_of, succeed
from workhive.coordinator.dashboard.tracker import SERIES_POINTS, Tracker
from workhive.coordinator.model import LeaderInfo, TaskKey

K = TaskKey("p", "t0")


def test_an_unstarted_claim_moving_to_another_agent_is_a_steal() -> None:
    tr, cs = Tracker(), chain_state()
    claim(cs, K, "a1", started=False)
    tr.observe(snap_of(cs, at=1.0), {})
    claim(cs, K, "a2", started=False)
    tr.observe(snap_of(cs, at=2.0), {})
    (steal,) = tr.steals
    assert (steal.from_agent, steal.to_agent, steal.at) == ("a1", "a2", 2.0)


def test_a_requeue_to_another_agent_is_not_a_steal() -> None:
    tr, cs = Tracker(), chain_state()
    claim(cs, K, "a1", started=True)
    tr.observe(snap_of(cs, at=1.0), {})
    cs.claims.pop(K)
    tr.observe(snap_of(cs, at=2.0), {})
    claim(cs, K, "a2", started=False)
    tr.observe(snap_of(cs, at=3.0), {})
    assert not tr.steals


def test_start_time_is_when_the_claim_was_first_seen_started() -> None:
    tr, cs = Tracker(), chain_state()
    claim(cs, K, "a1", started=True)
    tr.observe(snap_of(cs, at=5.0), {})
    tr.observe(snap_of(cs, at=6.0), {})
    assert tr.started_at[K] == 5.0
    succeed(cs, K)
    tr.observe(snap_of(cs, at=7.0), {})
    assert K not in tr.started_at  # bounded: only running tasks are remembered
    assert [e["event"] for e in tr.history[K]] == ["claimed", "started", "succeeded"]


def test_leader_changes_are_recorded_once_per_term() -> None:
    tr, cs = Tracker(), chain_state()
    for at, term in ((1.0, 5), (2.0, 5), (3.0, 9)):
        tr.observe(snap_of(cs, at=at, leader=LeaderInfo(f"c{term}", "x:1", term)), {})
    assert [(x["id"], x["term"]) for x in tr.leaders] == [("c5", 5), ("c9", 9)]


def test_series_is_bounded_and_computes_throughput() -> None:
    tr, cs = Tracker(), chain_state()
    tr.observe(snap_of(cs, at=0.0), {"p": {"succeeded": 0}})
    point = tr.observe(snap_of(cs, at=2.0), {"p": {"succeeded": 10}})
    assert point["throughput"] == 5.0 and point["done"] == 10.0
    for i in range(SERIES_POINTS + 5):
        tr.observe(snap_of(cs, at=3.0 + i), {})
    assert len(tr.series) == SERIES_POINTS
