"""Failover suite: etcd in containers (local image), coordinators and agents as
processes; every scenario bounded in time, audited by the invariant checker
(lost, committed twice, early start, moved started claim, deposed writes) and
cleaned up. Scenario bodies live in ``scenarios.py`` (shared with
``tools/recovery_table.py``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.failover import scenarios as s
from tests.harness.etcd_container import EtcdContainer

pytestmark = [pytest.mark.failover, pytest.mark.docker, pytest.mark.timeout(240)]


def _report(out: s.Outcome) -> None:
    print(json.dumps(out.to_dict()))
    assert out.audit is not None and out.audit.ok


def test_sigkill_leader_mid_project(etcd_container: EtcdContainer, tmp_path: Path) -> None:
    out = s.sigkill_leader([etcd_container.url], tmp_path)
    _report(out)
    assert out.info["new_leader_id"] != out.info["old_leader_id"]
    # fast failover: the dead leader's lease is revoked, no wait for its TTL
    assert out.metrics["new_leader"] < s.ELECTION_TTL + 2


def test_sigstop_leader_past_ttl_steps_down_and_writes_nothing(
    etcd_container: EtcdContainer, tmp_path: Path
) -> None:
    out = s.sigstop_leader([etcd_container.url], tmp_path)
    _report(out)
    assert out.audit is not None and out.audit.deposed_writes == []
    assert out.audit.terms >= 2
    assert str(out.info["old_leader_says"]).startswith("follower")


def test_sigterm_leader_hands_off_within_a_second(
    etcd_container: EtcdContainer, tmp_path: Path
) -> None:
    out = s.sigterm_leader([etcd_container.url], tmp_path)
    _report(out)
    assert out.metrics["new_leader"] < 1.0


def test_etcd_paused_past_lease_ttl(etcd_container: EtcdContainer, tmp_path: Path) -> None:
    out = s.etcd_pause(etcd_container, tmp_path)
    _report(out)


def test_etcd_container_restart(etcd_container: EtcdContainer, tmp_path: Path) -> None:
    out = s.etcd_restart(etcd_container, tmp_path)
    _report(out)


def test_etcd_cluster_raft_leader_killed(
    etcd_container_cluster: list[EtcdContainer], tmp_path: Path
) -> None:
    out = s.etcd_kill_raft_leader(etcd_container_cluster, tmp_path)
    _report(out)


def test_several_agents_killed_mid_task(etcd_container: EtcdContainer, tmp_path: Path) -> None:
    out = s.kill_agents([etcd_container.url], tmp_path)
    _report(out)
    assert int(out.info["tasks_in_flight"]) >= 1  # type: ignore[call-overload]


def test_agent_stopped_past_its_lease_has_its_late_completion_rejected(
    etcd_container: EtcdContainer, tmp_path: Path
) -> None:
    out = s.agent_stopped_past_lease([etcd_container.url], tmp_path)
    _report(out)
