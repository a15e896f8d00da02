"""The audit catches every violation kind (a checker that never fails proves
nothing): synthetic etcd histories, one clean and one per violation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.harness.invariants import InvariantViolation, check_events, format_report
from workhive.coordinator.etcd import EventType, Keyspace, KeyValue, WatchEvent
from workhive.coordinator.etcd.codec import (
    encode_candidate,
    encode_claim,
    encode_meta,
    encode_result,
    encode_task,
)
from workhive.coordinator.etcd.types import ProjectMeta, TaskRecord
from workhive.coordinator.local_cluster.audit import audit
from workhive.coordinator.model import TaskKey, TaskResult, TaskSpec, TaskState

PREFIX = "/audit-test/"
KS = Keyspace(PREFIX)
PID = "p"


class History:
    """Builds a WatchEvent list the way etcd would report it (revisions, prev)."""

    def __init__(self) -> None:
        self.rev = 0
        self.events: list[WatchEvent] = []
        self.live: dict[bytes, KeyValue] = {}

    def put(self, key: bytes, value: bytes, lease: int = 0) -> int:
        self.rev += 1
        prev = self.live.get(key)
        kv = KeyValue(
            key,
            value,
            create_revision=prev.create_revision if prev else self.rev,
            mod_revision=self.rev,
            version=prev.version + 1 if prev else 1,
            lease=lease,
        )
        self.live[key] = kv
        self.events.append(WatchEvent(EventType.PUT, kv, prev))
        return self.rev

    def delete(self, key: bytes) -> int:
        self.rev += 1
        prev = self.live.pop(key)
        kv = KeyValue(key, b"", 0, self.rev, 0)
        self.events.append(WatchEvent(EventType.DELETE, kv, prev))
        return self.rev

    # workhive-level helpers
    def candidate(self, lease: int, cid: str) -> int:
        """Returns the term (the election key's create revision)."""
        return self.put(KS.election(lease), encode_candidate(cid, "127.0.0.1:1"), lease=lease)

    def resign(self, lease: int) -> int:
        return self.delete(KS.election(lease))

    def project(self, deps: dict[str, tuple[str, ...]]) -> None:
        for tid, d in deps.items():
            state = TaskState.PENDING if d else TaskState.READY
            rec = TaskRecord(TaskKey(PID, tid), TaskSpec(id=tid, depends_on=d), state)
            self.put(KS.task(TaskKey(PID, tid)), encode_task(rec))
        self.put(KS.meta(PID), encode_meta(ProjectMeta(PID, len(deps))))

    def claim(self, tid: str, agent: str, term: int, started: bool = False) -> int:
        return self.put(KS.claim(TaskKey(PID, tid)), encode_claim(agent, 1, started, term), lease=7)

    def result(self, tid: str, agent: str, finished_at: float = 0.0) -> int:
        key = TaskKey(PID, tid)
        rev = self.put(
            KS.result(key),
            encode_result(TaskResult(key, TaskState.SUCCEEDED, agent, 1, finished_at=finished_at)),
        )
        if KS.claim(key) in self.live:
            self.delete(KS.claim(key))
        return rev

    def run(self, tid: str, agent: str, term: int, finished_at: float = 0.0) -> None:
        self.claim(tid, agent, term, started=True)
        self.result(tid, agent, finished_at)


def clean_run() -> tuple[History, int]:
    """a -> b, both run by one leader: no violation."""
    h = History()
    term = h.candidate(0x10, "c0")
    h.project({"a": (), "b": ("a",)})
    h.run("a", "agent-1", term, finished_at=100.0)
    h.run("b", "agent-2", term, finished_at=101.0)
    return h, term


def test_clean_history_passes() -> None:
    h, _ = clean_run()
    rep = check_events(h.events, PREFIX)
    assert rep.ok and rep.tasks == 2 and rep.results == 2 and rep.terms == 1


def test_lost_task_is_detected() -> None:
    h = History()
    term = h.candidate(0x10, "c0")
    h.project({"a": (), "b": ("a",)})
    h.run("a", "agent-1", term)
    h.claim("b", "agent-1", term, started=True)  # never committed
    rep = audit(h.events, KS)
    assert rep.lost == [str(TaskKey(PID, "b"))]
    assert not rep.ok


def test_committed_twice_is_detected() -> None:
    h, _ = clean_run()
    h.result("b", "agent-3")  # a second commit of b
    rep = audit(h.events, KS)
    assert rep.committed_twice == [str(TaskKey(PID, "b"))]


def test_early_start_in_etcd_is_detected() -> None:
    h = History()
    term = h.candidate(0x10, "c0")
    h.project({"a": (), "b": ("a",)})
    h.claim("a", "agent-1", term, started=True)
    h.claim("b", "agent-2", term, started=True)  # a has not succeeded yet
    h.result("a", "agent-1")
    h.result("b", "agent-2")
    rep = audit(h.events, KS)
    assert len(rep.early_start) == 1
    assert (
        rep.early_start[0].startswith(str(TaskKey(PID, "b"))) and "before a" in rep.early_start[0]
    )
    assert not rep.lost and not rep.committed_twice


def test_early_start_in_the_exec_log_is_detected(tmp_path: Path) -> None:
    h, _ = clean_run()  # etcd says a finished at t=100
    log = tmp_path / "exec.jsonl"
    lines = [
        {"t": 99.0, "agent": "agent-1", "event": "start", "project": PID, "task": "a"},
        # agent-2 ran b at t=99.5 although a only finished at t=100
        {"t": 99.5, "agent": "agent-2", "event": "start", "project": PID, "task": "b"},
    ]
    log.write_text("".join(json.dumps(x) + "\n" for x in lines))
    rep = audit(h.events, KS, log)
    assert rep.early_start == [f"{TaskKey(PID, 'b')} ran (agent log) before a succeeded"]
    # the same run with b started after a finished is clean
    lines[1]["t"] = 100.2
    log.write_text("".join(json.dumps(x) + "\n" for x in lines))
    assert audit(h.events, KS, log).ok


def test_started_claim_moved_to_another_agent_is_detected() -> None:
    h = History()
    term = h.candidate(0x10, "c0")
    h.project({"a": ()})
    h.claim("a", "agent-1", term, started=True)
    h.claim("a", "agent-2", term, started=False)  # a "steal" of a running task
    h.result("a", "agent-2")
    rep = audit(h.events, KS)
    assert rep.moved_started == [f"{TaskKey(PID, 'a')}: started on agent-1, moved to agent-2"]


def test_moving_a_claim_not_started_is_allowed() -> None:
    h = History()
    term = h.candidate(0x10, "c0")
    h.project({"a": ()})
    h.claim("a", "agent-1", term, started=False)
    h.claim("a", "agent-2", term, started=False)  # a legitimate steal
    h.claim("a", "agent-2", term, started=True)
    h.result("a", "agent-2")
    assert audit(h.events, KS).ok


def test_write_by_a_deposed_leader_is_detected() -> None:
    h = History()
    old = h.candidate(0x10, "c0")
    h.project({"a": (), "b": ()})
    h.run("a", "agent-1", old)
    h.resign(0x10)  # c0's lease is gone ...
    new = h.candidate(0x11, "c1")
    h.claim("b", "agent-1", old, started=True)  # ... yet a claim carries its term
    h.result("b", "agent-1")
    rep = audit(h.events, KS)
    assert len(rep.deposed_writes) == 1 and f"by term {old}" in rep.deposed_writes[0]
    assert new != old


def test_follower_term_writing_while_the_leader_lives_is_detected() -> None:
    h = History()
    leader = h.candidate(0x10, "c0")
    follower = h.candidate(0x11, "c1")  # later create revision: not the leader
    h.project({"a": ()})
    h.run("a", "agent-1", follower)
    rep = audit(h.events, KS)
    assert rep.deposed_writes and f"by term {follower}" in rep.deposed_writes[0]
    assert leader < follower


def test_handoff_to_the_next_leader_is_clean() -> None:
    h = History()
    first = h.candidate(0x10, "c0")
    second = h.candidate(0x11, "c1")
    h.project({"a": (), "b": ("a",)})
    h.run("a", "agent-1", first, finished_at=1.0)
    h.resign(0x10)
    h.run("b", "agent-1", second, finished_at=2.0)
    assert audit(h.events, KS).ok


def test_invariant_violation_message_lists_each_kind() -> None:
    h = History()
    old = h.candidate(0x10, "c0")
    h.project({"a": (), "b": ("a",), "c": ()})
    h.claim("b", "agent-1", old, started=True)  # early start
    h.result("a", "agent-1")
    h.result("a", "agent-2")  # doubled
    h.result("b", "agent-1")
    # c is lost
    with pytest.raises(InvariantViolation) as err:
        check_events(h.events, PREFIX)
    text = str(err.value)
    for kind in ("lost (1)", "committed_twice (1)", "early_start (1)"):
        assert kind in text, text
    assert set(err.value.report.violations) == {"lost", "committed_twice", "early_start"}
    assert format_report(err.value.report) == text


def _exec_log(tmp_path: Path, *runs: tuple[float, str, str, int, str]) -> Path:
    """Lines (t, agent, event, fence, outcome) for task ``a``."""
    log = tmp_path / "exec.jsonl"
    lines = []
    for t, agent, event, fence, outcome in runs:
        line = {"t": t, "agent": agent, "event": event, "project": PID, "task": "a", "fence": fence}
        if outcome:
            line["outcome"] = outcome
        lines.append(line)
    log.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return log


def _one_task_claimed_twice(lease_ends_between: bool) -> tuple[History, int, int]:
    """Task a claimed on agent-1's lease 7, then again (a new claim) on lease 8."""
    h = History()
    term = h.candidate(0x10, "c0")
    h.project({"a": ()})
    h.put(KS.agent("agent-1"), b"{}", lease=7)
    first = h.claim("a", "agent-1", term, started=True)
    if lease_ends_between:
        h.delete(KS.agent("agent-1"))  # lease 7 expired: etcd deletes its keys
    h.delete(KS.claim(TaskKey(PID, "a")))
    second = h.put(KS.claim(TaskKey(PID, "a")), encode_claim("agent-2", 2, True, term), lease=8)
    h.result("a", "agent-2")
    return h, first, second


def test_the_same_claim_started_twice_is_executed_twice(tmp_path: Path) -> None:
    h, first, _ = _one_task_claimed_twice(lease_ends_between=False)
    log = _exec_log(
        tmp_path,
        (1.0, "agent-1", "start", first, ""),
        (2.0, "agent-1", "finish", first, "succeeded"),
        (3.0, "agent-1", "start", first, ""),
    )
    rep = audit(h.events, KS, log)
    assert rep.executed_twice == [f"{TaskKey(PID, 'a')}: claim {first} started twice (on agent-1)"]
    assert rep.executions == 2


def test_a_rerun_while_the_first_agents_lease_lived_is_executed_twice(tmp_path: Path) -> None:
    h, first, second = _one_task_claimed_twice(lease_ends_between=False)
    log = _exec_log(
        tmp_path,
        (1.0, "agent-1", "start", first, ""),
        (3.0, "agent-2", "start", second, ""),
    )
    (violation,) = audit(h.events, KS, log).executed_twice
    assert "while the first lease lived" in violation


def test_a_rerun_after_the_first_agents_lease_ended_is_allowed(tmp_path: Path) -> None:
    h, first, second = _one_task_claimed_twice(lease_ends_between=True)
    log = _exec_log(
        tmp_path,
        (1.0, "agent-1", "start", first, ""),
        (3.0, "agent-2", "start", second, ""),
    )
    assert audit(h.events, KS, log).ok


def test_a_rerun_after_the_first_agent_registered_under_a_fresh_lease_is_allowed(
    tmp_path: Path,
) -> None:
    """agent-1's process was killed and restarted before its lease expired: the
    new process registers agent-1 under lease 9 (a put over the old key, no
    delete) and the coordinator revokes lease 7, deleting the claim."""
    h = History()
    term = h.candidate(0x10, "c0")
    h.project({"a": ()})
    h.put(KS.agent("agent-1"), b"{}", lease=7)
    first = h.claim("a", "agent-1", term, started=True)
    h.put(KS.agent("agent-1"), b"{}", lease=9)
    h.delete(KS.claim(TaskKey(PID, "a")))
    second = h.put(KS.claim(TaskKey(PID, "a")), encode_claim("agent-2", 2, True, term), lease=8)
    h.result("a", "agent-2")
    log = _exec_log(
        tmp_path,
        (1.0, "agent-1", "start", first, ""),
        (3.0, "agent-2", "start", second, ""),
    )
    assert audit(h.events, KS, log).ok


def test_a_retry_after_a_reported_failure_is_allowed(tmp_path: Path) -> None:
    h, first, second = _one_task_claimed_twice(lease_ends_between=False)
    log = _exec_log(
        tmp_path,
        (1.0, "agent-1", "start", first, ""),
        (2.0, "agent-1", "finish", first, "failed"),
        (3.0, "agent-2", "start", second, ""),
    )
    assert audit(h.events, KS, log).ok


def test_a_rerun_after_the_first_agent_process_died_is_allowed(tmp_path: Path) -> None:
    """agent-1 was SIGKILLed while running a (or before its result committed);
    a new agent-1 process took a new lease before the old one was revoked:
    re-running a is legitimate."""
    h, first, second = _one_task_claimed_twice(lease_ends_between=False)
    log = tmp_path / "exec.jsonl"
    lines = [
        {"t": 1.0, "agent": "agent-1", "pid": 100, "event": "start", "project": PID,
         "task": "a", "fence": first},
        {"t": 3.0, "agent": "agent-1", "pid": 200, "event": "start", "project": PID,
         "task": "a", "fence": second},
    ]  # fmt: skip
    log.write_text("".join(json.dumps(x) + "\n" for x in lines))
    assert audit(h.events, KS, log).ok
    lines[1]["pid"] = 100  # the same process, alive: a real re-execution
    log.write_text("".join(json.dumps(x) + "\n" for x in lines))
    assert audit(h.events, KS, log).executed_twice


def test_a_rerun_after_the_first_process_finished_and_then_died_is_allowed(
    tmp_path: Path,
) -> None:
    h, first, second = _one_task_claimed_twice(lease_ends_between=False)
    log = tmp_path / "exec.jsonl"
    lines = [
        {"t": 1.0, "agent": "agent-1", "pid": 100, "event": "start", "project": PID,
         "task": "a", "fence": first},
        {"t": 2.0, "agent": "agent-1", "pid": 100, "event": "finish", "project": PID,
         "task": "a", "fence": first, "outcome": "succeeded"},  # killed before the commit
        {"t": 3.0, "agent": "agent-1", "pid": 200, "event": "start", "project": PID,
         "task": "a", "fence": second},
    ]  # fmt: skip
    log.write_text("".join(json.dumps(x) + "\n" for x in lines))
    assert audit(h.events, KS, log).ok


def _chained_history() -> tuple[History, int]:
    """a -> b on agent-1: b's claim made started, chained after a (``after``),
    before a succeeded; a and b then commit in order. Returns b's fence."""
    h = History()
    term = h.candidate(0x10, "c0")
    h.project({"a": (), "b": ("a",)})
    h.claim("a", "agent-1", term, started=True)
    b = h.put(KS.claim(TaskKey(PID, "b")), encode_claim("agent-1", 1, True, term, ("a",)), lease=7)
    h.result("a", "agent-1", finished_at=100.0)
    h.result("b", "agent-1", finished_at=100.1)
    return h, b


def _runs(
    tmp_path: Path, b_fence: int, b_agent: str, b_start: float, a_outcome: str = "succeeded"
) -> Path:
    """a runs on agent-1 from 99.0 to 99.5; b (claim ``b_fence``) starts on
    ``b_agent`` at ``b_start``."""
    log = tmp_path / "exec.jsonl"
    base = {"project": PID, "pid": 1}
    lines = [
        {**base, "t": 99.0, "agent": "agent-1", "event": "start", "task": "a", "fence": 4},
        {**base, "t": 99.5, "agent": "agent-1", "event": "finish", "task": "a", "fence": 4,
         "outcome": a_outcome},
        {**base, "t": b_start, "agent": b_agent, "event": "start", "task": "b", "fence": b_fence},
    ]  # fmt: skip
    log.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return log


def test_a_chained_claim_started_before_its_dependency_succeeded_is_allowed(
    tmp_path: Path,
) -> None:
    h, fence = _chained_history()
    rep = audit(h.events, KS, _runs(tmp_path, fence, "agent-1", 99.6))
    assert rep.ok, rep.violations
    assert rep.chained == 1


def test_a_chained_run_before_its_dependency_finished_there_is_detected(tmp_path: Path) -> None:
    h, fence = _chained_history()
    for agent, start, a_outcome in (
        ("agent-1", 99.4, "succeeded"),  # before a finished
        ("agent-2", 99.6, "succeeded"),  # a ran on another agent
        ("agent-1", 99.6, "failed"),  # a's run there failed
    ):
        rep = audit(h.events, KS, _runs(tmp_path, fence, agent, start, a_outcome))
        assert rep.early_start == [
            f"{TaskKey(PID, 'b')} ran (agent log) chained before a succeeded there"
        ]


def test_a_success_committed_before_its_dependencys_is_detected() -> None:
    h = History()
    term = h.candidate(0x10, "c0")
    h.project({"a": (), "b": ("a",)})
    h.claim("a", "agent-1", term, started=True)
    h.put(KS.claim(TaskKey(PID, "b")), encode_claim("agent-1", 1, True, term, ("a",)), lease=7)
    h.result("b", "agent-1")
    h.result("a", "agent-1")
    rep = audit(h.events, KS)
    assert [v.split(" at rev")[0] for v in rep.early_start] == [
        str(TaskKey(PID, "b")) + " succeeded"
    ]
