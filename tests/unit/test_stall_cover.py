"""StallCover: while the event loop is stalled, a thread renews the leases of
agents that were heartbeating, and only those, for a bounded time."""

from __future__ import annotations

from workhive.coordinator.etcd import LeaseRefresher
from workhive.coordinator.etcd.stall_cover import StallCover


class Keeper:
    """Stands in for the keepalive stream: a fixed TTL per live lease."""

    def __init__(self, ttls: dict[int, int]) -> None:
        self.ttls = ttls
        self.rounds: list[list[int]] = []

    def refresh(self, lease_id: int) -> int:
        return self.ttls.get(lease_id, 0)

    def refresh_many(self, lease_ids: list[int]) -> dict[int, int]:
        self.rounds.append(sorted(lease_ids))
        return {lease: self.ttls.get(lease, 0) for lease in lease_ids}


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _cover(ttls: dict[int, int]) -> tuple[StallCover, LeaseRefresher, Keeper, Clock]:
    keeper, clock = Keeper(ttls), Clock()
    refresher = LeaseRefresher(keeper, 1.5, clock=clock)  # type: ignore[arg-type]
    cover = StallCover(refresher, ttl=6.0, stall_after=1.0, max_stall=20.0, clock=clock)
    return cover, refresher, keeper, clock


def _run(cover: StallCover, clock: Clock, seconds: float, beat: bool, step: float = 0.25) -> None:
    end = clock.now + seconds
    while clock.now < end:
        clock.now += step
        if beat:
            cover.beat()
        cover.poll()


def test_a_beating_loop_sends_nothing() -> None:
    cover, refresher, keeper, clock = _cover({7: 6})
    refresher.refresh(7)
    _run(cover, clock, 10.0, beat=True)
    assert keeper.rounds == []


def test_a_stalled_loop_renews_the_leases_that_were_heartbeating() -> None:
    cover, refresher, keeper, clock = _cover({7: 6, 8: 6, 9: 6})
    refresher.refresh(7)
    refresher.refresh(8)
    clock.now += 30  # lease 9 was renewed long ago: its agent stopped heartbeating
    refresher.refresh(7)
    refresher.refresh(8)
    keeper.ttls.pop(8)  # 8 is revoked meanwhile
    cover.beat()  # the loop was alive until now
    _run(cover, clock, 8.0, beat=False)
    assert keeper.rounds[0] == [7, 8]
    assert all(r == [7] for r in keeper.rounds[1:]) and len(keeper.rounds) >= 4
    assert cover.rounds == len(keeper.rounds)


def test_renewals_are_spaced_by_the_refresh_interval() -> None:
    cover, refresher, keeper, clock = _cover({7: 6})
    refresher.refresh(7)
    _run(cover, clock, 7.0, beat=False, step=0.05)
    assert 3 <= len(keeper.rounds) <= 5  # (7 - 1) s of stall / 1.5 s


def test_a_stall_longer_than_the_bound_is_not_covered() -> None:
    cover, refresher, keeper, clock = _cover({7: 6})
    refresher.refresh(7)
    _run(cover, clock, 40.0, beat=False)
    covered = len(keeper.rounds)
    _run(cover, clock, 20.0, beat=False)
    assert len(keeper.rounds) == covered  # nothing after max_stall
    assert covered <= 20 / 1.5 + 1


def test_a_stopped_process_is_not_covered() -> None:
    keeper, clock = Keeper({7: 6}), Clock()
    refresher = LeaseRefresher(keeper, 1.5, clock=clock)  # type: ignore[arg-type]
    running = [True]
    cover = StallCover(refresher, ttl=6.0, clock=clock, running=lambda: running[0])
    refresher.refresh(7)
    running[0] = False  # SIGSTOPped: not a busy loop, its agents must move on
    _run(cover, clock, 10.0, beat=False)
    assert keeper.rounds == []
