"""Network partitions (issue 17): every etcd member, coordinator and agent in
its own network namespace; a link cut (iptables drops) or delayed mid-project,
then healed; the project must finish and the audit of etcd's whole history and
the agents' execution log find nothing lost, committed twice, started early,
written by a deposed leader or executed twice. Scenario bodies and their
measured recovery times: ``scenarios.py`` (``python -m tests.partitions.scenarios``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.failover.scenarios import Outcome
from tests.partitions import scenarios as s

pytestmark = [pytest.mark.failover, pytest.mark.slow, pytest.mark.timeout(150)]


class RanTwice(AssertionError):
    """A task ran more than once although no agent died."""


class LeaderDeposed(AssertionError):
    """The leader lost its leadership to a fault that should only slow it."""


class NoProgress(AssertionError):
    """No task started while the fault lasted."""


def _audited(out: Outcome) -> Outcome:
    print(json.dumps(out.to_dict()))
    assert out.audit is not None and out.audit.ok
    return out


def _ran_each_task_once(out: Outcome) -> None:
    a = out.audit
    assert a is not None
    if out.info["agent_leases_ended"] or a.requeued or a.executions != a.tasks:
        raise RanTwice(
            f"{a.executions} executions of {a.tasks} tasks, {a.requeued} requeued, "
            f"{out.info['agent_leases_ended']} agent leases ended"
        )


def _no_rerun_unless_a_lease_ended(out: Outcome) -> None:
    a = out.audit
    assert a is not None
    if out.info["agent_leases_ended"] == 0:
        assert a.executions == a.tasks, f"{a.executions} executions of {a.tasks} tasks"


def test_leader_cut_from_etcd_is_replaced_and_writes_nothing(tmp_path: Path) -> None:
    out = _audited(s.leader_etcd_cut(tmp_path))
    _no_rerun_unless_a_lease_ended(out)
    assert out.audit is not None and out.audit.deposed_writes == []
    assert out.audit.terms >= 2
    assert str(out.info["old_leader_says"]) != "leader"
    # work resumed under the new leader while the old one was still cut off
    assert out.metrics["recover"] < float(out.info["cut_s"])  # type: ignore[arg-type]


def test_agents_cut_from_the_leader_keep_working_through_a_follower(tmp_path: Path) -> None:
    out = _audited(s.leader_agents_cut(tmp_path))
    if not out.info["started_under_cut"]:
        raise NoProgress("no task started while the agents were cut off from the leader")


def test_agent_cut_off_shorter_than_its_lease_loses_nothing_and_runs_nothing_twice(
    tmp_path: Path,
) -> None:
    out = _audited(s.agent_cut_short(tmp_path))
    _ran_each_task_once(out)
    assert out.info["held_task_result_by_victim"]


def test_agent_cut_off_past_its_lease_has_its_work_rerun_and_late_completion_rejected(
    tmp_path: Path,
) -> None:
    out = _audited(s.agent_cut_past_lease(tmp_path))
    assert out.info["result_writes"] == 1
    assert out.info["result_agent"] not in ("", out.info["victim"])
    assert out.info["late_completion"] in ("rejected", "dropped")


def test_etcd_member_isolated_from_its_peers_does_not_stop_the_cluster(tmp_path: Path) -> None:
    out = _audited(s.etcd_member_isolated(tmp_path))
    assert out.info["started_under_cut"]
    _ran_each_task_once(out)


@pytest.mark.xfail(
    strict=False,
    raises=NoProgress,  # a deposed leader or an audit violation still fails the test
    reason=(
        "the leader keeps its term under a 2 s delay (10 of 10 runs), but in 2 of 10 no task "
        "started during the 10 s delay: the agents' sessions go silent (acks > 3 s late) and "
        "their move through a follower's relay takes most of the 10 s (issue 17)"
    ),
)
def test_two_second_delay_on_the_leaders_link_slows_work_but_deposes_no_one(
    tmp_path: Path,
) -> None:
    out = _audited(s.leader_link_delayed(tmp_path))
    _no_rerun_unless_a_lease_ended(out)
    if out.info["leader_after"] != out.info["old_leader"]:
        raise LeaderDeposed(f"{out.info['old_leader']} lost the lead to {out.info['leader_after']}")
    if not out.info["started_under_delay"]:
        raise NoProgress("no task started while the leader's link was delayed")
