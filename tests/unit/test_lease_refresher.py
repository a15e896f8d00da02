"""LeaseRefresher: heartbeats coalesced into at most one keepalive per interval."""

from __future__ import annotations

from typing import Any

import pytest

from workhive.coordinator.etcd import LeaseRefresher


class CountingKeeper:
    """Stands in for the keepalive stream: answers a fixed TTL per lease."""

    def __init__(self, ttls: dict[int, int]) -> None:
        self.ttls = ttls
        self.calls: list[int] = []
        self.rounds: list[list[int]] = []

    def refresh(self, lease_id: int) -> int:
        self.calls.append(lease_id)
        return self.ttls.get(lease_id, 0)

    def refresh_many(self, lease_ids: list[int]) -> dict[int, int]:
        self.rounds.append(sorted(lease_ids))
        return {lease: self.ttls.get(lease, 0) for lease in lease_ids}


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def refresher(ttls: dict[int, int], interval: float = 2.0) -> tuple[LeaseRefresher, Any, Clock]:
    keeper, clock = CountingKeeper(ttls), Clock()
    return LeaseRefresher(keeper, interval, clock=clock), keeper, clock  # type: ignore[arg-type]


def test_heartbeats_within_the_interval_cost_one_keepalive() -> None:
    r, keeper, clock = refresher({7: 6})
    answers = []
    for _ in range(4):
        answers.append(r.refresh(7))
        clock.now += 0.5
    assert keeper.calls == [7]
    assert answers == [6, 5, 5, 4]  # the TTL counts down between keepalives


def test_a_keepalive_is_sent_once_the_interval_has_passed() -> None:
    r, keeper, clock = refresher({7: 6})
    r.refresh(7)
    clock.now += 2.0
    assert r.refresh(7) == 6
    assert keeper.calls == [7, 7]


def test_a_gone_lease_is_asked_of_etcd_every_time() -> None:
    r, keeper, _ = refresher({})
    assert r.refresh(9) == 0
    assert r.refresh(9) == 0
    assert keeper.calls == [9, 9]
    assert r.cached(9) == 0


def test_leases_are_tracked_separately() -> None:
    r, keeper, _ = refresher({1: 6, 2: 6})
    r.refresh(1)
    r.refresh(2)
    r.refresh(1)
    assert keeper.calls == [1, 2]


def test_negative_interval_is_rejected() -> None:
    with pytest.raises(ValueError, match="min_interval"):
        LeaseRefresher(CountingKeeper({}), -1)  # type: ignore[arg-type]


def test_a_heartbeat_is_answered_from_memory_and_renewed_in_the_next_batched_round() -> None:
    r, keeper, clock = refresher({7: 6, 8: 6})
    r.refresh(7)
    r.refresh(8)
    clock.now += 2.5  # both keepalives are due now
    assert (r.heard(7), r.heard(8)) == (3, 3)  # no I/O: the TTL counts down in memory
    assert r.flush() == 2
    assert keeper.rounds == [[7, 8]]
    assert r.cached(7) == 6


def test_only_heard_leases_whose_keepalive_is_due_go_in_a_round() -> None:
    r, keeper, clock = refresher({7: 6, 8: 6, 9: 6})
    for lease in (7, 8, 9):
        r.refresh(lease)
    clock.now += 1.0
    r.heard(7)  # heard, not due yet
    clock.now += 1.5
    r.heard(8)  # heard and due; 9 is due but silent (its agent may be dead)
    assert r.flush() == 2
    assert keeper.rounds == [[7, 8]]
    assert r.flush() == 0  # nothing heard since


def test_a_lease_not_confirmed_here_is_not_answered_from_memory() -> None:
    r, _, clock = refresher({7: 6})
    assert r.heard(7) == 0  # the caller must ask etcd (refresh)
    r.refresh(7)
    clock.now += 7.0  # past its TTL without a keepalive
    assert r.heard(7) == 0


def test_a_lease_found_gone_in_a_round_is_forgotten() -> None:
    r, keeper, clock = refresher({7: 6})
    r.refresh(7)
    keeper.ttls[7] = 0  # expired in etcd meanwhile
    clock.now += 2.5
    r.heard(7)
    r.flush()
    assert r.heard(7) == 0 and r.cached(7) == 0


def test_heartbeats_heard_in_one_process_are_flushed_by_another() -> None:
    coordinator, _, _ = refresher({7: 6, 8: 6})
    coordinator.refresh(7)
    coordinator.heard(7)
    coordinator.heard(8)  # not confirmed here: not handed on
    handed = coordinator.take_heard()
    assert handed == [7] and coordinator.take_heard() == []
    child, keeper, _ = refresher({7: 6, 8: 6})
    child.mark([*handed, 8])  # marked whether confirmed there or not
    assert child.flush() == 2
    assert keeper.rounds == [[7, 8]]


def test_each_answered_round_is_reported_with_its_time() -> None:
    reports: list[tuple[float, dict[int, int]]] = []
    r, _, clock = refresher({7: 6, 8: 0})
    r.on_confirmed = lambda when, ttls: reports.append((when, ttls))
    r.mark([7, 8])
    r.flush()
    assert reports == [(clock.now, {7: 6, 8: 0})]


def test_answers_obtained_elsewhere_are_remembered_unless_older() -> None:
    r, keeper, clock = refresher({7: 6})
    r.remember({7: (clock.now - 1.0, 6), 8: (clock.now - 1.0, 6)})
    assert r.heard(7) == 5 and r.heard(8) == 5  # from memory, no I/O
    r.remember({7: (clock.now - 3.0, 6)})  # an older answer does not win
    assert r.last_keepalive(7) == 1.0
    r.remember({8: (clock.now, 0)})  # found gone
    assert r.heard(8) == 0
    assert keeper.calls == []


def test_memory_keeps_live_leases_when_pruned() -> None:
    r, _, clock = refresher({})
    r.remember({lease: (clock.now, 6) for lease in range(1, 1100)})
    clock.now += 3.0  # past the interval (2 s), within the TTL (6 s)
    r.remember({5000: (clock.now, 6)})  # over 1,024 entries: pruned
    assert len(r.live(6.0)) == 1100
    clock.now += 4.0
    r.remember({lease: (clock.now, 6) for lease in range(6000, 7100)})
    assert len(r.live(60.0)) == 1101  # the 1,099 whose TTL ran out are gone
