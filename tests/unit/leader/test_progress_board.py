"""The leader's progress board: the latest report under the current claim."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from workhive.coordinator.leader.progress import ProgressBoard
from workhive.coordinator.model import Claim, TaskKey, TaskRef

KEY = TaskKey("p", "t")


@dataclass
class _Mirror:
    """The one part of the leader's mirror the board reads: the claims."""

    claims: dict[TaskKey, Claim] = field(default_factory=dict)


def _mirror(agent: str = "a", fence: int = 5) -> Any:
    return _Mirror({KEY: Claim(key=KEY, agent=agent, attempt=1, fence=fence, started=True)})


def test_the_latest_report_of_the_claim_holder_is_shown() -> None:
    board, cs = ProgressBoard(), _mirror()
    assert board.report(cs, "a", TaskRef(KEY, 5, 1), 0.2, "x")
    assert board.report(cs, "a", TaskRef(KEY, 5, 1), 0.6, "y" * 300)
    p = board.of(cs, KEY)
    assert p is not None and p.fraction == 0.6 and p.note == "y" * 256


def test_a_report_from_another_agent_or_an_old_fence_is_ignored() -> None:
    board, cs = ProgressBoard(), _mirror()
    assert not board.report(cs, "b", TaskRef(KEY, 5, 1), 0.5, "")
    assert not board.report(cs, "a", TaskRef(KEY, 4, 1), 0.5, "")
    assert board.of(cs, KEY) is None


def test_nothing_is_shown_once_the_claim_is_gone_or_replaced() -> None:
    board, cs = ProgressBoard(), _mirror()
    board.report(cs, "a", TaskRef(KEY, 5, 1), 0.5, "")
    assert board.of(_mirror(fence=9), KEY) is None  # re-claimed: an older attempt's report
    board.report(cs, "a", TaskRef(KEY, 5, 1), 0.5, "")
    assert board.of(_Mirror(), KEY) is None  # finished


def test_fractions_are_clamped_to_0_and_1() -> None:
    board, cs = ProgressBoard(), _mirror()
    board.report(cs, "a", TaskRef(KEY, 5, 1), 7.0, "")
    p = board.of(cs, KEY)
    assert p is not None and p.fraction == 1.0


def test_a_deleted_claim_takes_its_report_with_it() -> None:
    board, cs = ProgressBoard(), _mirror()
    board.report(cs, "a", TaskRef(KEY, 5, 1), 0.5, "")
    board.forget(Claim(key=KEY, agent="a", attempt=1, fence=4))  # an older claim: kept
    assert board.latest()
    board.forget(Claim(key=KEY, agent="a", attempt=1, fence=5))
    assert board.latest() == {}
