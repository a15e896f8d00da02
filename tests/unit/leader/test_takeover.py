"""A new leader takes a follower's warm mirror over only once the mirror has
seen a barrier written as the term begins; otherwise the warm mirror is
cancelled and the leader reads a fresh snapshot (``leader.takeover``)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, cast

import pytest

from tests.unit.leader.test_executor import FENCE, METRICS, FakeStore, _inline
from workhive.coordinator.etcd import StandbyMirror
from workhive.coordinator.leader import takeover
from workhive.coordinator.leader.writes import NotLeading, Writer


@dataclass
class FakeStandby:
    """Records what the takeover did with the warm mirror."""

    did: list[tuple[str, int]] = field(default_factory=list)

    def hand_over(self, push: Any, min_revision: int = 0) -> None:
        self.did.append(("hand over at", min_revision))

    def cancel(self) -> None:
        self.did.append(("cancel", 0))


def _take_over(store: FakeStore, standby: FakeStandby) -> bool:
    writer = Writer(store, FENCE, METRICS, run=_inline)
    warm = cast(StandbyMirror, standby)
    return asyncio.run(takeover.take_over(writer, warm, lambda item: None))


def test_the_warm_mirror_is_handed_over_at_the_first_barrier() -> None:
    standby = FakeStandby()
    assert _take_over(FakeStore(), standby)
    assert standby.did == [("hand over at", 101)]


def test_a_barrier_not_written_cancels_the_warm_mirror() -> None:
    standby = FakeStandby()
    assert not _take_over(FakeStore(barrier_unknown=True), standby)
    assert standby.did == [("cancel", 0)]


def test_a_fence_lost_before_the_first_barrier_cancels_the_warm_mirror() -> None:
    standby = FakeStandby()
    with pytest.raises(NotLeading):
        _take_over(FakeStore(not_leader=True), standby)
    assert standby.did == [("cancel", 0)]


def test_a_takeover_cancelled_while_it_waits_cancels_the_warm_mirror() -> None:
    class Cancelled(FakeStore):
        def barrier(self, fence: Any) -> Any:
            raise asyncio.CancelledError

    standby = FakeStandby()
    with pytest.raises(asyncio.CancelledError):
        _take_over(Cancelled(), standby)
    assert standby.did == [("cancel", 0)]
